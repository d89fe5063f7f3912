//! The key layout: every record lives in ONE sled tree, told apart by a one-byte prefix, so that
//! any set of writes (log + dedup index, state + timers + outbox + cursor) is one atomic `Batch`.
//!
//! No key holds personal data: people appear only as their random 16-byte tag (see `keys.rs`),
//! and the dedup key is a hash. `docs/storage.md` has the same table with value encodings.

use super::Seq;

pub(crate) type Tag = [u8; 16];

pub(crate) const META: &[u8] = b"m";
pub(crate) const CURSOR: &[u8] = b"c";
pub(crate) const FIRST: &[u8] = b"f";
pub(crate) const DEPLOYED: &[u8] = b"V";
pub(crate) const LOG: u8 = b'l';
pub(crate) const DEDUP: u8 = b'd';
/// No longer written (session 11): a person -> event index kept by earlier stores (`e ++ tag ++
/// seq`); compaction and erasure still remove old entries. Export and erasure scan the log.
pub(crate) const PERSON_EVENTS: u8 = b'e';
pub(crate) const PEOPLE: u8 = b'p';
pub(crate) const TIMERS: u8 = b't';
/// No longer written: a person -> timer index kept by earlier stores (`T ++ tag ++ due ++
/// instance hash ++ step`); erasure still removes a person's old entries.
pub(crate) const PERSON_TIMERS: u8 = b'T';
pub(crate) const OUTBOX: u8 = b'o';
pub(crate) const PENDING: u8 = b'q';
/// No longer written (session 11): a person -> message index kept by earlier stores (`O ++ tag
/// ++ message id`); erasure still removes old entries. Export and erasure scan the outbox.
pub(crate) const PERSON_OUTBOX: u8 = b'O';
pub(crate) const PROGRAMS: u8 = b'v';
pub(crate) const COUNTERS: u8 = b'k';
pub(crate) const ERASURES: u8 = b'z';
/// `L ++ code`: a tracked link; `N ++ tag ++ code`: a person's links, no longer written
/// (session 11; erasure scans the links and still removes old entries).
pub(crate) const LINKS: u8 = b'L';
pub(crate) const PERSON_LINKS: u8 = b'N';

pub(crate) fn log(seq: Seq) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = LOG;
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub(crate) fn seq_of_log(key: &[u8]) -> Option<Seq> {
    (key.len() == 9 && key[0] == LOG).then(|| u64::from_be_bytes(key[1..].try_into().unwrap()))
}

/// The dedup key hashes (source, source id): custom ids may be anything, including a phone
/// number, and a hash keeps them out of the key space while staying a point lookup.
pub(crate) fn dedup(source: &str, source_id: &str) -> [u8; 17] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update([0u8]);
    h.update(source_id.as_bytes());
    let d = h.finalize();
    let mut k = [0u8; 17];
    k[0] = DEDUP;
    k[1..].copy_from_slice(&d[..16]);
    k
}

pub(crate) fn tagged(prefix: u8, tag: &Tag) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = prefix;
    k[1..].copy_from_slice(tag);
    k
}

pub(crate) fn person_event(tag: &Tag, seq: Seq) -> Vec<u8> {
    let mut k = tagged(PERSON_EVENTS, tag).to_vec();
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// Milliseconds since the epoch, sign bit flipped so that big-endian byte order is time order
/// for dates before 1970 too.
pub(crate) fn due_bytes(ms: i64) -> [u8; 8] {
    ((ms as u64) ^ (1 << 63)).to_be_bytes()
}

pub(crate) fn due_from(b: &[u8]) -> i64 {
    (u64::from_be_bytes(b.try_into().unwrap()) ^ (1 << 63)) as i64
}

/// `t ++ due(8) ++ tag(16) ++ instance hash(16) ++ step(4 BE)`: a range scan from `t` is the
/// due order across all people.
pub(crate) fn timer(ms: i64, tag: &Tag, ihash: &[u8; 16], step: u32) -> [u8; 45] {
    let mut k = [0u8; 45];
    k[0] = TIMERS;
    k[1..9].copy_from_slice(&due_bytes(ms));
    k[9..25].copy_from_slice(tag);
    k[25..41].copy_from_slice(ihash);
    k[41..45].copy_from_slice(&step.to_be_bytes());
    k
}

pub(crate) fn prefixed(prefix: u8, rest: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(prefix);
    k.extend_from_slice(rest);
    k
}

/// A human description of a key for corruption reports ("log record seq 42").
pub(crate) fn describe(key: &[u8]) -> String {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    match key.first() {
        None => "empty key".into(),
        Some(&LOG) if key.len() == 9 => format!("log record seq {}", seq_of_log(key).unwrap()),
        Some(b'm') if key == META => "meta record".into(),
        Some(b'c') if key == CURSOR => "cursor record".into(),
        Some(b'f') if key == FIRST => "first-seq record".into(),
        Some(b'V') if key == DEPLOYED => "deployed pointer".into(),
        Some(&DEDUP) => format!("dedup index entry {}", hex(&key[1..])),
        Some(&PERSON_EVENTS) => format!("person-events index entry {}", hex(&key[1..])),
        Some(&PEOPLE) => format!("person state (tag {})", hex(&key[1..])),
        Some(&TIMERS) if key.len() == 45 => format!("timer due {}ms", due_from(&key[1..9])),
        Some(&PERSON_TIMERS) => format!("person-timer index entry {}", hex(&key[1..])),
        Some(&OUTBOX) => format!("outbox message {}", String::from_utf8_lossy(&key[1..])),
        Some(&PENDING) => format!("pending index {}", String::from_utf8_lossy(&key[1..])),
        Some(&PERSON_OUTBOX) => format!("person-outbox index entry {}", hex(&key[1..])),
        Some(&PROGRAMS) => format!("program {}", String::from_utf8_lossy(&key[1..])),
        Some(&COUNTERS) => format!("counter {}", String::from_utf8_lossy(&key[1..])),
        Some(&ERASURES) => format!("erasure marker {}", hex(&key[1..])),
        Some(&LINKS) => format!("link {}", String::from_utf8_lossy(&key[1..])),
        Some(&PERSON_LINKS) => format!("person-link index entry {}", hex(&key[1..])),
        Some(p) => format!("unknown record (prefix {:?}) {}", *p as char, hex(key)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_order_is_byte_order_across_the_epoch() {
        let ks: Vec<_> = [-5_000i64, -1, 0, 1, 1_700_000_000_000]
            .iter()
            .map(|&ms| timer(ms, &[9; 16], &[1; 16], 0))
            .collect();
        assert!(ks.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(due_from(&ks[0][1..9]), -5_000);
    }
}
