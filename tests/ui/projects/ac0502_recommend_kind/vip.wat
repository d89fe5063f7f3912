;; vip_segment.wat: a hand-written ABI v1 segment plugin. A person is a VIP when their
;; lifetime spend (profile.total_spent, a decimal string) is at least 500.
;;
;; No JSON parser needed: the host's `aftercart.decimal_cmp` reads the field by its dotted path
;; and compares it, as an exact decimal, with a literal. Try it:
;;   aftercart plugin test examples/plugins/vip_segment.wat
(module
  ;; decimal_cmp(path_ptr, path_len, lit_ptr, lit_len) -> -1 | 0 | 1, or -2 if missing.
  (import "aftercart" "decimal_cmp" (func $decimal_cmp (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 0) "profile.total_spent")  ;; 19 bytes
  (data (i32.const 32) "500")                 ;; 3 bytes: the VIP threshold

  ;; Bump allocator for the input; memory above 1024 is the heap. Never freed: every call
  ;; runs in a fresh instance, so there is nothing to free.
  (global $heap (mut i32) (i32.const 1024))

  (func (export "abi_version") (result i32) (i32.const 1))

  (func (export "alloc") (param $len i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    ;; Grow by whole 64 KiB pages when the input does not fit.
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then
        (if (i32.lt_s
              (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535))
                                      (i32.const 16)))
              (i32.const 0))
          (then (unreachable)))))
    (global.set $heap (local.get $end))
    (local.get $p))

  ;; The input is at (ptr, len); this plugin does not need to read it itself.
  (func (export "segment") (param $ptr i32) (param $len i32) (result i32)
    (i32.ge_s
      (call $decimal_cmp (i32.const 0) (i32.const 19) (i32.const 32) (i32.const 3))
      (i32.const 0)))
)
