//! Benchmark of the front end: `check` throughput on a generated corpus of about 100k lines,
//! and re-check latency of one 1k-line file. Goals: >= 200k lines/s; < 5 ms per 1k lines.
//! `cargo bench --bench check` (add `-- --quick` for a short run).

use aftercart::check::check_sources;
use aftercart::check::corpus::corpus;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

// The binary's allocator (src/main.rs), so the figure is what `aftercart check` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROJECT: &str = include_str!("../flows/aftercart.toml");

fn bench(c: &mut Criterion) {
    let big = corpus(100_000);
    let lines: usize = big.iter().map(|(_, t)| t.lines().count()).sum();
    let mut g = c.benchmark_group("check");
    g.sample_size(10);
    g.throughput(Throughput::Elements(lines as u64));
    g.bench_function(format!("corpus_{lines}_lines"), |b| {
        b.iter(|| {
            let checked = check_sources(
                Some(("flows/aftercart.toml".into(), PROJECT.into())),
                big.clone(),
            );
            assert!(checked.program.is_some());
        })
    });
    g.finish();

    let one = corpus(1_000).into_iter().next().unwrap();
    let lines1 = one.1.lines().count();
    let mut g = c.benchmark_group("recheck");
    g.throughput(Throughput::Elements(lines1 as u64));
    g.bench_function(format!("one_file_{lines1}_lines"), |b| {
        b.iter(|| {
            check_sources(
                Some(("flows/aftercart.toml".into(), PROJECT.into())),
                vec![one.clone()],
            )
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
