//! The storage layer: the durable event log, people's state, timers, the outbox, deployed
//! program versions and counters, behind the [`Store`] trait. This module and its children are
//! the only code that names sled; the runtime sees the trait.
//!
//! The design (key layout, commit protocol, recovery, erasure, compaction, corruption) is in
//! `docs/storage.md`. In short: the log is the truth; every write is ONE single-tree sled
//! `Batch` (atomic); nothing is durable until [`Store::flush`] returns, and one flush covers any
//! number of appends and commits (group commit); personal values are sealed with per-person keys
//! kept outside sled so that [`Store::forget`] can make every old copy unreadable.

mod applier;
pub mod baseline;
mod codec;
mod keys;
mod layout;
mod mem;
mod sled_store;
mod slots;

pub use mem::MemStore;
pub use sled_store::{CheckpointStats, Integrity, OpenOptions, SledStore};

use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::fmt;

/// Position in the event log. The first event gets 1; cursor 0 means "nothing processed".
pub type Seq = u64;

/// The on-disk schema this code reads and writes. Bump it with a migration or a refusal.
pub const SCHEMA_VERSION: u32 = 1;

/// Written into the meta record; a directory whose meta lacks it is not ours.
pub const MAGIC: &str = "aftercart-store";

/// An event to append. `source_id` is the de-duplication id: Shopify's `X-Shopify-Event-Id`,
/// else `X-Shopify-Webhook-Id`, else a custom id; it is unique within `source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub received_at: DateTime<Utc>,
    /// A short non-personal label: `shopify`, `twilio`, `custom`, ...
    pub source: String,
    pub source_id: String,
    /// The person the event is about, if known at ingest. Unknown events are sealed with a key
    /// of their own until [`CommitBatch::attribute`] moves them to a person.
    pub person: Option<String>,
    /// The event body (normalised JSON, usually). Sealed; the store never parses it.
    pub payload: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResult {
    Accepted(Seq),
    /// Already in the log under this seq: nothing was written.
    Duplicate(Seq),
}

impl AppendResult {
    pub fn seq(self) -> Seq {
        match self {
            AppendResult::Accepted(s) | AppendResult::Duplicate(s) => s,
        }
    }
}

/// One log entry as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: Seq,
    pub received_at: DateTime<Utc>,
    pub source: String,
    /// `None` once erased (the person was forgotten).
    pub source_id: Option<String>,
    /// `None` when unknown (not yet attributed) or erased.
    pub person: Option<String>,
    /// `None` once erased: the record stays (the log's seqs stay contiguous), unreadable.
    pub payload: Option<Vec<u8>>,
}

/// A timer. `due` is stored at millisecond precision.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub due: DateTime<Utc>,
    pub person: String,
    pub instance: String,
    pub step: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OutboxStatus {
    Pending,
    Sent,
    Delivered,
    Failed,
    /// Handed to the provider, answer not yet recorded (in doubt after a crash). Committed and
    /// flushed BEFORE the provider call: Twilio has no idempotency key, so the runtime must know
    /// which messages to look up at the provider before sending them again.
    Sending,
    /// The carrier could not deliver it (Twilio `undelivered`).
    Undelivered,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Pending => "pending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Delivered => "delivered",
            OutboxStatus::Failed => "failed",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Undelivered => "undelivered",
        }
    }
    /// Still needs dispatch work: never sent (`Pending`) or in doubt (`Sending`). Both are in
    /// the pending index, so [`Store::pending`] returns both.
    pub fn needs_dispatch(self) -> bool {
        matches!(self, OutboxStatus::Pending | OutboxStatus::Sending)
    }
    /// The provider took it (whatever happened after).
    pub fn accepted(self) -> bool {
        matches!(
            self,
            OutboxStatus::Sent | OutboxStatus::Delivered | OutboxStatus::Undelivered
        )
    }
    pub(crate) fn code(self) -> u8 {
        self as u8
    }
    pub(crate) fn from_code(c: u8) -> Option<OutboxStatus> {
        Some(match c {
            0 => OutboxStatus::Pending,
            1 => OutboxStatus::Sent,
            2 => OutboxStatus::Delivered,
            3 => OutboxStatus::Failed,
            4 => OutboxStatus::Sending,
            5 => OutboxStatus::Undelivered,
            _ => return None,
        })
    }
}

/// A message to send (or sent). `message_id` must carry no personal data (the engine's are
/// hashes): it is a plaintext key, so that provider callbacks can find the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub message_id: String,
    pub person: String,
    pub flow: String,
    pub step: u32,
    /// The engine's message as JSON (it holds the phone number and body: sealed).
    pub message: Vec<u8>,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub provider_id: Option<String>,
    /// The provider's error code for a failed or undelivered message (Twilio `ErrorCode`).
    pub error_code: Option<String>,
}

/// A status change for a message already in the outbox (the store keeps the sealed message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxUpdate {
    pub message_id: String,
    pub status: OutboxStatus,
    pub attempts: u32,
    pub provider_id: Option<String>,
    pub error_code: Option<String>,
}

/// The effects of processing a group of inputs: applied as ONE atomic batch by
/// [`Store::commit`] (all of it or none of it survives a crash), durable after the next
/// [`Store::flush`]. Applied in field order, so a timer removed and re-added in one commit stays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitBatch {
    /// The last log seq whose processing these effects complete.
    pub cursor: Option<Seq>,
    pub people_remove: Vec<String>,
    /// Person -> opaque state bytes (the engine's `PersonState`, serialised by the caller).
    pub people_put: Vec<(String, Vec<u8>)>,
    pub timers_remove: Vec<Timer>,
    pub timers_add: Vec<Timer>,
    pub outbox_put: Vec<OutboxEntry>,
    pub outbox_update: Vec<OutboxUpdate>,
    /// Log entries whose person became known (e.g. a fulfillment joined to its order's
    /// customer): re-sealed under that person's key; the event's own key is dropped.
    pub attribute: Vec<(Seq, String)>,
    /// Counter deltas (`entered.{flow}`, `clicks.{flow}`...): never personal.
    pub counters: Vec<(String, i64)>,
    /// Tracked short links of the messages in `outbox_put` (same commit, so a link exists
    /// exactly when its message does). Applied after the outbox.
    pub links_put: Vec<LinkEntry>,
}

/// A tracked short link (`GET /l/{code}` of the webhook server): the code is the engine's
/// `link_code(message_id, url)`, a hash, so it is a plaintext key; the target URL may be
/// personal (a recovery link) and is sealed under the person's key, dropped by `forget`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkEntry {
    pub code: String,
    pub url: String,
    pub message_id: String,
    pub person: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ForgetReport {
    /// Whether the store held anything on the person.
    pub found: bool,
    pub events: u64,
    pub timers: u64,
    pub messages: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub dropped: u64,
    /// The first seq still in the log (`last + 1` when the log is now empty).
    pub first_seq: Seq,
}

/// Everything that can go wrong in the store. Corruption always says what and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    Io(String),
    /// A record failed its checksum or could not be decoded, or the log is not contiguous.
    Corrupt {
        what: String,
        detail: String,
    },
    /// The directory holds something that is not an aftercart store (never started empty).
    NotAStore {
        dir: String,
        reason: String,
    },
    SchemaMismatch {
        dir: String,
        found: u32,
        supported: u32,
    },
    /// The caller asked for something impossible (unknown message id, seq not in the log).
    Invalid(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Io(m) => write!(f, "store I/O error: {m}"),
            StoreError::Corrupt { what, detail } => write!(
                f,
                "store corruption detected in {what}: {detail}; the data directory needs \
                 repair or restore from backup (aftercart never starts empty over it)"
            ),
            StoreError::NotAStore { dir, reason } => {
                write!(
                    f,
                    "{dir} is not an aftercart store: {reason}; refusing to open it"
                )
            }
            StoreError::SchemaMismatch {
                dir,
                found,
                supported,
            } => write!(
                f,
                "{dir} holds store schema version {found}, but this aftercart reads schema \
                 version {supported}; use a matching aftercart release or migrate the store"
            ),
            StoreError::Invalid(m) => write!(f, "invalid store request: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        match e {
            sled::Error::Corruption { at, bt: _ } => StoreError::Corrupt {
                what: "sled database".into(),
                detail: format!("sled reports corruption at {at:?}"),
            },
            e => StoreError::Io(format!("sled: {e}")),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// The storage the runtime uses. Writes are serialised inside the store (one writer at a time);
/// reads may run concurrently. Nothing is acknowledged durable until `flush` returns.
pub trait Store: Send + Sync {
    /// Append events in one atomic batch, de-duplicating on (source, source_id), also within
    /// the slice. Not durable until [`Store::flush`].
    fn append(&self, events: &[NewEvent]) -> Result<Vec<AppendResult>>;
    /// Apply the effects of processing as one atomic batch. Not durable until `flush`.
    fn commit(&self, batch: CommitBatch) -> Result<()>;
    /// Make every append and commit that returned before this call durable. Concurrent callers
    /// share one disk flush (group commit).
    fn flush(&self) -> Result<()>;

    /// The highest seq ever appended (0 for an empty log).
    fn last_seq(&self) -> Result<Seq>;
    /// The first seq still held (after compaction); `last_seq + 1` when empty.
    fn first_seq(&self) -> Result<Seq>;
    /// The last processed seq (0 when none).
    fn cursor(&self) -> Result<Seq>;
    /// Up to `limit` entries with seq >= `from`, in order.
    fn read_log(&self, from: Seq, limit: usize) -> Result<Vec<LogEntry>>;

    fn person(&self, person: &str) -> Result<Option<Vec<u8>>>;
    /// Every person with a state, in no particular order.
    fn people(&self) -> Result<Vec<String>>;

    /// Timers with `due <= now`, earliest first, across all people.
    fn due(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<Timer>> {
        self.due_between(DateTime::<Utc>::MIN_UTC, now, limit)
    }
    /// Timers with `from <= due <= until`, earliest first: the runtime's read-ahead resumes
    /// where its last read stopped instead of re-reading (and decrypting) what it has fired.
    fn due_between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>>;
    fn next_due(&self) -> Result<Option<DateTime<Utc>>>;
    /// Every timer of one person, earliest first.
    fn timers_of(&self, person: &str) -> Result<Vec<Timer>>;

    fn outbox(&self, message_id: &str) -> Result<Option<OutboxEntry>>;
    /// Up to `limit` messages that need dispatch work (`Pending`, and `Sending`: in doubt), by
    /// message id.
    fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>>;
    /// A tracked link by its code (`None` when unknown or its person was forgotten).
    fn link(&self, code: &str) -> Result<Option<LinkEntry>>;

    /// Store a compiled program under its content hash and point `deployed` at it (durable on
    /// return: deploys are rare and a CLI command must not lie).
    fn deploy(&self, hash: &str, program: &[u8]) -> Result<()>;
    fn program(&self, hash: &str) -> Result<Option<Vec<u8>>>;
    fn deployed(&self) -> Result<Option<String>>;

    /// Aggregate counters (`events.accepted.{source}`, `events.duplicate.{source}`,
    /// `messages.{flow}.{status}`, and the caller's own): no personal data, kept through erasure.
    fn counters(&self) -> Result<BTreeMap<String, u64>>;

    /// Everything held on a person, decrypted, as JSON (Shopify `customers/data_request`).
    fn export(&self, person: &str) -> Result<serde_json::Value>;
    /// Erase a person (Shopify `customers/redact`): destroy their key, delete their state,
    /// timers, outbox entries and index entries. Durable on return. Their log records stay as
    /// unreadable ciphertext so seqs stay contiguous and nobody else's history moves.
    fn forget(&self, person: &str) -> Result<ForgetReport>;
    /// [`Store::forget`] for several subjects at once, one report each in order: the sled
    /// store finds their records with one scan of each family for all of them.
    fn forget_many(&self, people: &[&str]) -> Result<Vec<ForgetReport>> {
        people.iter().map(|p| self.forget(p)).collect()
    }
    /// Drop processed log entries received before `before` (a prefix of the log: it stops at the
    /// first entry that is unprocessed or newer). People's state and timers are untouched.
    /// Their dedup entries go too: a re-delivery older than the retention is accepted again.
    fn compact(&self, before: DateTime<Utc>) -> Result<CompactReport>;

    /// Checkpoints taken since the store was opened (a store that needs none has none).
    fn checkpoint_stats(&self) -> CheckpointStats {
        CheckpointStats::default()
    }
}

/// Open (or create) the sled-backed store in `dir`: see [`SledStore::open`].
pub fn open(dir: impl AsRef<std::path::Path>) -> Result<SledStore> {
    SledStore::open(dir.as_ref())
}

pub(crate) fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default()
}

/// Export helper shared by both stores: bytes as JSON when they are JSON, else as text.
pub(crate) fn bytes_json(b: &[u8]) -> serde_json::Value {
    serde_json::from_slice(b)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(b).into_owned()))
}
