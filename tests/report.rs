//! `aftercart report` on the example week: the runtime runs the example flows, then delivery
//! callbacks (delivered, undelivered with an error code) and a click come in through the log;
//! the report is printed by the binary in all three formats, the table against a golden file,
//! and forgetting a person leaves every figure unchanged (counters hold no personal data).

use aftercart::engine::Message;
use aftercart::runtime::{self, Clock, Options, Provider, ProviderError, ProviderReceipt, Runtime};
use aftercart::schema::Schemas;
use aftercart::store::{OutboxStatus, SledStore, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

const WEEK: &str = "examples/events/week.jsonl";
const GOLDEN: &str = "tests/fixtures/report/week.table.out";

#[derive(Default)]
struct Collect(Mutex<Vec<Message>>);

impl Provider for Collect {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        self.0.lock().unwrap().push(msg.clone());
        Ok(ProviderReceipt {
            provider_id: Some(format!("SM-{}", msg.message_id)),
        })
    }
}

fn run(store: &Arc<dyn Store>, provider: &dyn Provider) {
    let checked = aftercart::check::check_paths(&[PathBuf::from("flows")]).unwrap();
    assert!(!checked.has_errors());
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    let opts = Options {
        clock: Clock::Virtual,
        ..Options::default()
    };
    let mut rt = Runtime::new(store.clone(), checked.program.unwrap(), schemas, opts).unwrap();
    rt.run_until_idle(provider, &AtomicBool::new(false))
        .unwrap();
}

fn report(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_aftercart"))
        .arg("report")
        .arg("--data")
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn rfc(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[test]
fn report_of_the_week_in_three_formats_survives_erasure() {
    let dir = std::env::temp_dir().join(format!("aftercart-report-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let text = std::fs::read_to_string(WEEK).unwrap();
    runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
    let provider = Collect::default();
    run(&store, &provider);
    let mut sent = provider.0.lock().unwrap().clone();
    sent.sort_by(|a, b| (a.at, &a.message_id).cmp(&(b.at, &b.message_id)));
    assert!(sent.len() > 20);

    // Callbacks through the log, as `aftercart serve` would append them: the first three
    // messages delivered, the fourth undelivered (30003: unreachable handset), a click on the
    // first, and a repeated callback that must not count twice.
    let line = |kind: &str, m: &Message, extra: serde_json::Value, n: usize| {
        let mut data = serde_json::json!({"person": m.person, "message_id": m.message_id});
        for (k, v) in extra.as_object().unwrap() {
            data[k] = v.clone();
        }
        serde_json::json!({
            "source": "aftercart", "type": kind, "id": format!("cb-{n}"),
            "at": rfc(m.at + chrono::Duration::minutes(1 + n as i64)), "data": data,
        })
        .to_string()
    };
    let mut cb = Vec::new();
    for (i, m) in sent.iter().take(3).enumerate() {
        cb.push(line(
            "message.delivered",
            m,
            serde_json::json!({"status": "delivered"}),
            i,
        ));
    }
    cb.push(line(
        "message.failed",
        &sent[3],
        serde_json::json!({"status": "undelivered", "error_code": "30003"}),
        3,
    ));
    cb.push(line("message.clicked", &sent[0], serde_json::json!({}), 4));
    cb.push(line(
        "message.delivered",
        &sent[0],
        serde_json::json!({"status": "delivered"}),
        5,
    ));
    runtime::ingest_text(&*store, &cb.join("\n"), &|_, _| {}).unwrap();
    run(&store, &provider);
    let o = store.outbox(&sent[3].message_id).unwrap().unwrap();
    assert_eq!(o.status, OutboxStatus::Undelivered);
    assert_eq!(o.error_code.as_deref(), Some("30003"));
    assert_eq!(
        store.outbox(&sent[0].message_id).unwrap().unwrap().status,
        OutboxStatus::Delivered
    );
    let before = store.counters().unwrap();
    let delivered: u64 = before
        .iter()
        .filter(|(k, _)| k.starts_with("report.") && k.ends_with(".delivered"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(delivered, 3, "the repeated callback is not counted again");
    drop(store);

    let table = report(&dir, &[]);
    if std::env::var_os("AFTERCART_BLESS").is_some() {
        std::fs::create_dir_all(Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &table).unwrap();
    }
    let golden = std::fs::read_to_string(GOLDEN)
        .expect("golden file missing: run with AFTERCART_BLESS=1 to create it");
    assert_eq!(table, golden, "report table differs from {GOLDEN}");
    assert!(table.contains("A/B splits"), "{table}");

    let json: serde_json::Value =
        serde_json::from_str(&report(&dir, &["--format", "json"])).unwrap();
    let rows = json["rows"].as_array().unwrap();
    let total_sent: u64 = rows.iter().map(|r| r["sent"].as_u64().unwrap()).sum();
    assert_eq!(total_sent as usize, sent.len());
    assert_eq!(json["price_per_segment_usd"], "0.0083");
    let csv = report(&dir, &["--format", "csv", "--price-per-segment", "0.01"]);
    assert_eq!(csv.lines().count(), rows.len() + 1, "{csv}");
    assert!(csv.starts_with("flow,step,variant,entered,sent,segments,cost_usd,"));
    // A later --since leaves out earlier days.
    let late = report(&dir, &["--format", "json", "--since", "2030-01-01"]);
    let late: serde_json::Value = serde_json::from_str(&late).unwrap();
    assert!(late["rows"].as_array().unwrap().is_empty());

    // Forget the person who got the first message: every figure stays.
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let r = runtime::forget(&store, &sent[0].person).unwrap();
    assert!(r.found && r.messages > 0);
    let after = store.counters().unwrap();
    let only_report = |c: &std::collections::BTreeMap<String, u64>| {
        c.iter()
            .filter(|(k, _)| k.starts_with("report."))
            .map(|(k, v)| (k.clone(), *v))
            .collect::<Vec<_>>()
    };
    assert_eq!(only_report(&before), only_report(&after));
    drop(store);
    assert_eq!(report(&dir, &[]), golden);

    // Bad input says what and where.
    let out = Command::new(env!("CARGO_BIN_EXE_aftercart"))
        .args(["report", "--data"])
        .arg(&dir)
        .args(["--price-per-segment", "cheap"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--price-per-segment: `cheap`"));
    let _ = std::fs::remove_dir_all(&dir);
}
