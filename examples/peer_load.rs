//! The aftercart side of the peer benchmark (benches/peers/, issue 7): the review-request flow of
//! `benches/peers/aftercart/` run by the real durable `Runtime` on the wall clock, under a fixed
//! offered load, with the same compressed timings as the Temporal and Restate harnesses.
//!
//! ```text
//! cargo run --release --example peer_load -- --n 1000 --rate 1000 [--raw] [--flows DIR]
//! ```
//!
//! One run: a fresh `SledStore` in a temp dir; the runtime on its own thread
//! (`process_log_with`, then `process_timers_with(Utc::now())` when the log is drained, each
//! sending its batch's new messages before the commit, then `dispatch`: exactly
//! `Runtime::step` on `Clock::Wall`, with the commit instant recorded; 1 ms sleep when idle); a
//! provider that records when each message reached it. The main thread offers, for flow `i`
//! (`i` = 0..N), an `order.created` at `i / rate` seconds and its `shipment.delivered` 0.5 s
//! (even `i`) or 1.5 s (odd `i`) later: every ~0.5 ms it appends every event whose scheduled
//! arrival has passed in ONE `store.append`, then `store.flush()` (fsync-backed durability, the
//! webhook path's group commit). The flow sends a confirmation at once, waits 1 s, waits for
//! the delivery (2 s at most), and sends the review request. So the ideal completion of flow
//! `i` is `i / rate + max(1 s, delivery offset)`: 1 s after the order (even `i`: the delivery
//! was already there when the wait began, the 1 s timer completes the flow) or 1.5 s (odd `i`:
//! the delivery event completes it). Lateness = when the review reached the provider minus that
//! ideal instant, from SCHEDULED times (no coordinated omission: a driver or runtime that falls
//! behind is not forgiven).
//!
//! Prints ONE JSON line on stdout (the fields `benches/peers/plot.py` reads, shared with the
//! Temporal and Restate drivers) and a human summary on stderr:
//! - `flows_per_s`: flows finished / (last finish - first order's scheduled arrival); a flow
//!   finishes with its review, or on its 2 s timeout (`timed_out`, from the durable counter
//!   `exited.review_peer.exit`: the delivery was offered in time, but processed after the
//!   timeout fired, which happens only when the runtime is behind);
//! - `lateness_p50_ms` / `lateness_p99_ms` / `lateness_max_ms`;
//! - `events_per_s`: 2N / (end of the commit that processed the last event);
//! - `to_outbox_*`: an event's scheduled arrival to the end of the commit of the batch that
//!   processed it (applied to the store; since session 6 the store's apply thread flushes
//!   each commit after applying it, without the runtime waiting), for the events whose processing puts a message in the outbox at once
//!   (orders: the confirmation; odd deliveries: the review); `to_provider_*`: to that message
//!   reaching the provider (after the dispatch round that follows the commit);
//! - with `--raw`, IN THE SAME PROCESS after the flows: raw sled (`apply_batch` + `flush` per
//!   1000) and raw file append + `fdatasync` per 1000 of 2N records of the events' mean size,
//!   and the ratios of the runtime's events/s to them.

use aftercart::engine::Message;
use aftercart::runtime::{
    Clock, Options, Provider, ProviderError, ProviderReceipt, Runtime, Sending,
};
use aftercart::schema::Schemas;
use aftercart::store::{baseline, AppendResult, NewEvent, Store};
use chrono::{Duration as CDuration, SecondsFormat, Utc};
use serde_json::json;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RAW_GROUP: usize = 1000;
/// The flow's compressed timings (benches/peers/aftercart/review_peer.flow).
const WAIT_S: f64 = 1.0;
const DELIVERY_EVEN_S: f64 = 0.5;
const DELIVERY_ODD_S: f64 = 1.5;
const CUSTOMER_BASE: u64 = 1_000_000;

struct Args {
    n: usize,
    rate: f64,
    raw: bool,
    flows: PathBuf,
    timeout_s: f64,
}

fn args() -> Args {
    let mut a = Args {
        n: 1000,
        rate: 1000.0,
        raw: false,
        flows: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/aftercart"),
        timeout_s: 900.0,
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = || v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--n" => a.n = val().replace('_', "").parse().expect("--n N"),
            "--rate" => a.rate = val().parse().expect("--rate FLOWS_PER_S"),
            "--flows" => a.flows = PathBuf::from(val()),
            "--timeout" => a.timeout_s = val().parse().expect("--timeout SECONDS"),
            "--raw" => {
                a.raw = true;
                i += 1;
                continue;
            }
            other => panic!(
                "unknown argument {other}: see the comment at the top of examples/peer_load.rs"
            ),
        }
        i += 2;
    }
    a
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aftercart-peer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Records when each message reached it: (flow index, is the review, ns since start).
struct Recorder {
    start: Instant,
    got: Mutex<Vec<(usize, bool, u64)>>,
    reviews: AtomicUsize,
}

impl Provider for Recorder {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        let t = self.start.elapsed().as_nanos() as u64;
        let i = msg
            .person
            .strip_prefix("customer:")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|c| (c - CUSTOMER_BASE) as usize)
            .expect("benchmark people are customer:<id>");
        let review = msg.body.contains("arrived");
        self.got.lock().unwrap().push((i, review, t));
        if review {
            self.reviews.fetch_add(1, Ordering::Release);
        }
        Ok(ProviderReceipt::default())
    }
}

/// An event of the offered load: flow `i`, order (false) or delivery (true), scheduled at `at`
/// seconds after the start.
struct Offer {
    i: usize,
    delivered: bool,
    at: f64,
}

fn lines(i: usize, base: chrono::DateTime<Utc>, o: &Offer) -> String {
    let cid = format!("{}", CUSTOMER_BASE + i as u64);
    let oid = format!("{}", 50_000_000 + i);
    let phone = format!("+1212{:07}", i % 10_000_000);
    let at = (base + CDuration::microseconds((o.at * 1e6) as i64))
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    if o.delivered {
        json!({"type": "shipment.delivered", "at": at, "id": format!("d{i}"),
            "data": {"order_id": oid, "customer_id": cid, "phone": phone, "status": "delivered",
                     "fulfillment_id": oid, "fulfillment_event_id": oid}})
        .to_string()
    } else {
        json!({"type": "order.created", "at": at, "id": format!("o{i}"),
            "data": {"order_id": oid, "order_number": format!("#{i}"), "customer_id": cid,
                     "phone": phone, "first_name": "Ada", "total_price": "42.50", "currency": "USD",
                     "created_at": at,
                     "line_items": [{"sku": "TEE-001", "title": "Item", "quantity": 1, "price": "42.50", "product_id": "9001"}],
                     "shipping_address": {"province_code": "NY", "country_code": "US", "phone": phone}}})
        .to_string()
    }
}

fn main() {
    aftercart::alloc::tune();
    let a = args();
    let load_before = loadavg();
    let checked =
        aftercart::check::check_paths(std::slice::from_ref(&a.flows)).expect("read the flows");
    if checked.has_errors() {
        panic!(
            "{} does not check clean: {:?}",
            a.flows.display(),
            checked.diagnostics
        );
    }
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .expect("custom events");
    let program = checked.program.expect("a program");

    // The offered load, in scheduled order.
    let n = a.n;
    let mut offers: Vec<Offer> = Vec::with_capacity(2 * n);
    for i in 0..n {
        let t = i as f64 / a.rate;
        offers.push(Offer {
            i,
            delivered: false,
            at: t,
        });
        let d = if i.is_multiple_of(2) {
            DELIVERY_EVEN_S
        } else {
            DELIVERY_ODD_S
        };
        offers.push(Offer {
            i,
            delivered: true,
            at: t + d,
        });
    }
    offers.sort_by(|x, y| x.at.partial_cmp(&y.at).unwrap());
    let base = Utc::now();
    let events: Vec<NewEvent> = offers
        .iter()
        .map(|o| {
            let line = lines(o.i, base, o);
            let env = aftercart::host::parse_line(&line).expect("benchmark lines parse");
            NewEvent {
                received_at: env.at,
                source: "aftercart".into(),
                source_id: env.source_id(),
                person: None,
                payload: line.into_bytes(),
            }
        })
        .collect();
    let total = events.len();
    let mean_size = events.iter().map(|e| e.payload.len()).sum::<usize>() / total;

    let dir = tmp("flows");
    let store: Arc<dyn Store> = Arc::new(aftercart::store::open(&dir).expect("open the store"));
    let start = Instant::now() + Duration::from_millis(300);
    let provider = Arc::new(Recorder {
        start,
        got: Mutex::new(Vec::with_capacity(2 * n)),
        reviews: AtomicUsize::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    // (cursor after the commit, ns since start at the end of commit + flush)
    let runtime_thread = {
        let store = store.clone();
        let provider = provider.clone();
        let stop = stop.clone();
        let program = program.clone();
        let schemas = schemas.clone();
        std::thread::spawn(move || {
            let opts = Options {
                clock: Clock::Wall,
                ..Options::default()
            };
            let mut rt = Runtime::new(store.clone(), program, schemas, opts).expect("runtime");
            let mut commits: Vec<(usize, u64)> = Vec::new();
            let mut timers_total = 0usize;
            loop {
                // Runtime::step on the wall clock, with the commit instant noted. The recorder
                // cannot be asked about a message, so, as `step` does, each batch's new messages
                // go to it before the commit.
                let direct = Sending::Direct(&*provider);
                let (entries, mut timers) = rt.process_log_with(direct).expect("process_log");
                if entries > 0 {
                    // The cursor read waits for the commit's apply: the time is taken after.
                    let cursor = store.cursor().unwrap() as usize;
                    let t = Instant::now().saturating_duration_since(start).as_nanos() as u64;
                    commits.push((cursor, t));
                } else {
                    timers += rt
                        .process_timers_with(Utc::now(), direct)
                        .expect("process_timers");
                }
                timers_total += timers;
                let (sent, _) = rt.dispatch(&*provider).expect("dispatch");
                if entries == 0 && timers == 0 && sent == 0 {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            (commits, timers_total)
        })
    };

    // The driver: group-commit whatever is due every ~0.5 ms.
    let mut next = 0usize;
    while next < total {
        let now = Instant::now();
        if now < start {
            std::thread::sleep(start - now);
            continue;
        }
        let el = (now - start).as_secs_f64();
        let mut due = next;
        while due < total && offers[due].at <= el {
            due += 1;
        }
        if due > next {
            let res = store.append(&events[next..due]).expect("append");
            store.flush().expect("flush");
            for (k, r) in res.iter().enumerate() {
                let AppendResult::Accepted(seq) = r else {
                    panic!("duplicate in the offered load")
                };
                assert_eq!(*seq as usize, next + k + 1, "a fresh store numbers from 1");
            }
            next = due;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let offered_secs = start.elapsed().as_secs_f64();
    // Every flow ends either with its review (the provider sees it) or on the 2 s timeout (no
    // message: the counters `exited.review_peer.exit` (timeout) and `.end` tell, durably).
    let deadline = Instant::now() + Duration::from_secs_f64(a.timeout_s);
    let exited = |store: &Arc<dyn Store>| -> (u64, u64) {
        let c = store.counters().unwrap_or_default();
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        (
            get("exited.review_peer.end"),
            get("exited.review_peer.exit"),
        )
    };
    let mut all_done_s = f64::NAN;
    while Instant::now() < deadline {
        let (end, exit) = exited(&store);
        if provider.reviews.load(Ordering::Acquire) >= n || (end + exit) as usize >= n {
            all_done_s = start.elapsed().as_secs_f64();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Release);
    let (commits, timers_fired) = runtime_thread.join().expect("runtime thread");
    let (_, timed_out) = exited(&store);
    let load_after = loadavg();

    // Completion lateness and throughput.
    let got = provider.got.lock().unwrap().clone();
    let mut review_at = vec![None; n];
    let mut confirm_at = vec![None; n];
    for &(i, review, t) in &got {
        let slot = if review {
            &mut review_at[i]
        } else {
            &mut confirm_at[i]
        };
        slot.get_or_insert(t);
    }
    let order_at = |i: usize| i as f64 / a.rate;
    let ideal = |i: usize| {
        let d = if i.is_multiple_of(2) {
            DELIVERY_EVEN_S
        } else {
            DELIVERY_ODD_S
        };
        order_at(i) + d.max(WAIT_S)
    };
    let completed: Vec<(usize, u64)> = review_at
        .iter()
        .enumerate()
        .filter_map(|(i, t)| t.map(|t| (i, t)))
        .collect();
    let last = completed.iter().map(|c| c.1).max().unwrap_or(0) as f64 / 1e9;
    let lateness = sorted(
        completed
            .iter()
            .map(|&(i, t)| (t as f64 / 1e9 - ideal(i)) * 1e3)
            .collect(),
    );
    // Arrival -> outbox (end of the commit that processed the event) and -> provider,
    // for the events whose processing puts a message in the outbox at once.
    let mut processed_at = vec![0u64; total];
    let mut from = 0usize;
    for &(cursor, t) in &commits {
        for slot in processed_at.iter_mut().take(cursor.min(total)).skip(from) {
            *slot = t;
        }
        from = from.max(cursor.min(total));
    }
    let last_event_done = commits.last().map(|c| c.1).unwrap_or(0) as f64 / 1e9;
    let (mut to_outbox, mut to_provider) = (Vec::new(), Vec::new());
    for (k, o) in offers.iter().enumerate() {
        let msg = match (o.delivered, o.i % 2) {
            (false, _) => confirm_at[o.i],
            (true, 1) => review_at[o.i],
            _ => continue,
        };
        if processed_at[k] > 0 {
            to_outbox.push((processed_at[k] as f64 / 1e9 - o.at) * 1e3);
        }
        if let Some(t) = msg {
            to_provider.push((t as f64 / 1e9 - o.at) * 1e3);
        }
    }
    let (to_outbox, to_provider) = (sorted(to_outbox), sorted(to_provider));
    drop(store);
    let store_bytes = dir_size(&dir);
    let _ = std::fs::remove_dir_all(&dir);

    // Flows finished (review sent, or timed out) per second: a timed-out flow counts as
    // finished at `all_done_s` at the latest (the runtime gives no per-flow instant for it).
    let finished = completed.len() + timed_out as usize;
    let end_s = if timed_out > 0 && all_done_s.is_finite() {
        all_done_s.max(last)
    } else {
        last
    };
    let flows_per_s = finished as f64 / end_s.max(1e-9);
    let events_per_s = total as f64 / last_event_done.max(1e-9);
    let mut out = json!({
        "engine": "aftercart",
        "n": n,
        "rate": a.rate,
        "offered_events_per_s": 2.0 * a.rate,
        "completed": completed.len(),
        "timed_out": timed_out,
        "finished": finished,
        "all_done_s": all_done_s,
        "flows_per_s": flows_per_s,
        "lateness_p50_ms": pct(&lateness, 0.5),
        "lateness_p99_ms": pct(&lateness, 0.99),
        "lateness_max_ms": pct(&lateness, 1.0),
        "offered_secs": offered_secs,
        "last_completion_s": last,
        "events": total,
        "event_bytes_mean": mean_size,
        "events_per_s": events_per_s,
        "to_outbox_p50_ms": pct(&to_outbox, 0.5),
        "to_outbox_p99_ms": pct(&to_outbox, 0.99),
        "to_provider_p50_ms": pct(&to_provider, 0.5),
        "to_provider_p99_ms": pct(&to_provider, 0.99),
        "timers_fired": timers_fired,
        "commits": commits.len(),
        "store_bytes": store_bytes,
        "durability": "events: sled flush (fsync) after every append group, before they are processed; processing: each commit one atomic sled batch, applied and flushed by the store's apply thread while the next batch runs (a crash re-derives the batch in flight from the durable log; messages keep their ids)",
        "load_before": load_before,
        "load_after": load_after,
        "date": Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
    });
    eprintln!(
        "aftercart N={n} offered {:.0} flows/s ({:.0} events/s): {}/{n} reviews sent, {timed_out} timed out, {flows_per_s:.0} flows/s, lateness p50 {:.1} ms p99 {:.1} ms max {:.1} ms; {events_per_s:.0} events/s end to end; arrival->outbox p50 {:.1} ms p99 {:.1} ms, ->provider p50 {:.1} ms p99 {:.1} ms; {timers_fired} timers fired in {} commits; load {load_before} -> {load_after}",
        a.rate,
        2.0 * a.rate,
        completed.len(),
        pct(&lateness, 0.5),
        pct(&lateness, 0.99),
        pct(&lateness, 1.0),
        pct(&to_outbox, 0.5),
        pct(&to_outbox, 0.99),
        pct(&to_provider, 0.5),
        pct(&to_provider, 0.99),
        commits.len(),
    );
    if a.raw {
        let s = baseline::raw_sled(&tmp("sled"), total, mean_size, RAW_GROUP).expect("raw sled");
        let f = baseline::raw_file(&tmp("file"), total, mean_size, RAW_GROUP).expect("raw file");
        let (sr, fr) = (total as f64 / s, total as f64 / f);
        eprintln!(
            "raw sled batch+flush/1000: {sr:.0} records/s ({s:.3} s); raw append+fdatasync/1000: {fr:.0} records/s ({f:.3} s); runtime/raw sled {:.2}%, runtime/raw file {:.3}% ({total} records of {mean_size} B); load {}",
            100.0 * events_per_s / sr,
            100.0 * events_per_s / fr,
            loadavg()
        );
        out["raw_sled_records_per_s"] = json!(sr);
        out["raw_file_records_per_s"] = json!(fr);
        out["ratio_runtime_to_raw_sled"] = json!(events_per_s / sr);
        out["ratio_runtime_to_raw_file"] = json!(events_per_s / fr);
        out["load_after_raw"] = json!(loadavg());
    }
    println!("{out}");
}

fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                total += dir_size(&p);
            } else if let Ok(m) = e.metadata() {
                total += m.len();
            }
        }
    }
    total
}
