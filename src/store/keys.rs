//! Per-person data keys, kept in `keys.bin` beside (never inside) the sled database, and the
//! sealing of personal values with ChaCha20-Poly1305.
//!
//! Why outside sled: sled keeps superseded values in its segment files until it happens to
//! rewrite them, so deleting a record there does not remove its bytes. A key file we write
//! ourselves does: a destroyed key is overwritten with zeros in place (and the file is
//! rewritten without dead records once they are half of it), and once a person's key is gone,
//! every copy of their ciphertext anywhere in sled is unreadable. Each subject (a person id, or
//! `#seq` for an event whose person was unknown at ingest) gets a random 256-bit key and a random
//! 16-byte tag; sled sees only the tag, so no person id (which may be `phone:+1...`) is ever
//! written to sled.
//!
//! File format: magic `ACKEYS\0\x01`, then records `len u32 BE ++ body ++ crc32(body) BE`, body
//! = `op u8 (1 = add) ++ tag 16 ++ key 32 ++ subject UTF-8` or `op u8 (2 = destroy) ++ offset
//! u64 BE ...` (the byte offsets of the add records it destroys, whose tag, key, name and
//! checksum are then zeroed in place). New keys are appended and fdatasync'ed BEFORE any sled
//! batch that uses them, so durable ciphertext always has a durable key; a torn last record is
//! therefore safe to cut off on load. Only the indexes are in memory (see [`Slot`]).

use super::layout::Tag;
use super::slots::{Slot, Slots, GONE};
use super::StoreError;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, RandomState};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroize;

const MAGIC: &[u8; 8] = b"ACKEYS\0\x01";
const ADD: u8 = 1;
const DESTROY: u8 = 2;
/// Destroyed bytes in the key file past which (and past half the file) it is rewritten.
const REWRITE_AFTER: u64 = 1 << 20;

pub(crate) type DataKey = [u8; 32];

/// Random bytes from the OS, read 4 KiB at a time: every sealed value takes a fresh random
/// nonce, and one `getrandom` system call per nonce was a visible share of the durable
/// runtime's commit. The bytes are the kernel's CSPRNG output either way, each handed out once.
fn random<const N: usize>() -> Result<[u8; N], StoreError> {
    use std::cell::RefCell;
    const POOL: usize = 4096;
    thread_local! {
        static BUF: RefCell<(Vec<u8>, usize)> = const { RefCell::new((Vec::new(), 0)) };
    }
    BUF.with(|b| {
        let (buf, pos) = &mut *b.borrow_mut();
        if buf.len() < POOL || *pos + N > POOL {
            buf.resize(POOL, 0);
            getrandom::getrandom(buf).map_err(|e| {
                StoreError::Io(format!("no randomness for a data key or nonce: {e}"))
            })?;
            *pos = 0;
        }
        let out: [u8; N] = buf[*pos..*pos + N].try_into().expect("N bytes");
        // Never hand the same bytes out twice (a repeated nonce under one key breaks the AEAD).
        buf[*pos..*pos + N].fill(0);
        *pos += N;
        Ok(out)
    })
}

fn io(path: &Path, what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// fsync a directory so a rename or a new file in it is durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, "fsync directory", e))
}

/// A tag's hash: its four 32-bit words folded. Tags are drawn from the OS's CSPRNG (never from
/// input), so they are already uniformly distributed and hashing them again would only cost
/// time on every `resolve`.
fn tag_hash(tag: &Tag) -> u32 {
    tag.chunks_exact(4)
        .map(|w| u32::from_le_bytes(w.try_into().expect("4 bytes")))
        .fold(0, |a, w| a ^ w)
}

/// An ADD record's body: `op ++ tag ++ key ++ name`.
fn tag_of(body: &[u8]) -> Tag {
    body[1..17].try_into().expect("16 bytes")
}

fn key_of(body: &[u8]) -> DataKey {
    body[17..49].try_into().expect("32 bytes")
}

/// The name as a string. Invalid UTF-8 (only a hand-made file has it) reads as the
/// replacement character, without an allocation for the valid names every lookup compares.
fn name_of(body: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&body[49..])
}

/// Read into `buf` from `at` until it is full or the file ends; how many bytes were read.
fn pread(file: &File, buf: &mut [u8], at: u64) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], at + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

pub(crate) struct KeyDir {
    path: PathBuf,
    /// Read (lookups, concurrently through `&self`) and written (appends, erasures) by offset.
    file: File,
    /// The file's durable length: records from here on are in `unsynced`, at the offsets they
    /// will have once appended.
    synced: u64,
    /// Keys created in memory and not yet appended + synced.
    unsynced: Vec<u8>,
    /// The in-memory index: 8-byte slots (32 bits of a hash, a record's offset), by name and by
    /// tag; every tag, key and name stays in the file and is read back with `pread` from the
    /// OS's page cache when looked up (`src/store/slots.rs` says why a sorted array).
    by_name: Slots,
    by_tag: Slots,
    /// Names come from outside (phone numbers, customer ids), so their hashes are keyed per
    /// process (SipHash with a random key, as `HashMap` does) against collision flooding.
    hasher: RandomState,
    /// Bytes of destroyed records and destroy records in the file; once they pass half of it,
    /// the file is rewritten without them.
    dead: u64,
    /// Set when a rewrite replaced the file and loading it failed: `file` is then the old,
    /// unlinked file. Reads from it stay right (its bytes are intact); writes would be lost,
    /// so they fail until the store is opened again.
    replaced: bool,
}

fn append_record(out: &mut Vec<u8>, op: u8, tag: &Tag, key: &DataKey, name: &str) {
    let len = 1 + tag.len() + key.len() + name.len();
    out.extend_from_slice(&(len as u32).to_be_bytes());
    let body = out.len();
    out.push(op);
    out.extend_from_slice(tag);
    out.extend_from_slice(key);
    out.extend_from_slice(name.as_bytes());
    let sum = crc32fast::hash(&out[body..]);
    out.extend_from_slice(&sum.to_be_bytes());
}

/// A destroy record: `op ++ offset u64 BE` for each ADD record it destroys.
fn append_destroy(out: &mut Vec<u8>, offsets: &[u64]) {
    out.extend_from_slice(&((1 + 8 * offsets.len()) as u32).to_be_bytes());
    let body = out.len();
    out.push(DESTROY);
    for at in offsets {
        out.extend_from_slice(&at.to_be_bytes());
    }
    let sum = crc32fast::hash(&out[body..]);
    out.extend_from_slice(&sum.to_be_bytes());
}

/// A forward-reading window over a file: `need(n)` gives at least `n` bytes from the current
/// position (fewer only at the end of the file), reading ahead in large chunks.
struct Window {
    file: File,
    path: PathBuf,
    len: u64,
    buf: Vec<u8>,
    /// File offset of `buf[0]`, and the current position inside `buf`.
    base: u64,
    at: usize,
}

impl Window {
    const CHUNK: usize = 4 << 20;

    fn open(path: &Path) -> Result<Window, StoreError> {
        let file = File::open(path).map_err(|e| io(path, "read key file", e))?;
        let len = file
            .metadata()
            .map_err(|e| io(path, "read key file", e))?
            .len();
        Ok(Window {
            file,
            path: path.to_path_buf(),
            len,
            buf: Vec::new(),
            base: 0,
            at: 0,
        })
    }

    /// Move to the file offset `pos`.
    fn seek(&mut self, pos: u64) -> Result<(), StoreError> {
        if pos >= self.base && pos <= self.base + self.buf.len() as u64 {
            self.at = (pos - self.base) as usize;
        } else {
            use std::io::Seek;
            self.file
                .seek(std::io::SeekFrom::Start(pos))
                .map_err(|e| io(&self.path, "read key file", e))?;
            self.buf.clear();
            self.base = pos;
            self.at = 0;
        }
        Ok(())
    }

    fn need(&mut self, n: usize) -> Result<&[u8], StoreError> {
        use std::io::Read;
        if self.buf.len() - self.at < n {
            // Keep the unread bytes, then read at least a chunk more (or to the end).
            self.buf.drain(..self.at);
            self.base += self.at as u64;
            self.at = 0;
            // A chunk, or what is left of the file when that is less.
            let left = self.len.saturating_sub(self.base + self.buf.len() as u64);
            let want = (n.max(Self::CHUNK) as u64).min(left + self.buf.len() as u64) as usize;
            let more = want.saturating_sub(self.buf.len()) as u64;
            self.buf.reserve(more as usize);
            (&mut self.file)
                .take(more)
                .read_to_end(&mut self.buf)
                .map_err(|e| io(&self.path, "read key file", e))?;
        }
        let end = self.buf.len().min(self.at + n);
        Ok(&self.buf[self.at..end])
    }
}

fn corrupt(path: &Path, detail: String) -> StoreError {
    StoreError::Corrupt {
        what: format!("key file {}", path.display()),
        detail,
    }
}

impl KeyDir {
    pub fn create(path: &Path) -> Result<KeyDir, StoreError> {
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(path)
            .map_err(|e| io(path, "create", e))?;
        f.write_all(MAGIC)
            .and_then(|_| f.sync_all())
            .map_err(|e| io(path, "write", e))?;
        drop(f);
        Self::load(path)
    }

    pub fn load(path: &Path) -> Result<KeyDir, StoreError> {
        // Read through a fixed window rather than whole: at a million people the file is
        // ~170 MB, and a whole-file buffer doubled the load's peak and stayed in the RSS
        // after it was freed (the allocator keeps freed memory for a second).
        let mut w = Window::open(path)?;
        if w.need(8)?.get(..8) != Some(&MAGIC[..]) {
            return Err(corrupt(
                path,
                "missing or wrong magic (expected ACKEYS v1)".into(),
            ));
        }
        let file_len = w.len;
        // A first walk over the length prefixes sizes the indexes once (a restart does not
        // grow and copy them step by step) and collects the destroy records, which follow the
        // records they destroy.
        let (mut records, mut pos) = (0, 8u64);
        let mut destroyed: HashSet<u64> = HashSet::new();
        w.seek(pos)?;
        while let Some(head) = w.need(5)?.get(..5) {
            let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as u64;
            if file_len - pos < 8 + len {
                break;
            }
            if len > 0 && head[4] == DESTROY {
                let rest = w.need(8 + len as usize)?;
                let body = &rest[4..4 + len as usize];
                let sum = u32::from_be_bytes(rest[4 + len as usize..].try_into().unwrap());
                // A destroy record that fails its checksum is reported by the second walk
                // (or cut there, as a torn tail): the records it names were never zeroed.
                if crc32fast::hash(body) == sum && (len - 1).is_multiple_of(8) {
                    destroyed.extend(
                        body[1..]
                            .chunks_exact(8)
                            .map(|c| u64::from_be_bytes(c.try_into().unwrap())),
                    );
                }
            } else {
                records += 1;
            }
            pos += 8 + len;
            w.seek(pos)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| io(path, "open key file", e))?;
        let mut dir = KeyDir {
            path: path.to_path_buf(),
            file,
            synced: file_len,
            unsynced: Vec::new(),
            by_name: Slots::default(),
            by_tag: Slots::default(),
            hasher: RandomState::new(),
            dead: 0,
            replaced: false,
        };
        // The slots, sorted once after the walk (`latest_names`, and the tags below).
        let (mut names, mut tags) = (Vec::with_capacity(records), Vec::with_capacity(records));
        // Destroyed records whose bytes a crash left (partly) in place: zeroed again below.
        let mut unfinished: Vec<(u64, usize)> = Vec::new();
        let mut pos = 8u64;
        let mut good_end = 8u64;
        w.seek(pos)?;
        while pos < file_len {
            let rest = w.need(4)?;
            // A short record can only be the tail of an append cut by a crash.
            if rest.len() < 4 {
                break;
            }
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            // Checked against the file's length before reading: a damaged prefix must not
            // make the window allocate gigabytes.
            if file_len - pos < 8 + len as u64 {
                break;
            }
            let rest = w.need(8 + len)?;
            if rest.len() < 8 + len {
                break;
            }
            if destroyed.contains(&pos) {
                // Its checksum is stale by design (the op byte stays, the rest is zeroed).
                if rest[5..].iter().any(|&b| b != 0) {
                    unfinished.push((pos, len));
                }
                dir.dead += 8 + len as u64;
                pos += 8 + len as u64;
                good_end = pos;
                w.seek(pos)?;
                continue;
            }
            let body = &rest[4..4 + len];
            let sum = u32::from_be_bytes(rest[4 + len..8 + len].try_into().unwrap());
            let last = pos + 8 + len as u64 == file_len;
            if crc32fast::hash(body) != sum || len < 1 {
                if last {
                    // A write cut by a crash: fsync had not returned, so no sled data uses it.
                    good_end = pos;
                    break;
                }
                return Err(corrupt(
                    path,
                    format!("record at byte {pos} fails its checksum"),
                ));
            }
            match body[0] {
                ADD if len >= 49 => {
                    let at = offset(pos)?;
                    names.push(Slot {
                        hash: dir.name_hash(&name_of(body)),
                        at,
                    });
                    tags.push(Slot {
                        hash: tag_hash(&tag_of(body)),
                        at,
                    });
                }
                // The op is known; the record is too short to hold the key it adds (reported as
                // an unknown op before, which sent a reader looking for the wrong fault).
                ADD => {
                    return Err(corrupt(
                        path,
                        format!(
                            "record at byte {pos} is {len} bytes, too short for an added key \
                             (at least 49: op, tag, key)"
                        ),
                    ))
                }
                DESTROY if (len - 1).is_multiple_of(8) => dir.dead += 8 + len as u64,
                DESTROY => {
                    return Err(corrupt(
                        path,
                        format!(
                            "record at byte {pos} is a destroy record of {len} bytes (op, then \
                             8 bytes for each offset)"
                        ),
                    ))
                }
                op => {
                    return Err(corrupt(
                        path,
                        format!("record at byte {pos} has unknown op {op}"),
                    ))
                }
            }
            pos += 8 + len as u64;
            good_end = pos;
            w.seek(pos)?;
        }
        drop(w);
        if good_end < file_len {
            dir.file
                .set_len(good_end)
                .and_then(|_| dir.file.sync_all())
                .map_err(|e| io(path, "truncate torn tail of", e))?;
            dir.synced = good_end;
        }
        dir.by_name = Slots::from_sorted(dir.latest_names(names)?);
        // Every record has its own random tag, so no tag slot supersedes another.
        tags.sort_unstable_by_key(|s| s.hash);
        dir.by_tag = Slots::from_sorted(tags);
        if !unfinished.is_empty() {
            // An erasure cut by a crash after its destroy record was durable: finish it.
            dir.zero(&unfinished)?;
        }
        Ok(dir)
    }

    /// Name slots without those a later record of the same name supersedes: a name written
    /// twice to the key file finds the later record, as the file is read in order (the
    /// earlier one stays reachable by its own tag). Only slots whose 32-bit hashes collide
    /// can be the same name, so records are read for those alone. Returned sorted by hash, as
    /// [`Slots::from_sorted`] takes them.
    fn latest_names(&self, mut slots: Vec<Slot>) -> Result<Vec<Slot>, StoreError> {
        slots.sort_unstable_by_key(|s| (s.hash, s.at));
        let mut superseded = Vec::new();
        let mut i = 0;
        while i < slots.len() {
            let run = slots[i..].partition_point(|s| s.hash == slots[i].hash);
            for a in i..i + run {
                for b in a + 1..i + run {
                    let (x, y) = (slots[a].at, slots[b].at);
                    let same = |p: &[u8]| self.with_record(y, |q| name_of(p) == name_of(q));
                    if self.with_record(x, same)?? {
                        superseded.push(a);
                        break;
                    }
                }
            }
            i += run;
        }
        for a in superseded {
            slots[a].at = GONE;
        }
        slots.retain(|s| s.at != GONE);
        Ok(slots)
    }

    fn name_hash(&self, name: &str) -> u32 {
        (self.hasher.hash_one(name) >> 32) as u32
    }

    /// Calls `f` with the body (op, tag, key, name) of the record at `at`, its checksum
    /// checked: the file is read again at every lookup, so damage after the load is caught
    /// here, as a corrupt store, not used as a key.
    fn with_record<R>(&self, at: u32, f: impl FnOnce(&[u8]) -> R) -> Result<R, StoreError> {
        let at = at as u64;
        if at >= self.synced {
            // Made by this process and not appended yet: no checksum to check.
            let i = (at - self.synced) as usize;
            let len = u32::from_be_bytes(self.unsynced[i..i + 4].try_into().unwrap()) as usize;
            return Ok(f(&self.unsynced[i + 4..i + 4 + len]));
        }
        // Records are ~75 bytes (op, tag, key, a phone number or customer id); longer names
        // take a second read.
        let mut small = [0u8; 160];
        let mut big = Vec::new();
        let read = |buf: &mut [u8]| {
            pread(&self.file, buf, at).map_err(|e| io(&self.path, "read key file", e))
        };
        let n = read(&mut small)?;
        let len = match small.get(..4) {
            Some(l) if n >= 4 => u32::from_be_bytes(l.try_into().unwrap()) as usize,
            _ => {
                return Err(corrupt(
                    &self.path,
                    format!("record at byte {at} is missing"),
                ))
            }
        };
        let (buf, got): (&mut [u8], usize) = if 8 + len <= small.len() {
            (&mut small[..8 + len], n)
        } else {
            big.resize(8 + len, 0);
            let got = read(&mut big)?;
            (&mut big, got)
        };
        let r = if got < 8 + len {
            Err(corrupt(
                &self.path,
                format!("record at byte {at} is cut short"),
            ))
        } else {
            let sum = u32::from_be_bytes(buf[4 + len..].try_into().unwrap());
            let body = &buf[4..4 + len];
            if crc32fast::hash(body) != sum || body.first() != Some(&ADD) || len < 49 {
                Err(corrupt(
                    &self.path,
                    format!("record at byte {at} fails its checksum or is not a key"),
                ))
            } else {
                Ok(f(body))
            }
        };
        buf.zeroize();
        r
    }

    /// The slot in `table` under hash `h` whose record `is` the subject sought, and `f` of
    /// that record's body: one read of the file for the subject found.
    fn lookup<R>(
        &self,
        table: &Slots,
        h: u32,
        is: impl Fn(&[u8]) -> bool,
        f: impl Fn(&[u8]) -> R,
    ) -> Result<Option<(Slot, R)>, StoreError> {
        for s in table.find(h) {
            if let Some(r) = self.with_record(s.at, |b| is(b).then(|| f(b)))? {
                return Ok(Some((s, r)));
            }
        }
        Ok(None)
    }

    /// The slot of the subject named `name`, and `f` of its record's body.
    fn lookup_name<R>(
        &self,
        name: &str,
        f: impl Fn(&[u8]) -> R,
    ) -> Result<Option<(Slot, R)>, StoreError> {
        let h = self.name_hash(name);
        self.lookup(&self.by_name, h, |b| name_of(b) == name, f)
    }

    /// The slot of the subject tagged `tag`, and `f` of its record's body.
    fn lookup_tag<R>(
        &self,
        tag: &Tag,
        f: impl Fn(&[u8]) -> R,
    ) -> Result<Option<(Slot, R)>, StoreError> {
        self.lookup(&self.by_tag, tag_hash(tag), |b| tag_of(b) == *tag, f)
    }

    fn find_name(&self, name: &str) -> Result<Option<Slot>, StoreError> {
        Ok(self.lookup_name(name, |_| ())?.map(|(s, ())| s))
    }

    fn find_tag(&self, tag: &Tag) -> Result<Option<Slot>, StoreError> {
        Ok(self.lookup_tag(tag, |_| ())?.map(|(s, ())| s))
    }

    /// Index the record at `at`: the name and the tag now find it, even where they found
    /// another record before (a name written twice to the key file: the later record wins, as
    /// the file is read in order; the earlier one stays reachable by its own tag).
    fn index(&mut self, at: u32, name_hash: u32, name: &str, tag: &Tag) -> Result<(), StoreError> {
        let old = self.find_name(name)?;
        point(&mut self.by_name, name_hash, old, at);
        let old = self.find_tag(tag)?;
        point(&mut self.by_tag, tag_hash(tag), old, at);
        Ok(())
    }

    /// The subject's tag and key.
    pub fn get(&self, name: &str) -> Result<Option<(Tag, DataKey)>, StoreError> {
        Ok(self
            .lookup_name(name, |b| (tag_of(b), key_of(b)))?
            .map(|(_, k)| k))
    }

    /// The subject's name and key, from its tag.
    pub fn resolve(&self, tag: &Tag) -> Result<Option<(String, DataKey)>, StoreError> {
        Ok(self
            .lookup_tag(tag, |b| (name_of(b).into_owned(), key_of(b)))?
            .map(|(_, k)| k))
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The subject's key, creating one (in memory; [`KeyDir::sync`] makes it durable) if new.
    pub fn ensure(&mut self, name: &str) -> Result<(Tag, DataKey), StoreError> {
        if let Some(k) = self.get(name)? {
            return Ok(k);
        }
        let tag: Tag = random()?;
        let key: DataKey = random()?;
        let at = offset(self.synced + self.unsynced.len() as u64)?;
        append_record(&mut self.unsynced, ADD, &tag, &key, name);
        let h = self.name_hash(name);
        self.index(at, h, name, &tag)?;
        Ok((tag, key))
    }

    /// Append `bytes` at the durable end and fdatasync.
    fn append(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        self.writable()?;
        self.file
            .write_all_at(bytes, self.synced)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| io(&self.path, "append to key file", e))?;
        self.synced += bytes.len() as u64;
        Ok(())
    }

    /// Append new key records and fdatasync: called before the sled batch that uses them.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.unsynced);
        let r = self.append(&bytes);
        let mut bytes = bytes;
        if r.is_err() {
            // Kept for the next attempt: the keys are in use in memory.
            self.unsynced = bytes;
        } else {
            bytes.zeroize();
        }
        r
    }

    /// Overwrite the records at `(offset, body length)` with zeros after their length prefix
    /// and op byte (tag, key, name, checksum), then fdatasync.
    fn zero(&mut self, records: &[(u64, usize)]) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        self.writable()?;
        let zeros = vec![0u8; records.iter().map(|r| r.1 + 3).max().unwrap_or(0)];
        for &(at, len) in records {
            self.file
                .write_all_at(&zeros[..len - 1 + 4], at + 5)
                .map_err(|e| io(&self.path, "erase a key in", e))?;
        }
        self.file
            .sync_data()
            .map_err(|e| io(&self.path, "erase a key in", e))
    }

    /// Destroy keys for good, in place. First a destroy record naming the subjects' records is
    /// appended and fdatasync'ed; then each record's tag, key and name are overwritten with
    /// zeros and fdatasync'ed. A crash between the two leaves records that the next load skips
    /// (the destroy record names them) and zeroes again. Afterwards no byte of those keys or
    /// of the subject names is in the file, and the rest of the file is untouched: no rewrite
    /// of every other subject under the store's writer lock (it was a quarter of an erasure at
    /// a million people). When destroyed bytes pass half the file, it is rewritten without
    /// them. Returns how many subjects were removed.
    pub fn destroy(&mut self, names: &[&str], tags: &HashSet<Tag>) -> Result<usize, StoreError> {
        // Every subject gets a durable offset first (a new key may be destroyed at once).
        self.sync()?;
        let mut doomed: Vec<Slot> = Vec::new();
        for n in names {
            doomed.extend(self.find_name(n)?);
        }
        for t in tags {
            doomed.extend(self.find_tag(t)?);
        }
        doomed.sort_unstable_by_key(|s| s.at);
        doomed.dedup_by_key(|s| s.at);
        if doomed.is_empty() {
            return Ok(0);
        }
        let mut found = Vec::with_capacity(doomed.len());
        for s in &doomed {
            let (tag, name, len) =
                self.with_record(s.at, |b| (tag_of(b), name_of(b).into_owned(), b.len()))?;
            found.push((s.at, tag, name, len));
        }
        // The file first, memory after: if a write fails, this process still holds (and
        // uses) exactly the keys the file holds, and the caller's erasure marker makes the
        // next attempt (or the next open) destroy them.
        let offsets: Vec<u64> = found.iter().map(|f| f.0 as u64).collect();
        let mut rec = Vec::new();
        append_destroy(&mut rec, &offsets);
        self.append(&rec)?;
        let spans: Vec<(u64, usize)> = found.iter().map(|f| (f.0 as u64, f.3)).collect();
        self.zero(&spans)?;
        self.dead += rec.len() as u64 + spans.iter().map(|s| 8 + s.1 as u64).sum::<u64>();
        let before = self.len();
        for (at, tag, name, _) in &mut found {
            self.by_name.remove(self.name_hash(name), *at);
            self.by_tag.remove(tag_hash(tag), *at);
            name.zeroize();
            tag.zeroize();
        }
        let removed = before - self.len();
        if self.dead > REWRITE_AFTER && self.dead > self.synced / 2 {
            self.rewrite()?;
        }
        Ok(removed)
    }

    /// Rewrite the file with only the subjects its names find, in file order (temp file,
    /// fsync, rename, fsync dir), then load it again: destroyed records, destroy records and
    /// records superseded by a later one for the same name are gone. Streamed through a
    /// window in pieces of ~1 MiB, each zeroed once written.
    pub fn rewrite(&mut self) -> Result<(), StoreError> {
        self.sync()?;
        let mut live: Vec<u32> = self.by_name.iter().map(|s| s.at).collect();
        live.sort_unstable();
        let tmp = self.path.with_extension("bin.tmp");
        let dir = self.path.parent().unwrap_or(Path::new(".")).to_path_buf();
        {
            let mut f = File::create(&tmp).map_err(|e| io(&tmp, "create", e))?;
            let mut w = Window::open(&self.path)?;
            let mut out = Vec::with_capacity(1 << 20);
            out.extend_from_slice(MAGIC);
            for at in live {
                w.seek(at as u64)?;
                let len = match w.need(4)?.get(..4) {
                    Some(l) => u32::from_be_bytes(l.try_into().unwrap()) as usize,
                    None => {
                        return Err(corrupt(
                            &self.path,
                            format!("record at byte {at} is missing"),
                        ))
                    }
                };
                out.extend_from_slice(w.need(8 + len)?);
                if out.len() >= 1 << 20 {
                    f.write_all(&out).map_err(|e| io(&tmp, "write", e))?;
                    // Zeroes the bytes and empties the buffer, keeping its capacity.
                    out.zeroize();
                }
            }
            f.write_all(&out)
                .and_then(|_| f.sync_all())
                .map_err(|e| io(&tmp, "write", e))?;
            out.zeroize();
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, "rename onto", e))?;
        // From here `file` is the old, unlinked file: a failure leaves this directory
        // unable to write (reads stay right) rather than appending where nobody will look.
        match sync_dir(&dir).and_then(|_| KeyDir::load(&self.path)) {
            Ok(d) => *self = d,
            Err(e) => {
                self.replaced = true;
                return Err(e);
            }
        }
        Ok(())
    }

    fn writable(&self) -> Result<(), StoreError> {
        if self.replaced {
            return Err(StoreError::Io(format!(
                "key file {} was rewritten and could not be loaded again: reopen the store",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Bytes allocated for the two indexes, for measurements.
    #[cfg(test)]
    fn heap_bytes(&self) -> usize {
        self.by_name.allocation_size() + self.by_tag.allocation_size()
    }
}

/// Make `table`'s slot under hash `h` point at the record at `at`: the `old` slot found for
/// the same subject, or a new one.
fn point(table: &mut Slots, h: u32, old: Option<Slot>, at: u32) {
    match old {
        Some(old) => assert!(table.repoint(h, old.at, at), "the slot just found"),
        None => table.insert(Slot { hash: h, at }),
    }
}

/// A record's offset as a slot holds it.
fn offset(pos: u64) -> Result<u32, StoreError> {
    u32::try_from(pos)
        .ok()
        .filter(|at| *at != GONE)
        .ok_or_else(full)
}

/// Offsets are u32 to keep index slots small: a key file of 4 GiB is ~50M subjects, past what
/// one process serves.
fn full() -> StoreError {
    StoreError::Io("key file full (4 GiB: ~50M subjects)".into())
}

/// Encrypt `plain` under `key`, bound to `aad` (the sled key it is stored under, so a value
/// copied to another key does not decrypt). Output: 12-byte random nonce ++ ciphertext+tag.
pub(crate) fn seal(key: &DataKey, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let nonce: [u8; 12] = random()?;
    let c = ChaCha20Poly1305::new(Key::from_slice(key));
    // nonce ++ ciphertext ++ tag, encrypted in place in the one buffer returned (the same bytes
    // `encrypt` would give, without its allocation and a second copy: every record written
    // is sealed).
    let mut out = Vec::with_capacity(12 + plain.len() + 16);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = c
        .encrypt_in_place_detached(Nonce::from_slice(&nonce), aad, &mut out[12..])
        .map_err(|_| StoreError::Io("encryption failed".into()))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Decrypt; `None` when it does not authenticate (wrong key, damaged bytes).
pub(crate) fn open(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 {
        return None;
    }
    let c = ChaCha20Poly1305::new(Key::from_slice(key));
    c.decrypt(
        Nonce::from_slice(&sealed[..12]),
        Payload {
            msg: &sealed[12..],
            aad,
        },
    )
    .ok()
}

/// A keyed hash of an instance id for timer keys: instance ids may embed order or person keys,
/// and keying with the person's data key makes the hash meaningless once the key is destroyed.
pub(crate) fn instance_hash(key: &DataKey, instance: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(key);
    h.update(b"instance\0");
    h.update(instance.as_bytes());
    h.finalize()[..16].try_into().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lookups that must not fail in these tests.
    impl KeyDir {
        fn g(&self, name: &str) -> Option<(Tag, DataKey)> {
            self.get(name).unwrap()
        }

        fn r(&self, tag: &Tag) -> Option<(String, DataKey)> {
            self.resolve(tag).unwrap()
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ac-keys-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d.join("keys.bin")
    }

    #[test]
    fn keys_survive_reload_and_destroy_removes_bytes() {
        let p = tmp("reload");
        let mut k = KeyDir::create(&p).unwrap();
        let (ta, ka) = k.ensure("phone:+15550001111").unwrap();
        k.ensure("customer:2").unwrap();
        k.sync().unwrap();
        let k2 = KeyDir::load(&p).unwrap();
        assert_eq!(k2.g("phone:+15550001111"), Some((ta, ka)));
        let mut k = k2;
        k.destroy(&["phone:+15550001111"], &HashSet::new()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"+15550001111"));
        assert!(!bytes.windows(32).any(|w| w == ka));
        assert!(KeyDir::load(&p).unwrap().g("customer:2").is_some());
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn torn_tail_is_cut_but_middle_damage_is_reported() {
        let p = tmp("torn");
        let mut k = KeyDir::create(&p).unwrap();
        k.ensure("a").unwrap();
        k.ensure("b").unwrap();
        k.sync().unwrap();
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 3]).unwrap();
        let k = KeyDir::load(&p).unwrap();
        assert!(k.g("a").is_some() && k.g("b").is_none());
        let mut bad = full.clone();
        bad[14] ^= 0xff; // inside the first record
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(KeyDir::load(&p), Err(StoreError::Corrupt { .. })));
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// `load` reads through a window of `Window::CHUNK` bytes: records that straddle a chunk
    /// boundary, and a torn tail after many chunks, load as from one buffer.
    #[test]
    fn a_key_file_larger_than_the_read_window_loads_whole() {
        let p = tmp("window");
        let n = 90_000; // ~6.3 MB of records: the window is refilled across several records
        let records: Vec<(Tag, DataKey, String)> = (0..n)
            .map(|i| {
                // Random, as the store makes them (the tag index hashes their bytes).
                (random().unwrap(), random().unwrap(), name_for(i))
            })
            .collect();
        let refs: Vec<(Tag, DataKey, &str)> = records
            .iter()
            .map(|(t, k, n)| (*t, *k, n.as_str()))
            .collect();
        write_file(&p, &refs);
        assert!(std::fs::metadata(&p).unwrap().len() > Window::CHUNK as u64);
        let k = KeyDir::load(&p).unwrap();
        assert_eq!(k.len(), n);
        for (tag, key, name) in &records {
            assert_eq!(k.g(name), Some((*tag, *key)), "{name}");
        }
        drop(k);
        let full = std::fs::read(&p).unwrap();
        std::fs::write(&p, &full[..full.len() - 5]).unwrap();
        let k = KeyDir::load(&p).unwrap();
        assert_eq!(k.len(), n - 1);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), {
            let last = &records[n - 1];
            (full.len() - (8 + 49 + last.2.len())) as u64
        });
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// A key file written by hand: the records given, in order.
    fn write_file(p: &Path, records: &[(Tag, DataKey, &str)]) {
        let mut out = MAGIC.to_vec();
        for (tag, key, name) in records {
            append_record(&mut out, ADD, tag, key, name);
        }
        std::fs::write(p, out).unwrap();
    }

    fn name_for(i: usize) -> String {
        match i % 3 {
            0 => format!("customer:{i}"),
            1 => format!("phone:+1555{i:07}"),
            // Multi-byte UTF-8 (2-, 3- and 4-byte characters) next to ASCII in the name arena.
            _ => format!("#Zoë-東京-🙂-{i}"),
        }
    }

    #[test]
    fn many_subjects_survive_reload_destroy_and_ensure_after_destroy() {
        let p = tmp("many");
        let mut k = KeyDir::create(&p).unwrap();
        let n = 20_000;
        let mut all = Vec::new();
        for i in 0..n {
            let name = name_for(i);
            let (tag, key) = k.ensure(&name).unwrap();
            all.push((name, tag, key));
        }
        // A second ensure finds the subject: same key, nothing new to sync.
        k.sync().unwrap();
        assert_eq!(k.ensure(&all[5].0).unwrap(), (all[5].1, all[5].2));
        assert!(k.unsynced.is_empty());
        assert_eq!(k.len(), n);
        let k2 = KeyDir::load(&p).unwrap();
        for d in [&k, &k2] {
            assert_eq!(d.len(), n);
            for (name, tag, key) in &all {
                assert_eq!(d.g(name), Some((*tag, *key)));
                assert_eq!(d.r(tag), Some((name.clone(), *key)));
            }
        }
        // Destroy every 4th by name and every 4th + 1 by tag.
        let mut k = k2;
        let by_name: Vec<&str> = all.iter().step_by(4).map(|s| s.0.as_str()).collect();
        let by_tag: HashSet<Tag> = all.iter().skip(1).step_by(4).map(|s| s.1).collect();
        assert_eq!(k.destroy(&by_name, &by_tag).unwrap(), n / 2);
        let gone = |i: usize| i % 4 < 2;
        // New subjects after the erasure are indexed beside the destroyed records.
        for i in n..n + 1_000 {
            let name = name_for(i);
            let (tag, key) = k.ensure(&name).unwrap();
            all.push((name, tag, key));
        }
        k.sync().unwrap();
        let k2 = KeyDir::load(&p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        let file_keys: HashSet<&[u8]> = bytes.windows(32).collect();
        for d in [&k, &k2] {
            assert_eq!(d.len(), n / 2 + 1_000);
            for (i, (name, tag, key)) in all.iter().enumerate() {
                if gone(i) && i < n {
                    assert_eq!(d.g(name), None, "{name}");
                    assert_eq!(d.r(tag), None, "{name}");
                } else {
                    assert_eq!(d.g(name), Some((*tag, *key)), "{name}");
                    assert_eq!(d.r(tag), Some((name.clone(), *key)), "{name}");
                }
            }
        }
        for (i, (_, _, key)) in all.iter().enumerate().take(n) {
            assert_eq!(file_keys.contains(&key[..]), !gone(i));
        }
        // Destroyed in place: the file kept its records (zeroed), and only the new subjects
        // and the destroy record were appended.
        assert!(k.dead > 0);
        let rewritten = bytes.len();
        k.rewrite().unwrap();
        assert!(std::fs::metadata(&p).unwrap().len() < rewritten as u64);
        assert_eq!(k.dead, 0);
        for (i, (name, tag, key)) in all.iter().enumerate() {
            let live = !gone(i) || i >= n;
            assert_eq!(k.g(name), live.then_some((*tag, *key)), "{name}");
        }
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn multibyte_names_round_trip_through_erasure_and_rewrite() {
        let p = tmp("utf8");
        let mut k = KeyDir::create(&p).unwrap();
        let names = [
            "",
            "a",
            "person:Zoë Ångström",
            "phone:+81 東京",
            "🙂🙃",
            "ß-ß-ß-ß",
            "customer:1",
        ];
        let mut keys = Vec::new();
        for n in names {
            keys.push(k.ensure(n).unwrap());
        }
        k.sync().unwrap();
        // Remove names between others, then rewrite the file so the rest move.
        k.destroy(&["a", "🙂🙃"], &HashSet::new()).unwrap();
        let k2 = KeyDir::load(&p).unwrap();
        let mut k3 = KeyDir::load(&p).unwrap();
        k3.rewrite().unwrap();
        for d in [&k, &k2, &k3] {
            assert_eq!(d.len(), names.len() - 2);
            for (n, (tag, key)) in names.iter().zip(&keys) {
                if *n == "a" || *n == "🙂🙃" {
                    assert_eq!(d.g(n), None);
                    assert_eq!(d.r(tag), None);
                } else {
                    assert_eq!(d.g(n), Some((*tag, *key)));
                    assert_eq!(d.r(tag), Some((n.to_string(), *key)));
                }
            }
        }
        // Invalid UTF-8 in a file is read as the replacement character, as before.
        write_file(&p, &[([1; 16], [2; 32], "x")]);
        let mut raw = std::fs::read(&p).unwrap();
        let body = 8 + 4;
        raw[body + 49] = 0xff;
        let sum = crc32fast::hash(&raw[body..body + 50]);
        raw[body + 50..].copy_from_slice(&sum.to_be_bytes());
        std::fs::write(&p, raw).unwrap();
        let k = KeyDir::load(&p).unwrap();
        assert_eq!(k.r(&[1; 16]), Some(("\u{fffd}".to_string(), [2; 32])));
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn tags_with_one_hash_are_told_apart() {
        // A tag's hash is its first 8 bytes: these 2,000 tags all share one hash, so every
        // lookup walks the same probe sequence and only the comparison with the entry decides.
        let p = tmp("collide");
        let tag = |i: u32| -> Tag {
            let mut t = [0xab; 16];
            t[12..].copy_from_slice(&i.to_be_bytes());
            t
        };
        let key = |i: u32| -> DataKey {
            let mut k = [0; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            k
        };
        let names: Vec<String> = (0..2_000).map(|i| format!("customer:{i}")).collect();
        let records: Vec<(Tag, DataKey, &str)> = (0..2_000u32)
            .map(|i| (tag(i), key(i), names[i as usize].as_str()))
            .collect();
        write_file(&p, &records);
        let mut k = KeyDir::load(&p).unwrap();
        for i in 0..2_000u32 {
            assert_eq!(k.r(&tag(i)), Some((names[i as usize].clone(), key(i))));
        }
        let odd: HashSet<Tag> = (0..2_000u32).filter(|i| i % 2 == 1).map(tag).collect();
        assert_eq!(k.destroy(&[], &odd).unwrap(), 1_000);
        let k2 = KeyDir::load(&p).unwrap();
        for d in [&k, &k2] {
            for i in 0..2_000u32 {
                let want = (i % 2 == 0).then(|| (names[i as usize].clone(), key(i)));
                assert_eq!(d.r(&tag(i)), want);
                assert_eq!(d.g(&names[i as usize]), want.map(|(_, k)| (tag(i), k)));
            }
        }
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// Name slots whose 32-bit hashes collide are told apart by their records at load: a later
    /// record of the same name supersedes an earlier one, different names both stay. (Real
    /// collisions are too rare to meet in a test: the hashes are forced here.)
    #[test]
    fn colliding_hashes_at_load_keep_every_subject_and_the_latest_of_each() {
        let p = tmp("collide");
        write_file(
            &p,
            &[
                ([1; 16], [1; 32], "a"),
                ([2; 16], [2; 32], "b"),
                ([3; 16], [3; 32], "a"),
            ],
        );
        let k = KeyDir::load(&p).unwrap();
        let at: Vec<u32> = {
            let mut v: Vec<u32> = k.by_tag.iter().map(|s| s.at).collect();
            v.sort_unstable();
            v
        };
        let forced = |ats: &[u32]| ats.iter().map(|&at| Slot { hash: 7, at }).collect();
        let kept = k.latest_names(forced(&at)).unwrap();
        assert_eq!(
            kept.iter().map(|s| s.at).collect::<Vec<_>>(),
            [at[1], at[2]]
        );
        // Each record stays reachable by its own tag.
        assert_eq!(k.by_tag.len(), 3);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn a_name_written_twice_resolves_to_the_later_record() {
        // Not something this code writes (ensure looks first; destroy writes each name once),
        // but a file is read in order and the later record wins, the earlier tag still
        // resolving until a rewrite drops it.
        let p = tmp("twice");
        write_file(
            &p,
            &[
                ([1; 16], [1; 32], "a"),
                ([2; 16], [2; 32], "a"),
                ([3; 16], [3; 32], "b"),
            ],
        );
        let mut k = KeyDir::load(&p).unwrap();
        assert_eq!(k.len(), 2);
        assert_eq!(k.g("a"), Some(([2; 16], [2; 32])));
        assert_eq!(k.r(&[1; 16]), Some(("a".to_string(), [1; 32])));
        assert_eq!(k.r(&[2; 16]), Some(("a".to_string(), [2; 32])));
        assert_eq!(k.destroy(&["b"], &HashSet::new()).unwrap(), 1);
        assert_eq!(k.r(&[1; 16]), Some(("a".to_string(), [1; 32])));
        assert_eq!(k.r(&[3; 16]), None);
        // A reload still finds the earlier tag; a rewrite keeps only what names find.
        let mut k = KeyDir::load(&p).unwrap();
        assert_eq!(k.r(&[1; 16]), Some(("a".to_string(), [1; 32])));
        k.rewrite().unwrap();
        let k = KeyDir::load(&p).unwrap();
        assert_eq!(k.len(), 1);
        assert_eq!(k.g("a"), Some(([2; 16], [2; 32])));
        assert_eq!(k.r(&[1; 16]), None);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    const PHONE: &str = "phone:+15550001111";

    /// A synced key file holding `PHONE` (at byte 8) then `customer:2`; also the keys of both
    /// and where `PHONE`'s record ends.
    #[allow(clippy::type_complexity)]
    fn phone_then_customer(name: &str) -> (PathBuf, KeyDir, (Tag, DataKey), (Tag, DataKey), usize) {
        let p = tmp(name);
        let mut k = KeyDir::create(&p).unwrap();
        let phone = k.ensure(PHONE).unwrap();
        let other = k.ensure("customer:2").unwrap();
        k.sync().unwrap();
        (p, k, phone, other, 8 + 4 + 49 + PHONE.len() + 4)
    }

    /// An erasure is destroyed in place: the other records keep their bytes and offsets, the
    /// file grows by the destroy record alone, and the subject's key and name are zeros.
    #[test]
    fn destroy_zeroes_the_record_in_place_and_appends_one_destroy_record() {
        let (p, mut k, (_, ka), _, first) = phone_then_customer("in-place");
        let before = std::fs::read(&p).unwrap();
        assert_eq!(k.destroy(&[PHONE], &HashSet::new()).unwrap(), 1);
        let after = std::fs::read(&p).unwrap();
        // One destroy record: 4 length, op, one offset, 4 checksum.
        assert_eq!(after.len(), before.len() + 4 + 1 + 8 + 4);
        // The length prefix and op byte stay; the rest of the record is zeros.
        assert_eq!(after[8..13], before[8..13]);
        assert!(after[13..first].iter().all(|&b| b == 0));
        assert_eq!(after[first..before.len()], before[first..]);
        assert!(!after.windows(32).any(|w| w == ka));
        assert_eq!(KeyDir::load(&p).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// A crash after the destroy record was durable and before (or while) the record was
    /// zeroed: the next load treats the subject as destroyed and finishes the zeroing. A crash
    /// while the destroy record was being appended (a torn tail) leaves the subject as it was:
    /// its bytes were never touched, and the caller's erasure marker destroys it again.
    #[test]
    fn an_erasure_cut_by_a_crash_is_finished_or_undone_on_load() {
        let (p, k, (ta, ka), b, first) = phone_then_customer("cut-erasure");
        drop(k);
        let base = std::fs::read(&p).unwrap();
        let mut destroy = Vec::new();
        append_destroy(&mut destroy, &[8]);
        // Destroy record durable; the record untouched, or zeroed half way.
        for zeroed in [0, 20] {
            let mut f = base.clone();
            f[13..13 + zeroed].fill(0);
            f.extend_from_slice(&destroy);
            std::fs::write(&p, &f).unwrap();
            let k = KeyDir::load(&p).unwrap();
            assert_eq!(k.g(PHONE), None);
            assert_eq!(k.r(&ta), None);
            assert_eq!(k.g("customer:2"), Some(b));
            let now = std::fs::read(&p).unwrap();
            assert!(now[13..first].iter().all(|&b| b == 0), "zeroed {zeroed}");
            assert!(!now.windows(32).any(|w| w == ka));
            assert!(!now.windows(11).any(|w| w == b"15550001111"));
        }
        // The destroy record torn: cut off, and the subject is still there.
        let mut f = base.clone();
        f.extend_from_slice(&destroy[..destroy.len() - 2]);
        std::fs::write(&p, &f).unwrap();
        let k = KeyDir::load(&p).unwrap();
        assert_eq!(k.g(PHONE), Some((ta, ka)));
        assert_eq!(std::fs::read(&p).unwrap(), base);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// Once destroyed bytes pass 1 MiB and half the file, `destroy` rewrites the file without
    /// them; the survivors keep their keys across it and across a reload.
    #[test]
    fn destroying_most_of_a_large_file_rewrites_it() {
        let p = tmp("auto-rewrite");
        let mut k = KeyDir::create(&p).unwrap();
        let names: Vec<String> = (0..30_000).map(|i| format!("customer:{i}")).collect();
        let keys: Vec<(Tag, DataKey)> = names.iter().map(|n| k.ensure(n).unwrap()).collect();
        k.sync().unwrap();
        let full = std::fs::metadata(&p).unwrap().len();
        let doomed: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 0)
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(k.destroy(&doomed, &HashSet::new()).unwrap(), 20_000);
        assert_eq!(k.dead, 0, "rewritten");
        let now = std::fs::metadata(&p).unwrap().len();
        assert!(now < full / 2, "{now} of {full}");
        let k2 = KeyDir::load(&p).unwrap();
        for d in [&k, &k2] {
            assert_eq!(d.len(), 10_000);
            for (i, (n, (tag, key))) in names.iter().zip(&keys).enumerate() {
                let want = (i % 3 == 0).then_some((*tag, *key));
                assert_eq!(d.g(n), want, "{n}");
            }
        }
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    /// Damage to a record after the load is caught when it is read, not used as a key.
    #[test]
    fn a_record_damaged_after_the_load_is_reported_when_read() {
        let p = tmp("damaged-later");
        let mut k = KeyDir::create(&p).unwrap();
        k.ensure("customer:1").unwrap();
        k.sync().unwrap();
        let mut f = std::fs::read(&p).unwrap();
        f[8 + 4 + 20] ^= 1; // inside the key
        std::fs::write(&p, &f).unwrap();
        match k.get("customer:1") {
            Err(StoreError::Corrupt { what, detail }) => {
                assert!(what.contains("damaged-later"), "{what}");
                assert_eq!(
                    detail,
                    "record at byte 8 fails its checksum or is not a key"
                );
            }
            other => panic!("expected a corrupt key file, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Ensure(usize),
        Sync,
        Destroy(Vec<usize>, Vec<usize>),
        Rewrite,
        Reload,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..40usize).prop_map(Op::Ensure),
            1 => Just(Op::Sync),
            1 => (proptest::collection::vec(0..40usize, 0..6), proptest::collection::vec(0..40usize, 0..6))
                .prop_map(|(n, t)| Op::Destroy(n, t)),
            1 => Just(Op::Rewrite),
            1 => Just(Op::Reload),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// The key directory against a plain map: what it holds in memory, and what a reload
        /// finds (what was synced, or rewritten by destroy).
        #[test]
        fn matches_a_map_through_any_ops(ops in proptest::collection::vec(op(), 1..60)) {
            use std::collections::HashMap;
            let p = tmp("model");
            let mut k = KeyDir::create(&p).unwrap();
            let name = |i: usize| name_for(i);
            let mut memory: HashMap<String, (Tag, DataKey)> = HashMap::new();
            let mut durable = memory.clone();
            // Every tag ever handed out, so lookups of destroyed ones are checked too.
            let mut tags: Vec<Tag> = Vec::new();
            for op in ops {
                match op {
                    Op::Ensure(i) => {
                        let got = k.ensure(&name(i)).unwrap();
                        let want = *memory.entry(name(i)).or_insert(got);
                        proptest::prop_assert_eq!(got, want);
                        tags.push(got.0);
                    }
                    Op::Sync => {
                        k.sync().unwrap();
                        durable = memory.clone();
                    }
                    Op::Destroy(names, by_tag) => {
                        let names: Vec<String> = names.into_iter().map(name).collect();
                        let refs: Vec<&str> = names.iter().map(|s| s.as_str()).collect();
                        let by_tag: HashSet<Tag> = by_tag
                            .into_iter()
                            .filter_map(|i| tags.get(i).copied())
                            .collect();
                        let before = memory.len();
                        memory.retain(|n, (t, _)| !names.contains(n) && !by_tag.contains(t));
                        proptest::prop_assert_eq!(k.destroy(&refs, &by_tag).unwrap(), before - memory.len());
                        durable = memory.clone();
                    }
                    Op::Rewrite => {
                        // Makes what is in memory durable, as a sync does.
                        k.rewrite().unwrap();
                        durable = memory.clone();
                    }
                    Op::Reload => {
                        k = KeyDir::load(&p).unwrap();
                        memory = durable.clone();
                    }
                }
                proptest::prop_assert_eq!(k.len(), memory.len());
                for i in 0..40 {
                    proptest::prop_assert_eq!(k.g(&name(i)), memory.get(&name(i)).copied());
                }
                for t in &tags {
                    let want = memory.iter().find(|(_, v)| v.0 == *t).map(|(n, v)| (n.clone(), v.1));
                    proptest::prop_assert_eq!(k.r(t), want);
                }
            }
            let _ = std::fs::remove_dir_all(p.parent().unwrap());
        }
    }

    /// VmRSS of this process in KiB (Linux; 0 elsewhere).
    fn rss_kib() -> u64 {
        let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The memory a loaded key directory takes per subject (the restart path: `load` of a file
    /// with N synthetic subjects, half `customer:<n>` and half `phone:+1555<7 digits>` as the
    /// runtime writes them). Measurement, not a check, so ignored by default:
    /// `AFTERCART_KEYS_N=1000000 cargo test --release --lib memory_per_subject -- --ignored
    /// --nocapture --test-threads=1`.
    #[test]
    #[ignore]
    fn memory_per_subject() {
        let n: usize = std::env::var("AFTERCART_KEYS_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1_000_000);
        let p = tmp("memory");
        let mut file = MAGIC.to_vec();
        let mut name_bytes = 0;
        for i in 0..n {
            let name = if i % 2 == 0 {
                format!("customer:{}", 7_000_000_000u64 + i as u64)
            } else {
                format!("phone:+1555{:07}", i)
            };
            name_bytes += name.len();
            let tag: Tag = random().unwrap();
            let key: DataKey = random().unwrap();
            append_record(&mut file, ADD, &tag, &key, &name);
        }
        std::fs::write(&p, &file).unwrap();
        drop(file);
        let before = rss_kib();
        let k = KeyDir::load(&p).unwrap();
        let after = rss_kib();
        assert_eq!(k.len(), n);
        let delta = (after.saturating_sub(before) * 1024) as f64;
        println!(
            "{n} subjects ({:.1} B of name each): VmRSS {} -> {} KiB, {:.1} MiB, {:.1} B per subject; allocated {:.1} B per subject",
            name_bytes as f64 / n as f64,
            before,
            after,
            delta / (1024.0 * 1024.0),
            delta / n as f64,
            k.heap_bytes() as f64 / n as f64
        );
        drop(k);
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn a_short_add_record_is_named_as_such() {
        let p = tmp("short-add");
        let mut file = MAGIC.to_vec();
        // An ADD record with a tag but no key (valid checksum), then a good one after it.
        let body: Vec<u8> = std::iter::once(ADD)
            .chain([5u8; 16])
            .chain([0u8; 4])
            .collect();
        file.extend_from_slice(&(body.len() as u32).to_be_bytes());
        file.extend_from_slice(&body);
        file.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        append_record(&mut file, ADD, &[1; 16], &[2; 32], "customer:1");
        std::fs::write(&p, &file).unwrap();
        match KeyDir::load(&p) {
            Err(StoreError::Corrupt { what, detail }) => {
                assert!(what.contains("short-add"), "{what}");
                assert_eq!(
                    detail,
                    "record at byte 8 is 21 bytes, too short for an added key (at least 49: op, \
                     tag, key)"
                );
            }
            other => panic!(
                "expected a corrupt key file, got {:?}",
                other.map(|k| k.len())
            ),
        }
        let _ = std::fs::remove_dir_all(p.parent().unwrap());
    }

    #[test]
    fn sealed_bytes_are_nonce_then_what_encrypt_gives() {
        // Records sealed before the in-place encryption must keep opening, and new ones must
        // be the same format: nonce ++ ChaCha20-Poly1305 ciphertext ++ tag.
        let k = [9u8; 32];
        let plain = b"a person's record, long enough to span more than one block of the cipher";
        let s = seal(&k, b"p/tag", plain).unwrap();
        let c = ChaCha20Poly1305::new(Key::from_slice(&k));
        let ct = c
            .encrypt(
                Nonce::from_slice(&s[..12]),
                Payload {
                    msg: plain,
                    aad: b"p/tag",
                },
            )
            .unwrap();
        assert_eq!(&s[12..], &ct[..]);
        assert_eq!(open(&k, b"p/tag", &s).unwrap(), plain);
    }

    #[test]
    fn seal_binds_key_and_location() {
        let k = [7u8; 32];
        let s = seal(&k, b"here", b"secret").unwrap();
        assert_eq!(open(&k, b"here", &s).unwrap(), b"secret");
        assert!(open(&k, b"there", &s).is_none());
        assert!(open(&[8u8; 32], b"here", &s).is_none());
    }
}
