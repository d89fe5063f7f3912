//! Plugin call latency with realistic input (a repeat customer and their order, ~1 KiB of
//! canonical JSON). Goal: p50 under 10 µs for a segment call, fresh instance included.
//! `cargo bench --bench plugins -- --quick` for a CI-sized run.

use aftercart::plugins::{sample_input, Host, PluginKind, PluginSpec};
use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::path::Path;

fn plugins(c: &mut Criterion) {
    let host = Host::new().expect("host");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/plugins/vip_segment.wat");
    let vip = host
        .load(&PluginSpec::new("vip", &path, PluginKind::Segment))
        .expect("vip loads");
    let input = sample_input();
    // The full path a flow pays: fresh store + instance, copy in, run, one host call that
    // parses the input JSON and compares a decimal.
    c.bench_function("segment_call/vip_wat_host_field", |b| {
        b.iter(|| vip.segment(black_box(&input)).unwrap())
    });

    // The floor: same call, no host function (so no JSON parse on the host side).
    let bare = r#"(module
      (memory (export "memory") 1)
      (func (export "abi_version") (result i32) (i32.const 1))
      (func (export "alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "segment") (param i32 i32) (result i32) (i32.gt_u (local.get 1) (i32.const 100))))"#;
    let bare = host
        .load_bytes(
            &PluginSpec::new("bare", "bare.wat", PluginKind::Segment),
            bare.as_bytes(),
        )
        .expect("bare loads");
    c.bench_function("segment_call/bare", |b| {
        b.iter(|| bare.segment(black_box(&input)).unwrap())
    });
}

criterion_group!(benches, plugins);
criterion_main!(benches);
