;; A recommender that always answers {"product_ids":["8001"]}.
(module
  (memory (export "memory") 1)
  (data (i32.const 0) "{\22product_ids\22:[\228001\22]}")
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "recommend") (param i32 i32) (result i64) (i64.const 24)))
