//! The durable runtime: the engine hosted over the store. It ingests input lines into the log
//! (de-duplicated, group-committed), processes the log from the store's cursor in batches —
//! timers due before each entry first, then the entry — commits each batch's effects as ONE
//! atomic store commit followed by ONE flush, and dispatches the outbox through a provider. A
//! `kill -9` at any instant loses no acknowledged event and sends no message twice: the log and
//! the batch commit are atomic, message ids are stable, and the provider de-duplicates by id.
//! The commit protocol and what lives where are in docs/storage.md ("Runtime").

pub mod counters;
pub mod deploy;
pub mod http;
pub mod inspect;
pub mod provider;
pub mod report;
pub mod state;
pub mod twilio;

use crate::engine::{Effect, Message};
use crate::host::{parse_line, Envelope, Host, HostState, Record};
use crate::ir::Program;
use crate::schema::Schemas;
use crate::store::{
    CommitBatch, NewEvent, OutboxEntry, OutboxStatus, OutboxUpdate, Seq, Store, StoreError,
};
use chrono::{DateTime, Duration, Utc};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use provider::{
    FileProvider, FindSent, Lookup, Provider, ProviderError, ProviderReceipt, StdoutProvider,
};
pub use state::{decode_record, encode_record, PersonRecord, SentRef, StoreState};
pub use twilio::{Sender, TwilioConfig, TwilioProvider};

use counters::{Key as CounterKey, Metric};

/// Like the simulator's horizon: without an end, timers are followed at most this far past the
/// last log entry (every flow's waits are bounded, so it is a safety net).
pub const HORIZON_DAYS: i64 = 800;

/// Lines appended per store batch (and flush) by `ingest`.
pub const INGEST_GROUP: usize = 1000;

/// After a commit, caches are dropped once this many people are held (memory stays bounded;
/// people are read back lazily).
const CACHE_PEOPLE: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// `chrono::Utc::now()`: entries are processed and timers fire at the real time.
    Wall,
    /// The clock jumps from log entry to timer to log entry; a timer fires at its due time
    /// and an entry at its receive time (exactly like the simulator).
    Virtual,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub clock: Clock,
    /// At most this many log entries (and, separately, timers) per commit: a batch is what is
    /// available up to this size, so under light load commits stay small (latency), and with a
    /// backlog one commit covers many inputs. Why large: each commit rewrites every person the
    /// batch touched, once, so a person touched by several inputs of one batch is written once
    /// (8,000 synthetic events: 15,543 person writes at 256 per batch, 8,475 at 1,024, 5,238
    /// at 4,096), and sled's cost follows the number of keys written. Why not larger: a
    /// batch's inputs all complete at its end, so after a stall the batch size bounds how long
    /// the first of a backlog waits (on a quiet machine 1,024 cost nothing at 1k events/s
    /// offered: docs/performance.md, "Latency").
    pub batch: usize,
    /// Messages per dispatch round.
    pub dispatch_batch: usize,
    /// A provider error on the same message this many times marks it failed.
    pub max_attempts: u32,
    /// Log entries between snapshots of what `recommend()` learned from the log (the
    /// `idx:learned` record, docs/storage.md): a restart replays at most this many entries.
    pub snapshot_every: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Clock::Virtual,
            batch: 1024,
            dispatch_batch: 1024,
            max_attempts: 5,
            snapshot_every: 10_000,
        }
    }
}

#[derive(Debug)]
pub enum Error {
    Store(StoreError),
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Store(e) => write!(f, "{e}"),
            Error::Other(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

// ------------------------------------------------------------------------------- ingest

/// A line `ingest` refused: its 1-based number and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub line: usize,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestReport {
    /// (line, seq) of each new event.
    pub accepted: Vec<(usize, Seq)>,
    /// (line, seq of the copy already stored).
    pub duplicates: Vec<(usize, Seq)>,
    pub refused: Vec<Refused>,
}

/// The non-personal source label of an envelope (the store's de-duplication namespace).
fn source_label(env: &Envelope) -> &'static str {
    match env.payload {
        crate::host::Payload::Shopify { .. } => "shopify",
        crate::host::Payload::Aftercart { .. } => "aftercart",
    }
}

/// One input line as the log keeps it: parsed ([`parse_line`] says what is wrong and where)
/// and turned into the event to append, de-duplicated on (`shopify`|`aftercart`,
/// [`Envelope::source_id`]). The payload is the raw line; the person is the one the line names
/// ([`Envelope::named_person`]), else `None` (routing needs the join tables, so the runtime
/// attributes the event when it processes it). `ingest_text` and the
/// webhook server (`runtime::http`) both go through here, so a webhook and an ingested line of
/// the same event are the same log entry.
pub fn event_of_line(line: &str) -> std::result::Result<(Envelope, NewEvent), String> {
    let env = parse_line(line)?;
    let event = NewEvent {
        received_at: env.at,
        source: source_label(&env).to_string(),
        source_id: env.source_id(),
        // The person the line names by itself, sealed under their key now. Otherwise routing
        // needs the join tables: the runtime attributes the event when it processes it
        // (CommitBatch::attribute), which re-seals and rewrites the entry, so erasure finds it.
        person: env.named_person(),
        payload: line.as_bytes().to_vec(),
    };
    Ok((env, event))
}

/// Append events and flush: on return every accepted event is durable (an acknowledgement may
/// be given). Concurrent callers share the flush (the store's group commit).
pub fn append_durable(
    store: &dyn Store,
    events: &[NewEvent],
) -> Result<Vec<crate::store::AppendResult>> {
    let results = store.append(events)?;
    store.flush()?;
    Ok(results)
}

/// Append the valid lines of `text` to the log, de-duplicated on their source ids, in groups
/// of [`INGEST_GROUP`] with one flush per group (so everything reported accepted is durable).
/// Valid lines are appended in time order (stable), as the simulator reads them, so the
/// runtime's virtual clock sees the same sequence. Malformed lines are refused and the rest go
/// on; nothing already stored is touched. `progress(done, total)` follows the groups.
pub fn ingest_text(
    store: &dyn Store,
    text: &str,
    progress: &dyn Fn(usize, usize),
) -> Result<IngestReport> {
    let mut report = IngestReport::default();
    let mut lines = Vec::new();
    let numbered: Vec<(usize, &str)> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .collect();
    // Lines parse independently: on two threads for a large file (`crate::par`).
    let parsed = crate::par::map_halves(&numbered, 1024, |(_, line)| {
        event_of_line(line).map(|(env, event)| (env.at, event))
    });
    for ((i, _), p) in numbered.iter().zip(parsed) {
        match p {
            Ok((at, event)) => lines.push((i + 1, at, event)),
            Err(reason) => report.refused.push(Refused {
                line: i + 1,
                reason,
            }),
        }
    }
    lines.sort_by_key(|(_, at, _)| *at);
    let total = lines.len();
    for (g, group) in lines.chunks(INGEST_GROUP).enumerate() {
        let events: Vec<NewEvent> = group.iter().map(|(_, _, e)| e.clone()).collect();
        let results = append_durable(store, &events)?;
        for ((line, _, _), r) in group.iter().zip(results) {
            match r {
                crate::store::AppendResult::Accepted(s) => report.accepted.push((*line, s)),
                crate::store::AppendResult::Duplicate(s) => report.duplicates.push((*line, s)),
            }
        }
        progress((g * INGEST_GROUP + group.len()).min(total), total);
    }
    report.accepted.sort();
    report.duplicates.sort();
    Ok(report)
}

// ------------------------------------------------------------------------------ runtime

/// What one call of [`Runtime::step`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub entries: usize,
    pub timers: usize,
    pub sent: usize,
    pub failed: usize,
}

impl Progress {
    pub fn idle(&self) -> bool {
        self.entries == 0 && self.timers == 0 && self.sent == 0 && self.failed == 0
    }
}

/// How a batch's new messages reach the provider.
#[derive(Clone, Copy)]
pub enum Sending<'a> {
    /// Put in the outbox `pending`; [`Runtime::dispatch`] sends them after the commit.
    AfterCommit,
    /// Sent through this provider before the commit and put in the outbox with their outcome
    /// (`send_direct`): for a provider that cannot be asked about a message and drops an id it
    /// already took (see docs/storage.md, "Direct send").
    Direct(&'a dyn Provider),
}

impl<'a> Sending<'a> {
    /// What [`Runtime::step`] does for `provider`: direct unless it can be asked about a
    /// message (Twilio), whose in-doubt messages need the `sending` mark of the dispatch round.
    pub fn for_provider(provider: &'a dyn Provider) -> Sending<'a> {
        match provider.find_sent() {
            None => Sending::Direct(provider),
            Some(_) => Sending::AfterCommit,
        }
    }
}

/// What became of one send attempt.
enum Outcome {
    Sent,
    Failed,
    Retry,
}

pub struct Runtime {
    store: Arc<dyn Store>,
    host: Host<StoreState>,
    opts: Options,
    /// The pending commit's outbox puts, each with the message it holds serialised (the direct
    /// send and the link table read the message; the store keeps the bytes), then
    /// attributions and counters.
    outbox: Vec<(OutboxEntry, Message)>,
    /// Where each message id of `outbox` is in it: every message made is looked up here (a
    /// linear search was quadratic in the batch's messages).
    outbox_at: std::collections::HashMap<String, usize>,
    /// Delivery-status changes of this batch, by message id (later ones see earlier ones).
    outbox_updates: BTreeMap<String, OutboxUpdate>,
    attribute: Vec<(Seq, String)>,
    counters: BTreeMap<String, i64>,
    /// Numbers the provider said opted out of our sender (Twilio 21610) in this process:
    /// messages to them already in the outbox fail without a request (the carrier refuses
    /// them all; the log event makes the engine stop making new ones).
    opted_out: std::collections::HashSet<String>,
    /// The log position the last learned-state snapshot covers.
    snapshot_cursor: Seq,
    /// Messages sent (or failed for good) before their batch's commit (`send_direct`), for
    /// the next [`Progress`].
    direct: Progress,
    /// The cursor as of this runtime's last commit (`None`: ask the store). Kept here so that
    /// the next batch starts without a store call, which would wait for the commit's apply.
    cursor: Option<Seq>,
    /// The next batch's log entries, read before the last commit was handed to the store:
    /// the engine steps through them while the store applies that commit on its own thread.
    prefetched: Vec<crate::store::LogEntry>,
    /// The people the latest read-ahead read (kept when the caches are dropped after it).
    warmed: Vec<String>,
    /// No message in the outbox waits for dispatch except what this runtime committed since
    /// (false at start: an earlier run may have left some). Lets `dispatch` skip its scan of
    /// the pending queue, a store read that would wait for the commit's apply.
    dispatch_clear: bool,
    /// The virtual clock's horizon and the last seq it was read for.
    horizon_at: Option<(Seq, Option<DateTime<Utc>>)>,
}

/// Store the program under its content hash and point `deployed` at it, unless it already is.
pub fn deploy(store: &dyn Store, program: &Program) -> Result<bool> {
    if store.deployed()?.as_deref() == Some(program.hash.as_str()) {
        return Ok(false);
    }
    let bytes = serde_json::to_vec(program).map_err(|e| Error::Other(e.to_string()))?;
    store.deploy(&program.hash, &bytes)?;
    Ok(true)
}

/// The catalog and order history are not stored apart: they are rebuilt from the log entries
/// already processed (products and order webhooks, in log order), so after a restart
/// `recommend()` sees exactly what it saw before, and replay and the simulator agree.
/// Rebuild what `recommend()` reads (catalog changes, order history) as of the processed log:
/// from the last snapshot ([`state::LEARNED`]), then the entries processed after it. Returns the
/// cursor the snapshot covered (0 without one). Replaying the whole log instead made a restart
/// O(events) in decryption and parsing (docs/performance.md, "Timers").
fn learn_from_log<S: HostState>(store: &dyn Store, host: &mut Host<S>) -> Result<Seq> {
    let cursor = store.cursor()?;
    let snapshot = match store.person(state::LEARNED)? {
        Some(b) => Some(state::decode_learned(&b)?),
        None => None,
    };
    let mut covered = 0;
    if let Some(l) = snapshot.filter(|l| l.cursor <= cursor) {
        let shop_url = host.program.shop.values.get("url").cloned();
        for (topic, body) in l.product_webhooks.values() {
            // Applied when it was first processed, so it applies again; a failure cannot
            // happen, and would only leave the product as the catalog file has it.
            let _ = host
                .data
                .apply_product_webhook(topic, body, shop_url.as_deref().unwrap_or(""));
        }
        host.data.orders = crate::catalog::OrderHistory::from_orders(l.orders);
        covered = l.cursor;
    }
    let mut from = covered + 1;
    while from <= cursor {
        let entries = store.read_log(from, 1024)?;
        let Some(last) = entries.last().map(|e| e.seq) else {
            break;
        };
        for e in entries.iter().take_while(|e| e.seq <= cursor) {
            let env = e
                .payload
                .as_deref()
                .and_then(|p| std::str::from_utf8(p).ok())
                .and_then(|t| parse_line(t).ok());
            if let Some(env) = env {
                host.learn(&env);
            }
        }
        from = last + 1;
    }
    Ok(covered)
}

impl Runtime {
    /// A runtime over `store` running `program` (deployed here if it is new).
    pub fn new(
        store: Arc<dyn Store>,
        program: Program,
        schemas: Schemas,
        opts: Options,
    ) -> Result<Runtime> {
        // Old flow versions stay deployed while people may be inside them (see `deploy`).
        let old = deploy::deployed(&*store)?;
        let (program, _) = deploy::with_old_versions(old.as_ref(), program);
        deploy(&*store, &program)?;
        let state = StoreState::new(store.clone());
        let mut host = Host::with_state(program, schemas, state);
        let snapshot_cursor = learn_from_log(&*store, &mut host)?;
        Ok(Runtime {
            host,
            store,
            opts,
            outbox: Vec::new(),
            outbox_at: Default::default(),
            outbox_updates: BTreeMap::new(),
            attribute: Vec::new(),
            counters: BTreeMap::new(),
            opted_out: Default::default(),
            snapshot_cursor,
            direct: Progress::default(),
            cursor: None,
            prefetched: Vec::new(),
            warmed: Vec::new(),
            dispatch_clear: false,
            horizon_at: None,
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// What `recommend()` reads: the catalog and the order history learned from the log.
    pub fn shop_data(&self) -> &crate::catalog::ShopData {
        &self.host.data
    }

    /// The program being run (old versions included).
    pub fn program(&self) -> &Program {
        &self.host.program
    }

    /// Process the log up to the last entry appended before this call (a privacy request
    /// must see every event that arrived before it: an unprocessed event is not yet
    /// attributed to its person, so erasure would miss it). Timers are not fired.
    pub fn catch_up(&mut self) -> Result<()> {
        let target = self.store.last_seq()?;
        while self.store.cursor()? < target {
            if self.process_log()?.0 == 0 {
                break;
            }
        }
        Ok(())
    }

    /// [`forget`] from inside the running process: the runtime's caches (people, joins,
    /// indexes) are dropped too, so nothing erased is written back by a later commit.
    /// Call between steps (everything is committed then).
    pub fn forget(&mut self, person: &str) -> Result<crate::store::ForgetReport> {
        Ok(self.forget_many(&[person])?.remove(0))
    }

    /// [`forget_many`], with the runtime's caches dropped afterwards.
    pub fn forget_many(&mut self, people: &[&str]) -> Result<Vec<crate::store::ForgetReport>> {
        let r = forget_many(&self.store, people)?;
        // Entries read ahead may hold the erased person's payloads, decrypted.
        self.prefetched.clear();
        self.host.people.clear();
        self.host.state.evict_all();
        Ok(r)
    }

    fn count(&mut self, name: impl Into<String>, n: i64) {
        *self.counters.entry(name.into()).or_default() += n;
    }

    fn report(&mut self, key: CounterKey, n: i64) {
        if n != 0 {
            self.count(key.name(), n);
        }
    }

    /// One report count for the message `s` (its flow, step and arm), on the day of `at`.
    fn credit(&mut self, s: &state::SentRef, at: DateTime<Utc>, metric: Metric) {
        let k = CounterKey::new(at, &s.flow, Some(s.step), s.variant.as_deref(), metric);
        self.report(k, 1);
    }

    /// A message the provider refused for good, in the report's `failed` column.
    fn report_failed(&mut self, o: &OutboxEntry, msg: &Message) {
        let k = CounterKey::new(
            msg.at,
            &o.flow,
            Some(o.step),
            msg.variant.as_deref(),
            Metric::Failed,
        );
        self.report(k, 1);
    }

    /// A message as the outbox holds it, this batch's changes included.
    fn outbox_entry(&self, message_id: &str) -> Result<Option<OutboxEntry>> {
        let mut e = match self.outbox_at.get(message_id) {
            Some(&i) => Some(self.outbox[i].0.clone()),
            None => self.store.outbox(message_id)?,
        };
        if let (Some(e), Some(u)) = (e.as_mut(), self.outbox_updates.get(message_id)) {
            e.status = u.status;
            e.attempts = u.attempts;
            e.provider_id = u.provider_id.clone();
            e.error_code = u.error_code.clone();
        }
        Ok(e)
    }

    /// Turn a step's records into outbox entries, delivery-status changes and counters (the
    /// report's are named by `counters`). `currency` is the processed event's, for revenue.
    fn collect(&mut self, records: Vec<Record>, currency: Option<&str>) -> Result<()> {
        for r in records {
            match r.effect {
                Effect::Send(m) => {
                    self.count(format!("sends.{}", m.flow), 1);
                    self.host.state.set_last_sent(
                        &r.person,
                        SentRef {
                            message_id: m.message_id.clone(),
                            flow: m.flow.clone(),
                            step: m.step,
                            variant: m.variant.clone(),
                            at: m.at,
                        },
                    );
                    // An id the outbox already holds is never put again (it could reset a
                    // message the provider accepted to pending, and it would be sent twice):
                    // checked here within the batch, by the store's commit against the store.
                    if self.outbox_at.contains_key(&m.message_id) {
                        self.count("runtime.sends_already_in_outbox", 1);
                        continue;
                    }
                    let entry = OutboxEntry {
                        message_id: m.message_id.clone(),
                        person: r.person,
                        flow: m.flow.clone(),
                        step: m.step,
                        message: serde_json::to_vec(&m).expect("messages serialise"),
                        status: OutboxStatus::Pending,
                        attempts: 0,
                        provider_id: None,
                        error_code: None,
                    };
                    self.outbox_at
                        .insert(m.message_id.clone(), self.outbox.len());
                    self.outbox.push((entry, m));
                }
                Effect::Entered { flow, .. } => {
                    self.count(format!("entered.{flow}"), 1);
                    self.report(CounterKey::new(r.at, &flow, None, None, Metric::Entered), 1);
                }
                Effect::Exited { flow, reason, .. } => {
                    self.count(format!("exited.{flow}.{reason}"), 1)
                }
                Effect::Held { flow, .. } => self.count(format!("held.{flow}"), 1),
                Effect::Dropped { flow, .. } => self.count(format!("dropped.{flow}"), 1),
                Effect::Conversion {
                    flow,
                    step,
                    variant,
                    revenue,
                    ..
                } => {
                    self.count(format!("conversions.{flow}"), 1);
                    let at = r.at;
                    let v = variant.as_deref();
                    self.report(
                        CounterKey::new(at, &flow, Some(step), v, Metric::Conversions),
                        1,
                    );
                    if let Some(amount) = revenue.as_deref() {
                        match counters::to_e4(amount) {
                            Some(e4) => {
                                // ISO 4217 "XXX": no currency given with the amount.
                                let cur = currency.unwrap_or("XXX").to_ascii_uppercase();
                                let m = Metric::RevenueE4(cur);
                                self.report(CounterKey::new(at, &flow, Some(step), v, m), e4);
                            }
                            None => self.count("runtime.revenue_unreadable", 1),
                        }
                    }
                }
                Effect::DeliveryRecorded {
                    message_id,
                    status,
                    error_code,
                } => self.delivery(&message_id, &status, error_code)?,
                Effect::ClickRecorded { message_id } => match self.message_ref(&message_id)? {
                    Some(s) => self.credit(&s, r.at, Metric::Clicks),
                    None => self.count("runtime.clicks_unknown_message", 1),
                },
                Effect::ReplyRecorded { .. } => {
                    if let Some(s) = self.host.state.last_sent(&r.person) {
                        self.credit(&s, r.at, Metric::Replies);
                    }
                }
                Effect::ConsentChanged {
                    to: crate::engine::Consent::Unsubscribed,
                    ..
                } => {
                    if let Some(s) = self.host.state.last_sent(&r.person) {
                        self.credit(&s, r.at, Metric::OptOuts);
                    }
                }
                // The reason code is the text before `:` (`out_of_fuel: ...`), see
                // plugins::call_segment; the detail is on the person's timeline.
                Effect::PluginFailed { plugin, reason } => self.count(
                    format!(
                        "plugin_errors.{plugin}.{}",
                        reason.split(':').next().unwrap_or("")
                    ),
                    1,
                ),
                _ => {}
            }
            self.check()?;
        }
        Ok(())
    }

    /// Flow, step and arm of a message in the outbox.
    fn message_ref(&self, message_id: &str) -> Result<Option<SentRef>> {
        let Some(o) = self.outbox_entry(message_id)? else {
            return Ok(None);
        };
        let m = decode_message(&o)?;
        Ok(Some(SentRef {
            message_id: o.message_id,
            flow: o.flow,
            step: o.step,
            variant: m.variant,
            at: m.at,
        }))
    }

    /// A provider status callback (Twilio `MessageStatus`): `delivered`, `undelivered` and
    /// `failed` are final and change the outbox entry (with Twilio's `ErrorCode`); the
    /// intermediate ones (`queued`, `sending`, `sent`, ...) change nothing. A final status is
    /// not changed again (callbacks can arrive twice and out of order).
    fn delivery(
        &mut self,
        message_id: &str,
        status: &str,
        error_code: Option<String>,
    ) -> Result<()> {
        let (new, metric) = match status {
            "delivered" => (OutboxStatus::Delivered, Metric::Delivered),
            "undelivered" => (OutboxStatus::Undelivered, Metric::Undelivered),
            "failed" => (OutboxStatus::Failed, Metric::Failed),
            _ => return Ok(()),
        };
        let Some(o) = self.outbox_entry(message_id)? else {
            // Erased person, or a callback for a message this store never had.
            self.count("runtime.deliveries_unknown_message", 1);
            return Ok(());
        };
        if matches!(
            o.status,
            OutboxStatus::Delivered | OutboxStatus::Undelivered | OutboxStatus::Failed
        ) {
            return Ok(());
        }
        let m = decode_message(&o)?;
        self.report(
            CounterKey::new(m.at, &o.flow, Some(o.step), m.variant.as_deref(), metric),
            1,
        );
        if matches!(o.status, OutboxStatus::Pending | OutboxStatus::Sending) {
            // A callback proves the provider took it: count the send it never reported.
            self.count_sent(&o, &m);
        }
        self.outbox_updates.insert(
            message_id.to_string(),
            OutboxUpdate {
                message_id: message_id.to_string(),
                status: new,
                attempts: o.attempts,
                provider_id: o.provider_id,
                error_code,
            },
        );
        Ok(())
    }

    /// `sent` and `segments` for an accepted message, on the day the engine sent it.
    fn count_sent(&mut self, o: &OutboxEntry, m: &Message) {
        let v = m.variant.as_deref();
        self.report(
            CounterKey::new(m.at, &o.flow, Some(o.step), v, Metric::Sent),
            1,
        );
        self.report(
            CounterKey::new(m.at, &o.flow, Some(o.step), v, Metric::Segments),
            m.segments as i64,
        );
    }

    fn check(&mut self) -> Result<()> {
        match self.host.state.take_error() {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Fire timers due at or before `until` (each at its due time on the virtual clock, at
    /// `now` on the wall clock), at most `limit`.
    fn fire(&mut self, until: DateTime<Utc>, limit: usize) -> Result<usize> {
        let now = match self.opts.clock {
            Clock::Virtual => None,
            Clock::Wall => Some(Utc::now()),
        };
        let mut n = 0;
        while n < limit {
            let Some(records) = self.host.fire_next(until, now) else {
                break;
            };
            self.check()?;
            n += 1;
            self.collect(records, None)?;
        }
        self.check()?;
        if n > 0 {
            self.count("runtime.timers_fired", n as i64);
        }
        Ok(n)
    }

    /// The records of the people this batch changed, encoded (on two threads from 64 people),
    /// with the join indexes' records and, when `cursor` has moved far enough, the
    /// learned-state snapshot: the snapshot goes in the same atomic commit as the cursor it
    /// covers.
    fn encode_changed_people(&mut self, cursor: Option<Seq>) -> Vec<(String, Vec<u8>)> {
        let st = &mut self.host.state;
        let dirty: Vec<String> = std::mem::take(&mut st.dirty).into_iter().collect();
        let fresh: Vec<crate::engine::PersonState> = dirty
            .iter()
            .filter(|p| self.host.people.get(p).is_none() && !st.loaded.contains_key(*p))
            .map(|p| crate::engine::PersonState::new(p.as_str()))
            .collect();
        let no_joins = state::Joins::default();
        let mut fresh_iter = fresh.iter();
        let records: Vec<(&crate::engine::PersonState, &state::Joins)> = dirty
            .iter()
            .map(|p| {
                let state = match self.host.people.get(p).or_else(|| st.loaded.get(p)) {
                    Some(s) => s,
                    None => fresh_iter
                        .next()
                        .expect("one fresh state per person without one"),
                };
                (state, st.joins.get(p).unwrap_or(&no_joins))
            })
            .collect();
        let encoded = state::encode_records(&records);
        let mut people_put: Vec<(String, Vec<u8>)> = dirty.into_iter().zip(encoded).collect();
        people_put.extend(st.take_index_puts());
        if let Some(c) = cursor.filter(|c| *c >= self.snapshot_cursor + self.opts.snapshot_every) {
            people_put.push((
                state::LEARNED.to_string(),
                state::encode_learned(c, &self.host.data),
            ));
            self.snapshot_cursor = c;
        }
        people_put
    }

    /// Read the next batch's work while this one's commit is applied: after log entries, the
    /// next entries and the people they name (the store settles this read with the previous
    /// commit, and the engine can then step through them meanwhile); after a batch of timers
    /// (the log is drained), the people of the next timers due by its `until`, which the
    /// commit topped the timer read-ahead up to.
    fn read_ahead(&mut self, covers: Covers) -> std::result::Result<(), StoreError> {
        self.prefetched.clear();
        match covers {
            Covers::Log(c) => {
                let entries = self.store.read_log(c + 1, self.opts.batch)?;
                let named: Vec<String> = entries.iter().filter_map(|e| e.person.clone()).collect();
                self.warm_uncached(named);
                self.prefetched = entries;
            }
            Covers::Timers(until) => {
                let upcoming = self.host.state.upcoming_people(self.opts.batch, until);
                self.warm_uncached(upcoming);
            }
        }
        Ok(())
    }

    /// ONE atomic commit of everything this batch changed, handed to the store's apply thread
    /// (which applies and flushes it while the next batch runs); the batch is durable once a
    /// flush covers it (`flush`, which `dispatch` calls before sending). With
    /// [`Sending::Direct`], the batch's new messages are sent first and committed with their
    /// outcome (`send_direct`).
    fn commit(&mut self, covers: Covers, sending: Sending) -> Result<()> {
        let cursor = covers.cursor();
        // Nothing here reads the store, so this batch's engine work, encoding and sends
        // overlap the previous commit's apply; the store's `commit` waits for it only after
        // sealing. (A message id is not checked against the outbox here: the engine never
        // makes one twice, its person's `sent` set being committed with the outbox, and the
        // store keeps the first record of an id anyway.)
        let people_put = self.encode_changed_people(cursor);
        // The index served `collect` (in-batch duplicates, delivery updates); nothing after
        // this point reads it.
        self.outbox_at.clear();
        if let Sending::Direct(p) = sending {
            self.send_direct(p)?;
        }
        let st = &mut self.host.state;
        if let Covers::Timers(until) = covers {
            st.top_up_due(self.opts.batch, until);
        }
        let (added, removed) = st.take_timer_changes();
        let links_put = links_of(&self.outbox);
        let batch = CommitBatch {
            cursor,
            people_remove: Vec::new(),
            people_put,
            timers_remove: removed.iter().map(state::timer_of).collect(),
            timers_add: added.iter().map(state::timer_of).collect(),
            outbox_put: std::mem::take(&mut self.outbox)
                .into_iter()
                .map(|(o, _)| o)
                .collect(),
            outbox_update: std::mem::take(&mut self.outbox_updates)
                .into_values()
                .collect(),
            attribute: std::mem::take(&mut self.attribute),
            counters: std::mem::take(&mut self.counters).into_iter().collect(),
            links_put,
        };
        if batch.outbox_put.iter().any(|o| o.status.needs_dispatch())
            || batch
                .outbox_update
                .iter()
                .any(|u| u.status.needs_dispatch())
        {
            self.dispatch_clear = false;
        }
        if let Err(e) = self.read_ahead(covers) {
            return Err(self.abandon_batch(e));
        }
        // Not waited for here: the store's apply thread applies and flushes the batch while the
        // next one runs; the runtime waits (`flush`) before a dispatch round, when idle and on
        // stop. A crash before the flush loses the batch's effects AND its cursor together (one
        // atomic batch), so the restart derives them again from the log; messages already
        // handed to a provider directly are re-sent under the same ids, which such a provider
        // drops.
        if let Err(e) = self.store.commit(batch) {
            return Err(self.abandon_batch(e));
        }
        if cursor.is_some() {
            self.cursor = cursor;
        }
        if self.host.people.len() > CACHE_PEOPLE {
            self.host.people.clear();
            // The people just read ahead stay: this batch did not touch them (the read-ahead
            // skips whom the host holds), so their records are the store's, and dropping them
            // read them all again one by one in the next batch (~7% of the 200k firing).
            let warmed = std::mem::take(&mut self.warmed);
            self.host.state.evict_keeping(&warmed);
        }
        Ok(())
    }

    /// Read `people`'s records into the cache now, before a commit is handed over (a read while
    /// it is applied would wait for it); people the host holds are skipped: their state in
    /// memory is newer than their record until the commit is applied.
    fn warm_uncached(&mut self, mut people: Vec<String>) {
        people.retain(|p| self.host.people.get(p).is_none());
        self.host.state.warm_many(&people);
        self.warmed = people;
    }

    /// A commit failed: memory is ahead of the store, so every cache of it goes (the next
    /// batch reads the store again). Returns the error to pass on.
    fn abandon_batch(&mut self, e: StoreError) -> Error {
        self.host.state.evict_all();
        self.cursor = None;
        self.prefetched.clear();
        e.into()
    }

    /// Process up to one batch of log entries from the cursor, with the timers due before
    /// each. Returns (entries, timers fired).
    pub fn process_log(&mut self) -> Result<(usize, usize)> {
        self.process_log_with(Sending::AfterCommit)
    }

    /// [`Runtime::process_log`], the batch's new messages sent as `sending` says
    /// ([`Runtime::step`] uses [`Sending::for_provider`]).
    pub fn process_log_with(&mut self, sending: Sending) -> Result<(usize, usize)> {
        let cursor = match self.cursor {
            Some(c) => c,
            None => self.store.cursor()?,
        };
        let prefetched = std::mem::take(&mut self.prefetched);
        let entries = match prefetched.first() {
            Some(e) if e.seq == cursor + 1 => prefetched,
            // Nothing read ahead (or it was for another cursor): read now. An empty read-ahead
            // is read again too, so entries that arrived since are seen before timers fire,
            // unless the log ends at the cursor (`last_seq` needs no settled read).
            _ if self.store.last_seq()? <= cursor => Vec::new(),
            _ => self.store.read_log(cursor + 1, self.opts.batch)?,
        };
        if entries.is_empty() {
            return Ok((0, 0));
        }
        let mut fired = 0;
        let mut last = cursor;
        for e in &entries {
            last = e.seq;
            // Erased (forgotten) entries stay in the log, unreadable: skip them.
            let Some(payload) = &e.payload else {
                self.count("runtime.events_erased", 1);
                continue;
            };
            let env = match std::str::from_utf8(payload)
                .map_err(|e| e.to_string())
                .and_then(parse_line)
            {
                Ok(env) => env,
                Err(_) => {
                    self.count("runtime.events_refused", 1);
                    continue;
                }
            };
            // Timers fire up to the entry's arrival, never past it: on the wall clock a runtime
            // that is behind must still see a delivery that arrived before its wait's timeout
            // as in time (firing up to `now` first made the timeout win). Timers due after the
            // last arrival fire once the log is drained (`step`).
            let (until, now) = match self.opts.clock {
                Clock::Virtual => (env.at, env.at),
                Clock::Wall => {
                    let now = Utc::now();
                    (e.received_at.min(now), now)
                }
            };
            fired += self.fire(until, usize::MAX)?;
            self.host.state.last_owner = None;
            self.host.state.first_touched = None;
            match self.host.process(&env, now) {
                Ok(records) => {
                    self.check()?;
                    // Attribute the event to its person (so erasure finds it): the first person
                    // it reached, else the owner of the payload it filed for later joins.
                    let owner = self.host.state.last_owner.take();
                    let first = self.host.state.first_touched.take();
                    match (&e.person, first.or(owner)) {
                        (None, Some(p)) => self.attribute.push((e.seq, p)),
                        // `Envelope::named_person` promises the routing; a break of that
                        // promise would file the entry under the wrong person's key.
                        (Some(named), Some(p)) => debug_assert_eq!(
                            named, &p,
                            "seq {}: named {named}, routed to {p}",
                            e.seq
                        ),
                        _ => {}
                    }
                    self.count("runtime.events_processed", 1);
                    let currency = event_currency(&env);
                    self.collect(records, currency.as_deref())?;
                }
                Err(_) => {
                    self.check()?;
                    // The payload is valid JSON but the host cannot use it (unknown event
                    // type, bad fields): the simulator refuses it the same way.
                    self.count("runtime.events_refused", 1);
                }
            }
        }
        self.commit(Covers::Log(last), sending)?;
        Ok((entries.len(), fired))
    }

    /// Fire up to one batch of timers due at or before `until`, then commit.
    pub fn process_timers(&mut self, until: DateTime<Utc>) -> Result<usize> {
        self.process_timers_with(until, Sending::AfterCommit)
    }

    /// [`Runtime::process_timers`], the batch's new messages sent as `sending` says (as
    /// [`Runtime::process_log_with`]).
    pub fn process_timers_with(&mut self, until: DateTime<Utc>, sending: Sending) -> Result<usize> {
        let n = self.fire(until, self.opts.batch)?;
        if n > 0 {
            self.commit(Covers::Timers(until), sending)?;
        }
        Ok(n)
    }

    /// Send outbox messages through `provider` and mark them. Per round: in-doubt messages
    /// (`Sending`: a crash or timeout left the provider's answer unrecorded) are first looked up
    /// at the provider (found -> `Sent` with its id, never sent again); every message about to
    /// be sent is marked `Sending` in ONE commit + flush BEFORE any provider call (Twilio has no
    /// idempotency key, so this mark is what tells a restart to look before resending; skipped
    /// for providers that cannot be asked, `Provider::find_sent`); then the answers are
    /// committed and flushed. Returns (sent, failed).
    pub fn dispatch(&mut self, provider: &dyn Provider) -> Result<(usize, usize)> {
        let (mut sent, mut failed) = (0, 0);
        if self.dispatch_clear {
            return Ok((0, 0));
        }
        // What is sent must be durable first (the commits are not flushed one by one).
        self.store.flush()?;
        loop {
            let pending = self.store.pending(self.opts.dispatch_batch)?;
            if pending.is_empty() {
                self.dispatch_clear = true;
                break;
            }
            let mut retry_later = 0;
            let mut updates = Vec::new();
            let mut to_send = Vec::new();
            let finder = provider.find_sent();
            let mark = finder.is_some();
            for o in pending {
                let msg = decode_message(&o)?;
                // In doubt, and the provider can be asked (else it is sent again: a provider
                // that cannot be asked drops an id it already took).
                if let Some(finder) = finder.filter(|_| o.status == OutboxStatus::Sending) {
                    match finder.find(&msg) {
                        Ok(Lookup::Found(r)) => {
                            sent += 1;
                            self.count("runtime.in_doubt_found", 1);
                            self.count_sent(&o, &msg);
                            updates.push(OutboxUpdate {
                                message_id: o.message_id.clone(),
                                status: OutboxStatus::Sent,
                                attempts: o.attempts,
                                provider_id: r.provider_id,
                                error_code: None,
                            });
                            continue;
                        }
                        Ok(Lookup::NotFound) => self.count("runtime.in_doubt_not_found", 1),
                        Err(_) => {
                            // Still in doubt: never send blind; ask again next round.
                            retry_later += 1;
                            continue;
                        }
                    }
                }
                // Marked `sending` only where a restart could ask the provider about it
                // (`Provider::find_sent`); otherwise it is sent again either way.
                if mark {
                    updates.push(OutboxUpdate {
                        message_id: o.message_id.clone(),
                        status: OutboxStatus::Sending,
                        attempts: o.attempts,
                        provider_id: o.provider_id.clone(),
                        error_code: None,
                    });
                }
                to_send.push((o, msg));
            }
            if mark {
                self.commit_updates(std::mem::take(&mut updates))?;
            }
            for (o, msg) in &to_send {
                let (update, outcome) = self.send_one(provider, o, msg)?;
                match outcome {
                    Outcome::Sent => sent += 1,
                    Outcome::Failed => failed += 1,
                    Outcome::Retry => retry_later += 1,
                }
                updates.push(update);
            }
            self.commit_updates(updates)?;
            if retry_later > 0 {
                // Leave retryable messages for the next round rather than spinning on them.
                break;
            }
        }
        Ok((sent, failed))
    }

    /// Send one message through `provider` and say what became of it: the status update to
    /// record, and whether it was sent, failed for good, or is to be retried. Shared by the
    /// dispatch rounds and the direct send of a batch's new messages.
    fn send_one(
        &mut self,
        provider: &dyn Provider,
        o: &OutboxEntry,
        msg: &Message,
    ) -> Result<(OutboxUpdate, Outcome)> {
        let attempts = o.attempts + 1;
        let update = |status, provider_id, error_code| OutboxUpdate {
            message_id: o.message_id.clone(),
            status,
            attempts,
            provider_id,
            error_code,
        };
        let result = if self.opted_out.contains(&msg.to) {
            Err(ProviderError {
                code: Some("21610".into()),
                ..ProviderError::fatal("the recipient opted out of this sender (21610)")
            })
        } else {
            provider.send(msg)
        };
        Ok(match result {
            Ok(r) => {
                self.count_sent(o, msg);
                (
                    update(OutboxStatus::Sent, r.provider_id, None),
                    Outcome::Sent,
                )
            }
            Err(e) if e.opted_out => {
                // Twilio 21610: the recipient opted out of this sender. The opt-out goes
                // through the log (durable before the message is marked), so consent stays
                // derived from the log and the engine cancels their marketing.
                self.record_provider_opt_out(o, msg, &e)?;
                self.opted_out.insert(msg.to.clone());
                self.report_failed(o, msg);
                (update(OutboxStatus::Failed, None, e.code), Outcome::Failed)
            }
            Err(e) if e.retryable && attempts < self.opts.max_attempts => {
                // A request that may have reached the provider stays in doubt.
                let status = if e.in_doubt {
                    OutboxStatus::Sending
                } else {
                    OutboxStatus::Pending
                };
                (update(status, None, e.code), Outcome::Retry)
            }
            Err(e) => {
                self.report_failed(o, msg);
                (update(OutboxStatus::Failed, None, e.code), Outcome::Failed)
            }
        })
    }

    /// Send this batch's new messages BEFORE its commit, through a provider that takes the
    /// message id as its idempotency key (one that cannot be asked about a message,
    /// [`Provider::find_sent`] is `None`, must drop an id it already took: the trait's
    /// contract). Each message is then put in the outbox already `sent` (or `failed`, or
    /// `pending` for a retry) in the same commit, instead of `pending` + a queue entry, then a
    /// second commit with the status and the queue entry's removal: three sled writes fewer per
    /// message. A crash between the send and the commit replays the batch from the log, which
    /// makes the same messages with the same ids, and the provider drops the repeats: the
    /// at-least-once-with-stable-ids argument of the dispatch rounds, unchanged.
    fn send_direct(&mut self, provider: &dyn Provider) -> Result<()> {
        // Taken out while `send_one` borrows the runtime, and put back on error too.
        let mut outbox = std::mem::take(&mut self.outbox);
        let mut result = Ok(());
        for (o, msg) in outbox
            .iter_mut()
            .filter(|(o, _)| o.status == OutboxStatus::Pending)
        {
            let (u, outcome) = match self.send_one(provider, o, msg) {
                Ok(r) => r,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            match outcome {
                Outcome::Sent => self.direct.sent += 1,
                Outcome::Failed => self.direct.failed += 1,
                Outcome::Retry => {}
            }
            o.status = u.status;
            o.attempts = u.attempts;
            o.provider_id = u.provider_id;
            o.error_code = u.error_code;
        }
        self.outbox = outbox;
        result
    }

    /// One commit + flush of outbox status updates with the counters gathered so far.
    fn commit_updates(&mut self, outbox_update: Vec<OutboxUpdate>) -> Result<()> {
        self.store.commit(CommitBatch {
            outbox_update,
            counters: std::mem::take(&mut self.counters).into_iter().collect(),
            ..CommitBatch::default()
        })?;
        Ok(self.store.flush()?)
    }

    /// Append (and flush) an aftercart `message.failed` event with the provider's error code for
    /// the person: processing it runs the engine's provider-error path (Twilio 21610 ->
    /// unsubscribed, marketing cancelled). Its id is derived from the message id, so a second
    /// attempt after a crash is a duplicate.
    fn record_provider_opt_out(
        &mut self,
        o: &OutboxEntry,
        msg: &Message,
        e: &ProviderError,
    ) -> Result<()> {
        let at = match self.opts.clock {
            Clock::Virtual => msg.at,
            Clock::Wall => Utc::now(),
        };
        let code = e.code.clone().unwrap_or_else(|| "21610".into());
        let id = format!("provider-{code}:{}", o.message_id);
        let line = serde_json::json!({
            "source": "aftercart",
            "type": "message.failed",
            "at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "id": id,
            "data": {
                "person": o.person,
                "message_id": o.message_id,
                "status": "failed",
                "error_code": code,
            },
        })
        .to_string();
        let env = parse_line(&line).map_err(Error::Other)?;
        self.store.append(&[NewEvent {
            received_at: at,
            source: source_label(&env).to_string(),
            source_id: env.source_id(),
            person: Some(o.person.clone()),
            payload: line.into_bytes(),
        }])?;
        self.store.flush()?;
        self.count("runtime.provider_opt_outs", 1);
        Ok(())
    }

    /// The instant the virtual clock stops: the last log entry's time plus the horizon.
    fn horizon(&mut self) -> Result<Option<DateTime<Utc>>> {
        let last = self.store.last_seq()?;
        if last == 0 {
            return Ok(None);
        }
        // Kept per last seq: a log read would wait for the commit being applied.
        if let Some((seq, h)) = self.horizon_at {
            if seq == last {
                return Ok(h);
            }
        }
        let e = self.store.read_log(last, 1)?;
        let h = e
            .first()
            .map(|e| e.received_at + Duration::days(HORIZON_DAYS));
        self.horizon_at = Some((last, h));
        Ok(h)
    }

    /// One round: a batch of the log (or, when the log is processed, a batch of due timers:
    /// by the wall clock, or up to the horizon on the virtual clock), then dispatch.
    pub fn step(&mut self, provider: &dyn Provider) -> Result<Progress> {
        // A provider that cannot be asked about a message drops an id it already took, so a
        // batch's new messages go to it before the commit (`send_direct`).
        let sending = Sending::for_provider(provider);
        let (entries, mut timers) = self.process_log_with(sending)?;
        if entries == 0 {
            let until = match self.opts.clock {
                Clock::Wall => Some(Utc::now()),
                Clock::Virtual => self.horizon()?,
            };
            if let Some(until) = until {
                timers += self.process_timers_with(until, sending)?;
            }
        }
        let (sent, failed) = self.dispatch(provider)?;
        let direct = std::mem::take(&mut self.direct);
        let p = Progress {
            entries,
            timers,
            sent: sent + direct.sent,
            failed: failed + direct.failed,
        };
        if p.idle() {
            // Everything committed is durable before the runtime waits or returns.
            self.flush()?;
        }
        Ok(p)
    }

    /// Make every commit so far durable (commits are not flushed one by one; see `commit`).
    pub fn flush(&self) -> Result<()> {
        Ok(self.store.flush()?)
    }

    /// Run until the log is processed, no timer is left before the horizon (virtual clock)
    /// and the outbox is empty, or until `stop` is set (finishing the current batch).
    pub fn run_until_idle(
        &mut self,
        provider: &dyn Provider,
        stop: &AtomicBool,
    ) -> Result<Progress> {
        let mut total = Progress::default();
        while !stop.load(Ordering::SeqCst) {
            let p = self.step(provider)?;
            total.entries += p.entries;
            total.timers += p.timers;
            total.sent += p.sent;
            total.failed += p.failed;
            if p.idle() {
                break;
            }
        }
        self.flush()?;
        Ok(total)
    }

    /// The daemon: process, fire, dispatch; sleep briefly when idle; return when `stop` is
    /// set (after finishing the current batch).
    pub fn run_forever(
        &mut self,
        provider: &dyn Provider,
        stop: &AtomicBool,
        idle_sleep: std::time::Duration,
        on_progress: &mut dyn FnMut(&Progress),
    ) -> Result<()> {
        while !stop.load(Ordering::SeqCst) {
            let p = self.step(provider)?;
            if p.idle() {
                let until = std::time::Instant::now() + idle_sleep;
                while std::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            } else {
                on_progress(&p);
            }
        }
        self.flush()
    }

    /// When the next timer is due (for status lines).
    pub fn next_due(&mut self) -> Option<DateTime<Utc>> {
        self.host.state.next_due()
    }
}

/// The engine's message inside an outbox entry.
fn decode_message(o: &OutboxEntry) -> Result<Message> {
    serde_json::from_slice(&o.message).map_err(|e| {
        Error::Store(StoreError::Corrupt {
            what: format!("outbox message {}", o.message_id),
            detail: e.to_string(),
        })
    })
}

/// The currency of an event's money (Shopify orders carry `currency`; `presentment_currency`
/// is the buyer's, `currency` the shop's, and the shop's is what revenue reports add up).
fn event_currency(env: &Envelope) -> Option<String> {
    let body = match &env.payload {
        crate::host::Payload::Shopify { body, .. } => body,
        crate::host::Payload::Aftercart { data, .. } => data,
    };
    ["currency", "presentment_currency"]
        .iter()
        .find_map(|k| body.get(*k).and_then(|v| v.as_str()))
        .filter(|c| c.len() == 3 && c.chars().all(|ch| ch.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase())
}

/// What a batch processed, as its commit needs it: log entries up to a seq (the cursor it
/// moves to, and the next entries to read ahead), or the timers due by an instant (the next
/// batch's timers to read ahead).
#[derive(Clone, Copy)]
enum Covers {
    Log(Seq),
    Timers(DateTime<Utc>),
}

impl Covers {
    fn cursor(self) -> Option<Seq> {
        match self {
            Covers::Log(c) => Some(c),
            Covers::Timers(_) => None,
        }
    }
}

/// The tracked links of the messages about to be committed, for the store's link family
/// (`GET /l/{code}` of the webhook server): written in the same commit as the outbox entry.
fn links_of(outbox: &[(OutboxEntry, Message)]) -> Vec<crate::store::LinkEntry> {
    outbox
        .iter()
        .flat_map(|(o, m)| {
            m.links.iter().map(|l| crate::store::LinkEntry {
                code: l.code.clone(),
                url: l.url.clone(),
                message_id: o.message_id.clone(),
                person: o.person.clone(),
            })
        })
        .collect()
}

// ----------------------------------------------------------------- privacy: forget, export

/// Erase a person (Shopify `customers/redact`): the runtime's index records that point to
/// them (order ids, phones: keyed hashes whose value is their person id) and everything the
/// store holds on them, in one erasure (one scan of the store for all of them). Durable on
/// return. The edges issue's HTTP handler calls this.
pub fn forget(store: &Arc<dyn Store>, person: &str) -> Result<crate::store::ForgetReport> {
    Ok(forget_many(store, &[person])?.remove(0))
}

/// [`forget`] for several people in one erasure (one scan of each of the store's families for
/// all of them: the store keeps no index by person), one report each in order. Shopify's
/// `shop/redact` erases everyone.
pub fn forget_many(
    store: &Arc<dyn Store>,
    people: &[&str],
) -> Result<Vec<crate::store::ForgetReport>> {
    let mut doomed = Vec::new();
    // One state for all: it reads the index key once.
    let mut st = StoreState::new(store.clone());
    for &person in people {
        if state::is_index(person) {
            return Err(Error::Other(format!("`{person}` is not a person")));
        }
        let Some(b) = store.person(person)? else {
            continue;
        };
        let rec = state::decode_record(person, &b)?;
        let mut subjects = Vec::new();
        for o in rec.joins.orders.keys() {
            subjects.extend(st.index_subject("o", o));
        }
        for p in &rec.joins.phones {
            subjects.extend(st.index_subject("p", p));
        }
        if let Some(e) = st.take_error() {
            return Err(e.into());
        }
        for s in subjects {
            // Only an index that still points to this person (a recycled phone number may
            // belong to someone else by now).
            if store.person(&s)?.as_deref() == Some(person.as_bytes()) {
                doomed.push(s);
            }
        }
    }
    let mut names: Vec<&str> = people.to_vec();
    names.extend(doomed.iter().map(String::as_str));
    let mut reports = store.forget_many(&names)?;
    reports.truncate(people.len());
    Ok(reports)
}

/// Everything held on a person, decrypted (Shopify `customers/data_request`).
pub fn export(store: &dyn Store, person: &str) -> Result<serde_json::Value> {
    if state::is_index(person) {
        return Err(Error::Other(format!("`{person}` is not a person")));
    }
    let mut out = store.export(person)?;
    // The store exports bytes it cannot read as text; the person record is the runtime's
    // (compressed) format, so it is decoded here to the JSON it holds.
    if let Some(b) = store.person(person)? {
        let rec = state::decode_record(person, &b)?;
        out["state"] = serde_json::to_value(&rec).map_err(|e| Error::Other(e.to_string()))?;
    }
    Ok(out)
}
