//! Benchmark of the front end: `check` throughput on a generated corpus of about 100k lines,
//! and re-check latency of one 1k-line file. Goals: >= 200k lines/s; < 5 ms per 1k lines.
//! `cargo bench --bench check` (add `-- --quick` for a short run).

use aftercart::check::check_sources;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

// The binary's allocator (src/main.rs), so the figure is what `aftercart check` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const PROJECT: &str = include_str!("../flows/aftercart.toml");

/// A realistic flow of about 25 lines, renamed per copy so names stay unique.
fn flow(i: usize) -> String {
    format!(
        r#"# generated flow {i}
flow review_{i} {{
  description "Delivered: ask for a review, variant {i}"
  kind marketing
  trigger shipment.delivered
  entry once per event.order_id
  exit when order.created where event.customer_id == flow.entry.customer_id
  goal order.created within 5d
  when held defer

  wait 2d
  wait until 10:00 local on weekdays
  if profile.orders_count == 1 and now - profile.first_order_at < 30d {{
    send sms "Hi {{{{ profile.first_name | default('there') }}}}! Review us: {{{{ link(shop.review_url) }}}} Reply STOP to opt out."
  }} else if any(item in flow.entry.line_items: item.sku starts_with "REFILL-") {{
    send sms "Time for a refill? {{{{ link(shop.url + '/reorder') }}}} Reply STOP to opt out."
  }} else {{
    send sms "Thanks for shopping with {{{{ shop.name }}}}! Reply STOP to opt out."
  }}
  wait reply within 2d {{
    "1" | "yes please" => send sms "Great, thank you!"
    other              => exit
    timeout            => exit
  }}
}}
"#
    )
}

fn corpus(lines: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < lines {
        let mut text = String::new();
        // 40 flows per file, like a large shop's repository.
        for _ in 0..40 {
            text.push_str(&flow(i));
            text.push('\n');
            i += 1;
        }
        total += text.lines().count();
        files.push((format!("gen/file_{}.flow", files.len()), text));
    }
    files
}

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
