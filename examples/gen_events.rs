//! Writes a synthetic event stream (JSON lines) for N people to stdout, for load tests:
//! `cargo run --release --example gen_events -- 100000 > /tmp/events.jsonl`.
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    print!("{}", aftercart::sim::synthetic::events(n));
}
