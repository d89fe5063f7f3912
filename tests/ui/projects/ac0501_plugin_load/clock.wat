;; Reads the clock through WASI: refused at load (plugins must be deterministic).
(module
  (import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "segment") (param i32 i32) (result i32) (i32.const 1)))
