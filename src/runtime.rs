//! The durable runtime: the engine hosted over the store. It ingests input lines into the log
//! (de-duplicated, group-committed), processes the log from the store's cursor in batches —
//! timers due before each entry first, then the entry — commits each batch's effects as ONE
//! atomic store commit followed by ONE flush, and dispatches the outbox through a provider. A
//! `kill -9` at any instant loses no acknowledged event and sends no message twice: the log and
//! the batch commit are atomic, message ids are stable, and the provider de-duplicates by id.
//! The commit protocol and what lives where are in docs/storage.md ("Runtime").

pub mod deploy;
pub mod inspect;
pub mod provider;
pub mod state;

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

pub use provider::{FileProvider, Provider, ProviderError, ProviderReceipt, StdoutProvider};
pub use state::{PersonRecord, StoreState};

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
    /// Log entries (and, separately, timers) per commit.
    pub batch: usize,
    /// Messages per dispatch round.
    pub dispatch_batch: usize,
    /// A provider error on the same message this many times marks it failed.
    pub max_attempts: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Clock::Virtual,
            batch: 256,
            dispatch_batch: 256,
            max_attempts: 5,
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
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(env) => lines.push((i + 1, env, line)),
            Err(reason) => report.refused.push(Refused {
                line: i + 1,
                reason,
            }),
        }
    }
    lines.sort_by_key(|(_, env, _)| env.at);
    let total = lines.len();
    for (g, group) in lines.chunks(INGEST_GROUP).enumerate() {
        let events: Vec<NewEvent> = group
            .iter()
            .map(|(_, env, line)| NewEvent {
                received_at: env.at,
                source: source_label(env).to_string(),
                source_id: env.source_id(),
                // Routing needs the join tables: the runtime attributes the event when it
                // processes it (CommitBatch::attribute), so erasure finds it.
                person: None,
                payload: line.as_bytes().to_vec(),
            })
            .collect();
        let results = store.append(&events)?;
        store.flush()?;
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

pub struct Runtime {
    store: Arc<dyn Store>,
    host: Host<StoreState>,
    opts: Options,
    /// The pending commit's outbox puts, attributions and counters.
    outbox: Vec<OutboxEntry>,
    attribute: Vec<(Seq, String)>,
    counters: BTreeMap<String, i64>,
}

/// Open the store in `dir`, creating a new one atomically: `SledStore::open` creates a missing
/// directory in several steps (keys file, database, meta), and a kill between them leaves a
/// directory that is neither empty nor a store, which it rightly refuses forever after. So a
/// new store is built in `DIR.creating` and renamed into place (a leftover from a killed
/// creation is removed first): `dir` is either absent or a complete store.
pub fn open_store(dir: &std::path::Path) -> Result<crate::store::SledStore> {
    if !dir.exists() {
        let mut tmp = dir.as_os_str().to_owned();
        tmp.push(".creating");
        let tmp = std::path::PathBuf::from(tmp);
        let io =
            |e: std::io::Error| Error::Store(StoreError::Io(format!("{}: {e}", tmp.display())));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io)?;
        }
        drop(crate::store::open(&tmp)?);
        std::fs::rename(&tmp, dir).map_err(io)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
        }
    }
    Ok(crate::store::open(dir)?)
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
fn learn_from_log<S: HostState>(store: &dyn Store, host: &mut Host<S>) -> Result<()> {
    let cursor = store.cursor()?;
    let mut from = 1;
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
    Ok(())
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
        learn_from_log(&*store, &mut host)?;
        Ok(Runtime {
            host,
            store,
            opts,
            outbox: Vec::new(),
            attribute: Vec::new(),
            counters: BTreeMap::new(),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn count(&mut self, name: impl Into<String>, n: i64) {
        *self.counters.entry(name.into()).or_default() += n;
    }

    /// Turn a step's records into outbox entries and counters.
    fn collect(&mut self, records: Vec<Record>) {
        for r in records {
            match r.effect {
                Effect::Send(m) => {
                    self.count(format!("sends.{}", m.flow), 1);
                    self.outbox.push(OutboxEntry {
                        message_id: m.message_id.clone(),
                        person: r.person,
                        flow: m.flow.clone(),
                        step: m.step,
                        message: serde_json::to_vec(&m).expect("messages serialise"),
                        status: OutboxStatus::Pending,
                        attempts: 0,
                        provider_id: None,
                    });
                }
                Effect::Entered { flow, .. } => self.count(format!("entered.{flow}"), 1),
                Effect::Exited { flow, reason, .. } => {
                    self.count(format!("exited.{flow}.{reason}"), 1)
                }
                Effect::Held { flow, .. } => self.count(format!("held.{flow}"), 1),
                Effect::Dropped { flow, .. } => self.count(format!("dropped.{flow}"), 1),
                Effect::Conversion { flow, .. } => self.count(format!("conversions.{flow}"), 1),
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
        }
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
            self.collect(records);
        }
        self.check()?;
        if n > 0 {
            self.count("runtime.timers_fired", n as i64);
        }
        Ok(n)
    }

    /// ONE atomic commit of everything this batch changed, then ONE flush: only then is the
    /// batch durable (and its messages may be dispatched).
    fn commit(&mut self, cursor: Option<Seq>) -> Result<()> {
        let st = &mut self.host.state;
        let mut people_put = Vec::new();
        for p in std::mem::take(&mut st.dirty) {
            let state = match self.host.people.get(&p) {
                Some(s) => s.clone(),
                None => st
                    .loaded
                    .get(&p)
                    .cloned()
                    .unwrap_or_else(|| crate::engine::PersonState::new(p.as_str())),
            };
            let rec = PersonRecord {
                state,
                joins: st.joins.get(&p).cloned().unwrap_or_default(),
            };
            people_put.push((p, serde_json::to_vec(&rec).expect("records serialise")));
        }
        people_put.extend(st.take_index_puts());
        let batch = CommitBatch {
            cursor,
            people_remove: Vec::new(),
            people_put,
            timers_remove: std::mem::take(&mut st.removed)
                .iter()
                .map(state::timer_of)
                .collect(),
            timers_add: std::mem::take(&mut st.added)
                .iter()
                .map(state::timer_of)
                .collect(),
            outbox_put: std::mem::take(&mut self.outbox),
            outbox_update: Vec::new(),
            attribute: std::mem::take(&mut self.attribute),
            counters: std::mem::take(&mut self.counters).into_iter().collect(),
        };
        self.store.commit(batch)?;
        self.store.flush()?;
        if self.host.people.len() > CACHE_PEOPLE {
            self.host.people.clear();
            self.host.state.evict();
        }
        Ok(())
    }

    /// Process up to one batch of log entries from the cursor, with the timers due before
    /// each. Returns (entries, timers fired).
    pub fn process_log(&mut self) -> Result<(usize, usize)> {
        let cursor = self.store.cursor()?;
        let entries = self.store.read_log(cursor + 1, self.opts.batch)?;
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
            let now = match self.opts.clock {
                Clock::Virtual => env.at,
                Clock::Wall => Utc::now(),
            };
            fired += self.fire(now, usize::MAX)?;
            self.host.state.last_owner = None;
            self.host.state.first_touched = None;
            match self.host.process(&env, now) {
                Ok(records) => {
                    self.check()?;
                    // Attribute the event to its person (so erasure finds it): the first person
                    // it reached, else the owner of the payload it filed for later joins.
                    let owner = self.host.state.last_owner.take();
                    let first = self.host.state.first_touched.take();
                    if e.person.is_none() {
                        let p = first.or(owner);
                        if let Some(p) = p {
                            self.attribute.push((e.seq, p));
                        }
                    }
                    self.count("runtime.events_processed", 1);
                    self.collect(records);
                }
                Err(_) => {
                    self.check()?;
                    // The payload is valid JSON but the host cannot use it (unknown event
                    // type, bad fields): the simulator refuses it the same way.
                    self.count("runtime.events_refused", 1);
                }
            }
        }
        self.commit(Some(last))?;
        Ok((entries.len(), fired))
    }

    /// Fire up to one batch of timers due at or before `until`, then commit.
    pub fn process_timers(&mut self, until: DateTime<Utc>) -> Result<usize> {
        let n = self.fire(until, self.opts.batch)?;
        if n > 0 {
            self.commit(None)?;
        }
        Ok(n)
    }

    /// Send pending outbox messages through `provider` and mark them (one commit + flush per
    /// round). Returns (sent, failed).
    pub fn dispatch(&mut self, provider: &dyn Provider) -> Result<(usize, usize)> {
        let (mut sent, mut failed) = (0, 0);
        loop {
            let pending = self.store.pending(self.opts.dispatch_batch)?;
            if pending.is_empty() {
                break;
            }
            let mut updates = Vec::new();
            let mut retry_later = 0;
            for o in &pending {
                let msg: Message = match serde_json::from_slice(&o.message) {
                    Ok(m) => m,
                    Err(e) => {
                        return Err(Error::Store(StoreError::Corrupt {
                            what: format!("outbox message {}", o.message_id),
                            detail: e.to_string(),
                        }))
                    }
                };
                let attempts = o.attempts + 1;
                match provider.send(&msg) {
                    Ok(r) => {
                        sent += 1;
                        updates.push(OutboxUpdate {
                            message_id: o.message_id.clone(),
                            status: OutboxStatus::Sent,
                            attempts,
                            provider_id: r.provider_id,
                        });
                    }
                    Err(e) if e.retryable && attempts < self.opts.max_attempts => {
                        retry_later += 1;
                        updates.push(OutboxUpdate {
                            message_id: o.message_id.clone(),
                            status: OutboxStatus::Pending,
                            attempts,
                            provider_id: None,
                        });
                    }
                    Err(_) => {
                        failed += 1;
                        updates.push(OutboxUpdate {
                            message_id: o.message_id.clone(),
                            status: OutboxStatus::Failed,
                            attempts,
                            provider_id: None,
                        });
                    }
                }
            }
            self.store.commit(CommitBatch {
                outbox_update: updates,
                ..CommitBatch::default()
            })?;
            self.store.flush()?;
            if retry_later > 0 {
                // Leave retryable messages for the next round rather than spinning on them.
                break;
            }
        }
        Ok((sent, failed))
    }

    /// The instant the virtual clock stops: the last log entry's time plus the horizon.
    fn horizon(&self) -> Result<Option<DateTime<Utc>>> {
        let last = self.store.last_seq()?;
        if last == 0 {
            return Ok(None);
        }
        let e = self.store.read_log(last, 1)?;
        Ok(e.first()
            .map(|e| e.received_at + Duration::days(HORIZON_DAYS)))
    }

    /// One round: a batch of the log (or, when the log is processed, a batch of due timers:
    /// by the wall clock, or up to the horizon on the virtual clock), then dispatch.
    pub fn step(&mut self, provider: &dyn Provider) -> Result<Progress> {
        let (entries, mut timers) = self.process_log()?;
        if entries == 0 {
            let until = match self.opts.clock {
                Clock::Wall => Some(Utc::now()),
                Clock::Virtual => self.horizon()?,
            };
            if let Some(until) = until {
                timers += self.process_timers(until)?;
            }
        }
        let (sent, failed) = self.dispatch(provider)?;
        Ok(Progress {
            entries,
            timers,
            sent,
            failed,
        })
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
        Ok(())
    }

    /// When the next timer is due (for status lines).
    pub fn next_due(&mut self) -> Option<DateTime<Utc>> {
        self.host.state.next_due()
    }
}

// ----------------------------------------------------------------- privacy: forget, export

/// Erase a person (Shopify `customers/redact`): first the runtime's index records that point
/// to them (order ids, phones: keyed hashes whose value is their person id), then everything
/// the store holds on them. Durable on return. The edges issue's HTTP handler calls this.
pub fn forget(store: &Arc<dyn Store>, person: &str) -> Result<crate::store::ForgetReport> {
    if state::is_index(person) {
        return Err(Error::Other(format!("`{person}` is not a person")));
    }
    if let Some(b) = store.person(person)? {
        let rec = state::decode_record(person, &b)?;
        let mut st = StoreState::new(store.clone());
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
                store.forget(&s)?;
            }
        }
    }
    Ok(store.forget(person)?)
}

/// Everything held on a person, decrypted (Shopify `customers/data_request`).
pub fn export(store: &dyn Store, person: &str) -> Result<serde_json::Value> {
    if state::is_index(person) {
        return Err(Error::Other(format!("`{person}` is not a person")));
    }
    Ok(store.export(person)?)
}
