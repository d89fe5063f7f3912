//! Model-based test of the durable runtime with `Restart` (sled's own testing habit): random
//! interleavings of ingesting part of the example week, processing a log batch (of a random
//! size), dispatching, and restarting (the runtime AND the sled store are dropped and reopened
//! from disk: every cache is gone) must send exactly the messages the simulator sends for the
//! whole week, each once, whatever the interleaving.

mod common;
use common::{example_program, sent_key, simulated_sends, Collect, Sent};

use aftercart::engine::Message;
use aftercart::ir::Program;
use aftercart::runtime::{
    self, Clock, Options, Provider, ProviderError, ProviderReceipt, Runtime, Sending,
};
use aftercart::schema::Schemas;
use aftercart::store::{SledStore, Store};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

const WEEK: &str = "examples/events/week.jsonl";

fn load() -> &'static (Program, Schemas) {
    static P: OnceLock<(Program, Schemas)> = OnceLock::new();
    P.get_or_init(example_program)
}

/// The simulator's sends for the whole week (the model's answer).
fn expected() -> &'static BTreeSet<Sent> {
    static E: OnceLock<BTreeSet<Sent>> = OnceLock::new();
    E.get_or_init(|| {
        let (program, schemas) = load().clone();
        simulated_sends(program, schemas, &std::fs::read_to_string(WEEK).unwrap())
    })
}

/// Outlives restarts, like a real SMS provider: it sees every dispatch. It refuses the first
/// request for every third message with a retryable error (as a 503 would: not delivered), so
/// messages sent before their batch's commit (`Runtime::step` with a provider that cannot be
/// asked) and in dispatch rounds alike go through the retry path; the second attempt of a
/// message always succeeds, so none runs out of attempts.
#[derive(Default)]
struct Phone {
    got: Collect,
    refused: Mutex<BTreeSet<String>>,
    calls: AtomicUsize,
}

impl Provider for Phone {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        let mut refused = self.refused.lock().unwrap();
        if !refused.contains(&msg.message_id) && self.calls.fetch_add(1, Ordering::Relaxed) % 3 == 2
        {
            refused.insert(msg.message_id.clone());
            return Err(ProviderError::retryable("503 from the test phone"));
        }
        drop(refused);
        self.got.send(msg)
    }
}

#[derive(Clone, Debug)]
enum Op {
    /// Ingest the next `n` lines of the week (durably, de-duplicated).
    Ingest(usize),
    /// Process one batch of the log of this size (timers due before each entry fire first).
    Process(usize),
    Dispatch,
    /// Process one batch of the log of this size, its new messages sent to the phone before
    /// the commit (what `Runtime::step` does with a provider that cannot be asked).
    ProcessSending(usize),
    /// Drop the runtime and the store, reopen both from the directory.
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1usize..40).prop_map(Op::Ingest),
        3 => (1usize..64).prop_map(Op::Process),
        2 => Just(Op::Dispatch),
        2 => (1usize..64).prop_map(Op::ProcessSending),
        2 => Just(Op::Restart),
    ]
}

fn open(dir: &std::path::Path, batch: usize) -> (Arc<dyn Store>, Runtime) {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
    let (program, schemas) = load().clone();
    let rt = Runtime::new(
        store.clone(),
        program,
        schemas,
        Options {
            clock: Clock::Virtual,
            batch,
            ..Options::default()
        },
    )
    .unwrap();
    (store, rt)
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    static CASE: AtomicUsize = AtomicUsize::new(0);
    // A guard: a failing case leaves nothing under /tmp either.
    let dir = common::TmpDir::new(
        &format!("rt-model-{}", CASE.fetch_add(1, Ordering::Relaxed)),
        false,
    );
    let text = std::fs::read_to_string(WEEK).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut fed = 0;
    let phone = Phone::default();
    let (mut store, mut rt) = open(&dir, 256);
    for op in ops {
        match op {
            Op::Ingest(n) => {
                let to = (fed + n).min(lines.len());
                let chunk = lines[fed..to].join("\n");
                runtime::ingest_text(&*store, &chunk, &|_, _| {}).unwrap();
                fed = to;
            }
            Op::Process(batch) => {
                drop(rt);
                drop(store);
                (store, rt) = open(&dir, *batch);
                rt.process_log().unwrap();
            }
            Op::Dispatch => {
                rt.dispatch(&phone).unwrap();
            }
            Op::ProcessSending(batch) => {
                drop(rt);
                drop(store);
                (store, rt) = open(&dir, *batch);
                rt.process_log_with(Sending::Direct(&phone)).unwrap();
            }
            Op::Restart => {
                drop(rt);
                drop(store);
                (store, rt) = open(&dir, 256);
            }
        }
    }
    // The rest of the week, then run to idle (the virtual clock follows every wait).
    runtime::ingest_text(&*store, &lines[fed..].join("\n"), &|_, _| {}).unwrap();
    rt.run_until_idle(&phone, &AtomicBool::new(false)).unwrap();
    prop_assert_eq!(store.pending(10).unwrap().len(), 0);
    prop_assert_eq!(store.next_due().unwrap(), None);
    let sent = phone.got.0.lock().unwrap();
    let set: BTreeSet<Sent> = sent.iter().map(sent_key).collect();
    prop_assert_eq!(set.len(), sent.len(), "a message was dispatched twice");
    let missing: Vec<_> = expected().difference(&set).collect();
    let extra: Vec<_> = set.difference(expected()).collect();
    prop_assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {:?}\nextra {:?}",
        missing,
        extra
    );
    drop(rt);
    drop(store);
    Ok(())
}

proptest! {
    // Each case replays the whole week on sled with real reopens: a few dozen cases cover the
    // interleavings that matter (a restart between an order and its fulfillment, inside a run
    // of timers, between a send and its dispatch) in well under a minute.
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn any_interleaving_with_restarts_sends_what_the_simulator_sends(
        ops in proptest::collection::vec(op(), 1..30)
    ) {
        run(&ops)?;
    }
}

/// On the wall clock a runtime that is behind (here: events that arrived 10 minutes ago, well
/// past a 2 s timeout) must still treat a delivery that arrived before its wait's timeout as in
/// time: timers fire up to each entry's arrival, not up to "now", before the entry.
#[test]
fn wall_clock_backlog_keeps_arrival_order_against_timeouts() {
    let dir = common::TmpDir::new("rt-wall", false);
    let checked =
        aftercart::check::check_paths(&[PathBuf::from("benches/peers/aftercart")]).unwrap();
    assert!(!checked.has_errors());
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let t0 = chrono::Utc::now() - chrono::Duration::minutes(10);
    let at = |ms: i64| {
        (t0 + chrono::Duration::milliseconds(ms))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let order = serde_json::json!({"type": "order.created", "at": at(0), "id": "o1",
        "data": {"order_id": "5001", "order_number": "#1", "customer_id": "77", "phone": "+12125550100",
                 "first_name": "Ada", "total_price": "42.50", "currency": "USD", "created_at": at(0),
                 "line_items": [{"sku": "TEE-001", "title": "Item", "quantity": 1, "price": "42.50", "product_id": "9001"}],
                 "shipping_address": {"province_code": "NY", "country_code": "US", "phone": "+12125550100"}}});
    // Delivered 1.5 s after the order: after the 1 s wait, inside the 2 s wait for it.
    let delivered = serde_json::json!({"type": "shipment.delivered", "at": at(1500), "id": "d1",
        "data": {"order_id": "5001", "customer_id": "77", "phone": "+12125550100", "status": "delivered",
                 "fulfillment_id": "5001", "fulfillment_event_id": "5001"}});
    runtime::ingest_text(&*store, &format!("{order}\n{delivered}\n"), &|_, _| {}).unwrap();
    let mut rt = Runtime::new(
        store.clone(),
        checked.program.unwrap(),
        schemas,
        Options {
            clock: Clock::Wall,
            ..Options::default()
        },
    )
    .unwrap();
    let phone = Collect::default();
    // Both entries are in the backlog; process them, then let the waits run out (seconds).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline && store.next_due().unwrap().is_some()
        || store.cursor().unwrap() < 2
    {
        rt.step(&phone).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    rt.step(&phone).unwrap();
    let bodies: Vec<String> = phone
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.body.clone())
        .collect();
    assert_eq!(
        bodies.len(),
        2,
        "confirmation and review request: {bodies:?}"
    );
    assert!(bodies[1].contains("How was it?"), "{bodies:?}");
}
