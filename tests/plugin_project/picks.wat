;; A correct recommender: always {"product_ids":["9999","8099","8050"]}. The caller drops 9999 (not
;; in the catalog) and 8099 (sold out), so flows get the Burr grinder (8050).
(module
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 4096))
  (data (i32.const 64) "\7b\22\70\72\6f\64\75\63\74\5f\69\64\73\22\3a\5b\22\39\39\39\39\22\2c\22\38\30\39\39\22\2c\22\38\30\35\30\22\5d\7d")
  (func (export "recommend") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 38))))
