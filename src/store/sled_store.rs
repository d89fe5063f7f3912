//! `SledStore`: the [`Store`] on one sled tree plus the key file. See `docs/storage.md`.

use super::applier::{Applier, SharedDb};
use super::codec::{frame, unframe, Reader, Writer};
use super::keys::{self, KeyDir};
use super::layout::{self, Tag};
use super::*;
use sled::Batch;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

const DB_DIR: &str = "db";
/// `t` ++ due (8) ++ person tag (16) ++ instance hash (16) ++ step (4).
const TIMER_KEY_LEN: usize = 45;
const KEY_FILE: &str = "keys.bin";
/// Erasure marker states (`z ++ tag`).
const ERASING: u8 = 1;
const ERASED: u8 = 2;
/// An event key whose event moved to a person (or was compacted): destroyed at the next key
/// destruction (`purge_retired`).
const RETIRED: u8 = 3;
/// Log record value layout version (first byte of the body).
const LOG_V1: u8 = 1;

/// Tunables for [`SledStore::open_with`].
#[derive(Clone, Debug)]
pub struct OpenOptions {
    /// sled's page cache. The default (64 MiB) keeps RSS low with a million people on disk.
    pub cache_bytes: u64,
    /// How many of the newest log records `open` verifies (checksum, contiguity, indexes).
    pub verify_last: usize,
    /// Bytes of keys and values written through `append` and `commit` after which the store
    /// closes and reopens its database (a checkpoint; 0: never). sled 0.34 writes its
    /// page-table snapshot only when it opens a database, and an open replays every log
    /// segment written since the last snapshot: without checkpoints a restart reads all the
    /// store wrote since it was opened (14.6 s for the 1M-timer store, docs/performance.md),
    /// after a clean stop and after a crash alike.
    pub checkpoint_bytes: u64,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            cache_bytes: 64 << 20,
            verify_last: 1000,
            checkpoint_bytes: 256 << 20,
        }
    }
}

/// What `open` checked and found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Integrity {
    pub created: bool,
    pub first_seq: Seq,
    pub last_seq: Seq,
    pub cursor: Seq,
    pub log_records_verified: usize,
    pub keys: usize,
    /// Erasures interrupted by a crash and finished on open.
    pub erasures_finished: usize,
    /// Torn sled snapshots (a kill while sled wrote one) removed before the open; see
    /// `remove_torn_snapshots`.
    pub torn_snapshots_removed: usize,
}

pub struct SledStore {
    dir: PathBuf,
    /// Read and written only through [`SledStore::db`], which settles the batch in flight
    /// first, so no method can forget to. `None` only during a checkpoint's reopen (under the
    /// write lock) or after a reopen failed.
    settled_db: SharedDb,
    /// What it was opened with: a checkpoint reopens the database with the same.
    opts: OpenOptions,
    /// Bytes handed to sled by `append` and `commit` since the database was last opened.
    since_checkpoint: AtomicU64,
    checkpoints: Mutex<CheckpointStats>,
    keys: RwLock<KeyDir>,
    /// The last seq appended; holding it serialises writers.
    writer: Mutex<Seq>,
    flush_lock: Mutex<()>,
    /// Writes in sled so far (a commit counts once applied: `Applier`); `flush` covers them.
    written: Arc<AtomicU64>,
    flushed: AtomicU64,
    integrity: Integrity,
    /// Applies `commit` batches on its own thread; every other operation settles it first.
    applier: Applier,
}

/// Checkpoints taken since the store was opened (see [`OpenOptions::checkpoint_bytes`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    pub count: u64,
    /// Time the store's writers were held up by them, in all and the longest.
    pub total: Duration,
    pub longest: Duration,
}

/// A read lock on the open database: what [`SledStore::db`] gives.
struct DbRef<'a>(parking_lot::RwLockReadGuard<'a, Option<sled::Db>>);

impl std::ops::Deref for DbRef<'_> {
    type Target = sled::Db;
    fn deref(&self) -> &sled::Db {
        self.0
            .as_ref()
            .expect("`db` hands out only an open database")
    }
}

/// A sled batch that counts the bytes it writes (what a checkpoint bounds).
#[derive(Default)]
struct Counted {
    batch: Batch,
    bytes: u64,
}

impl Counted {
    fn insert<K: Into<sled::IVec>, V: Into<sled::IVec>>(&mut self, key: K, value: V) {
        let (key, value) = (key.into(), value.into());
        self.bytes += (key.len() + value.len()) as u64;
        self.batch.insert(key, value);
    }

    fn remove<K: Into<sled::IVec>>(&mut self, key: K) {
        let key = key.into();
        self.bytes += key.len() as u64;
        self.batch.remove(key);
    }
}

struct LogRec {
    received_ms: i64,
    source: String,
    dedup: [u8; 16],
    tag: Tag,
    sealed: Vec<u8>,
}

fn encode_log(r: &LogRec) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(LOG_V1)
        .i64(r.received_ms)
        .str(&r.source)
        .raw(&r.dedup)
        .raw(&r.tag)
        .bytes(&r.sealed);
    w.buf
}

/// The tag of a log record, checksum checked, without copying its sealed part: erasure and
/// export scan the whole log for one person's entries.
fn log_tag(key: &[u8], v: &[u8]) -> Result<Tag> {
    let body = unframe(key, v)?;
    // version(1) ++ received_at(8) ++ source(u32 len ++ UTF-8) ++ dedup(16) ++ tag(16)
    let at = body
        .get(9..13)
        .map(|n| 13 + u32::from_be_bytes(n.try_into().unwrap()) as usize + 16);
    match (body.first(), at.and_then(|at| body.get(at..at + 16))) {
        (Some(&LOG_V1), Some(t)) => Ok(t.try_into().unwrap()),
        // The full decode says what is wrong.
        _ => decode_log(key, v).map(|r| r.tag),
    }
}

/// The 16 bytes at `at`, as a tag.
fn tag_at(bytes: &[u8], at: usize) -> Option<Tag> {
    bytes.get(at..at + 16).map(|t| t.try_into().unwrap())
}

/// What an erasure found of one person (`ForgetReport`'s counts).
#[derive(Clone, Copy, Debug, Default)]
struct ErasedCounts {
    events: u64,
    timers: u64,
    messages: u64,
}

fn decode_log(key: &[u8], v: &[u8]) -> Result<LogRec> {
    let what = layout::describe(key);
    let body = unframe(key, v)?;
    let mut r = Reader::new(body, &what);
    let ver = r.u8()?;
    if ver != LOG_V1 {
        return Err(StoreError::Corrupt {
            what,
            detail: format!("unknown log record version {ver}"),
        });
    }
    Ok(LogRec {
        received_ms: r.i64()?,
        source: r.string()?,
        dedup: r.array()?,
        tag: r.array()?,
        sealed: r.bytes()?.to_vec(),
    })
}

struct OutRec {
    tag: Tag,
    status: OutboxStatus,
    attempts: u32,
    provider_id: Option<String>,
    flow: String,
    step: u32,
    sealed: Vec<u8>,
    error_code: Option<String>,
}

fn encode_out(o: &OutRec) -> Vec<u8> {
    let mut w = Writer::default();
    w.raw(&o.tag)
        .u8(o.status.code())
        .u32(o.attempts)
        .opt_str(o.provider_id.as_deref())
        .str(&o.flow)
        .u32(o.step)
        .bytes(&o.sealed);
    // Appended after the sealed message (edges issue): records written before have no tail and
    // read as "no error code", so no store migration is needed.
    if o.error_code.is_some() {
        w.opt_str(o.error_code.as_deref());
    }
    w.buf
}

fn decode_out(key: &[u8], v: &[u8]) -> Result<OutRec> {
    let what = layout::describe(key);
    let body = unframe(key, v)?;
    let mut r = Reader::new(body, &what);
    let tag = r.array()?;
    let code = r.u8()?;
    let status = OutboxStatus::from_code(code).ok_or_else(|| StoreError::Corrupt {
        what: what.clone(),
        detail: format!("unknown status code {code}"),
    })?;
    let attempts = r.u32()?;
    let provider_id = r.opt_string()?;
    let flow = r.string()?;
    let step = r.u32()?;
    let sealed = r.bytes()?.to_vec();
    let error_code = if r.rest_len() > 0 {
        r.opt_string()?
    } else {
        None
    };
    Ok(OutRec {
        tag,
        status,
        attempts,
        provider_id,
        flow,
        step,
        sealed,
        error_code,
    })
}

fn u64_value(key: &[u8], v: &[u8]) -> Result<u64> {
    let body = unframe(key, v)?;
    let what = layout::describe(key);
    Reader::new(body, &what).u64()
}

fn framed_u64(key: &[u8], n: u64) -> Vec<u8> {
    frame(key, &n.to_be_bytes())
}

/// A commit's key lookups, kept for the commit: one person appears in it several times (their
/// record, timers, messages, links), and each lookup in the key directory reads the key file
/// (`keys.rs`). Lives only while the writer lock is held, so no erasure changes a key under it.
#[derive(Default)]
struct KeyMemo<'a>(HashMap<&'a str, (Tag, keys::DataKey)>);

impl<'a> KeyMemo<'a> {
    fn get(&mut self, keys: &KeyDir, name: &'a str) -> Result<Option<(Tag, keys::DataKey)>> {
        if let Some(k) = self.0.get(name) {
            return Ok(Some(*k));
        }
        let found = keys.get(name)?;
        if let Some(k) = found {
            self.0.insert(name, k);
        }
        Ok(found)
    }

    fn ensure(&mut self, keys: &mut KeyDir, name: &'a str) -> Result<(Tag, keys::DataKey)> {
        if let Some(k) = self.0.get(name) {
            return Ok(*k);
        }
        let k = keys.ensure(name)?;
        self.0.insert(name, k);
        Ok(k)
    }
}

impl Drop for KeyMemo<'_> {
    fn drop(&mut self) {
        for (_, key) in self.0.values_mut() {
            zeroize::Zeroize::zeroize(key);
        }
    }
}

/// An outbox record as `SledStore::live_outbox` finds it: sled key, record, person, data key.
type LiveOutbox = (Vec<u8>, OutRec, String, keys::DataKey);

fn undecryptable(key: &[u8]) -> StoreError {
    StoreError::Corrupt {
        what: layout::describe(key),
        detail: "sealed value does not authenticate under its person's key".into(),
    }
}

/// The sealed part of a log record: the source id and the payload.
fn log_plain(source_id: &str, payload: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.str(source_id).raw(payload);
    w.buf
}

fn split_log_plain(key: &[u8], plain: &[u8]) -> Result<(String, Vec<u8>)> {
    let what = layout::describe(key);
    let mut r = Reader::new(plain, &what);
    let id = r.string()?;
    Ok((id, r.rest().to_vec()))
}

/// Remove the snapshots sled began to write but never published, from the sled directory
/// `path`; returns how many. sled 0.34.7 writes its page-table snapshot (on every open, so on
/// every checkpoint) to `snap.<lsn>.generating` and publishes it by renaming it to
/// `snap.<lsn>`, but when it opens it reads the newest `snap.*` file WITHOUT skipping
/// `.generating` ones (`RunningConfig::get_snapshot_files` filters only `.in___motion`). A
/// kill between the write and the rename therefore leaves a torn file that every later open
/// reads first and refuses as corruption (spacejam/sled#1527): the store would never open
/// again, though nothing in it is damaged. An unpublished snapshot is never needed: the
/// previous snapshot and the log segments it replays from are removed only after a rename.
/// Done under sled's own lock (an exclusive flock on `db`, taken here and released before
/// sled takes it) so that another process's snapshot in progress is never touched; when the
/// lock is held, nothing is removed and sled's open reports the lock as usual.
fn remove_torn_snapshots(path: &Path) -> Result<usize> {
    use fs2::FileExt;
    let io = |what: &Path, e: std::io::Error| StoreError::Io(format!("{}: {e}", what.display()));
    let db_file = path.join("db");
    let lock = match std::fs::OpenOptions::new().read(true).open(&db_file) {
        Ok(f) => f,
        // A database sled has not created yet has no snapshot either.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io(&db_file, e)),
    };
    if lock.try_lock_exclusive().is_err() {
        return Ok(0);
    }
    let mut removed = 0;
    for entry in std::fs::read_dir(path).map_err(|e| io(path, e))? {
        let entry = entry.map_err(|e| io(path, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            std::fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
            removed += 1;
        }
    }
    // Closing the file releases the flock; sled opens its own descriptor next.
    drop(lock);
    Ok(removed)
}

fn is_event_subject(name: &str) -> bool {
    name.starts_with('#')
}

impl SledStore {
    /// Open the store in `dir`, creating it when `dir` does not exist or is empty. An existing
    /// directory must hold a store with the right magic and schema version; the newest log
    /// records are verified and any interrupted erasure is finished. Never starts empty over
    /// existing data.
    pub fn open(dir: &Path) -> Result<SledStore> {
        Self::open_with(dir, OpenOptions::default())
    }

    pub fn open_with(dir: &Path, opts: OpenOptions) -> Result<SledStore> {
        // A process that opens a store runs the durable runtime's kind of allocation (set here,
        // once for every caller: the commands, the benchmarks, `peer_load`).
        crate::alloc::tune_for_store();
        let shown = dir.display().to_string();
        let empty = match std::fs::read_dir(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(StoreError::Io(format!("read {shown}: {e}"))),
            Ok(mut it) => it.next().is_none(),
        };
        if empty {
            Self::create_in_place_of(dir, &opts)?;
            let mut s = Self::open_with(dir, opts)?;
            s.integrity.created = true;
            return Ok(s);
        }
        let db_path = dir.join(DB_DIR);
        if !db_path.is_dir() {
            return Err(StoreError::NotAStore {
                dir: shown,
                reason: format!("it is not empty and has no {DB_DIR}/ database"),
            });
        }
        let key_path = dir.join(KEY_FILE);
        // The key file is read and indexed on a second thread while sled opens: they are the
        // two largest parts of a restart (at 1M people, 2M subjects and sled's base open),
        // and neither needs the other. Its result is looked at only after the meta check,
        // so a directory that is not a store is still refused as such.
        let (db, keys) = std::thread::scope(|sc| {
            let keys = key_path
                .exists()
                .then(|| sc.spawn(|| KeyDir::load(&key_path)));
            let db = Self::sled(&db_path, opts.cache_bytes);
            (
                db,
                keys.map(|h| h.join().expect("the key file loader panicked")),
            )
        });
        let (db, torn) = db?;
        let meta = db.get(layout::META)?.ok_or_else(|| StoreError::NotAStore {
            dir: shown.clone(),
            reason: "its database has no meta record (not created by aftercart, or its \
                     creation was interrupted: remove the directory if it holds nothing)"
                .into(),
        })?;
        Self::check_meta(&shown, &meta)?;
        let Some(keys) = keys else {
            return Err(StoreError::Corrupt {
                what: format!("key file {}", key_path.display()),
                detail: "missing: every personal record in the log would be unreadable".into(),
            });
        };
        let keys = keys?;
        let mut s = SledStore::assemble(dir, db, keys, Integrity::default(), &opts);
        s.recover(opts.verify_last)?;
        s.integrity.torn_snapshots_removed = torn;
        // What the open built on the way is freed by now: back to the OS before the caller
        // settles in (a daemon may then wait hours for its first timer, holding it).
        crate::alloc::release_freed();
        Ok(s)
    }

    /// Open sled; also says how many torn snapshots were removed first.
    fn sled(path: &Path, cache_bytes: u64) -> Result<(sled::Db, usize)> {
        Self::sled_within(path, cache_bytes, 100)
    }

    /// As `sled`, waiting up to `patience` × 20 ms for the file lock.
    fn sled_within(path: &Path, cache_bytes: u64, patience: u32) -> Result<(sled::Db, usize)> {
        // sled releases its file lock from a background thread after the last handle drops, so
        // an immediate reopen in the same process can briefly find it held: retry for ~2 s
        // before concluding that another process owns the store.
        let mut tries = 0;
        let mut torn = 0;
        loop {
            torn += remove_torn_snapshots(path)?;
            match sled::Config::new()
                .path(path)
                .cache_capacity(cache_bytes)
                .open()
            {
                Ok(db) => return Ok((db, torn)),
                // sled wraps the flock error in a message ("could not acquire lock"), so the
                // kind alone does not always say WouldBlock.
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.to_string().contains("could not acquire lock") =>
                {
                    tries += 1;
                    if tries > patience {
                        return Err(StoreError::Io(format!(
                            "{} is locked: another aftercart process is using this store",
                            path.display()
                        )));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Create a store so that `dir` is, at every instant, either absent (or still empty) or a
    /// complete store: a creation killed half-way would otherwise leave a directory that is
    /// neither empty nor a store, which `open` rightly refuses forever after. The store is
    /// built in the sibling `DIR.creating` (a leftover of a killed creation is removed first)
    /// and renamed into place (rename(2) replaces an empty directory atomically); the parent
    /// directory is synced so that the rename itself survives a power cut.
    fn create_in_place_of(dir: &Path, opts: &OpenOptions) -> Result<()> {
        let mut tmp = dir.as_os_str().to_owned();
        tmp.push(".creating");
        let tmp = std::path::PathBuf::from(tmp);
        let io =
            |what: &Path, e: std::io::Error| StoreError::Io(format!("{}: {e}", what.display()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
        }
        drop(Self::create(&tmp, opts)?);
        std::fs::rename(&tmp, dir).map_err(|e| io(dir, e))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            keys::sync_dir(parent)?;
        }
        Ok(())
    }

    fn create(dir: &Path, opts: &OpenOptions) -> Result<SledStore> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Io(format!("create {}: {e}", dir.display())))?;
        let keys = KeyDir::create(&dir.join(KEY_FILE))?;
        let (db, _) = Self::sled(&dir.join(DB_DIR), opts.cache_bytes)?;
        let meta = serde_json::json!({
            "magic": MAGIC,
            "schema_version": SCHEMA_VERSION,
            "created_at": Utc::now().to_rfc3339(),
        });
        let body = serde_json::to_vec(&meta).expect("json");
        db.insert(layout::META, frame(layout::META, &body))?;
        db.insert(layout::FIRST, framed_u64(layout::FIRST, 1))?;
        db.flush()?;
        keys::sync_dir(dir)?;
        let integrity = Integrity {
            created: true,
            first_seq: 1,
            ..Integrity::default()
        };
        Ok(SledStore::assemble(dir, db, keys, integrity, opts))
    }

    fn assemble(
        dir: &Path,
        db: sled::Db,
        keys: KeyDir,
        integrity: Integrity,
        opts: &OpenOptions,
    ) -> SledStore {
        let written = Arc::new(AtomicU64::new(0));
        let db: SharedDb = Arc::new(parking_lot::RwLock::new(Some(db)));
        SledStore {
            dir: dir.to_path_buf(),
            applier: Applier::new(db.clone(), written.clone()),
            settled_db: db,
            opts: opts.clone(),
            since_checkpoint: AtomicU64::new(0),
            checkpoints: Mutex::new(CheckpointStats::default()),
            keys: RwLock::new(keys),
            writer: Mutex::new(integrity.last_seq),
            flush_lock: Mutex::new(()),
            written,
            flushed: AtomicU64::new(0),
            integrity,
        }
    }

    fn check_meta(dir: &str, v: &[u8]) -> Result<()> {
        let body = unframe(layout::META, v)?;
        let meta: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| StoreError::Corrupt {
                what: "meta record".into(),
                detail: format!("not JSON: {e}"),
            })?;
        if meta.get("magic").and_then(|m| m.as_str()) != Some(MAGIC) {
            return Err(StoreError::NotAStore {
                dir: dir.into(),
                reason: format!("its meta record lacks the magic {MAGIC:?}"),
            });
        }
        let found = meta
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .unwrap_or(0) as u32;
        if found != SCHEMA_VERSION {
            return Err(StoreError::SchemaMismatch {
                dir: dir.into(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(())
    }

    /// What `open` verified.
    pub fn integrity(&self) -> &Integrity {
        &self.integrity
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database, once no commit is in flight ([`Applier::settle`]): a read then sees
    /// every batch this store was told to commit, and a write cannot overtake one.
    ///
    /// The lock is taken with `read_recursive`: a method may call `db()` again while a guard
    /// of its own is alive (a `for` over a scan keeps its guard through the body), and a
    /// checkpoint waiting for the write lock must not block that second read (it would
    /// wait for the first forever). A checkpoint therefore waits for every guard to drop.
    fn db(&self) -> Result<DbRef<'_>> {
        self.applier.settle()?;
        let g = self.settled_db.read_recursive();
        if g.is_none() {
            return Err(StoreError::Io(
                "the database is closed: reopening it after a checkpoint failed (the error was \
                 returned then); everything flushed before is on disk: reopen the store"
                    .into(),
            ));
        }
        Ok(DbRef(g))
    }

    /// `b`'s batch, its bytes counted towards the next checkpoint.
    fn counted(&self, b: Counted) -> Batch {
        self.since_checkpoint.fetch_add(b.bytes, Ordering::Relaxed);
        b.batch
    }

    /// Take a checkpoint if `checkpoint_bytes` were written since the last one. The caller
    /// holds the writer lock (no batch can start) and no key lock (a reader holding a `db()`
    /// guard may wait for one, and the checkpoint waits for that guard).
    fn checkpoint_if_due(&self) -> Result<()> {
        let every = self.opts.checkpoint_bytes;
        if every == 0 || self.since_checkpoint.load(Ordering::Relaxed) < every {
            return Ok(());
        }
        self.checkpoint()
    }

    /// Flush, close and reopen the database, so that sled writes its page-table snapshot
    /// (sled 0.34 writes one only when it opens: see [`OpenOptions::checkpoint_bytes`]). The
    /// next open, after a clean stop or a crash, replays only what was written after this.
    /// Nothing can be lost: what is in sled is flushed before the close, and the reopen is
    /// sled's own recovery of a cleanly closed database. Caller as for `checkpoint_if_due`.
    fn checkpoint(&self) -> Result<()> {
        self.applier.settle()?;
        let t = Instant::now();
        let mut slot = self.settled_db.write();
        if let Some(db) = slot.as_ref() {
            db.flush()?;
        }
        // The only handle (the apply thread reads the shared one per batch): dropping it
        // closes the database. sled releases its file lock from a background thread, so the
        // open retries meanwhile; up to 30 s here, since this process itself just held the
        // lock (a machine under load can be slow to run that thread), and giving up would
        // stop the store.
        drop(slot.take());
        let (db, _torn) = Self::sled_within(&self.dir.join(DB_DIR), self.opts.cache_bytes, 1500)?;
        *slot = Some(db);
        drop(slot);
        self.since_checkpoint.store(0, Ordering::Relaxed);
        let took = t.elapsed();
        let mut st = self.checkpoints.lock().unwrap();
        st.count += 1;
        st.total += took;
        st.longest = st.longest.max(took);
        Ok(())
    }

    fn get_u64(&self, key: &[u8]) -> Result<Option<u64>> {
        match self.db()?.get(key)? {
            None => Ok(None),
            Some(v) => u64_value(key, &v).map(Some),
        }
    }

    /// Verify the newest log records and the pointers, and finish interrupted erasures.
    fn recover(&mut self, verify_last: usize) -> Result<()> {
        let first = self.get_u64(layout::FIRST)?.unwrap_or(1);
        let last = match self.db()?.scan_prefix([layout::LOG]).keys().next_back() {
            None => first - 1,
            Some(k) => {
                let k = k?;
                layout::seq_of_log(&k).ok_or_else(|| StoreError::Corrupt {
                    what: "log".into(),
                    detail: format!("malformed log key of {} bytes", k.len()),
                })?
            }
        };
        if last + 1 < first {
            return Err(StoreError::Corrupt {
                what: "log".into(),
                detail: format!("the last record is seq {last} but the log starts at {first}"),
            });
        }
        let cursor = self.get_u64(layout::CURSOR)?.unwrap_or(0);
        if cursor > last {
            return Err(StoreError::Corrupt {
                what: "cursor record".into(),
                detail: format!(
                    "cursor is at seq {cursor} but the log ends at seq {last}: log records were lost"
                ),
            });
        }
        let erased: HashMap<Tag, u8> = self.markers()?;
        let mut expect = last;
        let mut verified = 0;
        {
            let keys = self.keys.read().unwrap();
            for kv in self
                .db()?
                .scan_prefix([layout::LOG])
                .rev()
                .take(verify_last)
            {
                let (k, v) = kv?;
                let seq = layout::seq_of_log(&k).unwrap_or(0);
                if seq != expect {
                    return Err(StoreError::Corrupt {
                        what: "log".into(),
                        detail: format!(
                            "sequence not contiguous: expected seq {expect}, found seq {seq}"
                        ),
                    });
                }
                let rec = decode_log(&k, &v)?;
                let dk = layout::prefixed(layout::DEDUP, &rec.dedup);
                let points = match self.db()?.get(&dk)? {
                    None => None,
                    Some(d) => Some(u64_value(&dk, &d)?),
                };
                if points != Some(seq) {
                    return Err(StoreError::Corrupt {
                        what: format!("dedup index for log record seq {seq}"),
                        detail: format!("points to {points:?}"),
                    });
                }
                match keys.resolve(&rec.tag)? {
                    Some((_, key)) => {
                        if keys::open(&key, &k, &rec.sealed).is_none() {
                            return Err(undecryptable(&k));
                        }
                    }
                    None if erased.contains_key(&rec.tag) => {}
                    None => {
                        return Err(StoreError::Corrupt {
                            what: format!("log record seq {seq}"),
                            detail: "sealed with a key that keys.bin lacks and that was never \
                                     erased: keys.bin is older than the database?"
                                .into(),
                        })
                    }
                }
                verified += 1;
                expect = seq.wrapping_sub(1);
            }
        }
        if verified < verify_last && last >= first && expect + 1 != first {
            return Err(StoreError::Corrupt {
                what: "log".into(),
                detail: format!(
                    "the log should start at seq {first} but its oldest record is seq {}",
                    expect + 1
                ),
            });
        }
        // An erasure stopped by a crash (or a failed key-file write) after its marker and
        // before its key was destroyed: destroy the key first (step 2 of `forget`), else it
        // would outlive the erasure, able to open the stale copies sled still holds, and the
        // person's id would stay in keys.bin.
        let erasing: HashSet<Tag> = erased
            .iter()
            .filter(|(_, s)| **s == ERASING)
            .map(|(t, _)| *t)
            .collect();
        // Tags whose key is already gone are skipped: nothing is written for them.
        self.keys.write().unwrap().destroy(&[], &erasing)?;
        let erasing: Vec<Tag> = erasing.into_iter().collect();
        let finished = erasing.len();
        if finished > 0 {
            self.finish_erasure(&erasing)?;
            self.db()?.flush()?;
        }
        *self.writer.lock().unwrap() = last;
        self.integrity = Integrity {
            created: false,
            first_seq: first,
            last_seq: last,
            cursor,
            log_records_verified: verified,
            keys: self.keys.read().unwrap().len(),
            erasures_finished: finished,
            torn_snapshots_removed: 0,
        };
        Ok(())
    }

    fn markers(&self) -> Result<HashMap<Tag, u8>> {
        let mut out = HashMap::new();
        for kv in self.db()?.scan_prefix([layout::ERASURES]) {
            let (k, v) = kv?;
            let body = unframe(&k, &v)?;
            if k.len() == 17 && body.len() == 1 {
                out.insert(k[1..].try_into().unwrap(), body[0]);
            }
        }
        Ok(out)
    }

    /// Count changes to apply with the batch: reads the stored values (writers are serialised).
    fn add_counters(&self, b: &mut Batch, deltas: HashMap<String, i64>) -> Result<()> {
        for (name, d) in deltas {
            if d == 0 {
                continue;
            }
            let k = layout::prefixed(layout::COUNTERS, name.as_bytes());
            let cur = self.get_u64(&k)?.unwrap_or(0);
            let new = if d < 0 {
                cur.saturating_sub(d.unsigned_abs())
            } else {
                cur.saturating_add(d as u64)
            };
            b.insert(k.clone(), framed_u64(&k, new));
        }
        Ok(())
    }

    fn apply(&self, keys: &mut KeyDir, b: Batch) -> Result<()> {
        // Keys first: durable ciphertext must never outlive its key's absence.
        keys.sync()?;
        self.db()?.apply_batch(b)?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn read_entry(&self, keys: &KeyDir, k: &[u8], v: &[u8]) -> Result<LogEntry> {
        let rec = decode_log(k, v)?;
        let seq = layout::seq_of_log(k).unwrap_or(0);
        let mut e = LogEntry {
            seq,
            received_at: from_millis(rec.received_ms),
            source: rec.source,
            source_id: None,
            person: None,
            payload: None,
        };
        if let Some((name, key)) = keys.resolve(&rec.tag)? {
            let plain = keys::open(&key, k, &rec.sealed).ok_or_else(|| undecryptable(k))?;
            let (id, payload) = split_log_plain(k, &plain)?;
            e.source_id = Some(id);
            e.payload = Some(payload);
            if !is_event_subject(&name) {
                e.person = Some(name);
            }
        }
        Ok(e)
    }

    fn read_timer(&self, keys: &KeyDir, k: &[u8], v: &[u8]) -> Result<Option<Timer>> {
        let body = unframe(k, v)?;
        if k.len() != TIMER_KEY_LEN {
            return Err(StoreError::Corrupt {
                what: layout::describe(k),
                detail: "malformed timer key".into(),
            });
        }
        let tag: Tag = k[9..25].try_into().unwrap();
        // A tag without a key belongs to a person being erased: not a live timer.
        let Some((person, key)) = keys.resolve(&tag)? else {
            return Ok(None);
        };
        let inst = keys::open(&key, k, body).ok_or_else(|| undecryptable(k))?;
        Ok(Some(Timer {
            due: from_millis(layout::due_from(&k[1..9])),
            person: person.to_string(),
            instance: String::from_utf8_lossy(&inst).into_owned(),
            step: u32::from_be_bytes(k[41..45].try_into().unwrap()),
        }))
    }

    /// Every timer key of one person, found by the tag inside the key: a scan of the whole due
    /// index (keys only). Erasure and export are rare, and an index by person cost two sled
    /// writes per timer on the hot path (an insert when it was set, a removal when it fired).
    fn timer_keys_of(&self, tag: &Tag) -> Result<Vec<sled::IVec>> {
        let mut out = Vec::new();
        for k in self.db()?.scan_prefix([layout::TIMERS]).keys() {
            let k = k?;
            if k.get(9..25) == Some(&tag[..]) {
                out.push(k);
            }
        }
        Ok(out)
    }

    /// An outbox record whose person's key still exists (an erasure a crash cut short, finished
    /// on the next open, leaves records whose key is gone: they are not there), with its sled
    /// key, person and data key; nothing decrypted.
    fn live_outbox(&self, keys: &KeyDir, message_id: &str) -> Result<Option<LiveOutbox>> {
        let k = layout::prefixed(layout::OUTBOX, message_id.as_bytes());
        let Some(v) = self.db()?.get(&k)? else {
            return Ok(None);
        };
        let o = decode_out(&k, &v)?;
        Ok(keys
            .resolve(&o.tag)?
            .map(|(person, key)| (k, o, person, key)))
    }

    fn read_outbox(&self, keys: &KeyDir, message_id: &str) -> Result<Option<OutboxEntry>> {
        let Some((k, o, person, key)) = self.live_outbox(keys, message_id)? else {
            return Ok(None);
        };
        let message = keys::open(&key, &k, &o.sealed).ok_or_else(|| undecryptable(&k))?;
        Ok(Some(OutboxEntry {
            message_id: message_id.to_string(),
            person: person.to_string(),
            flow: o.flow,
            step: o.step,
            message,
            status: o.status,
            attempts: o.attempts,
            provider_id: o.provider_id,
            error_code: o.error_code,
        }))
    }

    /// Delete every live record of erased tags (their keys are already destroyed) and mark
    /// the erasures done: events counted, timers and messages deleted.
    fn finish_erasure(&self, tags: &[Tag]) -> Result<HashMap<Tag, ErasedCounts>> {
        self.erase_state(tags)?;
        self.erase_scanned(tags)
    }

    /// The first part of [`Self::finish_erasure`], under the writer lock in `forget_many`: the
    /// people's records.
    fn erase_state(&self, tags: &[Tag]) -> Result<()> {
        let mut b = Batch::default();
        for tag in tags {
            b.remove(&layout::tagged(layout::PEOPLE, tag)[..]);
        }
        self.db()?.apply_batch(b)?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// The second part of [`Self::finish_erasure`], with the writer lock released: the
    /// people's timers, outbox messages and links, found by ONE scan each of the whole due
    /// index, outbox and link table for all the tags (no index by person is written: each
    /// cost a key per event, message or link on the hot path, docs/storage.md "Erasure"),
    /// deleted with the markers that say the erasures are done, in one batch. The people's
    /// log entries stay, unreadable, and are counted by a scan of the log. Stores written
    /// before session 11 also kept person -> event, message, link and timer indexes (`e`,
    /// `O`, `N`, `T ++ tag ++ ...`); their entries hold no personal data, but they go too.
    fn erase_scanned(&self, tags: &[Tag]) -> Result<HashMap<Tag, ErasedCounts>> {
        // A database guard per scan, not one for all: a checkpoint (which reopens sled) waits
        // for every guard to drop, and a commit that is due one waits with it.
        let mut counts: HashMap<Tag, ErasedCounts> =
            tags.iter().map(|t| (*t, ErasedCounts::default())).collect();
        let mut b = Batch::default();
        for kv in self.db()?.scan_prefix([layout::LOG]) {
            let (k, v) = kv?;
            if let Some(c) = counts.get_mut(&log_tag(&k, &v)?) {
                c.events += 1;
            }
        }
        for (k, tag) in self.owned_by(layout::OUTBOX, |t| counts.contains_key(t))? {
            b.remove(layout::prefixed(layout::PENDING, &k[1..]));
            b.remove(k);
            counts.get_mut(&tag).expect("a tag sought").messages += 1;
        }
        for (k, _) in self.owned_by(layout::LINKS, |t| counts.contains_key(t))? {
            b.remove(k);
        }
        // `t ++ due(8) ++ tag ++ ...`: the tag is in the key.
        for k in self.db()?.scan_prefix([layout::TIMERS]).keys() {
            let k = k?;
            if let Some(c) = tag_at(&k, 9).and_then(|t| counts.get_mut(&t)) {
                b.remove(k);
                c.timers += 1;
            }
        }
        for tag in tags {
            for old in [
                layout::PERSON_EVENTS,
                layout::PERSON_OUTBOX,
                layout::PERSON_LINKS,
                layout::PERSON_TIMERS,
            ] {
                for k in self.db()?.scan_prefix(layout::tagged(old, tag)).keys() {
                    b.remove(k?);
                }
            }
            let zk = layout::tagged(layout::ERASURES, tag);
            b.insert(&zk[..], frame(&zk, &[ERASED]));
        }
        self.db()?.apply_batch(b)?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(counts)
    }

    /// The keys (and owners) of the records of `family` whose owner `owns`: outbox messages
    /// and links, whose value (inside its frame) starts with the owner's tag. One scan of the
    /// whole family: there is no index by person (docs/storage.md, "Erasure").
    fn owned_by(&self, family: u8, owns: impl Fn(&Tag) -> bool) -> Result<Vec<(sled::IVec, Tag)>> {
        let mut out = Vec::new();
        for kv in self.db()?.scan_prefix([family]) {
            let (k, v) = kv?;
            if let Some(t) = tag_at(unframe(&k, &v)?, 0).filter(|t| owns(t)) {
                out.push((k, t));
            }
        }
        Ok(out)
    }

    /// Destroy retired event keys in keys.bin (after a flush made their retirement
    /// durable), then drop the markers.
    fn purge_retired(&self, keys: &mut KeyDir, also: &[&str]) -> Result<()> {
        let retired: HashSet<Tag> = self
            .markers()?
            .into_iter()
            .filter(|(_, s)| *s == RETIRED)
            .map(|(t, _)| t)
            .collect();
        if retired.is_empty() && also.is_empty() {
            return Ok(());
        }
        keys.destroy(also, &retired)?;
        let mut b = Batch::default();
        for t in &retired {
            b.remove(&layout::tagged(layout::ERASURES, t)[..]);
        }
        self.db()?.apply_batch(b)?;
        self.written.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Test and repair hooks: raw access to the one tree, bypassing checksums. Not part of the
    /// API; the corruption tests use them to damage records as a crash would.
    #[doc(hidden)]
    pub fn debug_raw_get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.db().ok()?.get(key).ok().flatten().map(|v| v.to_vec())
    }

    #[doc(hidden)]
    pub fn debug_raw_insert(&self, key: &[u8], value: &[u8]) {
        let db = self.db().expect("settle");
        db.insert(key, value).expect("raw insert");
        db.flush().expect("raw flush");
    }

    /// Every raw key that starts with `prefix`, in order.
    #[doc(hidden)]
    pub fn debug_raw_keys(&self, prefix: &[u8]) -> Vec<Vec<u8>> {
        let db = self.db().expect("settle");
        db.scan_prefix(prefix)
            .keys()
            .map(|k| k.expect("raw scan").to_vec())
            .collect()
    }

    #[doc(hidden)]
    pub fn debug_raw_remove(&self, key: &[u8]) {
        let db = self.db().expect("settle");
        db.remove(key).expect("raw remove");
        db.flush().expect("raw flush");
    }
}

impl Store for SledStore {
    fn append(&self, events: &[NewEvent]) -> Result<Vec<AppendResult>> {
        let mut last = self.writer.lock().unwrap();
        self.checkpoint_if_due()?;
        let mut keys = self.keys.write().unwrap();
        let mut b = Counted::default();
        let mut out = Vec::with_capacity(events.len());
        let mut seen: HashMap<[u8; 17], Seq> = HashMap::new();
        let mut counters: HashMap<String, i64> = HashMap::new();
        let mut next = *last;
        for ev in events {
            let dk = layout::dedup(&ev.source, &ev.source_id);
            let dup = match seen.get(&dk) {
                Some(s) => Some(*s),
                None => match self.db()?.get(dk)? {
                    Some(v) => Some(u64_value(&dk, &v)?),
                    None => None,
                },
            };
            if let Some(s) = dup {
                *counters
                    .entry(format!("events.duplicate.{}", ev.source))
                    .or_default() += 1;
                out.push(AppendResult::Duplicate(s));
                continue;
            }
            next += 1;
            let subject = match &ev.person {
                Some(p) => p.clone(),
                None => format!("#{next}"),
            };
            let (tag, key) = keys.ensure(&subject)?;
            let lk = layout::log(next);
            let sealed = keys::seal(&key, &lk, &log_plain(&ev.source_id, &ev.payload))?;
            let rec = LogRec {
                received_ms: millis(ev.received_at),
                source: ev.source.clone(),
                dedup: dk[1..].try_into().unwrap(),
                tag,
                sealed,
            };
            b.insert(&lk[..], frame(&lk, &encode_log(&rec)));
            // No person -> event index (`e`, written by stores before session 11): erasure
            // leaves the log entry as ciphertext and export scans the log (docs/storage.md,
            // "Erasure"), so the hot path writes two keys per event, not three.
            b.insert(&dk[..], framed_u64(&dk, next));
            seen.insert(dk, next);
            *counters
                .entry(format!("events.accepted.{}", ev.source))
                .or_default() += 1;
            out.push(AppendResult::Accepted(next));
        }
        self.add_counters(&mut b.batch, counters)?;
        self.apply(&mut keys, self.counted(b))?;
        *last = next;
        Ok(out)
    }

    fn commit(&self, c: CommitBatch) -> Result<()> {
        let last = self.writer.lock().unwrap();
        self.checkpoint_if_due()?;
        // The previous batch may still be in flight until the settle below: what comes before
        // it builds and seals records without reading the database (the writer lock keeps any
        // other batch from being handed over meanwhile), so that work overlaps its apply.
        let mut keys = self.keys.write().unwrap();
        let mut memo = KeyMemo::default();
        let mut b = Counted::default();
        let mut counters: HashMap<String, i64> = HashMap::new();
        for p in &c.people_remove {
            if let Some((tag, _)) = memo.get(&keys, p)? {
                b.remove(&layout::tagged(layout::PEOPLE, &tag)[..]);
            }
        }
        // Keys in order (the key directory is one), then sealing on two threads (`crate::par`:
        // person records are the largest values a commit seals).
        let people = c
            .people_put
            .iter()
            .map(|(p, state)| {
                let (tag, key) = memo.ensure(&mut keys, p)?;
                Ok((layout::tagged(layout::PEOPLE, &tag), key, state))
            })
            .collect::<Result<Vec<_>>>()?;
        let sealed = crate::par::map_halves(&people, 64, |(k, key, state)| {
            keys::seal(key, k, state).map(|s| frame(k, &s))
        });
        for ((k, _, _), v) in people.iter().zip(sealed) {
            b.insert(&k[..], v?);
        }
        for t in &c.timers_remove {
            if let Some((tag, key)) = memo.get(&keys, &t.person)? {
                let tk = layout::timer(
                    millis(t.due),
                    &tag,
                    &keys::instance_hash(&key, &t.instance),
                    t.step,
                );
                b.remove(&tk[..]);
            }
        }
        for t in &c.timers_add {
            let (tag, key) = memo.ensure(&mut keys, &t.person)?;
            let tk = layout::timer(
                millis(t.due),
                &tag,
                &keys::instance_hash(&key, &t.instance),
                t.step,
            );
            let sealed = keys::seal(&key, &tk, t.instance.as_bytes())?;
            b.insert(&tk[..], frame(&tk, &sealed));
        }
        // The previous batch applied: the reads below (outbox statuses, counters) see it, and
        // the hand-off at the end needs it even when nothing below reads (`Applier::submit`:
        // one batch in flight), so this wait is explicit rather than left to `db()`.
        self.applier.settle()?;
        // Outbox records written earlier in this batch, so updates see them.
        let mut overlay: HashMap<String, OutRec> = HashMap::new();
        for o in &c.outbox_put {
            let k = layout::prefixed(layout::OUTBOX, o.message_id.as_bytes());
            // An id the outbox already holds is never put again: that could reset a message a
            // provider accepted to pending, and it would be sent twice. The runtime never makes
            // one (the person's `sent` set is committed with the outbox), so this read, which
            // finds nothing, is the guard.
            if overlay.contains_key(&o.message_id)
                || self.live_outbox(&keys, &o.message_id)?.is_some()
            {
                *counters
                    .entry("runtime.sends_already_in_outbox".into())
                    .or_default() += 1;
                continue;
            }
            let (tag, key) = memo.ensure(&mut keys, &o.person)?;
            // `pending` counts messages created (docs/server.md, `aftercart_messages_total`),
            // also those put already sent (the runtime's direct send).
            if o.status != OutboxStatus::Pending {
                *counters
                    .entry(format!(
                        "messages.{}.{}",
                        o.flow,
                        OutboxStatus::Pending.as_str()
                    ))
                    .or_default() += 1;
            }
            *counters
                .entry(format!("messages.{}.{}", o.flow, o.status.as_str()))
                .or_default() += 1;
            let rec = OutRec {
                tag,
                status: o.status,
                attempts: o.attempts,
                provider_id: o.provider_id.clone(),
                flow: o.flow.clone(),
                step: o.step,
                sealed: keys::seal(&key, &k, &o.message)?,
                error_code: o.error_code.clone(),
            };
            b.insert(k.clone(), frame(&k, &encode_out(&rec)));
            let qk = layout::prefixed(layout::PENDING, o.message_id.as_bytes());
            if o.status.needs_dispatch() {
                b.insert(qk.clone(), frame(&qk, b""));
            } else {
                b.remove(qk);
            }
            overlay.insert(o.message_id.clone(), rec);
        }
        for u in &c.outbox_update {
            let k = layout::prefixed(layout::OUTBOX, u.message_id.as_bytes());
            let mut rec = match overlay.remove(&u.message_id) {
                Some(r) => r,
                None => match self.db()?.get(&k)? {
                    // A message whose person an erasure is deleting (its key is gone; its
                    // records are removed after the writer lock is released): rewriting it
                    // would bring back a record the erasure's scan already removed.
                    Some(v) => match decode_out(&k, &v)? {
                        r if keys.resolve(&r.tag)?.is_none() => continue,
                        r => r,
                    },
                    None => {
                        return Err(StoreError::Invalid(format!(
                            "outbox update for unknown message {}",
                            u.message_id
                        )))
                    }
                },
            };
            if rec.status != u.status {
                *counters
                    .entry(format!("messages.{}.{}", rec.flow, u.status.as_str()))
                    .or_default() += 1;
            }
            rec.status = u.status;
            rec.attempts = u.attempts;
            rec.provider_id = u.provider_id.clone();
            rec.error_code = u.error_code.clone();
            b.insert(k.clone(), frame(&k, &encode_out(&rec)));
            let qk = layout::prefixed(layout::PENDING, u.message_id.as_bytes());
            if u.status.needs_dispatch() {
                b.insert(qk.clone(), frame(&qk, b""));
            } else {
                b.remove(qk);
            }
            overlay.insert(u.message_id.clone(), rec);
        }
        for l in &c.links_put {
            let (tag, key) = memo.ensure(&mut keys, &l.person)?;
            let k = layout::prefixed(layout::LINKS, l.code.as_bytes());
            let mut plain = Writer::default();
            plain.str(&l.message_id).str(&l.url);
            let mut w = Writer::default();
            w.raw(&tag).bytes(&keys::seal(&key, &k, &plain.buf)?);
            b.insert(k.clone(), frame(&k, &w.buf));
        }
        for (seq, person) in &c.attribute {
            let lk = layout::log(*seq);
            let Some(v) = self.db()?.get(lk)? else {
                return Err(StoreError::Invalid(format!(
                    "attribute: seq {seq} is not in the log"
                )));
            };
            let mut rec = decode_log(&lk, &v)?;
            let Some((name, old_key)) = keys.resolve(&rec.tag)? else {
                continue; // erased meanwhile: nothing left to move
            };
            if !is_event_subject(&name) {
                if &name == person {
                    continue;
                }
                return Err(StoreError::Invalid(format!(
                    "attribute: seq {seq} already belongs to another person"
                )));
            }
            let plain = keys::open(&old_key, &lk, &rec.sealed).ok_or_else(|| undecryptable(&lk))?;
            let old_tag = rec.tag;
            let (tag, key) = memo.ensure(&mut keys, person)?;
            rec.tag = tag;
            rec.sealed = keys::seal(&key, &lk, &plain)?;
            b.insert(&lk[..], frame(&lk, &encode_log(&rec)));
            // The event's own key can decrypt the old copy still in sled's segments: retire it
            // so the next key destruction (`purge_retired`) takes it.
            let zk = layout::tagged(layout::ERASURES, &old_tag);
            b.insert(&zk[..], frame(&zk, &[RETIRED]));
        }
        for (name, d) in &c.counters {
            *counters.entry(name.clone()).or_default() += d;
        }
        if let Some(cur) = c.cursor {
            if cur > *last {
                return Err(StoreError::Invalid(format!(
                    "cursor {cur} is past the end of the log ({})",
                    *last
                )));
            }
            b.insert(layout::CURSOR, framed_u64(layout::CURSOR, cur));
        }
        self.add_counters(&mut b.batch, counters)?;
        // Keys first, as in `apply`; then the batch goes to the apply thread (which counts it
        // in `written` once applied, so a flush never counts a batch still in flight).
        keys.sync()?;
        self.applier.submit(self.counted(b))
    }

    fn checkpoint_stats(&self) -> CheckpointStats {
        *self.checkpoints.lock().unwrap()
    }

    fn flush(&self) -> Result<()> {
        // This caller's commits applied; `written` counts only what is in sled, so the flush
        // below covers everything it counts, even with commits handed over meanwhile.
        self.applier.settle()?;
        let target = self.written.load(Ordering::SeqCst);
        let _g = self.flush_lock.lock().unwrap();
        if self.flushed.load(Ordering::SeqCst) >= target && target > 0 {
            return Ok(());
        }
        let covered = self.written.load(Ordering::SeqCst);
        self.db()?.flush()?;
        self.flushed.store(covered, Ordering::SeqCst);
        Ok(())
    }

    fn last_seq(&self) -> Result<Seq> {
        Ok(*self.writer.lock().unwrap())
    }

    fn first_seq(&self) -> Result<Seq> {
        Ok(self.get_u64(layout::FIRST)?.unwrap_or(1))
    }

    fn cursor(&self) -> Result<Seq> {
        Ok(self.get_u64(layout::CURSOR)?.unwrap_or(0))
    }

    fn read_log(&self, from: Seq, limit: usize) -> Result<Vec<LogEntry>> {
        let keys = self.keys.read().unwrap();
        let mut out = Vec::new();
        let end = layout::log(u64::MAX);
        for kv in self.db()?.range(layout::log(from)..=end).take(limit) {
            let (k, v) = kv?;
            out.push(self.read_entry(&keys, &k, &v)?);
        }
        Ok(out)
    }

    fn person(&self, person: &str) -> Result<Option<Vec<u8>>> {
        let keys = self.keys.read().unwrap();
        // No key, no record, in the database or in flight (a commit makes its keys before it
        // is handed over): answered without waiting for the apply (the runtime asks this for
        // every new phone, order and checkout it meets).
        let Some((tag, key)) = keys.get(person)? else {
            return Ok(None);
        };
        let k = layout::tagged(layout::PEOPLE, &tag);
        match self.db()?.get(k)? {
            None => Ok(None),
            Some(v) => {
                let body = unframe(&k, &v)?;
                Ok(Some(
                    keys::open(&key, &k, body).ok_or_else(|| undecryptable(&k))?,
                ))
            }
        }
    }

    fn people(&self) -> Result<Vec<String>> {
        let keys = self.keys.read().unwrap();
        let mut out = Vec::new();
        for k in self.db()?.scan_prefix([layout::PEOPLE]).keys() {
            let k = k?;
            let Ok(tag) = k[1..].try_into() else {
                continue;
            };
            if let Some((name, _)) = keys.resolve(&tag)? {
                out.push(name);
            }
        }
        Ok(out)
    }

    fn due_between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        let keys = self.keys.read().unwrap();
        let mut lo = vec![layout::TIMERS];
        lo.extend_from_slice(&layout::due_bytes(millis(from)));
        // The greatest possible key due at `until`: its due, then 0xff for every byte of tag,
        // instance hash and step, inclusive. (A single 0xff byte as an exclusive bound
        // dropped the timers due exactly at `until` whose person's random tag begins with
        // 0xff: one person in 256 silently lost a timer when a read ended on its instant.)
        let mut hi = vec![layout::TIMERS];
        hi.extend_from_slice(&layout::due_bytes(millis(until)));
        hi.extend_from_slice(&[0xff; TIMER_KEY_LEN]);
        if lo > hi {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for kv in self.db()?.range(lo..=hi) {
            if out.len() >= limit {
                break;
            }
            let (k, v) = kv?;
            if let Some(t) = self.read_timer(&keys, &k, &v)? {
                out.push(t);
            }
        }
        Ok(out)
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        let keys = self.keys.read().unwrap();
        for kv in self.db()?.scan_prefix([layout::TIMERS]) {
            let (k, v) = kv?;
            if let Some(t) = self.read_timer(&keys, &k, &v)? {
                return Ok(Some(t.due));
            }
        }
        Ok(None)
    }

    fn timers_of(&self, person: &str) -> Result<Vec<Timer>> {
        let keys = self.keys.read().unwrap();
        let Some((tag, _)) = keys.get(person)? else {
            return Ok(vec![]);
        };
        let mut out = Vec::new();
        for tk in self.timer_keys_of(&tag)? {
            // Removed since the scan: not a timer any more.
            if let Some(v) = self.db()?.get(&tk)? {
                out.extend(self.read_timer(&keys, &tk, &v)?);
            }
        }
        Ok(out)
    }

    fn outbox(&self, message_id: &str) -> Result<Option<OutboxEntry>> {
        let keys = self.keys.read().unwrap();
        self.read_outbox(&keys, message_id)
    }

    fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let keys = self.keys.read().unwrap();
        let mut out = Vec::new();
        for k in self.db()?.scan_prefix([layout::PENDING]).keys() {
            if out.len() >= limit {
                break;
            }
            let k = k?;
            let mid = String::from_utf8_lossy(&k[1..]).into_owned();
            out.extend(self.read_outbox(&keys, &mid)?);
        }
        Ok(out)
    }

    fn link(&self, code: &str) -> Result<Option<LinkEntry>> {
        let keys = self.keys.read().unwrap();
        let k = layout::prefixed(layout::LINKS, code.as_bytes());
        let Some(v) = self.db()?.get(&k)? else {
            return Ok(None);
        };
        let what = layout::describe(&k);
        let body = unframe(&k, &v)?;
        let mut r = Reader::new(body, &what);
        let tag: Tag = r.array()?;
        let sealed = r.bytes()?;
        // A tag without a key: the person was forgotten (the record goes with the erasure).
        let Some((person, key)) = keys.resolve(&tag)? else {
            return Ok(None);
        };
        let plain = keys::open(&key, &k, sealed).ok_or_else(|| undecryptable(&k))?;
        let mut r = Reader::new(&plain, &what);
        Ok(Some(LinkEntry {
            code: code.to_string(),
            message_id: r.string()?,
            url: r.string()?,
            person: person.to_string(),
        }))
    }

    fn deploy(&self, hash: &str, program: &[u8]) -> Result<()> {
        let _w = self.writer.lock().unwrap();
        let mut b = Batch::default();
        let k = layout::prefixed(layout::PROGRAMS, hash.as_bytes());
        b.insert(k.clone(), frame(&k, program));
        b.insert(layout::DEPLOYED, frame(layout::DEPLOYED, hash.as_bytes()));
        self.db()?.apply_batch(b)?;
        self.written.fetch_add(1, Ordering::SeqCst);
        drop(_w);
        self.flush()
    }

    fn program(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        let k = layout::prefixed(layout::PROGRAMS, hash.as_bytes());
        match self.db()?.get(&k)? {
            None => Ok(None),
            Some(v) => Ok(Some(unframe(&k, &v)?.to_vec())),
        }
    }

    fn deployed(&self) -> Result<Option<String>> {
        match self.db()?.get(layout::DEPLOYED)? {
            None => Ok(None),
            Some(v) => Ok(Some(
                String::from_utf8_lossy(unframe(layout::DEPLOYED, &v)?).into_owned(),
            )),
        }
    }

    fn counters(&self) -> Result<BTreeMap<String, u64>> {
        let mut out = BTreeMap::new();
        for kv in self.db()?.scan_prefix([layout::COUNTERS]) {
            let (k, v) = kv?;
            out.insert(
                String::from_utf8_lossy(&k[1..]).into_owned(),
                u64_value(&k, &v)?,
            );
        }
        Ok(out)
    }

    fn export(&self, person: &str) -> Result<serde_json::Value> {
        use serde_json::json;
        let state = self.person(person)?;
        let timers = self.timers_of(person)?;
        let keys = self.keys.read().unwrap();
        let Some((tag, _)) = keys.get(person)? else {
            return Ok(json!({ "person": person, "found": false }));
        };
        // A scan of the log and the outbox for the person's tag (no index by person is
        // written, docs/storage.md "Erasure"): export is rare, the hot path is not.
        let mut events = Vec::new();
        for kv in self.db()?.scan_prefix([layout::LOG]) {
            let (k, v) = kv?;
            if log_tag(&k, &v)? == tag {
                let e = self.read_entry(&keys, &k, &v)?;
                events.push(json!({
                    "seq": e.seq,
                    "received_at": e.received_at.to_rfc3339(),
                    "source": e.source,
                    "source_id": e.source_id,
                    "payload": e.payload.as_deref().map(bytes_json),
                }));
            }
        }
        let mut outbox = Vec::new();
        for (k, _) in self.owned_by(layout::OUTBOX, |t| *t == tag)? {
            let mid = String::from_utf8_lossy(&k[1..]).into_owned();
            if let Some(o) = self.read_outbox(&keys, &mid)? {
                outbox.push(json!({
                    "message_id": o.message_id,
                    "flow": o.flow,
                    "step": o.step,
                    "status": o.status.as_str(),
                    "attempts": o.attempts,
                    "provider_id": o.provider_id,
                    "error_code": o.error_code,
                    "message": bytes_json(&o.message),
                }));
            }
        }
        Ok(json!({
            "person": person,
            "found": true,
            "state": state.as_deref().map(bytes_json),
            "events": events,
            "timers": timers.iter().map(|t| json!({
                "due": t.due.to_rfc3339(), "instance": t.instance, "step": t.step,
            })).collect::<Vec<_>>(),
            "outbox": outbox,
        }))
    }

    fn forget(&self, person: &str) -> Result<ForgetReport> {
        Ok(self.forget_many(&[person])?.remove(0))
    }

    fn forget_many(&self, people: &[&str]) -> Result<Vec<ForgetReport>> {
        let (found, tags) = {
            let _w = self.writer.lock().unwrap();
            let mut keys = self.keys.write().unwrap();
            let mut found = Vec::with_capacity(people.len());
            for p in people {
                found.push(keys.get(p)?.map(|(tag, _)| tag));
            }
            let named: Vec<&str> = people
                .iter()
                .zip(&found)
                .filter(|(_, t)| t.is_some())
                .map(|(p, _)| *p)
                .collect();
            if named.is_empty() {
                return Ok(vec![ForgetReport::default(); people.len()]);
            }
            let tags: Vec<Tag> = found.iter().flatten().copied().collect();
            // 1. Everything written so far durable (attributions whose retired keys we will
            //    drop), plus a marker per person so a crash after the keys are gone still
            //    finishes the deletion.
            let mut b = Batch::default();
            for tag in &tags {
                let zk = layout::tagged(layout::ERASURES, tag);
                b.insert(&zk[..], frame(&zk, &[ERASING]));
            }
            self.db()?.apply_batch(b)?;
            self.written.fetch_add(1, Ordering::SeqCst);
            self.flush()?;
            // 2. Destroy the keys (and retired event keys): every sealed copy is now
            //    unreadable.
            self.purge_retired(&mut keys, &named)?;
            // 3. Delete the people's records.
            self.erase_state(&tags)?;
            (found, tags)
        };
        // 4. Their timers, messages and links, found by scans (their log entries counted),
        //    then the markers that say the erasures are done, after the writer lock is
        //    released: the scans read the whole due index, outbox, link table and log (seconds
        //    with a million people, docs/performance.md), and commits and webhook appends need
        //    not wait for them; one scan serves every person erased together (a person and
        //    the runtime's index records that point to them, `runtime::forget`). Nothing needs
        //    the lock here: with the keys gone these records are already unreadable and no
        //    longer live (`read_timer`, `live_outbox`), a new subject of the same name gets a
        //    new tag, a commit skips a status update of a message whose key is gone (so it
        //    cannot bring one back), and a crash before the markers leaves them at ERASING, so
        //    the next open finishes the deletion.
        let counts = self.erase_scanned(&tags)?;
        self.flush()?;
        Ok(found
            .iter()
            .map(|t| match t.and_then(|t| counts.get(&t)) {
                None => ForgetReport::default(),
                Some(c) => ForgetReport {
                    found: true,
                    events: c.events,
                    timers: c.timers,
                    messages: c.messages,
                },
            })
            .collect())
    }

    fn compact(&self, before: DateTime<Utc>) -> Result<CompactReport> {
        let last = self.writer.lock().unwrap();
        let mut keys = self.keys.write().unwrap();
        let cursor = self.get_u64(layout::CURSOR)?.unwrap_or(0);
        let mut first = self.get_u64(layout::FIRST)?.unwrap_or(1);
        let limit = millis(before);
        let mut dropped = 0;
        // Stores written before session 11 kept a person -> event index; removing an entry
        // per log record is a tree walk each, worth it only where there are some.
        let old_index = self
            .db()?
            .scan_prefix([layout::PERSON_EVENTS])
            .next()
            .is_some();
        loop {
            // Chunks bound the batch size; each chunk is atomic and leaves a contiguous log.
            let mut b = Batch::default();
            let mut n = 0;
            let mut stop = false;
            for kv in self.db()?.range(layout::log(first)..=layout::log(u64::MAX)) {
                let (k, v) = kv?;
                let seq = layout::seq_of_log(&k).unwrap_or(0);
                let rec = decode_log(&k, &v)?;
                if seq > cursor || rec.received_ms >= limit {
                    stop = true;
                    break;
                }
                b.remove(k);
                b.remove(layout::prefixed(layout::DEDUP, &rec.dedup));
                if old_index {
                    b.remove(layout::person_event(&rec.tag, seq));
                }
                if keys
                    .resolve(&rec.tag)?
                    .is_some_and(|(name, _)| is_event_subject(&name))
                {
                    let zk = layout::tagged(layout::ERASURES, &rec.tag);
                    b.insert(&zk[..], frame(&zk, &[RETIRED]));
                }
                first = seq + 1;
                n += 1;
                if n == 10_000 {
                    break;
                }
            }
            if n == 0 {
                break;
            }
            b.insert(layout::FIRST, framed_u64(layout::FIRST, first));
            self.db()?.apply_batch(b)?;
            self.written.fetch_add(1, Ordering::SeqCst);
            dropped += n;
            if stop || n < 10_000 {
                break;
            }
        }
        self.flush()?;
        self.purge_retired(&mut keys, &[])?;
        self.flush()?;
        debug_assert!(first <= *last + 1);
        Ok(CompactReport {
            dropped,
            first_seq: first,
        })
    }
}
