//! Benchmarks of the engine and the simulator with the example flows.
//! - `engine/step`: engine calls per second in memory (goal >= 1M/s per core);
//! - `simulate/people_N`: N people through every example flow over 90 simulated days
//!   (goal: 100k people in < 10 s). Set `AFTERCART_SIM_PEOPLE` to change N (default 100000).
//!
//! `cargo bench --bench engine` (add `-- --quick` for a short run).

use aftercart::check::check_paths;
use aftercart::engine::{self, Input, PersonState};
use aftercart::schema::Schemas;
use chrono::{DateTime, Duration, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use serde_json::json;
use std::path::Path;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn program() -> (aftercart::ir::Program, Schemas) {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let checked = check_paths(&[flows]).unwrap();
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    (checked.program.unwrap(), schemas)
}

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn bench(c: &mut Criterion) {
    let (program, schemas) = program();

    // Engine steps: each iteration is one engine call (an order for a fresh person, which
    // enters several flows and runs them to their first wait).
    let n = 10_000usize;
    let inputs: Vec<(String, Input)> = (0..n)
        .map(|i| {
            let data = json!({"order_id": format!("{i}"), "customer_id": format!("{i}"), "phone": "+12125550100",
                "first_name": "Ada", "total_price": "42.50", "currency": "USD",
                "line_items": [{"sku": "SKIN-1", "title": "Serum", "quantity": 1, "price": "42.50", "product_id": "1"}],
                "shipping_address": {"province_code": "NY", "country_code": "US"}});
            (format!("customer:{i}"), Input::Event { name: "order.created".into(), id: format!("e{i}"), data })
        })
        .collect();
    // Throughput counts IR steps executed (entering flows, waits, sends, branches), measured
    // from the effects once: the calls are deterministic.
    let steps: usize = inputs
        .iter()
        .map(|(p, input)| {
            let mut st = PersonState::new(p.clone());
            engine::step_mut(&program, &mut st, input, t0())
                .iter()
                .filter(|e| {
                    matches!(
                        e,
                        engine::Effect::Step { .. } | engine::Effect::Entered { .. }
                    )
                })
                .count()
        })
        .sum();
    eprintln!("engine bench: {n} calls execute {steps} IR steps");
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(steps as u64));
    g.bench_function("step_order_created", |b| {
        b.iter(|| {
            for (p, input) in &inputs {
                let mut st = PersonState::new(p.clone());
                let effects = engine::step_mut(&program, &mut st, input, t0());
                criterion::black_box(effects);
            }
        })
    });
    g.finish();

    let people: usize = std::env::var("AFTERCART_SIM_PEOPLE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let text = aftercart::sim::synthetic::events(people);
    let until = t0() + Duration::days(90);
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10);
    g.throughput(Throughput::Elements(people as u64));
    g.bench_function(format!("people_{people}_90_days"), |b| {
        b.iter(|| {
            let opts = aftercart::sim::Options {
                from: None,
                until: Some(until),
            };
            let out = aftercart::sim::simulate(
                program.clone(),
                schemas.clone(),
                &text,
                &opts,
                &|_, _| {},
            );
            assert!(out.refused.is_empty(), "{:?}", &out.refused[..1]);
            criterion::black_box(out.records.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
