//! The host's between-people state over the store ([`StoreState`]): people loaded lazily, the
//! join tables persisted without personal data outside per-person sealed records, and the timer
//! queue on disk with an in-memory overlay for the batch being processed.
//!
//! Persistence of the join tables (see docs/storage.md, "Runtime"):
//! - a person's record (`p` ++ tag, sealed under their key) is a [`PersonRecord`]: the engine's
//!   state plus the order and fulfillment payloads routed to them and the phones they used;
//! - two indexes find the owner: `idx:o:{h}` (order id) and `idx:p:{h}` (phone) are records of
//!   their own, `h` = SHA-256(index key ++ kind ++ value)[..16] with a random index key kept in
//!   the record `idx:key`; their value is the owner's person id, sealed under the index
//!   record's own key. So sled and keys.bin only ever see keyed hashes, and
//!   [`super::forget`] destroys the index records that point to the person with the person.

use crate::engine::PersonState;
use crate::host::{HostState, TimerKey};
use crate::ir::StepId;
use crate::store::{Store, StoreError, Timer};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Subject of the record that holds the index key (never a person, never forgotten).
pub const INDEX_KEY: &str = "idx:key";

/// Subject of the record that snapshots what `recommend()` learned from the log: the order
/// history (order and product ids, no personal data: see `catalog::OrderHistory`) and the last
/// `products/*` webhook per product, with the log cursor they cover. Written with the commit
/// that moves the cursor past `Options::snapshot_every` more entries; a restart starts from it
/// and replays only the entries after it.
pub const LEARNED: &str = "idx:learned";

#[derive(Serialize, Deserialize)]
pub struct Learned {
    pub cursor: u64,
    pub orders: Vec<(String, Vec<String>)>,
    pub product_webhooks: BTreeMap<String, (String, Json)>,
}

pub fn encode_learned(cursor: u64, data: &crate::catalog::ShopData) -> Vec<u8> {
    #[derive(Serialize)]
    struct Ref<'a> {
        cursor: u64,
        orders: Vec<&'a (String, Vec<String>)>,
        product_webhooks: &'a BTreeMap<String, (String, Json)>,
    }
    lz4_json(&Ref {
        cursor,
        orders: data.orders.orders().collect(),
        product_webhooks: &data.product_webhooks,
    })
}

pub fn decode_learned(bytes: &[u8]) -> Result<Learned, StoreError> {
    let what = format!("runtime record {LEARNED}");
    if bytes.first() != Some(&LZ4_JSON) {
        return Err(StoreError::Corrupt {
            what,
            detail: "not LZ4-compressed JSON (first byte is not 0x01)".into(),
        });
    }
    from_json_maybe_lz4(&what, bytes)
}

/// Is this store subject one of the runtime's index records rather than a person?
pub fn is_index(subject: &str) -> bool {
    subject.starts_with("idx:")
}

/// What the runtime keeps per person besides the engine state: the payloads it may need to
/// join later events to. They hold names, phones and addresses, hence they live here, sealed
/// under the person's key, and die with it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Joins {
    #[serde(default)]
    pub orders: BTreeMap<String, RawJson>,
    #[serde(default)]
    pub fulfillments: BTreeMap<String, RawJson>,
    #[serde(default)]
    pub phones: BTreeSet<String>,
    /// The last message sent to the person: replies and opt-outs are credited to it in the
    /// report counters (runtime::counters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sent: Option<SentRef>,
}

/// A join payload kept as its JSON text, parsed only when a later event joins to it. Why: a
/// person's record is decoded at every timer firing and event for them and encoded at every
/// commit that touches them, but its order and fulfillment payloads (verbose Shopify JSON,
/// most of the record) are read only by the few events that join to them. As text, decoding
/// them is one validating scan and one copy instead of a tree of maps and strings, and
/// encoding is a copy. The stored bytes are the same JSON as before, so records written
/// with parsed payloads decode unchanged.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    pub fn of(value: &Json) -> RawJson {
        RawJson(serde_json::value::to_raw_value(value).expect("a JSON value serialises"))
    }

    /// The payload as a value. The text was written by [`RawJson::of`] or checked when its
    /// record was decoded, so it parses.
    pub fn parse(&self) -> Json {
        serde_json::from_str(self.0.get()).expect("a stored join payload is JSON")
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.0.get() == other.0.get()
    }
}

/// Where a message sits in the report: flow, step and A/B arm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentRef {
    pub message_id: String,
    pub flow: String,
    pub step: u32,
    #[serde(default)]
    pub variant: Option<String>,
    pub at: DateTime<Utc>,
}

/// A person's persisted record (JSON, sealed by the store).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonRecord {
    pub state: PersonState,
    #[serde(default)]
    pub joins: Joins,
}

/// First byte of a record stored as LZ4-compressed JSON. Records written before compression
/// are plain JSON objects (first byte `{`), which still decode.
const LZ4_JSON: u8 = 1;

/// A person's record as stored: JSON, LZ4-compressed. Why compress: a record repeats the entry
/// event of every instance it holds and the join payloads are verbose Shopify JSON, so it
/// shrinks 3-6x; sled copies and rewrites whole values (node clones, splits), and the
/// durable runtime's cost followed the bytes written per person (docs/performance.md).
pub fn encode_record(state: &PersonState, joins: &Joins) -> Vec<u8> {
    #[derive(Serialize)]
    struct Ref<'a> {
        state: &'a PersonState,
        joins: &'a Joins,
    }
    lz4_json(&Ref { state, joins })
}

/// [`encode_record`] for each of a batch's people, in order, on two threads from 64 people
/// ([`crate::par`]): encoding (JSON of every instance, then LZ4) was a tenth of the throughput
/// benchmark's CPU on the runtime's thread.
pub fn encode_records(people: &[(&PersonState, &Joins)]) -> Vec<Vec<u8>> {
    crate::par::map_halves(people, 64, |(s, j)| encode_record(s, j))
}

pub fn decode_record(person: &str, bytes: &[u8]) -> Result<PersonRecord, StoreError> {
    from_json_maybe_lz4(&format!("person record {person}"), bytes)
}

/// `person`'s record read from `store` and decoded (`None`: they have none).
fn read_record(store: &dyn Store, person: &str) -> Result<Option<PersonRecord>, StoreError> {
    store
        .person(person)?
        .map(|b| decode_record(person, &b))
        .transpose()
}

thread_local! {
    /// Per-thread scratch for [`lz4_json`] and [`from_json_maybe_lz4`]: the JSON text and the
    /// compressed block. Why: `to_vec` grew a fresh buffer by doubling for every record and
    /// LZ4 allocated a worst-case block for it, so each record cost several allocations and
    /// reallocations (reallocation and fresh-page set-up were ~7% of the throughput
    /// benchmark's runtime thread); the buffers now stay at the largest record's size.
    static SCRATCH: std::cell::RefCell<(Vec<u8>, Vec<u8>)> = const {
        std::cell::RefCell::new((Vec::new(), Vec::new()))
    };
}

/// `value` as JSON, LZ4-compressed, behind the [`LZ4_JSON`] byte: the runtime's stored format
/// (`LZ4_JSON`, the JSON's length as u32 little-endian, the LZ4 block: what lz4_flex's
/// `compress_prepend_size` writes, so older records and these decode alike).
fn lz4_json(value: &impl Serialize) -> Vec<u8> {
    SCRATCH.with(|scratch| {
        let (json, block) = &mut *scratch.borrow_mut();
        json.clear();
        serde_json::to_writer(&mut *json, value).expect("runtime records serialise");
        let bound = lz4_flex::block::get_maximum_output_size(json.len());
        if block.len() < bound {
            block.resize(bound, 0);
        }
        let n = lz4_flex::block::compress_into(json, block)
            .expect("the block holds LZ4's maximum output size");
        let mut out = Vec::with_capacity(5 + n);
        out.push(LZ4_JSON);
        out.extend_from_slice(&(json.len() as u32).to_le_bytes());
        out.extend_from_slice(&block[..n]);
        keep_small(json);
        keep_small(block);
        out
    })
}

/// A scratch buffer that a rare huge record grew is given back rather than kept for good.
fn keep_small(buf: &mut Vec<u8>) {
    if buf.capacity() > 4 << 20 {
        *buf = Vec::new();
    }
}

/// Decode [`lz4_json`]'s format, or plain JSON (records written before compression); errors
/// name the record (`what`).
fn from_json_maybe_lz4<T: serde::de::DeserializeOwned>(
    what: &str,
    bytes: &[u8],
) -> Result<T, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        what: what.to_string(),
        detail,
    };
    let decode = |plain: &[u8]| {
        serde_json::from_slice(plain).map_err(|e| corrupt(format!("cannot decode: {e}")))
    };
    match bytes.first() {
        Some(&LZ4_JSON) => SCRATCH.with(|scratch| {
            let json = &mut scratch.borrow_mut().0;
            let body = &bytes[1..];
            let size = body
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
                .ok_or_else(|| corrupt("cannot decompress: no size prefix".into()))?;
            // LZ4 expands at most 255:1, so a larger prefix is damage, not a reason to
            // allocate gigabytes.
            if size > (body.len() - 4).saturating_mul(255) + 16 {
                return Err(corrupt(format!(
                    "cannot decompress: a size prefix of {size} bytes for a {}-byte block",
                    body.len() - 4
                )));
            }
            json.clear();
            json.resize(size, 0);
            let n = lz4_flex::block::decompress_into(&body[4..], json)
                .map_err(|e| corrupt(format!("cannot decompress: {e}")))?;
            if n != size {
                return Err(corrupt(format!(
                    "cannot decompress: {n} bytes where the prefix says {size}"
                )));
            }
            let r = decode(json);
            keep_small(json);
            r
        }),
        _ => decode(bytes),
    }
}

/// Timers are kept at millisecond precision by the store: normalise before comparing.
fn ms(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn key_of(t: &Timer) -> TimerKey {
    TimerKey {
        due: t.due,
        person: t.person.clone(),
        instance: t.instance.clone(),
        step: t.step,
    }
}

pub fn timer_of(t: &TimerKey) -> Timer {
    Timer {
        due: t.due,
        person: t.person.clone(),
        instance: t.instance.clone(),
        step: t.step,
    }
}

pub struct StoreState {
    store: Arc<dyn Store>,
    index_key: Option<[u8; 32]>,
    index_key_new: bool,
    /// Join data of people read in this process.
    pub(crate) joins: BTreeMap<String, Joins>,
    /// States read while looking up joins, handed to the host when it first touches them.
    pub(crate) loaded: BTreeMap<String, PersonState>,
    /// People whose record must be written in the next commit.
    pub(crate) dirty: BTreeSet<String>,
    /// Index subject -> owner (cached reads and pending writes).
    index: BTreeMap<String, Option<String>>,
    pub(crate) dirty_index: BTreeSet<String>,
    /// Payloads nobody could be routed to: kept for this process only (there is no person to
    /// file them under; the simulator would keep them, so joins work within a run).
    orphan_orders: BTreeMap<String, Json>,
    orphan_fulfillments: BTreeMap<String, Json>,
    /// Timers added / removed since the last commit.
    pub(crate) added: BTreeSet<TimerKey>,
    /// The due of each (person, instance, step) in `added`: a timer set again in the same batch
    /// replaces the earlier one, found here (a scan of `added` per timer set was quadratic in
    /// the batch: 2.7% of the throughput benchmark).
    added_due: HashMap<(String, String, StepId), DateTime<Utc>>,
    pub(crate) removed: BTreeSet<TimerKey>,
    /// Store timers read ahead (live, not fired or cancelled in this batch), in [`TimerKey`]
    /// order. Every live store timer due at or before `due_complete` is in it, so popping the
    /// next one costs no store read: one scan of the due index serves many firings (reading
    /// the index per firing, skipping the ones already fired, was quadratic per batch).
    due_buf: BTreeSet<TimerKey>,
    due_complete: Option<DateTime<Utc>>,
    /// The person the last remembered order/fulfillment was filed under: an envelope that
    /// starts no engine input (a `fulfillments/create`) is still attributed to them.
    pub(crate) last_owner: Option<String>,
    /// The first person stepped since the runtime reset it (before each log entry): whom the
    /// entry is about, even when the engine had nothing to say.
    pub(crate) first_touched: Option<String>,
    /// The first store error met inside a trait call (they cannot return one): the runtime
    /// checks it after every step and abandons the batch.
    error: Option<StoreError>,
}

impl StoreState {
    pub fn new(store: Arc<dyn Store>) -> StoreState {
        StoreState {
            store,
            index_key: None,
            index_key_new: false,
            joins: BTreeMap::new(),
            loaded: BTreeMap::new(),
            dirty: BTreeSet::new(),
            index: BTreeMap::new(),
            dirty_index: BTreeSet::new(),
            orphan_orders: BTreeMap::new(),
            orphan_fulfillments: BTreeMap::new(),
            added: BTreeSet::new(),
            added_due: HashMap::new(),
            removed: BTreeSet::new(),
            due_buf: BTreeSet::new(),
            due_complete: None,
            last_owner: None,
            first_touched: None,
            error: None,
        }
    }

    pub fn take_error(&mut self) -> Option<StoreError> {
        self.error.take()
    }

    fn fail<T>(&mut self, e: StoreError) -> Option<T> {
        if self.error.is_none() {
            self.error = Some(e);
        }
        None
    }

    /// Forget everything cached about people (after a commit, to bound memory): the store has
    /// it all. The timer read-ahead stays: it mirrors the store's due index, which a commit
    /// keeps in step (see `StoreState::take_timer_changes`).
    pub fn evict(&mut self) {
        self.evict_keeping(&[]);
    }

    /// [`StoreState::evict`], except what was read of `keep` (people whose records the
    /// pending commits do not change).
    pub fn evict_keeping(&mut self, keep: &[String]) {
        debug_assert!(self.dirty.is_empty() && self.added.is_empty());
        if keep.is_empty() {
            self.joins.clear();
            self.loaded.clear();
        } else {
            let keep: std::collections::HashSet<&str> = keep.iter().map(String::as_str).collect();
            self.joins.retain(|p, _| keep.contains(p.as_str()));
            self.loaded.retain(|p, _| keep.contains(p.as_str()));
        }
        self.index.clear();
    }

    /// Also drop the timer read-ahead: for changes to the store made outside the batch
    /// (an erasure removes the person's timers).
    pub fn evict_all(&mut self) {
        self.evict();
        self.reset_due();
    }

    /// The timer changes of this batch, for its commit. The read-ahead is kept across the
    /// commit: fired and cancelled timers already left it, and the batch's new timers due
    /// within its coverage join it (they are store timers once committed). Dropping it at
    /// every commit made a run of timers sharing one due instant (a `wait until` 10:00 for
    /// every person waiting) re-read and decrypt the whole instant once per batch: quadratic.
    /// The runtime drops it ([`StoreState::evict_all`]) if the commit fails.
    pub(crate) fn take_timer_changes(&mut self) -> (BTreeSet<TimerKey>, BTreeSet<TimerKey>) {
        let added = std::mem::take(&mut self.added);
        self.added_due.clear();
        if let Some(c) = self.due_complete {
            self.due_buf
                .extend(added.iter().filter(|t| t.due <= c).cloned());
        }
        (added, std::mem::take(&mut self.removed))
    }

    /// Take `t` out of this batch's new timers, if it is one.
    fn remove_added(&mut self, t: &TimerKey) -> bool {
        if !self.added.remove(t) {
            return false;
        }
        self.added_due
            .remove(&(t.person.clone(), t.instance.clone(), t.step));
        true
    }

    fn reset_due(&mut self) {
        self.due_buf.clear();
        self.due_complete = None;
    }

    fn index_key(&mut self) -> Option<[u8; 32]> {
        if let Some(k) = self.index_key {
            return Some(k);
        }
        let k = match self.store.person(INDEX_KEY) {
            Ok(Some(b)) if b.len() == 32 => b.try_into().expect("32 bytes"),
            Ok(Some(_)) => {
                return self.fail(StoreError::Corrupt {
                    what: "runtime index key".into(),
                    detail: "not 32 bytes".into(),
                })
            }
            Ok(None) => {
                let mut k = [0u8; 32];
                if let Err(e) = getrandom::getrandom(&mut k) {
                    return self.fail(StoreError::Io(format!("random: {e}")));
                }
                // Written with the first commit that uses it: a crash before that loses
                // nothing that depends on it.
                self.index_key_new = true;
                k
            }
            Err(e) => return self.fail(e),
        };
        self.index_key = Some(k);
        Some(k)
    }

    /// The index record's subject for (kind, value): a keyed hash, never the value.
    pub fn index_subject(&mut self, kind: &str, value: &str) -> Option<String> {
        let key = self.index_key()?;
        let mut h = Sha256::new();
        h.update(key);
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(value.as_bytes());
        let d = h.finalize();
        let hex: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("idx:{kind}:{hex}"))
    }

    fn index_get(&mut self, subject: &str) -> Option<String> {
        if let Some(v) = self.index.get(subject) {
            return v.clone();
        }
        let v = match self.store.person(subject) {
            Ok(v) => v.map(|b| String::from_utf8_lossy(&b).into_owned()),
            Err(e) => return self.fail(e),
        };
        self.index.insert(subject.to_string(), v.clone());
        v
    }

    fn index_set(&mut self, subject: String, person: &str) {
        self.index.insert(subject.clone(), Some(person.to_string()));
        self.dirty_index.insert(subject);
    }

    /// A person's join data, reading their record once per process.
    fn joins_of(&mut self, person: &str) -> Option<&mut Joins> {
        if !self.joins.contains_key(person) {
            let read = read_record(&*self.store, person);
            self.cache_read(person, read)?;
        }
        self.joins.get_mut(person)
    }

    /// Cache what [`read_record`] gave for `person` (no record: empty join data); a failure
    /// is kept for the runtime to check (`None`).
    fn cache_read(
        &mut self,
        person: &str,
        read: Result<Option<PersonRecord>, StoreError>,
    ) -> Option<()> {
        match read {
            Ok(Some(r)) => {
                self.loaded.insert(person.to_string(), r.state);
                self.joins.insert(person.to_string(), r.joins);
            }
            Ok(None) => {
                self.joins.insert(person.to_string(), Joins::default());
            }
            Err(e) => return self.fail(e),
        }
        Some(())
    }

    /// Read `people`'s records into the cache now (see `Runtime::commit`: a read while a commit
    /// is being applied waits for it). Only for people not in the host's cache: for those, the
    /// store's record may be older than their state in memory. Repeats and people already
    /// read are skipped; the records are read and decoded on two threads ([`crate::par`]). Why: reading
    /// ahead was the firing's largest cost on the runtime's thread (sled's `get` ~30%, the
    /// records' decoding ~24% of the 200k timers benchmark, docs/performance.md) while the
    /// second core sat mostly idle. The results are taken in order, so the first failure is
    /// the one kept, as when read one by one.
    pub(crate) fn warm_many(&mut self, people: &[String]) {
        let mut wanted: Vec<&String> = Vec::with_capacity(people.len());
        let mut seen = std::collections::HashSet::with_capacity(people.len());
        for p in people {
            if !self.joins.contains_key(p) && seen.insert(p) {
                wanted.push(p);
            }
        }
        let store = &*self.store;
        let read = crate::par::map_halves(&wanted, 64, |p| read_record(store, p));
        for (p, r) in wanted.into_iter().zip(read) {
            let _ = self.cache_read(p, r);
        }
    }

    /// Top the timer read-ahead up to the next `n` timers due by `until`: the next batch's
    /// firings. Called by a timer batch's commit BEFORE [`StoreState::take_timer_changes`],
    /// so that the batch's own changes, not yet in the store, are merged into what the read
    /// covers (its removals are skipped by the read, its additions join at the take).
    ///
    /// Why at the commit: a read of the due index waits for the commit being applied, as the
    /// warming of the next batch's people there does anyway. Read early in the next batch
    /// instead, it waited for this batch's commit, which then no longer overlapped the next
    /// batch's engine work (such waits were ~10% of the 200k timers benchmark), and the
    /// people past the read-ahead were read one by one on the runtime's thread.
    pub(crate) fn top_up_due(&mut self, n: usize, until: DateTime<Utc>) {
        let until = ms(until);
        let due_by =
            |buf: &BTreeSet<TimerKey>| buf.iter().take_while(|t| t.due <= until).take(n).count();
        while due_by(&self.due_buf) < n
            && self.due_complete.is_none_or(|c| c < until)
            && self.fill_due()
        {}
    }

    /// The people of the next `n` timers read ahead that are due by `until` (in due order,
    /// repeats included): the next batch's firings, to [`StoreState::warm_many`] before the
    /// commit is handed over.
    pub(crate) fn upcoming_people(&self, n: usize, until: DateTime<Utc>) -> Vec<String> {
        let until = ms(until);
        self.due_buf
            .iter()
            .take_while(|t| t.due <= until)
            .take(n)
            .map(|t| t.person.clone())
            .collect()
    }

    /// The last message sent to `person` (their record is read once per process).
    pub(crate) fn last_sent(&mut self, person: &str) -> Option<SentRef> {
        self.joins_of(person)?.last_sent.clone()
    }

    /// Remember the last message sent to `person` (written with their record).
    pub(crate) fn set_last_sent(&mut self, person: &str, sent: SentRef) {
        if let Some(j) = self.joins_of(person) {
            j.last_sent = Some(sent);
            self.dirty.insert(person.to_string());
        }
    }

    /// The writes of this batch besides people states: (subject, bytes) of index records.
    pub(crate) fn take_index_puts(&mut self) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        if self.index_key_new && !self.dirty_index.is_empty() {
            out.push((INDEX_KEY.to_string(), self.index_key.expect("set").to_vec()));
            self.index_key_new = false;
        }
        for s in std::mem::take(&mut self.dirty_index) {
            if let Some(Some(p)) = self.index.get(&s) {
                out.push((s, p.clone().into_bytes()));
            }
        }
        out
    }

    /// The first live store timer due at or before `until` in [`TimerKey`] order, skipping
    /// the ones removed in this batch. Served from the read-ahead when it covers `until`'s
    /// earliest timer; otherwise the due index is scanned once for a run of timers.
    fn store_first(&mut self, until: DateTime<Utc>) -> Option<TimerKey> {
        // Store dues have millisecond precision: so does the read-ahead's coverage. (A wall
        // clock `until` a fraction of a millisecond past the coverage has nothing new to read.)
        let until = ms(until);
        loop {
            if let Some(first) = self.due_buf.first() {
                if first.due > until {
                    return None;
                }
                if self.due_complete.is_some_and(|c| first.due <= c) {
                    return Some(first.clone());
                }
            } else if self.due_complete.is_some_and(|c| c >= until) {
                return None;
            }
            if !self.fill_due() {
                return None;
            }
        }
    }

    /// Extend the read-ahead: the due index is read from just after what it
    /// already covers, `DUE_READ_AHEAD` timers at a time with no upper bound, so a timer is read
    /// and decrypted once, not once per firing or per log entry, and a run of log entries with
    /// nothing due costs no scan each (a read bounded by the entry's time covered only up to
    /// it, and the next entry read again: a scan of the due index per event). The store orders
    /// equal dues by a random tag, not by [`TimerKey`], so a full read covers only the dues
    /// strictly before its last one; the read grows until it covers at least one more instant.
    /// A read that is not full covers everything (the batch's new timers join the read-ahead
    /// at commit, `take_timer_changes`). False on a store error.
    fn fill_due(&mut self) -> bool {
        let one_ms = chrono::Duration::milliseconds(1);
        let far = DateTime::<Utc>::MAX_UTC;
        let from = match self.due_complete {
            None => DateTime::<Utc>::MIN_UTC,
            Some(c) => match c.checked_add_signed(one_ms) {
                Some(f) => f,
                None => return false, // covers everything already
            },
        };
        let mut ts = match self.store.due_between(from, far, DUE_READ_AHEAD) {
            Ok(t) => t,
            Err(e) => return self.fail(e).unwrap_or(false),
        };
        let mut complete = match ts.last() {
            Some(last) if ts.len() == DUE_READ_AHEAD => last.due - one_ms,
            _ => far,
        };
        if complete < from {
            // Every timer read shares the first instant (`from` itself, at the store's
            // millisecond precision): read that whole instant, and only it. Growing the
            // read ×4 from `from` instead re-read and decrypted the instant at every step and
            // spilled into the next one: 562k timers read for 472k fired at 200k people,
            // and up to 2.1M held at once at 1M (instants of ~500k).
            ts = match self.store.due_between(from, from, usize::MAX) {
                Ok(t) => t,
                Err(e) => return self.fail(e).unwrap_or(false),
            };
            complete = from;
        }
        for k in ts.iter().map(key_of) {
            if k.due <= complete && !self.removed.contains(&k) {
                self.due_buf.insert(k);
            }
        }
        self.due_complete = Some(complete);
        true
    }
}

/// Timers read per scan of the due index.
const DUE_READ_AHEAD: usize = 512;

impl HostState for StoreState {
    fn load_person(&mut self, person: &str) -> Option<PersonState> {
        if let Some(s) = self.loaded.remove(person) {
            return Some(s);
        }
        self.joins_of(person)?;
        self.loaded.remove(person)
    }

    fn touched(&mut self, person: &str) {
        if self.first_touched.is_none() {
            self.first_touched = Some(person.to_string());
        }
        self.dirty.insert(person.to_string());
    }

    fn phone_owner(&mut self, phone: &str) -> Option<String> {
        let s = self.index_subject("p", phone)?;
        self.index_get(&s)
    }

    fn set_phone_owner(&mut self, phone: &str, person: &str) {
        let Some(s) = self.index_subject("p", phone) else {
            return;
        };
        self.index_set(s, person);
        if let Some(j) = self.joins_of(person) {
            if j.phones.insert(phone.to_string()) {
                self.dirty.insert(person.to_string());
            }
        }
    }

    fn order(&mut self, id: &str) -> Option<Json> {
        if let Some(o) = self.orphan_orders.get(id) {
            return Some(o.clone());
        }
        let s = self.index_subject("o", id)?;
        let owner = self.index_get(&s)?;
        self.joins_of(&owner)?.orders.get(id).map(RawJson::parse)
    }

    fn fulfillment(&mut self, order_id: Option<&str>, id: &str) -> Option<Json> {
        if let Some(f) = self.orphan_fulfillments.get(id) {
            return Some(f.clone());
        }
        // Fulfillments are filed under their order's owner.
        let s = self.index_subject("o", order_id?)?;
        let owner = self.index_get(&s)?;
        self.joins_of(&owner)?
            .fulfillments
            .get(id)
            .map(RawJson::parse)
    }

    fn remember_order(&mut self, id: &str, owner: Option<&str>, payload: Json) {
        let Some(owner) = owner else {
            self.orphan_orders.insert(id.to_string(), payload);
            return;
        };
        let Some(s) = self.index_subject("o", id) else {
            return;
        };
        if self.index_get(&s).as_deref() != Some(owner) {
            self.index_set(s, owner);
        }
        if let Some(j) = self.joins_of(owner) {
            j.orders.insert(id.to_string(), RawJson::of(&payload));
            self.dirty.insert(owner.to_string());
        }
        self.last_owner = Some(owner.to_string());
    }

    fn remember_fulfillment(
        &mut self,
        id: &str,
        order_id: Option<&str>,
        owner: Option<&str>,
        payload: Json,
    ) {
        // Filed under the order's owner (that is where `fulfillment` looks), else the
        // routed person with an order index pointing to them.
        let order_owner = order_id.and_then(|o| {
            let s = self.index_subject("o", o)?;
            self.index_get(&s)
        });
        let Some(owner) = order_owner.or(owner.map(String::from)) else {
            self.orphan_fulfillments.insert(id.to_string(), payload);
            return;
        };
        let Some(order_id) = order_id else {
            self.orphan_fulfillments.insert(id.to_string(), payload);
            return;
        };
        if let Some(s) = self.index_subject("o", order_id) {
            if self.index_get(&s).as_deref() != Some(owner.as_str()) {
                self.index_set(s, &owner);
            }
        }
        if let Some(j) = self.joins_of(&owner) {
            j.fulfillments.insert(id.to_string(), RawJson::of(&payload));
            self.dirty.insert(owner.clone());
        }
        self.last_owner = Some(owner);
    }

    fn schedule(&mut self, mut t: TimerKey) {
        t.due = ms(t.due);
        // Replace an earlier timer of the same (person, instance, step) set in this batch.
        let id = (t.person.clone(), t.instance.clone(), t.step);
        if let Some(due) = self.added_due.insert(id, t.due) {
            self.added.remove(&TimerKey { due, ..t.clone() });
        }
        self.added.insert(t);
    }

    fn cancel(&mut self, t: &TimerKey) {
        let mut t = t.clone();
        t.due = ms(t.due);
        if !self.remove_added(&t) {
            self.due_buf.remove(&t);
            self.removed.insert(t);
        }
    }

    fn pop_due(&mut self, until: DateTime<Utc>) -> Option<TimerKey> {
        let from_store = self.store_first(until);
        let from_batch = self.added.first().filter(|t| t.due <= until).cloned();
        let t = match (from_store, from_batch) {
            (Some(s), Some(b)) => s.min(b),
            (s, b) => s.or(b)?,
        };
        if !self.remove_added(&t) {
            self.due_buf.remove(&t);
            self.removed.insert(t.clone());
        }
        Some(t)
    }

    fn next_due(&mut self) -> Option<DateTime<Utc>> {
        let far = DateTime::<Utc>::MAX_UTC;
        let s = if self.removed.is_empty() {
            match self.store.next_due() {
                Ok(d) => d,
                Err(e) => return self.fail(e),
            }
        } else {
            self.store_first(far).map(|t| t.due)
        };
        let b = self.added.first().map(|t| t.due);
        match (s, b) {
            (Some(s), Some(b)) => Some(s.min(b)),
            (s, b) => s.or(b),
        }
    }

    fn pending_timers(&self) -> usize {
        self.added.len()
    }
}

#[cfg(test)]
mod tests {
    /// A memory store and a sled store in `dir` (made afresh), each holding `timers`.
    fn stores_with_timers(dir: &std::path::Path, timers: &[Timer]) -> Vec<Arc<dyn Store>> {
        let _ = std::fs::remove_dir_all(dir);
        let stores: Vec<Arc<dyn Store>> = vec![
            Arc::new(crate::store::MemStore::new()),
            Arc::new(crate::store::open(dir).unwrap()),
        ];
        for store in &stores {
            let batch = crate::store::CommitBatch {
                timers_add: timers.to_vec(),
                ..crate::store::CommitBatch::default()
            };
            store.commit(batch).unwrap();
        }
        stores
    }

    /// An instant holding more timers than one read of the due index (`DUE_READ_AHEAD`), between
    /// smaller ones: every timer comes out once, in due order, up to the bound, from the
    /// memory store and from sled (whose order within an instant is a random per-person tag).
    #[test]
    fn an_instant_larger_than_one_read_pops_every_timer_once() {
        use crate::store::Timer;
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_780_000_000 + s, 0).unwrap();
        let mut timers = Vec::new();
        for (at, n) in [(0, 3), (60, DUE_READ_AHEAD * 3 + 7), (120, 5), (180, 2)] {
            for i in 0..n {
                timers.push(Timer {
                    due: t(at),
                    person: format!("customer:{at}-{i}"),
                    instance: format!("i{i}"),
                    step: 1,
                });
            }
        }
        let dir = std::env::temp_dir().join(format!("ac-big-instant-{}", std::process::id()));
        for store in stores_with_timers(&dir, &timers) {
            let mut st = StoreState::new(store.clone());
            let mut got = Vec::new();
            while let Some(k) = st.pop_due(t(120)) {
                got.push(k);
            }
            assert!(st.take_error().is_none());
            let want = timers.iter().filter(|x| x.due <= t(120)).count();
            assert_eq!(got.len(), want);
            assert!(got.windows(2).all(|w| w[0].due <= w[1].due));
            let distinct: BTreeSet<_> = got.iter().map(|k| (&k.person, &k.instance)).collect();
            assert_eq!(distinct.len(), want);
            assert_eq!(st.pop_due(t(180)).map(|k| k.due), Some(t(180)));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Batches that fire timers and set later ones, committed as the runtime commits a timer
    /// batch (the read-ahead topped up before the batch's changes are taken, then the next
    /// batch's people): every timer, first and follow-up, fires once, in due order. The
    /// follow-ups land past what the read-ahead covered when their batch was taken but within
    /// what the top-up then reads; topping up after the take instead lost such timers (and
    /// read the batch's fired ones back), which this catches. And the people read ahead at
    /// each commit are exactly the next batch's (without the top-up, only those of the
    /// timers left in the read-ahead).
    #[test]
    fn timer_batches_topped_up_at_commit_fire_every_timer_once() {
        use crate::store::CommitBatch;
        let t = |s: i64| DateTime::<Utc>::from_timestamp(1_780_000_000 + s, 0).unwrap();
        let n = DUE_READ_AHEAD * 3;
        let first: Vec<Timer> = (0..n)
            .map(|i| Timer {
                due: t(10 * i as i64),
                person: format!("customer:{i}"),
                instance: "i".into(),
                step: 1,
            })
            .collect();
        let until = t(1_000_000);
        let dir = std::env::temp_dir().join(format!("ac-top-up-{}", std::process::id()));
        for store in stores_with_timers(&dir, &first) {
            let mut st = StoreState::new(store.clone());
            let mut got: Vec<TimerKey> = Vec::new();
            let mut upcoming: Option<Vec<String>> = None;
            loop {
                let start = got.len();
                let mut fired = 0;
                while fired < 100 {
                    let Some(k) = st.pop_due(until) else { break };
                    if k.step == 1 {
                        // ~600 timers later: past the read-ahead's coverage at this take.
                        st.schedule(TimerKey {
                            due: k.due + chrono::Duration::seconds(6_005),
                            step: 2,
                            ..k.clone()
                        });
                    }
                    got.push(k);
                    fired += 1;
                }
                // The people read ahead at the last commit are exactly whom this batch fired.
                if let Some(up) = upcoming.take() {
                    let fired_people: Vec<&String> =
                        got[start..].iter().map(|k| &k.person).collect();
                    assert_eq!(fired_people, up.iter().collect::<Vec<_>>());
                }
                if fired == 0 {
                    break;
                }
                st.top_up_due(100, until);
                let (added, removed) = st.take_timer_changes();
                store
                    .commit(CommitBatch {
                        timers_add: added.iter().map(timer_of).collect(),
                        timers_remove: removed.iter().map(timer_of).collect(),
                        ..CommitBatch::default()
                    })
                    .unwrap();
                upcoming = Some(st.upcoming_people(100, until));
            }
            assert!(st.take_error().is_none());
            assert_eq!(got.len(), 2 * n);
            assert!(got.windows(2).all(|w| w[0].due <= w[1].due));
            let distinct: BTreeSet<_> = got.iter().map(|k| (&k.person, k.step)).collect();
            assert_eq!(distinct.len(), 2 * n);
            assert_eq!(store.next_due().unwrap(), None);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The scratch-buffer encoder writes exactly lz4_flex's `compress_prepend_size` layout
    /// (so records written before it decode, and it decodes theirs), and a damaged size
    /// prefix is refused rather than allocated.
    #[test]
    fn lz4_json_keeps_the_stored_layout_and_refuses_a_bad_size_prefix() {
        let v = serde_json::json!({"person": "customer:1", "entries": ["a".repeat(300), "b"]});
        let ours = lz4_json(&v);
        let mut theirs = vec![LZ4_JSON];
        theirs.extend(lz4_flex::block::compress_prepend_size(
            &serde_json::to_vec(&v).unwrap(),
        ));
        assert_eq!(ours, theirs);
        let back: serde_json::Value = from_json_maybe_lz4("r", &ours).unwrap();
        assert_eq!(back, v);
        let mut bad = ours.clone();
        bad[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = from_json_maybe_lz4::<serde_json::Value>("person record x", &bad).unwrap_err();
        assert!(e.to_string().contains("size prefix"), "{e}");
        assert!(e.to_string().contains("person record x"), "{e}");
    }

    use super::*;

    fn sample() -> (PersonState, Joins) {
        let mut joins = Joins::default();
        let order = serde_json::json!({"id": 1001, "line_items": [{"sku": "SKIN-SERUM"}]});
        joins.orders.insert("1001".into(), RawJson::of(&order));
        joins.phones.insert("+12125550100".into());
        (PersonState::new("customer:1"), joins)
    }

    #[test]
    fn a_batch_encoded_on_two_threads_is_the_records_in_order() {
        let people: Vec<(PersonState, Joins)> = (0..150)
            .map(|i| {
                let (_, mut joins) = sample();
                joins.phones.insert(format!("+1212555{i:04}"));
                (PersonState::new(format!("customer:{i}")), joins)
            })
            .collect();
        let refs: Vec<(&PersonState, &Joins)> = people.iter().map(|(s, j)| (s, j)).collect();
        let one_by_one: Vec<Vec<u8>> = refs.iter().map(|(s, j)| encode_record(s, j)).collect();
        assert_eq!(encode_records(&refs), one_by_one);
        assert_eq!(encode_records(&refs[..3]), one_by_one[..3].to_vec());
    }

    /// Event payloads decoded from a record stay text until read (`engine::model::SharedJson`):
    /// the record encodes back to the same bytes without parsing them, a payload reads as the
    /// value it was, and a state read back equals the one written, read or not.
    #[test]
    fn payloads_decoded_from_a_record_stay_text_and_encode_to_the_same_bytes() {
        use crate::engine::{Instance, SharedJson};
        let (mut state, joins) = sample();
        let entry = serde_json::json!({
            "id": 1001, "total_price": 24.5, "note": "gift \"wrap\" é",
            "line_items": [{"sku": "SKIN-SERUM", "price": "24.00", "quantity": 1}],
        });
        let shared = SharedJson::new(entry.clone());
        let inst = Instance {
            id: "post_purchase:1001".into(),
            flow: "post_purchase".into(),
            flow_version: "v1".into(),
            kind: crate::ir::FlowKind::Transactional,
            entry_key: "1001".into(),
            entry_event: "order.created".into(),
            entry: shared.clone(),
            entered_at: "2026-03-01T10:00:00Z".parse().unwrap(),
            step: 1,
            waiting: None,
            last_event: Some(shared),
            seen: Vec::new(),
            replies: Vec::new(),
            variants: BTreeMap::new(),
        };
        state.instances.insert(inst.id.clone(), Box::new(inst));
        let bytes = encode_record(&state, &joins);
        let rec = decode_record("customer:1", &bytes).unwrap();
        let read = &rec.state.instances.get("post_purchase:1001").unwrap();
        assert_eq!(
            read.entry.unparsed_text(),
            Some(serde_json::to_string(&entry).unwrap().as_str())
        );
        assert_eq!(encode_record(&rec.state, &rec.joins), bytes);
        assert!(read.entry.unparsed_text().is_some(), "encoding parsed it");
        assert_eq!(rec.state, state);
        assert_eq!(*read.entry, entry);
        assert_eq!(read.entry.unparsed_text(), None);
        assert_eq!(encode_record(&rec.state, &rec.joins), bytes);
    }

    #[test]
    fn records_round_trip_compressed_and_old_plain_records_still_decode() {
        let (state, joins) = sample();
        let bytes = encode_record(&state, &joins);
        assert_eq!(bytes[0], LZ4_JSON);
        let rec = decode_record("customer:1", &bytes).unwrap();
        assert_eq!((rec.state, rec.joins), (state.clone(), joins.clone()));
        // A store written before compression holds plain JSON records.
        let plain = serde_json::to_vec(&PersonRecord {
            state: state.clone(),
            joins: joins.clone(),
        })
        .unwrap();
        let rec = decode_record("customer:1", &plain).unwrap();
        assert_eq!((rec.state, rec.joins), (state, joins));
    }

    #[test]
    fn join_payloads_kept_as_text_store_the_bytes_parsed_ones_did() {
        // Before `RawJson`, join payloads were parsed values; a store holds such records.
        #[derive(Serialize)]
        struct Parsed<'a> {
            orders: BTreeMap<&'a str, Json>,
            fulfillments: BTreeMap<&'a str, Json>,
            phones: &'a BTreeSet<String>,
        }
        #[derive(Serialize)]
        struct Record<'a> {
            state: &'a PersonState,
            joins: Parsed<'a>,
        }
        let (state, joins) = sample();
        let order = serde_json::json!({"id": 1001, "line_items": [{"sku": "SKIN-SERUM"}]});
        let before = lz4_json(&Record {
            state: &state,
            joins: Parsed {
                orders: BTreeMap::from([("1001", order.clone())]),
                fulfillments: BTreeMap::new(),
                phones: &joins.phones,
            },
        });
        assert_eq!(encode_record(&state, &joins), before);
        let rec = decode_record("customer:1", &before).unwrap();
        assert_eq!(rec.joins, joins);
        assert_eq!(rec.joins.orders["1001"].parse(), order);
    }

    #[test]
    fn a_damaged_compressed_record_is_corruption_with_its_person() {
        let (state, joins) = sample();
        let mut bytes = encode_record(&state, &joins);
        bytes.truncate(bytes.len() / 2);
        let e = decode_record("customer:1", &bytes).unwrap_err().to_string();
        assert!(e.contains("person record customer:1"), "{e}");
    }
}
