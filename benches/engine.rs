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

/// A day of one person's life as normalised events: consent, an order (skincare and refill
/// items for some), its fulfillment and delivery, a quiz answer, and for a third a repeat order.
pub fn synthetic_events(people: usize) -> String {
    let mut lines = Vec::with_capacity(people * 6);
    let start = t0();
    let area = ["212", "203", "305", "512", "415", "205", "617", "312"];
    let state = ["NY", "CT", "FL", "TX", "CA", "AL", "MA", "IL"];
    for i in 0..people {
        let a = i % area.len();
        let phone = format!("+1{}55{:05}", area[a], i % 100_000);
        let cid = format!("{}", 1_000_000 + i);
        let oid = format!("{}", 50_000_000 + i);
        // Spread arrivals over the first 60 days, at different hours.
        let t = start + Duration::minutes((i as i64 * 37) % (60 * 24 * 60));
        let sku = match i % 3 {
            0 => "SKIN-SERUM",
            1 => "REFILL-30",
            _ => "TEE-001",
        };
        let order = json!({"order_id": oid, "order_number": format!("#{}", i), "customer_id": cid, "phone": phone,
            "first_name": "Ada", "total_price": "42.50", "currency": "USD", "created_at": t.to_rfc3339(),
            "line_items": [{"sku": sku, "title": "Item", "quantity": 1, "price": "42.50", "product_id": "9001"}],
            "shipping_address": {"province_code": state[a], "country_code": "US", "phone": phone}});
        let ts = |d: Duration| (t + d).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        lines.push(json!({"type": "consent.updated", "at": ts(Duration::zero()), "id": format!("c{i}"),
            "data": {"customer_id": cid, "phone": phone, "sms_marketing_consent": {"state": "subscribed"}}}));
        lines.push(json!({"type": "order.created", "at": ts(Duration::minutes(1)), "id": format!("o{i}"), "data": order}));
        lines.push(json!({"type": "order.fulfilled", "at": ts(Duration::days(1)), "id": format!("f{i}"), "data": order}));
        lines.push(json!({"type": "shipment.delivered", "at": ts(Duration::days(3)), "id": format!("d{i}"),
            "data": {"order_id": oid, "customer_id": cid, "phone": phone, "status": "delivered", "fulfillment_id": oid, "fulfillment_event_id": oid}}));
        lines.push(
            json!({"type": "sms.replied", "at": ts(Duration::days(6)), "id": format!("r{i}"),
            "data": {"from": phone, "body": "1"}}),
        );
        if i % 3 == 2 {
            let mut o2 = order.clone();
            o2["order_id"] = json!(format!("{}", 90_000_000 + i));
            lines.push(json!({"type": "order.created", "at": ts(Duration::days(20)), "id": format!("o2{i}"), "data": o2}));
        }
    }
    let mut v: Vec<(String, String)> = lines
        .into_iter()
        .map(|l| (l["at"].as_str().unwrap().to_string(), l.to_string()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v.into_iter().map(|(_, l)| l + "\n").collect()
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
    let text = synthetic_events(people);
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
