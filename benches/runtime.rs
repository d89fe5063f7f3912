//! Benchmarks of the durable runtime (issue 4, "Proof: scale"; issue 7, "durable runtime" and
//! "timers"). Three sections, each a whole durable run on a fresh SledStore in a temp dir:
//!
//! - `throughput`: ingest N synthetic events (`sim::synthetic::events`) and
//!   `Runtime::run_until_idle` on the virtual clock with the example flows and an in-memory
//!   provider: events/s end to end. IN THE SAME RUN, raw sled (`apply_batch` + `flush` per 1000)
//!   and raw file append + `fdatasync` per 1000 of the same number of records of the same mean
//!   size. Prints the ratios (goal: >= 50% of raw sled, >= 30k events/s).
//! - `latency`: a driver thread appends the same kind of events at a fixed offered rate (1k and
//!   10k events/s), group-committing whatever is due every millisecond (append + flush), while
//!   the runtime processes on this thread (`process_log_with`, which sends a batch's new
//!   messages before its commit as `step` does, then `dispatch`). An event's latency is from
//!   its SCHEDULED arrival instant (so a driver that falls behind is not forgiven:
//!   no coordinated omission) to the end of the commit + flush of the batch that processed it
//!   (its messages are in the outbox, durable), and to the end of the dispatch that followed.
//! - `timers`: N people each waiting in win_back's 75-day `wait` (only orders are ingested).
//!   The store is built, closed, then a CHILD process (this binary, re-executed) reopens it:
//!   restart time (open + `Runtime::new` + first `next_due`), VmRSS after the restart, then
//!   the clock jumps past every wait: timers fired per second and the peak RSS (VmHWM).
//!
//! Each section is one timed run (three in the full mode, the median reported): a sample is
//! seconds of disk-bound work, which criterion's sampling would repeat dozens of times, so this
//! harness times the runs itself and prints a table.
//!
//! `cargo bench --bench runtime -- --quick` (one run each, small N: a few minutes).
//! `cargo bench --bench runtime -- --quick timers` runs one section.
//! Sizes: `AFTERCART_BENCH_EVENTS` (default 20000 quick, 100000 full),
//! `AFTERCART_BENCH_TIMERS` (default 5000 quick, 100000 full; the documented figure: 1000000),
//! `AFTERCART_BENCH_LOAD_SECS` (seconds per offered load, default 5 quick, 10 full; offered
//! loads 100, 1k and 10k events/s), capped at `AFTERCART_BENCH_LOAD_MAX` events per load (3000
//! quick, 20000 full: a saturated run's latency grows with its length).

use aftercart::engine::Message;
use aftercart::ir::Program;
use aftercart::runtime::{
    self, Clock, Options, Provider, ProviderError, ProviderReceipt, Runtime, Sending,
};
use aftercart::schema::Schemas;
use aftercart::store::{baseline, AppendResult, NewEvent, Store};
use chrono::{DateTime, Duration as CDuration, Utc};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RAW_GROUP: usize = 1000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.replace('_', "").parse().ok())
        .unwrap_or(default)
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aftercart-bench-rt-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn load() -> (Program, Schemas) {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let checked = aftercart::check::check_paths(&[flows]).unwrap();
    assert!(!checked.has_errors(), "the example flows must check clean");
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    (checked.program.unwrap(), schemas)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// A field of /proc/self/status in MiB (VmRSS, VmHWM).
fn proc_mib(field: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

/// A provider that keeps messages in memory (like a provider that never fails).
#[derive(Default)]
struct Collect(Mutex<Vec<Message>>);

impl Provider for Collect {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        self.0.lock().unwrap().push(msg.clone());
        Ok(ProviderReceipt::default())
    }
}

/// A provider that only counts (the timers bench measures RSS: keeping 2M messages would not).
#[derive(Default)]
struct Count(AtomicUsize);

impl Provider for Count {
    fn send(&self, _msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(ProviderReceipt::default())
    }
}

fn opts() -> Options {
    Options {
        clock: Clock::Virtual,
        ..Options::default()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Synthetic events: at least `n` lines (the generator makes 16 events per 3 people).
fn synthetic(n: usize) -> Vec<String> {
    let people = (n * 3).div_ceil(16).max(1);
    let text = aftercart::sim::synthetic::events(people);
    text.lines().map(str::to_string).collect()
}

// ------------------------------------------------------------------------------ throughput

struct Durable {
    secs: f64,
    ingest_secs: f64,
    entries: usize,
    timers: usize,
    sent: usize,
}

fn durable_once(program: &Program, schemas: &Schemas, text: &str) -> Durable {
    let dir = tmp("durable");
    let t = Instant::now();
    let store: Arc<dyn Store> = Arc::new(aftercart::store::open(&dir).unwrap());
    let rep = runtime::ingest_text(&*store, text, &|_, _| {}).unwrap();
    assert!(rep.refused.is_empty(), "{:?}", &rep.refused[..1]);
    let ingest_secs = t.elapsed().as_secs_f64();
    let provider = Collect::default();
    let mut rt = Runtime::new(store.clone(), program.clone(), schemas.clone(), opts()).unwrap();
    let p = rt
        .run_until_idle(&provider, &AtomicBool::new(false))
        .unwrap();
    let secs = t.elapsed().as_secs_f64();
    drop(rt);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Durable {
        secs,
        ingest_secs,
        entries: p.entries,
        timers: p.timers,
        sent: p.sent,
    }
}

fn throughput(program: &Program, schemas: &Schemas, quick: bool) {
    let n = env_usize(
        "AFTERCART_BENCH_EVENTS",
        if quick { 20_000 } else { 100_000 },
    );
    let lines = synthetic(n);
    let n = lines.len();
    let bytes: usize = lines.iter().map(|l| l.len()).sum();
    let size = bytes / n;
    let text = lines.join("\n") + "\n";
    drop(lines);
    let reps = if quick { 1 } else { 3 };
    println!(
        "\n## throughput: {n} synthetic events (mean {size} B), {reps} run(s), load before: {}",
        loadavg()
    );
    let (mut d, mut s, mut f) = (Vec::new(), Vec::new(), Vec::new());
    let mut last = None;
    for _ in 0..reps {
        // Interleaved, so that a change in the machine's load hits all three alike.
        let r = durable_once(program, schemas, &text);
        d.push(r.secs);
        s.push(baseline::raw_sled(&tmp("sled"), n, size, RAW_GROUP).unwrap());
        f.push(baseline::raw_file(&tmp("file"), n, size, RAW_GROUP).unwrap());
        last = Some(r);
    }
    let r = last.unwrap();
    let (d, s, f) = (median(d), median(s), median(f));
    let (dr, sr, fr) = (n as f64 / d, n as f64 / s, n as f64 / f);
    println!(
        "durable end to end: {:>10.0} events/s  ({d:.2} s; ingest {:.2} s; {} entries, {} timers fired, {} messages sent)",
        dr, r.ingest_secs, r.entries, r.timers, r.sent
    );
    println!("raw sled batch+flush/1000: {sr:>10.0} records/s  ({s:.2} s)");
    println!("raw append+fdatasync/1000: {fr:>10.0} records/s  ({f:.3} s)");
    println!(
        "ratio durable/raw sled: {:.1}% (goal >= 50%); durable/raw file: {:.2}%; events/s goal >= 30000: {}",
        100.0 * dr / sr,
        100.0 * dr / fr,
        if dr >= 30_000.0 { "met" } else { "MISSED" }
    );
    println!("load after: {}", loadavg());
}

// --------------------------------------------------------------------------------- latency

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn latency_at(program: &Program, schemas: &Schemas, rate: usize, secs: usize, max: usize) {
    let want = (rate * secs).min(max);
    let lines = synthetic(want);
    let dir = tmp("latency");
    let store: Arc<dyn Store> = Arc::new(aftercart::store::open(&dir).unwrap());
    // Parse before the clock starts: the driver only appends (as a webhook edge would).
    let events: Vec<NewEvent> = lines
        .iter()
        .take(want)
        .map(|l| {
            let env = aftercart::host::parse_line(l).unwrap();
            NewEvent {
                received_at: env.at,
                source: "shopify".into(),
                source_id: env.source_id(),
                person: None,
                payload: l.as_bytes().to_vec(),
            }
        })
        .collect();
    let total = events.len();
    let arrival: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let appended = Arc::new(AtomicUsize::new(0));
    let start = Instant::now() + Duration::from_millis(50);
    let driver = {
        let store = store.clone();
        let arrival = arrival.clone();
        let appended = appended.clone();
        std::thread::spawn(move || {
            let mut next = 0usize;
            while next < total {
                let now = Instant::now();
                if now < start {
                    std::thread::sleep(start - now);
                    continue;
                }
                let el = (now - start).as_secs_f64();
                let due = ((el * rate as f64) as usize + 1).min(total);
                if due > next {
                    // The scheduled arrival of event i: start + i / rate. Stored BEFORE the
                    // append: the runtime may process an event as soon as it is in the log, and
                    // an arrival not yet stored read as 0 (the start), which showed as
                    // multi-second latencies of single events (the maxima of earlier runs).
                    for (i, a) in arrival.iter().enumerate().take(due).skip(next) {
                        a.store((i as f64 / rate as f64 * 1e9) as u64, Ordering::Release);
                    }
                    let res = store.append(&events[next..due]).unwrap();
                    store.flush().unwrap();
                    for (k, r) in res.iter().enumerate() {
                        let AppendResult::Accepted(seq) = r else {
                            panic!("duplicate in the synthetic stream")
                        };
                        assert_eq!(*seq as usize, next + k + 1);
                    }
                    next = due;
                    appended.store(next, Ordering::Release);
                }
                std::thread::sleep(Duration::from_micros(500));
            }
        })
    };
    let provider = Collect::default();
    let mut rt = Runtime::new(store.clone(), program.clone(), schemas.clone(), opts()).unwrap();
    let (mut to_outbox, mut to_dispatch) = (Vec::with_capacity(total), Vec::with_capacity(total));
    let mut done = 0usize;
    while done < total {
        // As `Runtime::step` does for a provider that cannot be asked: a batch's new messages
        // go to it before the commit.
        let (n, _) = rt.process_log_with(Sending::Direct(&provider)).unwrap();
        if n == 0 {
            std::thread::sleep(Duration::from_micros(200));
            continue;
        }
        // Commits are applied on the store's thread and flushed at the runtime's next flush
        // point: "in the outbox" here means durable, so flush before taking the time.
        rt.flush().unwrap();
        let committed = (Instant::now() - start).as_nanos() as f64;
        let cursor = store.cursor().unwrap() as usize;
        rt.dispatch(&provider).unwrap();
        let dispatched = (Instant::now() - start).as_nanos() as f64;
        for a in &arrival[done..cursor] {
            let a = a.load(Ordering::Acquire) as f64;
            to_outbox.push((committed - a) / 1e6);
            to_dispatch.push((dispatched - a) / 1e6);
        }
        done = cursor;
    }
    let elapsed = (Instant::now() - start).as_secs_f64();
    driver.join().unwrap();
    to_outbox.sort_by(|a, b| a.partial_cmp(b).unwrap());
    to_dispatch.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let sent = provider.0.lock().unwrap().len();
    println!(
        "offered {rate:>6}/s for {:.2} s ({total} events, {sent} messages): to outbox p50 {:>8.1} ms  p99 {:>8.1} ms  max {:>8.1} ms | to dispatched p50 {:>8.1} ms  p99 {:>8.1} ms | processed at {:.0} events/s (last event done {:.2} s after start) | load {}",
        total as f64 / rate as f64,
        pct(&to_outbox, 0.5),
        pct(&to_outbox, 0.99),
        pct(&to_outbox, 1.0),
        pct(&to_dispatch, 0.5),
        pct(&to_dispatch, 0.99),
        total as f64 / elapsed,
        elapsed,
        loadavg()
    );
    drop(rt);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn latency(program: &Program, schemas: &Schemas, quick: bool) {
    let secs = env_usize("AFTERCART_BENCH_LOAD_SECS", if quick { 5 } else { 10 });
    // Events per offered load at most (a saturated run's latency grows with its length).
    let max = env_usize(
        "AFTERCART_BENCH_LOAD_MAX",
        if quick { 3_000 } else { 20_000 },
    );
    println!(
        "\n## latency: arrival (scheduled) -> batch committed (outbox) / dispatched, load before: {}",
        loadavg()
    );
    for rate in [100, 1_000, 10_000] {
        latency_at(program, schemas, rate, secs, max);
    }
}

// ---------------------------------------------------------------------------------- timers

fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-03-02T14:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

/// One order per person (and nothing else): every person enters win_back and waits 75 days.
fn orders(n: usize) -> String {
    let mut out = String::with_capacity(n * 700);
    for i in 0..n {
        let at = t0() + CDuration::milliseconds(i as i64 * 100);
        let phone = format!("+1212{:07}", i % 10_000_000);
        let ts = at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let order = serde_json::json!({"order_id": format!("{}", 50_000_000 + i), "order_number": format!("#{i}"),
            "customer_id": format!("{}", 1_000_000 + i), "phone": phone, "first_name": "Ada",
            "total_price": "42.50", "currency": "USD", "created_at": ts,
            "line_items": [{"sku": "TEE-001", "title": "Item", "quantity": 1, "price": "42.50", "product_id": "9001"}],
            "shipping_address": {"province_code": "NY", "country_code": "US", "phone": phone}});
        let line = serde_json::json!({"type": "order.created", "at": ts, "id": format!("o{i}"), "data": order});
        out.push_str(&line.to_string());
        out.push('\n');
    }
    out
}

fn timers(program: &Program, schemas: &Schemas, quick: bool) {
    let n = env_usize(
        "AFTERCART_BENCH_TIMERS",
        if quick { 5_000 } else { 100_000 },
    );
    println!(
        "\n## timers: {n} people waiting in win_back's 75-day wait, load before: {}",
        loadavg()
    );
    let dir = tmp("timers");
    let t = Instant::now();
    let checkpoints;
    {
        let text = orders(n);
        let sled = Arc::new(aftercart::store::open(&dir).unwrap());
        let store: Arc<dyn Store> = sled.clone();
        let rep = runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
        assert_eq!(rep.accepted.len(), n);
        drop(text);
        let mut rt = Runtime::new(store.clone(), program.clone(), schemas.clone(), opts()).unwrap();
        // Process the log only: the clock stops at the last order, so every wait stays open.
        while rt.process_log().unwrap().0 > 0 {}
        rt.dispatch(&Collect::default()).unwrap();
        checkpoints = sled.checkpoint_stats();
    }
    println!(
        "built: {n} orders ingested and processed in {:.1} s ({:.0} events/s), parent VmHWM {:.0} MiB; {}",
        t.elapsed().as_secs_f64(),
        n as f64 / t.elapsed().as_secs_f64(),
        proc_mib("VmHWM:"),
        shown(checkpoints)
    );
    let du = std::process::Command::new("du")
        .arg("-sh")
        .arg(&dir)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    println!("store on disk: {du}");
    // sled releases its lock from a background thread: let it go before the child opens.
    std::thread::sleep(Duration::from_millis(500));
    let until = t0() + CDuration::milliseconds(n as i64 * 100) + CDuration::days(76);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .env("AFTERCART_BENCH_CHILD", "timers")
        .env("AFTERCART_BENCH_DIR", &dir)
        .env("AFTERCART_BENCH_UNTIL", until.to_rfc3339())
        .output()
        .unwrap();
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "timer child failed");
    println!("load after: {}", loadavg());
    // AFTERCART_BENCH_KEEP=1 keeps the store (after the firing) for profiling a restart.
    if std::env::var_os("AFTERCART_BENCH_KEEP").is_some() {
        println!("kept: {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn shown(c: aftercart::store::CheckpointStats) -> String {
    format!(
        "{} checkpoints ({:.2} s in all, longest {:.3} s)",
        c.count,
        c.total.as_secs_f64(),
        c.longest.as_secs_f64()
    )
}

/// The child of `timers`: a fresh process reopens the store (restart), then fires.
fn timers_child() {
    let dir = PathBuf::from(std::env::var("AFTERCART_BENCH_DIR").unwrap());
    let until: DateTime<Utc> = std::env::var("AFTERCART_BENCH_UNTIL")
        .unwrap()
        .parse()
        .unwrap();
    // The program is compiled before the clock starts (the front end has its own benchmark).
    let (program, schemas) = load();
    let rss0 = proc_mib("VmRSS:");
    let t = Instant::now();
    let sled = Arc::new(aftercart::store::open(&dir).unwrap());
    let store: Arc<dyn Store> = sled.clone();
    let (opened, rss_open) = (t.elapsed().as_secs_f64(), proc_mib("VmRSS:"));
    let mut rt = Runtime::new(store.clone(), program, schemas, opts()).unwrap();
    let first = rt.next_due();
    let restart = t.elapsed().as_secs_f64();
    let rss1 = proc_mib("VmRSS:");
    println!(
        "restart (open + Runtime::new + first next_due): {:.3} s (store open {:.3} s); VmRSS {:.0} MiB after restart ({:.0} MiB before opening, {:.0} MiB after the store's open); first due {:?}",
        restart,
        opened,
        rss1,
        rss0,
        rss_open,
        first.map(|d| d.to_rfc3339())
    );
    // The allocator keeps freed memory for a second (`alloc::tune`): the open's transient
    // buffers are still counted just after it. What a waiting daemon holds is this.
    std::thread::sleep(Duration::from_millis(1500));
    println!(
        "VmRSS {:.0} MiB 1.5 s after the restart (freed memory given back)",
        proc_mib("VmRSS:")
    );
    if std::env::var_os("AFTERCART_BENCH_RESTART_ONLY").is_some() {
        return;
    }
    let t = Instant::now();
    let mut fired = 0usize;
    // As `Runtime::step` with a provider that cannot be asked (the file sink): each batch's
    // messages go to the provider before its commit. It only counts them (RSS is measured).
    let provider = Count::default();
    loop {
        let n = rt
            .process_timers_with(until, Sending::Direct(&provider))
            .unwrap();
        if n == 0 {
            break;
        }
        fired += n;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "fired {fired} timers in {secs:.2} s: {:.0} timers/s (goal >= 50000); VmRSS {:.0} MiB after, VmHWM {:.0} MiB (goal < 300 MB); {}",
        fired as f64 / secs,
        proc_mib("VmRSS:"),
        proc_mib("VmHWM:"),
        shown(sled.checkpoint_stats())
    );
    // As after the restart: what the allocator still held from the last batches (it keeps
    // freed memory for a second) against what the runtime and sled hold.
    std::thread::sleep(Duration::from_millis(1500));
    println!("VmRSS {:.0} MiB 1.5 s after the firing", proc_mib("VmRSS:"));
    drop(rt);
    std::thread::sleep(Duration::from_millis(1500));
    println!(
        "VmRSS {:.0} MiB with the runtime dropped (the store still open)",
        proc_mib("VmRSS:")
    );
}

fn main() {
    aftercart::alloc::tune();
    if std::env::var("AFTERCART_BENCH_CHILD").as_deref() == Ok("timers") {
        timers_child();
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let filter: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let on = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    let (program, schemas) = load();
    println!(
        "# aftercart durable runtime benchmarks ({} mode), {} cores, load {}",
        if quick { "quick" } else { "full" },
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg()
    );
    if on("throughput") {
        throughput(&program, &schemas, quick);
    }
    if on("latency") {
        latency(&program, &schemas, quick);
    }
    if on("timers") {
        timers(&program, &schemas, quick);
    }
}
