//! Per-person data keys, kept in `keys.bin` beside (never inside) the sled database, and the
//! sealing of personal values with ChaCha20-Poly1305.
//!
//! Why outside sled: sled keeps superseded values in its segment files until it happens to
//! rewrite them, so deleting a record there does not remove its bytes. A key file we rewrite
//! ourselves (temp file, fsync, rename, fsync dir) does: once a person's key is gone from it,
//! every copy of their ciphertext anywhere in sled is unreadable. Each subject (a person id, or
//! `#seq` for an event whose person was unknown at ingest) gets a random 256-bit key and a random
//! 16-byte tag; sled sees only the tag, so no person id (which may be `phone:+1...`) is ever
//! written to sled.
//!
//! File format: magic `ACKEYS\0\x01`, then records `len u32 BE ++ body ++ crc32(body) BE`, body
//! = `op u8 (1 = add) ++ tag 16 ++ key 32 ++ subject UTF-8`. New keys are
//! appended and fdatasync'ed BEFORE any sled batch that uses them, so durable ciphertext always
//! has a durable key; a torn last record is therefore safe to cut off on load.

use super::layout::Tag;
use super::StoreError;
use chacha20poly1305::aead::{Aead, AeadInPlace, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const MAGIC: &[u8; 8] = b"ACKEYS\0\x01";
const ADD: u8 = 1;

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

pub(crate) struct KeyDir {
    path: PathBuf,
    file: File,
    /// Both maps share the subject's name (one allocation per subject: at a million people the
    /// key directory is a large part of the runtime's memory) and hold the key, so resolving a
    /// tag is one lookup.
    by_name: HashMap<Arc<str>, (Tag, DataKey)>,
    by_tag: HashMap<Tag, (Arc<str>, DataKey)>,
    /// Keys created in memory and not yet appended + synced.
    unsynced: Vec<u8>,
}

fn record(op: u8, tag: &Tag, key: &DataKey, name: &str) -> Vec<u8> {
    let mut body = vec![op];
    body.extend_from_slice(tag);
    body.extend_from_slice(key);
    body.extend_from_slice(name.as_bytes());
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
    out
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
        let mut buf = Vec::new();
        File::open(path)
            .and_then(|mut f| f.read_to_end(&mut buf))
            .map_err(|e| io(path, "read key file", e))?;
        if buf.len() < 8 || &buf[..8] != MAGIC {
            return Err(StoreError::Corrupt {
                what: format!("key file {}", path.display()),
                detail: "missing or wrong magic (expected ACKEYS v1)".into(),
            });
        }
        let mut by_name = HashMap::new();
        let mut by_tag = HashMap::new();
        let mut pos = 8;
        let mut good_end = 8;
        while pos < buf.len() {
            let rest = &buf[pos..];
            // A short record can only be the tail of an append cut by a crash.
            if rest.len() < 4 {
                break;
            }
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            if rest.len() < 8 + len {
                break;
            }
            let body = &rest[4..4 + len];
            let sum = u32::from_be_bytes(rest[4 + len..8 + len].try_into().unwrap());
            let last = pos + 8 + len == buf.len();
            if crc32fast::hash(body) != sum || len < 17 {
                if last {
                    // A write cut by a crash: fsync had not returned, so no sled data uses it.
                    good_end = pos;
                    break;
                }
                return Err(StoreError::Corrupt {
                    what: format!("key file {}", path.display()),
                    detail: format!("record at byte {pos} fails its checksum"),
                });
            }
            let op = body[0];
            let tag: Tag = body[1..17].try_into().unwrap();
            match op {
                ADD if len >= 49 => {
                    let key: DataKey = body[17..49].try_into().unwrap();
                    let name: Arc<str> = String::from_utf8_lossy(&body[49..]).into();
                    by_tag.insert(tag, (name.clone(), key));
                    by_name.insert(name, (tag, key));
                }
                _ => {
                    return Err(StoreError::Corrupt {
                        what: format!("key file {}", path.display()),
                        detail: format!("record at byte {pos} has unknown op {op}"),
                    })
                }
            }
            pos += 8 + len;
            good_end = pos;
        }
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| io(path, "open key file", e))?;
        if good_end < buf.len() {
            file.set_len(good_end as u64)
                .and_then(|_| file.sync_all())
                .map_err(|e| io(path, "truncate torn tail of", e))?;
        }
        let mut dir = KeyDir {
            path: path.to_path_buf(),
            file,
            by_name,
            by_tag,
            unsynced: Vec::new(),
        };
        dir.seek_end()?;
        Ok(dir)
    }

    fn seek_end(&mut self) -> Result<(), StoreError> {
        use std::io::Seek;
        self.file
            .seek(std::io::SeekFrom::End(0))
            .map(|_| ())
            .map_err(|e| io(&self.path, "seek", e))
    }

    pub fn get(&self, name: &str) -> Option<(Tag, DataKey)> {
        self.by_name.get(name).copied()
    }

    pub fn resolve(&self, tag: &Tag) -> Option<(&str, DataKey)> {
        let (name, key) = self.by_tag.get(tag)?;
        Some((name, *key))
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The subject's key, creating one (in memory; [`KeyDir::sync`] makes it durable) if new.
    pub fn ensure(&mut self, name: &str) -> Result<(Tag, DataKey), StoreError> {
        if let Some(k) = self.get(name) {
            return Ok(k);
        }
        let tag: Tag = random()?;
        let key: DataKey = random()?;
        self.unsynced
            .extend_from_slice(&record(ADD, &tag, &key, name));
        let name: Arc<str> = name.into();
        self.by_tag.insert(tag, (name.clone(), key));
        self.by_name.insert(name, (tag, key));
        Ok((tag, key))
    }

    /// Append new key records and fdatasync: called before the sled batch that uses them.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(&self.unsynced)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| io(&self.path, "append to key file", e))?;
        self.unsynced.clear();
        Ok(())
    }

    /// Destroy keys for good: rewrite the whole file without the subjects named or tagged,
    /// atomically (temp file, fsync, rename, fsync dir). Afterwards no byte of those keys (or
    /// of the subject names) exists in the data directory. Returns how many were removed.
    pub fn destroy(&mut self, names: &[&str], tags: &HashSet<Tag>) -> Result<usize, StoreError> {
        let before = self.by_name.len();
        for n in names {
            if let Some((t, _)) = self.by_name.remove(*n) {
                self.by_tag.remove(&t);
            }
        }
        for t in tags {
            if let Some((n, _)) = self.by_tag.remove(t) {
                self.by_name.remove(&n);
            }
        }
        let mut out = MAGIC.to_vec();
        // Sorted so the file's bytes do not depend on hash order (reproducible, diffable).
        let mut names: Vec<&Arc<str>> = self.by_name.keys().collect();
        names.sort();
        for n in names {
            let (tag, key) = &self.by_name[n];
            out.extend_from_slice(&record(ADD, tag, key, n));
        }
        let tmp = self.path.with_extension("bin.tmp");
        let dir = self.path.parent().unwrap_or(Path::new("."));
        {
            let mut f = File::create(&tmp).map_err(|e| io(&tmp, "create", e))?;
            f.write_all(&out)
                .and_then(|_| f.sync_all())
                .map_err(|e| io(&tmp, "write", e))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| io(&self.path, "rename onto", e))?;
        sync_dir(dir)?;
        self.file = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| io(&self.path, "reopen", e))?;
        self.seek_end()?;
        self.unsynced.clear();
        Ok(before - self.by_name.len())
    }
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
        assert_eq!(k2.get("phone:+15550001111"), Some((ta, ka)));
        let mut k = k2;
        k.destroy(&["phone:+15550001111"], &HashSet::new()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert!(!bytes.windows(12).any(|w| w == b"+15550001111"));
        assert!(!bytes.windows(32).any(|w| w == ka));
        assert!(KeyDir::load(&p).unwrap().get("customer:2").is_some());
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
        assert!(k.get("a").is_some() && k.get("b").is_none());
        let mut bad = full.clone();
        bad[14] ^= 0xff; // inside the first record
        std::fs::write(&p, &bad).unwrap();
        assert!(matches!(KeyDir::load(&p), Err(StoreError::Corrupt { .. })));
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
