//! Load harness for the webhook server: N concurrent HTTP clients post signed Shopify
//! `orders/create` webhooks (distinct event ids) to `aftercart serve` on loopback over a sled
//! store, with the runtime processing behind. Reports durable accepted webhooks per second
//! (every 200 means appended and flushed) and latency percentiles.
//!
//! `cargo bench --bench webhooks` (or `--profile dev`); `AFTERCART_BENCH_SHORT=1` for a short
//! run; `AFTERCART_BENCH_CLIENTS` (default 8) and `AFTERCART_BENCH_REQUESTS` (per client).

use aftercart::runtime::http::{self, signature, Secrets, ServeConfig};
use aftercart::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SECRET: &str = "bench-secret";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let short = std::env::var("AFTERCART_BENCH_SHORT").is_ok_and(|v| v != "0");
    let clients = env_usize("AFTERCART_BENCH_CLIENTS", 8);
    let per_client = env_usize("AFTERCART_BENCH_REQUESTS", if short { 25 } else { 250 });

    let root =
        std::env::temp_dir().join(format!("aftercart-bench-webhooks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let data = root.join("data");
    let checked = aftercart::check::check_paths(&[PathBuf::from("flows")]).unwrap();
    assert!(!checked.has_errors());
    let schemas = aftercart::schema::Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(aftercart::store::open(&data).unwrap());
    let secrets = Secrets {
        shopify_secret: SECRET.into(),
        twilio_auth_token: "unused".into(),
        public_url: "https://bench.example".into(),
    };
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap(), data, secrets);
    cfg.provider = format!("file:{}", root.join("sent.jsonl").display());
    let server =
        http::serve(store.clone(), checked.program.unwrap(), schemas, cfg).expect("server");
    let url = format!("http://{}/webhooks/shopify", server.addr());
    let template: serde_json::Value = serde_json::from_slice(
        &std::fs::read("tests/fixtures/shopify/orders__create.json").unwrap(),
    )
    .unwrap();

    let start = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let (url, template) = (url.clone(), template.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().build();
                let mut lat = Vec::with_capacity(per_client);
                for i in 0..per_client {
                    let mut order = template.clone();
                    let n = (c * per_client + i) as u64;
                    order["id"] = serde_json::json!(5_000_000 + n);
                    order["customer"]["id"] = serde_json::json!(9_000_000 + n);
                    let body = order.to_string();
                    let t = Instant::now();
                    let r = agent
                        .post(&url)
                        .set("X-Shopify-Topic", "orders/create")
                        .set("X-Shopify-Event-Id", &format!("bench-{n}"))
                        .set(
                            "X-Shopify-Hmac-Sha256",
                            &signature::shopify_signature(SECRET, body.as_bytes()),
                        )
                        .send_string(&body);
                    assert!(r.is_ok(), "request failed: {:?}", r.err());
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = start.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let total = lat.len();
    println!(
        "webhooks: {clients} clients x {per_client} = {total} durable orders/create in {:.2?}: \
         {:.0} accepted/s; latency p50 {:.1?}, p99 {:.1?}, max {:.1?}",
        elapsed,
        total as f64 / elapsed.as_secs_f64(),
        pct(0.50),
        pct(0.99),
        lat[total - 1]
    );
    assert_eq!(store.last_seq().unwrap(), total as u64);
    server.shutdown().unwrap();
    drop(store);
    let _ = std::fs::remove_dir_all(&root);
}
