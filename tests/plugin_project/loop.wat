;; A segment plugin that never returns: stopped by its fuel limit, so its fallback applies.
(module
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "segment") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0)))
