//! Durable runtime tests: the runtime against the simulator on the example week (same message
//! ids, recipients, bodies and send times), in-process restarts after every batch (MemStore and
//! SledStore), ingest reports, erasure through the runtime's join indexes, and a crash test that
//! SIGKILLs `aftercart run` at random instants and checks the file sink against the simulator.

mod common;
use common::{example_program, simulated_sends, Collect, Sent};

use aftercart::ir::Program;
use aftercart::runtime::{self, Clock, Options, Runtime};
use aftercart::schema::Schemas;
use aftercart::store::{MemStore, SledStore, Store};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const WEEK: &str = "examples/events/week.jsonl";

fn tmp(name: &str) -> common::TmpDir {
    common::TmpDir::new(&format!("rt-{name}"), false)
}

fn load() -> (Program, Schemas) {
    example_program()
}

/// The simulator's answer: (message_id, to, body, at) of every send.
fn simulated(text: &str) -> BTreeSet<Sent> {
    let (program, schemas) = load();
    simulated_sends(program, schemas, text)
}

fn opts(batch: usize) -> Options {
    Options {
        clock: Clock::Virtual,
        batch,
        // A learned-state snapshot every few entries, so restarts start from one and replay
        // the log only after it (the week's recommendations depend on the order history).
        snapshot_every: 7,
        ..Options::default()
    }
}

/// Run to idle, restarting (a new Runtime over the same store: every cache is gone) after
/// each step when `restart` is set.
fn run_virtual(store: Arc<dyn Store>, batch: usize, restart: bool) -> BTreeSet<Sent> {
    let text = std::fs::read_to_string(WEEK).unwrap();
    let rep = runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
    assert_eq!(rep.accepted.len(), 107);
    assert_eq!(rep.duplicates.len(), 1, "Ava's re-delivered order");
    run_ingested(store, batch, restart)
}

fn run_ingested(store: Arc<dyn Store>, batch: usize, restart: bool) -> BTreeSet<Sent> {
    let provider = Collect::default();
    let stop = AtomicBool::new(false);
    let (program, schemas) = load();
    let mut rt =
        Runtime::new(store.clone(), program.clone(), schemas.clone(), opts(batch)).unwrap();
    if restart {
        let mut rounds = 0;
        loop {
            let p = rt.step(&provider).unwrap();
            if p.idle() {
                break;
            }
            rounds += 1;
            assert!(rounds < 10_000);
            rt =
                Runtime::new(store.clone(), program.clone(), schemas.clone(), opts(batch)).unwrap();
        }
    } else {
        rt.run_until_idle(&provider, &stop).unwrap();
    }
    assert_eq!(store.pending(10).unwrap().len(), 0);
    assert_eq!(store.next_due().unwrap(), None, "no timer left");
    provider.sent()
}

#[test]
fn runtime_matches_simulator_on_the_week() {
    let expected = simulated(&std::fs::read_to_string(WEEK).unwrap());
    assert!(expected.len() > 50);
    let dir = tmp("week");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let got = run_virtual(store, 256, false);
    assert_eq!(got, expected);
}

/// Many people, so that store orderings that depend on random per-person tags are exercised
/// (the week has 44 people; a timer lost for one person in 256 went unnoticed there).
#[test]
fn runtime_matches_simulator_on_a_thousand_synthetic_customers() {
    let text = aftercart::sim::synthetic::events(1000);
    let expected = simulated(&text);
    assert!(expected.len() > 5000, "{}", expected.len());
    let dir = tmp("synthetic");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let rep = runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
    assert!(rep.refused.is_empty());
    let got = run_ingested(store, 256, false);
    assert_eq!(got.len(), expected.len());
    assert_eq!(got, expected);
}

#[test]
fn restart_after_every_batch_changes_nothing() {
    let expected = simulated(&std::fs::read_to_string(WEEK).unwrap());
    // Small batches so restarts land between an order and its fulfillment, inside timer runs.
    for batch in [1, 3, 17] {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        assert_eq!(
            run_virtual(store, batch, true),
            expected,
            "MemStore batch {batch}"
        );
    }
    let dir = tmp("restart-sled");
    let got = {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        run_virtual(store, 5, true)
    };
    assert_eq!(got, expected, "SledStore batch 5");
}

/// A restart rebuilds what `recommend()` learned from the last snapshot plus the entries after
/// it, and gets what a replay of the whole log gets (orders of the week, the products webhooks
/// of the recommendations test stream).
#[test]
fn a_restart_from_the_learned_snapshot_equals_a_full_replay() {
    let mut product: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/shopify/products__update.json").unwrap(),
    )
    .unwrap();
    product["title"] = serde_json::json!("Gift Box (new)");
    let mut text = std::fs::read_to_string(WEEK).unwrap();
    text.push_str(&webhook(
        "products/update",
        "snap-p1",
        "2026-03-02T09:00:00Z",
        product,
    ));
    text.push('\n');
    let restarted = |snapshot_every: u64, name: &str| {
        let dir = tmp(name);
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
        let (program, schemas) = load();
        let o = Options {
            snapshot_every,
            ..opts(16)
        };
        let mut rt =
            Runtime::new(store.clone(), program.clone(), schemas.clone(), o.clone()).unwrap();
        rt.run_until_idle(&Collect::default(), &AtomicBool::new(false))
            .unwrap();
        let snapshot = store.person("idx:learned").unwrap().is_some();
        drop(rt);
        let rt = Runtime::new(store, program, schemas, o).unwrap();
        let data = rt.shop_data().clone();
        let _ = std::fs::remove_dir_all(&dir);
        (snapshot, data)
    };
    let (with, from_snapshot) = restarted(7, "snap-7");
    let (without, replayed) = restarted(u64::MAX / 2, "snap-none");
    assert!(with && !without);
    assert!(!replayed.orders.is_empty() && !replayed.product_webhooks.is_empty());
    assert_eq!(from_snapshot, replayed);
}

#[test]
fn ingest_reports_accepted_duplicates_and_refused_lines() {
    let store = MemStore::new();
    let good = r#"{"source":"aftercart","type":"sms.replied","at":"2026-03-02T10:00:00Z","id":"r1","data":{"from":"+12125550100","body":"hi"}}"#;
    let text = format!("{good}\nnot json\n\n{{\"topic\":\"orders/create\"}}\n{good}\n");
    let rep = runtime::ingest_text(&store, &text, &|_, _| {}).unwrap();
    assert_eq!(rep.accepted, vec![(1, 1)]);
    assert_eq!(rep.duplicates, vec![(5, 1)]);
    assert_eq!(
        rep.refused.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert!(rep.refused[0].reason.contains("not valid JSON"));
    // Nothing already stored is touched by a second ingest.
    let rep = runtime::ingest_text(&store, good, &|_, _| {}).unwrap();
    assert_eq!(rep.duplicates, vec![(1, 1)]);
    assert_eq!(store.last_seq().unwrap(), 1);
}

/// Every file under `dir`, recursively.

#[test]
fn join_tables_persist_and_are_erased_with_the_person() {
    let dir = tmp("forget");
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        run_virtual(store.clone(), 7, true);
        // Every event was attributed to a person at append or while processing (so erasure
        // finds it), including fulfillments/create, which starts no flow but files its payload.
        for e in store.read_log(1, 1000).unwrap() {
            assert!(e.person.is_some(), "event {} not attributed", e.seq);
        }
        // No phone number in any index: the runtime's index subjects are keyed hashes.
        for p in store.people().unwrap() {
            assert!(!p.contains("+1"), "index subject with a phone: {p}");
        }
    }
    // Grace (phone +1...0107 in the week) is a customer with orders and fulfillments.
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let person = store
        .people()
        .unwrap()
        .into_iter()
        .filter(|p| p.starts_with("customer:"))
        .max_by_key(|p| {
            let rec = runtime::decode_record(p, &store.person(p).unwrap().unwrap()).unwrap();
            rec.joins.orders.len() + rec.joins.fulfillments.len()
        })
        .unwrap();
    let rec = runtime::decode_record(&person, &store.person(&person).unwrap().unwrap()).unwrap();
    assert!(!rec.joins.orders.is_empty() && !rec.joins.fulfillments.is_empty());
    let phone = rec.state.profile.phone.clone().unwrap();
    let email = rec.state.profile.email.clone();
    let report = runtime::forget(&store, &person).unwrap();
    assert!(report.found);
    drop(store);
    let mut needles = vec![phone.as_bytes()];
    needles.extend(email.as_deref().map(str::as_bytes));
    common::assert_no_file_holds(&dir, &needles);
}

/// The person a line names by itself (sealed under their key at append, so processing does not
/// re-seal it) is the person the host routes it to, on the example week (Shopify webhooks:
/// orders, checkouts, consent, fulfillments that need the join) and on synthetic customers
/// (aftercart's normalised events and replies). Lines that need a join or a phone owner name
/// nobody.
#[test]
fn the_person_a_line_names_is_the_person_it_is_routed_to() {
    let (program, schemas) = load();
    let synthetic = aftercart::sim::synthetic::events(200);
    let week = std::fs::read_to_string(WEEK).unwrap();
    for text in [week.as_str(), synthetic.as_str()] {
        let mut host = aftercart::host::Host::new(program.clone(), schemas.clone());
        let mut envs: Vec<_> = text
            .lines()
            .map(|l| aftercart::host::parse_line(l).unwrap())
            .collect();
        envs.sort_by_key(|e| e.at);
        let (mut named, mut unnamed) = (0, 0);
        for env in &envs {
            let routed = host.inputs(env).unwrap();
            match env.named_person() {
                Some(p) => {
                    named += 1;
                    if let Some((first, _)) = routed.first() {
                        assert_eq!(&p, first, "{}", env.describe());
                    }
                }
                None => unnamed += 1,
            }
        }
        // Most lines name their person; the joins and replies do not.
        assert!(named > unnamed, "named {named}, unnamed {unnamed}");
        assert!(unnamed > 0);
    }
    // The webhook fixtures: an order names its customer; a fulfillment does not (joined).
    let fixture = |topic: &str, file: &str| {
        let body = std::fs::read_to_string(format!("tests/fixtures/shopify/{file}")).unwrap();
        let line = serde_json::json!({
            "source": "shopify", "topic": topic, "received_at": "2026-03-02T14:19:00Z",
            "headers": { "X-Shopify-Event-Id": "e1" },
            "body": serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        });
        aftercart::host::parse_line(&line.to_string())
            .unwrap()
            .named_person()
    };
    let order: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/shopify/orders__create.json").unwrap(),
    )
    .unwrap();
    assert_eq!(
        fixture("orders/create", "orders__create.json"),
        Some(format!("customer:{}", order["customer"]["id"]))
    );
    assert_eq!(
        fixture("fulfillments/create", "fulfillments__create.json"),
        None
    );
}

// ------------------------------------------------------------------------------ crash test

/// A small deterministic generator (xorshift) so a failing run can be repeated by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// SIGKILL `aftercart run --clock virtual --until-idle` at random instants, restart it each
/// time, let it finish, and compare the file sink with the simulator: every message exactly
/// once, none missing, none extra. `AFTERCART_RUNTIME_KILLS` sets the number of kills (default
/// 50), `AFTERCART_RUNTIME_SEED` the seed.
#[test]
fn survives_sigkill_at_random_instants() {
    let kills: usize = std::env::var("AFTERCART_RUNTIME_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("AFTERCART_RUNTIME_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test: {kills} kills, seed {seed}");
    let mut rng = Rng(seed);
    let dir = tmp("crash");
    let sink_dir = common::TmpDir::new("rt-crash-sink", true);
    let out = sink_dir.join("sent.jsonl");
    let run = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_aftercart"));
        c.args(["run", "--data"])
            .arg(&dir)
            .args(["--flows", "flows", "--events", WEEK])
            .args(["--clock", "virtual", "--until-idle", "--provider"])
            .arg(format!("file:{}", out.display()))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    };
    let started = std::time::Instant::now();
    let mut killed = 0;
    let mut finished_early = 0;
    let mut delays = Vec::new();
    while killed < kills {
        let mut child = run().spawn().unwrap();
        // Mostly short delays (startup, ingest, the first batches), sometimes longer ones (the
        // timer tail and dispatch).
        let ms = if rng.next().is_multiple_of(4) {
            rng.next() % 1500
        } else {
            rng.next() % 400
        };
        delays.push(ms);
        std::thread::sleep(std::time::Duration::from_millis(ms));
        match child.try_wait().unwrap() {
            Some(status) => {
                // It finished before the kill: check it did not fail, start over on a new
                // directory so later kills still hit work.
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                assert!(status.success(), "run failed after restart: {err}");
                finished_early += 1;
                check_sink(&out);
                let _ = std::fs::remove_dir_all(&dir);
                let _ = std::fs::remove_file(&out);
            }
            None => {
                child.kill().unwrap(); // SIGKILL on Unix
                child.wait().unwrap();
                killed += 1;
            }
        }
    }
    let o = run().output().unwrap();
    assert!(
        o.status.success(),
        "final run failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    check_sink(&out);
    eprintln!(
        "crash test: {killed} kills ({finished_early} runs finished before their kill), {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(dir.with_extension("creating"));
    let _ = std::fs::remove_file(&out);
}

/// The file sink holds exactly the simulator's messages, each once.
fn check_sink(out: &Path) {
    let expected = simulated(&std::fs::read_to_string(WEEK).unwrap());
    let text = std::fs::read_to_string(out).unwrap();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut got = BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("sink lines are JSON");
        let s = |k: &str| v[k].as_str().unwrap().to_string();
        *seen.entry(s("message_id")).or_default() += 1;
        got.insert((s("message_id"), s("to"), s("body"), s("sent_at")));
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    let missing: Vec<_> = expected.difference(&got).collect();
    let extra: Vec<_> = got.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}\nextra {extra:?}"
    );
}

/// The example flows with one edit applied to every file's text.
fn load_edited(from: &str, to: &str) -> Program {
    let flows = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let project = std::fs::read_to_string(flows.join("aftercart.toml")).unwrap();
    let mut sources = Vec::new();
    for e in std::fs::read_dir(&flows).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "flow") {
            let text = std::fs::read_to_string(&p).unwrap().replace(from, to);
            sources.push((p.file_name().unwrap().to_string_lossy().to_string(), text));
        }
    }
    sources.sort();
    aftercart::check::check_sources(Some(("flows/aftercart.toml".into(), project)), sources)
        .program
        .unwrap()
}

/// People waiting in the week's flows when a new version is deployed: kept, migrated or ended.
#[test]
fn deploy_keeps_migrates_or_ends_old_versions() {
    use aftercart::runtime::deploy::{self, Plan};
    let text = std::fs::read_to_string(WEEK).unwrap();
    let (a, schemas) = load();
    let b = load_edited("wait 75d", "wait 80d");
    let win_back_a = a.flow("win_back").unwrap().version.clone();
    let win_back_b = b.flow("win_back").unwrap().version.clone();
    assert_ne!(win_back_a, win_back_b);
    for plan in [Plan::Keep, Plan::Migrate, Plan::End] {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
        let mut rt = Runtime::new(store.clone(), a.clone(), schemas.clone(), opts(64)).unwrap();
        // Inputs only, no timers: everyone who entered win_back waits at its first step.
        rt.process_log().unwrap();
        drop(rt);
        let before = deploy::waiting(&*store).unwrap();
        let on_a: usize = before
            .iter()
            .filter(|((f, v, _), _)| f == "win_back" && *v == win_back_a)
            .map(|(_, n)| n)
            .sum();
        assert!(on_a > 0, "people wait in win_back");
        let report = deploy::deploy(&*store, b.clone(), plan).unwrap();
        assert!(report.changed);
        let deployed = deploy::deployed(&*store).unwrap().unwrap();
        let versions: Vec<&str> = deployed
            .flows
            .iter()
            .filter(|f| f.name == "win_back")
            .map(|f| f.version.as_str())
            .collect();
        let after = deploy::waiting(&*store).unwrap();
        let count = |v: &str| -> usize {
            after
                .iter()
                .filter(|((f, ver, _), _)| f == "win_back" && ver == v)
                .map(|(_, n)| n)
                .sum()
        };
        match plan {
            Plan::Keep => {
                assert_eq!(
                    versions,
                    [win_back_b.as_str(), win_back_a.as_str()],
                    "new first, old kept"
                );
                assert_eq!(
                    count(&win_back_a),
                    on_a,
                    "people stay on the version they entered"
                );
            }
            Plan::Migrate => {
                assert!(
                    report.migrated >= on_a,
                    "every waiting win_back instance moved"
                );
                assert_eq!(
                    count(&win_back_b),
                    on_a,
                    "waiting people moved: the wait step survives"
                );
                assert_eq!(count(&win_back_a), 0);
            }
            Plan::End => assert_eq!(versions, [win_back_b.as_str()], "old versions dropped"),
        }
        // The text names what changed.
        let text = deploy::render(&report, plan);
        assert!(text.contains("wait 75d -> wait 80d"), "{text}");
    }
}

/// One Shopify webhook as an input line.
fn webhook(topic: &str, id: &str, at: &str, body: serde_json::Value) -> String {
    serde_json::json!({
        "source": "shopify", "topic": topic, "received_at": at,
        "headers": {"X-Shopify-Topic": topic, "X-Shopify-Event-Id": id},
        "body": body,
    })
    .to_string()
}

/// Recommend plugins under the durable runtime, restarted after every step: the catalog a
/// `products/update` changed is rebuilt from the log after each restart (the message names the
/// product as updated), failed calls are counted as `plugin_errors.{plugin}.{reason}` and listed
/// on the person for `inspect`, and the flow still sends every message.
#[test]
fn recommendations_survive_restarts_and_failures_are_counted() {
    let checked = aftercart::check::check_paths(&[PathBuf::from("tests/plugin_project")]).unwrap();
    assert!(!checked.has_errors());
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    let program = checked.program.unwrap();
    let mut order: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/shopify/orders__create.json").unwrap(),
    )
    .unwrap();
    order["id"] = serde_json::json!(5001);
    order["phone"] = serde_json::json!("+12125550100");
    order["customer"] =
        serde_json::json!({"id": 7001, "first_name": "Ada", "phone": "+12125550100"});
    order["shipping_address"]["province_code"] = serde_json::json!("NY");
    order["line_items"] = serde_json::json!([
        {"id": 1, "product_id": 8042, "title": "Pour-over kettle", "quantity": 1, "price": "64.00"}
    ]);
    let mut product: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("tests/fixtures/shopify/products__update.json").unwrap(),
    )
    .unwrap();
    product["id"] = serde_json::json!(8050);
    product["title"] = serde_json::json!("Burr grinder (v2)");
    product["handle"] = serde_json::json!("burr-grinder-v2");
    let text = [
        webhook(
            "customers_marketing_consent/update",
            "e1",
            "2026-03-02T14:00:00Z",
            serde_json::json!({"id": 7001, "phone": "+12125550100", "sms_marketing_consent": {"state": "subscribed"}}),
        ),
        webhook("products/update", "e2", "2026-03-02T14:00:30Z", product),
        webhook("orders/create", "e3", "2026-03-02T14:01:00Z", order),
    ]
    .join("\n");
    let store: Arc<dyn Store> = Arc::new(MemStore::new());
    runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
    let provider = Collect::default();
    let mut rounds = 0;
    loop {
        let mut rt =
            Runtime::new(store.clone(), program.clone(), schemas.clone(), opts(1)).unwrap();
        if rt.step(&provider).unwrap().idle() {
            break;
        }
        rounds += 1;
        assert!(rounds < 1000);
    }
    let bodies: Vec<String> = provider.sent().into_iter().map(|s| s.2).collect();
    assert!(
        bodies
            .iter()
            .any(|b| b.starts_with("Picked for you: Burr grinder (v2) https://jnpr.co/l/")),
        "{bodies:#?}"
    );
    for b in [
        "Malformed answer, built-in pick: Paper filters (100)",
        "Endless loop, built-in pick: Paper filters (100)",
        "Memory bomb, built-in pick: Paper filters (100)",
        "Trap, built-in pick: Paper filters (100) at $12.50",
    ] {
        assert!(bodies.iter().any(|x| x == b), "{b} not in {bodies:#?}");
    }
    let counters = store.counters().unwrap();
    assert_eq!(counters.get("plugin_errors.bad_picks.bad_output"), Some(&1));
    assert_eq!(
        counters.get("plugin_errors.loop_picks.out_of_fuel"),
        Some(&1)
    );
    assert_eq!(
        counters.get("plugin_errors.bomb_picks.memory_limit"),
        Some(&1)
    );
    // `if len(recommend(trap_picks)) > 0` and the two interpolations: three calls.
    assert_eq!(counters.get("plugin_errors.trap_picks.trap"), Some(&3));
    assert!(!counters
        .keys()
        .any(|k| k.starts_with("plugin_errors.picks.")));
    let person = runtime::inspect::person(&*store, "customer:7001").unwrap();
    let failures = person["plugin_failures"].as_array().unwrap();
    // The six above, and vip.flow's `broken_model` segment (out of fuel) on the order.
    assert_eq!(
        counters.get("plugin_errors.broken_model.out_of_fuel"),
        Some(&1)
    );
    assert_eq!(failures.len(), 7);
    assert!(failures
        .iter()
        .any(|f| f["plugin"] == "loop_picks"
            && f["reason"].as_str().unwrap().starts_with("out_of_fuel")));
}
