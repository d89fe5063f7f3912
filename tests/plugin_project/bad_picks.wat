;; Malformed output: a bare JSON array instead of {"product_ids": [...]} (bad_output).
(module
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 4096))
  (data (i32.const 64) "\5b\22\38\30\35\30\22\5d")
  (func (export "recommend") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 8))))
