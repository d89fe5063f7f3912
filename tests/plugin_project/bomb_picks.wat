;; A memory bomb: grows memory a page at a time until the limit stops it (memory_limit).
(module
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 4096))
  (func (export "recommend") (param i32 i32) (result i64)
    (loop $l (drop (memory.grow (i32.const 1))) (br $l))
    (i64.const 0)))
