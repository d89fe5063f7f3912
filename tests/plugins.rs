//! The WebAssembly plugin host and the built-in recommender, with hand-written WAT only (no
//! wasm toolchain in CI): correct plugins work; every hostile or broken one is contained with
//! a clear reason and the flow goes on with the fallback.

use aftercart::catalog::{self, Catalog};
use aftercart::plugins::*;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One host for the whole file, as in production (and so the engine is built once).
fn host() -> &'static Host {
    static HOST: OnceLock<Host> = OnceLock::new();
    HOST.get_or_init(|| Host::new().expect("host"))
}

/// The ABI v1 boilerplate around `body`: memory, abi_version, a growing bump `alloc`.
fn module(imports: &str, body: &str) -> String {
    format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (func (export "abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32)
    (local $p i32) (local $end i32) (local $have i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $len)))
    (local.set $have (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.gt_u (local.get $end) (local.get $have))
      (then (drop (memory.grow (i32.shr_u (i32.add (i32.sub (local.get $end) (local.get $have)) (i32.const 65535)) (i32.const 16))))))
    (global.set $heap (local.get $end))
    (local.get $p))
  {body}
)"#
    )
}

fn spec(kind: PluginKind) -> PluginSpec {
    PluginSpec::new("t", "tests/inline.wat", kind)
}

fn load(kind: PluginKind, wat: &str) -> Result<LoadedPlugin, PluginError> {
    host().load_bytes(&spec(kind), wat.as_bytes())
}

fn segment_plugin(body: &str) -> LoadedPlugin {
    load(PluginKind::Segment, &module("", body)).expect("loads")
}

fn recommend_plugin(body: &str) -> LoadedPlugin {
    load(PluginKind::Recommend, &module("", body)).expect("loads")
}

fn input(total_spent: &str) -> String {
    plugin_input(
        &json!({"id": "c1", "total_spent": total_spent, "orders_count": 4}),
        None,
    )
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// A recommend body returning the bytes of `out` (placed by a data segment at 64).
fn constant_recommend(out: &str) -> String {
    let escaped: String = out.bytes().map(|b| format!("\\{b:02x}")).collect();
    format!(
        r#"(data (i32.const 64) "{escaped}")
  (func (export "recommend") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const {})))"#,
        out.len()
    )
}

// ---- correct plugins ----

#[test]
fn vip_segment_example_answers_true_and_false() {
    let p = host()
        .load(&PluginSpec::new(
            "vip",
            repo("examples/plugins/vip_segment.wat"),
            PluginKind::Segment,
        ))
        .unwrap();
    let yes = p.segment(&input("612.40")).unwrap();
    assert!(yes.value);
    assert!(
        yes.fuel_used > 0 && yes.fuel_used < 10_000,
        "fuel {}",
        yes.fuel_used
    );
    assert_eq!(yes.peak_memory, 65536);
    assert!(!p.segment(&input("499.99")).unwrap().value);
    assert!(
        p.segment(&input("500")).unwrap().value,
        "exactly the threshold, compared as decimals"
    );
    // A missing field is -2 from decimal_cmp, so not a VIP.
    assert!(
        !p.segment(&plugin_input(&json!({"id": "c2"}), None))
            .unwrap()
            .value
    );
}

#[test]
fn segment_reading_the_raw_input_bytes() {
    // True when the input's first byte is `{` (the plugin reads its own memory).
    let p = segment_plugin(
        r#"(func (export "segment") (param $p i32) (param $n i32) (result i32)
        (i32.eq (i32.load8_u (local.get $p)) (i32.const 123)))"#,
    );
    assert!(p.segment("{}").unwrap().value);
    assert!(!p.segment("[]").unwrap().value);
}

#[test]
fn recommender_returns_ids() {
    let p = recommend_plugin(&constant_recommend(
        r#"{"product_ids":["8001","8010","8001"]}"#,
    ));
    let o = p.recommend(&sample_input()).unwrap();
    assert_eq!(
        o.value,
        vec!["8001", "8010"],
        "duplicates dropped, order kept"
    );
}

#[test]
fn recommender_using_host_field() {
    // {"product_ids":["<order.line_items.1.product_id>"]} built with aftercart.field.
    let prefix = r#"{"product_ids":[""#;
    let wat = module(
        r#"(import "aftercart" "field" (func $field (param i32 i32 i32 i32) (result i32)))"#,
        &format!(
            r#"(data (i32.const 0) "order.line_items.1.product_id")
  (data (i32.const 64) "{}")
  (data (i32.const 48) "\"]}}")
  (func (export "recommend") (param i32 i32) (result i64)
    (local $n i32)
    (local.set $n (call $field (i32.const 0) (i32.const 29) (i32.const {}) (i32.const 64)))
    (memory.copy (i32.add (i32.const {}) (local.get $n)) (i32.const 48) (i32.const 3))
    (i64.or (i64.shl (i64.const 64) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.const {}) (local.get $n)))))"#,
            prefix.replace('"', "\\\""),
            64 + prefix.len(),
            64 + prefix.len(),
            prefix.len() + 3
        ),
    );
    let p = load(PluginKind::Recommend, &wat).unwrap();
    assert_eq!(p.recommend(&sample_input()).unwrap().value, vec!["8010"]);
}

#[test]
fn host_field_functions() {
    // Returns field_len / array_len / field results as a segment code to check each one.
    let imports = r#"(import "aftercart" "field_len" (func $flen (param i32 i32) (result i32)))
  (import "aftercart" "array_len" (func $alen (param i32 i32) (result i32)))
  (import "aftercart" "field" (func $field (param i32 i32 i32 i32) (result i32)))"#;
    let body = r#"(data (i32.const 0) "order.line_items")
  (data (i32.const 32) "profile.first_name")
  (data (i32.const 64) "profile.nope")
  (func (export "segment") (param i32 i32) (result i32)
    ;; array_len(order.line_items) must be 2
    (if (i32.ne (call $alen (i32.const 0) (i32.const 16)) (i32.const 2)) (then (return (i32.const -10))))
    ;; field_len(profile.first_name) = len("Dana") = 4
    (if (i32.ne (call $flen (i32.const 32) (i32.const 18)) (i32.const 4)) (then (return (i32.const -11))))
    ;; a 2-byte buffer is too small: -2
    (if (i32.ne (call $field (i32.const 32) (i32.const 18) (i32.const 128) (i32.const 2)) (i32.const -2)) (then (return (i32.const -12))))
    ;; missing: -1
    (if (i32.ne (call $flen (i32.const 64) (i32.const 12)) (i32.const -1)) (then (return (i32.const -13))))
    (drop (call $field (i32.const 32) (i32.const 18) (i32.const 128) (i32.const 16)))
    ;; "Dana" starts with D (68)
    (i32.eq (i32.load8_u (i32.const 128)) (i32.const 68)))"#;
    let p = load(PluginKind::Segment, &module(imports, body)).unwrap();
    assert_eq!(p.segment(&sample_input()).map(|o| o.value), Ok(true));
}

// ---- contained failures ----

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let p = segment_plugin(
        r#"(func (export "segment") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#,
    );
    let e = p.segment(&sample_input()).unwrap_err();
    assert_eq!(e, CallError::OutOfFuel);
    assert_eq!(e.reason(), "out_of_fuel");
    // And the flow goes on with the fallback.
    assert_eq!(
        p.segment_or_fallback(&sample_input()),
        (false, Some(CallError::OutOfFuel))
    );
}

#[test]
fn wall_clock_deadline_is_a_backstop() {
    let host = Host::with_config(HostConfig {
        deadline_ticks: 5,
        ..HostConfig::default()
    })
    .unwrap();
    let mut s = spec(PluginKind::Segment);
    s.fuel = u64::MAX / 2;
    let p = host
        .load_bytes(&s, module("", r#"(func (export "segment") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#).as_bytes())
        .unwrap();
    let t = Instant::now();
    assert_eq!(p.segment("{}").unwrap_err(), CallError::Timeout);
    assert!(t.elapsed() < Duration::from_secs(5));
}

#[test]
fn memory_bomb_is_stopped_by_the_limit() {
    let bomb = r#"(func (export "segment") (param i32 i32) (result i32)
        (loop $l (drop (memory.grow (i32.const 1))) (br $l)) (i32.const 0))"#;
    let p = segment_plugin(bomb);
    let e = p.segment(&sample_input()).unwrap_err();
    assert_eq!(e, CallError::MemoryLimit);
    assert_eq!(e.reason(), "memory_limit");
    // A smaller per-plugin limit, and a module whose initial memory is already too big.
    let mut s = spec(PluginKind::Segment);
    s.memory_bytes = 1 << 20;
    let p = host().load_bytes(&s, module("", bomb).as_bytes()).unwrap();
    assert_eq!(p.segment("{}").unwrap_err(), CallError::MemoryLimit);
    let big = module(
        "",
        r#"(func (export "segment") (param i32 i32) (result i32) (i32.const 1))"#,
    )
    .replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 32)"#,
    );
    let p = host().load_bytes(&s, big.as_bytes());
    assert!(
        matches!(p, Err(PluginError { kind: LoadErrorKind::Instantiate(ref m), .. }) if m.contains("memory limit")),
        "{p:?}",
        p = p.err()
    );
}

#[test]
fn trap_is_reported() {
    let p =
        segment_plugin(r#"(func (export "segment") (param i32 i32) (result i32) (unreachable))"#);
    let e = p.segment("{}").unwrap_err();
    assert!(
        matches!(&e, CallError::Trap(m) if m.contains("unreachable")),
        "{e}"
    );
    assert_eq!(e.reason(), "trap");
    let p = segment_plugin(
        r#"(func (export "segment") (param i32 i32) (result i32) (i32.div_u (i32.const 1) (i32.const 0)))"#,
    );
    assert_eq!(p.segment("{}").unwrap_err().reason(), "trap");
}

#[test]
fn plugin_error_code_and_bad_segment_value() {
    let p =
        segment_plugin(r#"(func (export "segment") (param i32 i32) (result i32) (i32.const -7))"#);
    assert_eq!(p.segment("{}").unwrap_err(), CallError::PluginErrorCode(-7));
    let p =
        segment_plugin(r#"(func (export "segment") (param i32 i32) (result i32) (i32.const 2))"#);
    assert_eq!(p.segment("{}").unwrap_err().reason(), "bad_output");
}

fn load_err(wat: &str) -> PluginError {
    match load(PluginKind::Segment, wat) {
        Ok(_) => panic!("expected a load error"),
        Err(e) => e,
    }
}

const SEGMENT_TRUE: &str =
    r#"(func (export "segment") (param i32 i32) (result i32) (i32.const 1))"#;

#[test]
fn forbidden_imports_are_refused_naming_the_import() {
    let e = load_err(&module(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
        SEGMENT_TRUE,
    ));
    assert_eq!(
        e.kind,
        LoadErrorKind::ForbiddenImport {
            module: "wasi_snapshot_preview1".into(),
            name: "fd_write".into()
        }
    );
    assert_eq!(e.reason(), "forbidden_import");
    let msg = e.to_string();
    assert!(
        msg.contains("tests/inline.wat") && msg.contains("`wasi_snapshot_preview1.fd_write`"),
        "{msg}"
    );

    let e = load_err(&module(
        r#"(import "env" "random" (func (result i32)))"#,
        SEGMENT_TRUE,
    ));
    assert!(e.to_string().contains("`env.random`"), "{e}");
    // An unknown name inside the host module, and a non-function import, are refused too.
    let e = load_err(&module(
        r#"(import "aftercart" "now" (func (result i64)))"#,
        SEGMENT_TRUE,
    ));
    assert_eq!(e.reason(), "forbidden_import");
    let e = load_err(&module(
        r#"(import "env" "clock" (global i64))"#,
        SEGMENT_TRUE,
    ));
    assert_eq!(e.reason(), "forbidden_import");
    // A host function imported with the wrong type.
    let e = load_err(&module(
        r#"(import "aftercart" "field_len" (func (param i32) (result i32)))"#,
        SEGMENT_TRUE,
    ));
    assert!(
        matches!(&e.kind, LoadErrorKind::WrongSignature { name, .. } if name == "aftercart.field_len"),
        "{e}"
    );
}

#[test]
fn wrong_abi_version_is_refused() {
    let wat = module("", SEGMENT_TRUE)
        .replace("(result i32) (i32.const 1))", "(result i32) (i32.const 2))");
    let e = load_err(&wat);
    assert_eq!(e.kind, LoadErrorKind::AbiVersion { found: 2 });
    assert!(e.to_string().contains("abi_version() returned 2"), "{e}");
}

#[test]
fn missing_exports_and_wrong_signatures_are_refused() {
    // No segment export for a segment plugin.
    let e = load_err(&module("", ""));
    assert_eq!(
        e.kind,
        LoadErrorKind::MissingExport {
            name: "segment".into()
        }
    );
    // No alloc.
    let e = load_err(&format!(
        r#"(module (memory (export "memory") 1) (func (export "abi_version") (result i32) (i32.const 1)) {SEGMENT_TRUE})"#
    ));
    assert_eq!(
        e.kind,
        LoadErrorKind::MissingExport {
            name: "alloc".into()
        }
    );
    // No memory.
    let e = load_err(
        &module("", SEGMENT_TRUE).replace(r#"(memory (export "memory") 1)"#, "(memory 1)"),
    );
    assert_eq!(
        e.kind,
        LoadErrorKind::MissingExport {
            name: "memory".into()
        }
    );
    // segment returning i64.
    let e = load_err(&module(
        "",
        r#"(func (export "segment") (param i32 i32) (result i64) (i64.const 1))"#,
    ));
    assert_eq!(
        e.kind,
        LoadErrorKind::WrongSignature {
            name: "segment".into(),
            expected: "(i32, i32) -> i32".into(),
            found: "(i32, i32) -> i64".into()
        }
    );
    // Not wasm at all.
    assert_eq!(load_err("this is not a module").reason(), "compile");
    // A missing file.
    let e = host()
        .load(&PluginSpec::new(
            "x",
            "plugins/nope.wasm",
            PluginKind::Segment,
        ))
        .unwrap_err();
    assert!(
        e.reason() == "io" && e.to_string().contains("plugins/nope.wasm"),
        "{e}"
    );
}

#[test]
fn malformed_recommend_output_is_bad_output() {
    let bad = |body: &str| {
        recommend_plugin(body)
            .recommend(&sample_input())
            .unwrap_err()
    };
    // Pointer far outside memory.
    let e = bad(
        r#"(func (export "recommend") (param i32 i32) (result i64) (i64.const 0x7fff000000000010))"#,
    );
    assert!(
        matches!(&e, CallError::BadOutput(m) if m.contains("outside memory")),
        "{e}"
    );
    // Longer than 64 KiB.
    let e = bad(r#"(func (export "recommend") (param i32 i32) (result i64) (i64.const 70000))"#);
    assert!(
        matches!(&e, CallError::BadOutput(m) if m.contains("limit")),
        "{e}"
    );
    // Not JSON.
    assert!(
        matches!(bad(&constant_recommend("not json")), CallError::BadOutput(m) if m.contains("not JSON"))
    );
    // Wrong shape.
    assert_eq!(
        bad(&constant_recommend(r#"{"ids":["1"]}"#)).reason(),
        "bad_output"
    );
    assert_eq!(
        bad(&constant_recommend(r#"{"product_ids":[1,2]}"#)).reason(),
        "bad_output"
    );
    // Too many ids.
    let many: Vec<String> = (0..17).map(|i| format!("\"{i}\"")).collect();
    let e = bad(&constant_recommend(&format!(
        r#"{{"product_ids":[{}]}}"#,
        many.join(",")
    )));
    assert!(
        matches!(&e, CallError::BadOutput(m) if m.contains("17 product ids")),
        "{e}"
    );
    // An id too long, and an empty one.
    let long = "x".repeat(65);
    assert_eq!(
        bad(&constant_recommend(&format!(
            r#"{{"product_ids":["{long}"]}}"#
        )))
        .reason(),
        "bad_output"
    );
    assert_eq!(
        bad(&constant_recommend(r#"{"product_ids":[""]}"#)).reason(),
        "bad_output"
    );
    // Not UTF-8.
    assert_eq!(bad(&constant_recommend("\u{0}")).reason(), "bad_output");
    // alloc pointing outside memory.
    let p = load(
        PluginKind::Segment,
        &module("", SEGMENT_TRUE).replace(
            "(local.get $p))",
            "(drop (local.get $p)) (i32.const -65536))",
        ),
    )
    .unwrap();
    assert!(matches!(p.segment("{}").unwrap_err(), CallError::BadOutput(m) if m.contains("alloc")));
}

#[test]
fn fallbacks_apply_and_record_the_reason() {
    let mut s = spec(PluginKind::Recommend);
    s.fallback = Fallback::Recommend(vec!["8020".into()]);
    let p = host()
        .load_bytes(
            &s,
            module(
                "",
                r#"(func (export "recommend") (param i32 i32) (result i64) (unreachable))"#,
            )
            .as_bytes(),
        )
        .unwrap();
    let (ids, err) =
        p.recommend_or_fallback("{}", || panic!("builtin not used for an explicit fallback"));
    assert_eq!(ids, vec!["8020"]);
    assert_eq!(err.unwrap().reason(), "trap");
    let mut s = spec(PluginKind::Recommend);
    s.fallback = Fallback::BuiltIn;
    let p = host()
        .load_bytes(
            &s,
            module(
                "",
                r#"(func (export "recommend") (param i32 i32) (result i64) (unreachable))"#,
            )
            .as_bytes(),
        )
        .unwrap();
    assert_eq!(
        p.recommend_or_fallback("{}", || vec!["b".into()]).0,
        vec!["b"]
    );
    // The generic helper: success passes through with no error.
    let ok: Result<Outcome<bool>, CallError> = Ok(Outcome {
        value: true,
        fuel_used: 1,
        peak_memory: 0,
    });
    assert_eq!(call_with_fallback(ok, || false), (true, None));
    // Asking a segment-only plugin to recommend.
    assert_eq!(
        segment_plugin(SEGMENT_TRUE).recommend("{}").unwrap_err(),
        CallError::NotExported("recommend")
    );
    // A fallback of the wrong kind is a load error.
    let mut s = spec(PluginKind::Segment);
    s.fallback = Fallback::Recommend(vec![]);
    assert!(host()
        .load_bytes(&s, module("", SEGMENT_TRUE).as_bytes())
        .is_err());
}

// ---- determinism ----

#[test]
fn same_input_same_output_across_fresh_instances() {
    // State does not leak between calls: a global counter is 1 on every call.
    let p = segment_plugin(
        r#"(global $calls (mut i32) (i32.const 0))
      (func (export "segment") (param i32 i32) (result i32)
        (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
        (i32.eq (global.get $calls) (i32.const 1)))"#,
    );
    // NaN bits are canonical whatever the CPU produces for 0/0 (x86 gives a negative NaN).
    let nan = segment_plugin(
        r#"(func (export "segment") (param $p i32) (param $n i32) (result i32)
        (i64.eq
          (i64.reinterpret_f64 (f64.div (f64.convert_i32_s (i32.sub (local.get $n) (local.get $n)))
                                        (f64.convert_i32_s (i32.sub (local.get $n) (local.get $n)))))
          (i64.const 0x7ff8000000000000)))"#,
    );
    let vip = host()
        .load(&PluginSpec::new(
            "vip",
            repo("examples/plugins/vip_segment.wat"),
            PluginKind::Segment,
        ))
        .unwrap();
    let input = sample_input();
    let first = vip.segment(&input).unwrap();
    for _ in 0..100 {
        assert!(p.segment(&input).unwrap().value);
        assert!(nan.segment(&input).unwrap().value, "NaN canonicalisation");
        assert_eq!(
            vip.segment(&input).unwrap(),
            first,
            "value, fuel and memory are identical"
        );
    }
    // A second host, fresh engine, same answers and same fuel.
    let other = Host::new().unwrap();
    let vip2 = other
        .load(&PluginSpec::new(
            "vip",
            repo("examples/plugins/vip_segment.wat"),
            PluginKind::Segment,
        ))
        .unwrap();
    assert_eq!(vip2.segment(&input).unwrap(), first);
    assert_eq!(vip2.module_hash(), vip.module_hash());
}

#[test]
fn canonical_json_sorts_keys_at_every_depth() {
    let v = json!({"b": {"z": 1, "a": [ {"y": true, "x": null} ]}, "a": "29.99"});
    assert_eq!(
        canonical_json(&v),
        r#"{"a":"29.99","b":{"a":[{"x":null,"y":true}],"z":1}}"#
    );
    let s = sample_input();
    assert!(s.starts_with(r#"{"order":{"created_at":"#), "{s}");
}

#[test]
fn precompiled_artefacts_are_reused_and_verified() {
    let dir = std::env::temp_dir().join(format!("aftercart-plugins-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = || HostConfig {
        precompiled_dir: Some(dir.clone()),
        ..HostConfig::default()
    };
    let vip = PluginSpec::new(
        "vip",
        repo("examples/plugins/vip_segment.wat"),
        PluginKind::Segment,
    );
    let a = Host::with_config(cfg()).unwrap().load(&vip).unwrap();
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let art = files
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .expect("artefact written")
        .clone();
    assert!(art
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with(a.module_hash()));
    // From disk, then from a corrupted artefact (hash mismatch: recompiled, never loaded).
    let b = Host::with_config(cfg()).unwrap().load(&vip).unwrap();
    assert!(b.segment(&sample_input()).unwrap().value);
    let mut bytes = std::fs::read(&art).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&art, bytes).unwrap();
    let c = Host::with_config(cfg()).unwrap().load(&vip).unwrap();
    assert!(c.segment(&sample_input()).unwrap().value);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plugin_test_report_for_the_cli() {
    let ok = plugin_test_report(&repo("examples/plugins/vip_segment.wat"), None).unwrap();
    assert!(
        ok.contains("segment: true")
            && ok.contains("fuel used")
            && ok.contains("peak memory: 65536"),
        "{ok}"
    );
    let no = plugin_test_report(
        &repo("examples/plugins/vip_segment.wat"),
        Some(&input("10")),
    )
    .unwrap();
    assert!(no.contains("segment: false"), "{no}");
    let dir = std::env::temp_dir().join(format!("aftercart-plugin-report-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("loop.wat");
    std::fs::write(&f, module("", r#"(func (export "segment") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 0))"#)).unwrap();
    let e = plugin_test_report(&f, None).unwrap_err();
    assert!(e.contains("out_of_fuel"), "{e}");
    let f = dir.join("wasi.wat");
    std::fs::write(&f, module(r#"(import "wasi_snapshot_preview1" "clock_time_get" (func (param i32 i64 i32) (result i32)))"#, SEGMENT_TRUE)).unwrap();
    let e = plugin_test_report(&f, None).unwrap_err();
    assert!(
        e.contains("forbidden_import") && e.contains("wasi.wat"),
        "{e}"
    );
    assert!(plugin_test_report(&f, Some("{not json"))
        .unwrap_err()
        .contains("not JSON"));
    let _ = std::fs::remove_dir_all(&dir);
}

// ---- catalog and the built-in recommender ----

fn sample_catalog() -> Catalog {
    Catalog::load(&repo("examples/catalog.json"), None).unwrap()
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn catalog_loads_json_and_csv() {
    let c = sample_catalog();
    assert_eq!(c.len(), 8);
    let kettle = c.get("8042").unwrap();
    assert_eq!(
        (kettle.title.as_str(), kettle.price.to_string().as_str()),
        ("Pour-over kettle", "64.00")
    );
    assert!(!c.get("8099").unwrap().available);

    let csv = Catalog::load(
        &repo("tests/fixtures/plugins/catalog_export.csv"),
        Some("https://shop.example/"),
    )
    .unwrap();
    assert_eq!(csv.len(), 3);
    let d = csv.get("ceramic-dripper").unwrap();
    assert_eq!(d.price.to_string(), "26.00", "lowest variant price");
    assert_eq!(d.url, "https://shop.example/products/ceramic-dripper");
    assert_eq!(d.tags, ids(&["brewing", "dripper", "pairs-with:filters"]));
    assert_eq!(
        csv.get("paper-filters").unwrap().tags,
        ids(&["brewing", "filters"])
    );
    assert!(!csv.get("old-mug").unwrap().available);
    assert!(Catalog::from_json("{\"products\": [{\"id\": \"1\"}]}", None).is_err());
}

#[test]
fn catalog_follows_shopify_product_webhooks() {
    let mut c = sample_catalog();
    let payload: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo("tests/fixtures/plugins/products_update.json")).unwrap(),
    )
    .unwrap();
    let p = c
        .apply_shopify_product(&payload, "https://brewbox.example")
        .unwrap()
        .clone();
    assert_eq!(p.id, "8050");
    assert_eq!(p.title, "Burr grinder (v2)");
    assert_eq!(p.price.to_string(), "119.00");
    assert_eq!(p.tags, ids(&["grinder", "new", "pairs-with:beans"]));
    assert_eq!(p.url, "https://brewbox.example/products/burr-grinder");
    assert_eq!(
        p.image.as_deref(),
        Some("https://cdn.shopify.example/grinder-v2.jpg")
    );
    assert_eq!(c.len(), 8);
    let mut archived = payload.clone();
    archived["id"] = json!(9001);
    archived["status"] = json!("archived");
    c.apply_shopify_product(&archived, "https://brewbox.example")
        .unwrap();
    assert!(!c.get("9001").unwrap().available);
    assert!(c
        .apply_shopify_product(&json!({"title": "no id"}), "")
        .is_err());
}

#[test]
fn builtin_recommender_ranks_bought_together_then_complements() {
    let c = sample_catalog();
    let history = vec![
        ("o1".to_string(), ids(&["8042", "8011"])),
        ("o2".to_string(), ids(&["8042", "8011", "8020"])),
        ("o3".to_string(), ids(&["8042", "8021"])),
        ("o4".to_string(), ids(&["8050", "8099"])),
    ];
    // Kettle in the current order: scale bought with it twice, then beans once each (tie:
    // id order), then filters as a declared complement (but here the person owns filters).
    let got = catalog::recommend(&c, &history, &ids(&["8010"]), &ids(&["8042"]), 10);
    assert_eq!(got, ids(&["8011", "8020", "8021", "8001"]));
    // Without the filters bought, the declared complement ranks before mere shared tags.
    let got = catalog::recommend(&c, &[], &[], &ids(&["8042"]), 10);
    assert_eq!(got, ids(&["8010", "8011", "8001"]));
    // n bounds the answer; nothing already bought or unavailable is ever recommended.
    assert_eq!(
        catalog::recommend(&c, &history, &[], &ids(&["8042"]), 1),
        ids(&["8011"])
    );
    let got = catalog::recommend(&c, &history, &ids(&["8011", "8020"]), &ids(&["8050"]), 10);
    assert!(
        !got.contains(&"8099".to_string()) && !got.contains(&"8020".to_string()),
        "{got:?}"
    );
    assert_eq!(got, ids(&["8021"]));
    // No current order: the person's purchases are the anchors.
    assert_eq!(
        catalog::recommend(&c, &[], &ids(&["8050"]), &[], 10),
        ids(&["8020", "8021"])
    );
    // Deterministic.
    assert_eq!(
        catalog::recommend(&c, &history, &[], &ids(&["8042"]), 10),
        catalog::recommend(&c, &history, &[], &ids(&["8042"]), 10)
    );
}

#[test]
fn catalog_errors_name_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("aftercart-catalog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // A quoted field spanning lines 2-3, then a bad price on line 4.
    let csv = dir.join("export.csv");
    std::fs::write(
        &csv,
        "Handle,Title,Body (HTML),Variant Price\nmug,Mug,\"<p>Big,\n tall</p>\",9.00\nfilters,Filters,,\"12,50\"\n",
    )
    .unwrap();
    let e = Catalog::load(&csv, None).unwrap_err().0;
    assert_eq!(
        e,
        format!("{}:4: price `12,50` is not a decimal", csv.display())
    );
    std::fs::write(&csv, "Handle,Title\nmug,\"Mug\n").unwrap();
    let e = Catalog::load(&csv, None).unwrap_err().0;
    assert!(
        e.starts_with(&format!("{}:2: unterminated quoted field", csv.display())),
        "{e}"
    );
    let json = dir.join("catalog.json");
    std::fs::write(
        &json,
        "{\"products\": [\n  {\"id\": \"1\", \"title\": \"A\", \"price\": \"1.00\", \"url\": \"u\"},\n  {\"id\": \"2\", \"title\": \"B\", \"price\": \"cheap\", \"url\": \"u\"}\n]}\n",
    )
    .unwrap();
    let e = Catalog::load(&json, None).unwrap_err().0;
    assert!(
        e.starts_with(&format!("{}:3: product #2", json.display())),
        "{e}"
    );
    std::fs::write(&json, "{\"products\": [\n  {\"id\": 1,}\n]}").unwrap();
    let e = Catalog::load(&json, None).unwrap_err().0;
    assert!(
        e.starts_with(&format!("{}:2: expected", json.display())),
        "{e}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shop_data_follows_product_webhooks_and_order_history() {
    use aftercart::catalog::ShopData;
    let mut d = ShopData {
        catalog: sample_catalog(),
        ..Default::default()
    };
    let fixture = |name: &str| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(repo(&format!("tests/fixtures/shopify/{name}"))).unwrap(),
        )
        .unwrap()
    };
    // Shopify's sample: two variants at 19.99, active and published.
    let created = fixture("products__create.json");
    assert!(d
        .apply_product_webhook("products/create", &created, "https://brewbox.example")
        .unwrap());
    let p = d.catalog.get("788032119674292922").unwrap();
    assert_eq!(
        (p.title.as_str(), p.price.to_string()),
        ("Example T-Shirt", "19.99".into())
    );
    assert_eq!(p.url, "https://brewbox.example/products/example-t-shirt");
    assert!(p.available);
    // Unpublished from the online store: kept, never offered.
    let mut unpublished = created.clone();
    unpublished["published_at"] = serde_json::Value::Null;
    d.apply_product_webhook("products/update", &unpublished, "https://brewbox.example")
        .unwrap();
    assert!(!d.catalog.get("788032119674292922").unwrap().available);
    assert!(d.known_available(&ids(&["788032119674292922", "8010", "nope"])) == ids(&["8010"]));
    assert!(d
        .apply_product_webhook("products/delete", &fixture("products__delete.json"), "")
        .unwrap());
    assert!(d.catalog.get("788032119674292922").is_none());
    assert!(d
        .apply_product_webhook("products/delete", &json!({}), "")
        .is_err());
    assert!(!d
        .apply_product_webhook("orders/create", &created, "")
        .unwrap());

    // Bought together: one order pairing the kettle with the grinder puts the grinder first.
    assert_eq!(d.recommend(&[], &ids(&["8042"]), 2), ids(&["8010", "8011"]));
    d.orders.record("o1", ids(&["8042", "8050"]));
    d.orders.record("o1", ids(&["8042", "8050"]));
    d.orders.record("o2", vec![]);
    assert_eq!(
        d.orders.len(),
        1,
        "an order counts once; empty orders are skipped"
    );
    assert_eq!(d.recommend(&[], &ids(&["8042"]), 2), ids(&["8050", "8010"]));
    // What the person bought is never offered.
    assert_eq!(
        d.recommend(&ids(&["8050"]), &ids(&["8042"]), 1),
        ids(&["8010"])
    );
}
