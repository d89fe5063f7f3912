;; A recommender that traps (unreachable): a trap, reported with wasmtime's description.
(module
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "recommend") (param i32 i32) (result i64) (unreachable)))
