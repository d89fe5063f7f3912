//! Compact binary encoding of store values and the checksummed frame every value is wrapped in.
//!
//! Values are hand-encoded rather than serde_json because the log holds binary ciphertext (JSON
//! would triple it as a number array) and because the byte layout is part of the on-disk format
//! documented in `docs/storage.md`: it must not move when a serde derive changes.

use super::StoreError;

/// Appends fixed-width big-endian integers and length-prefixed byte strings.
#[derive(Default)]
pub(crate) struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A u32 length then the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.raw(v)
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            None => self.u8(0),
            Some(s) => self.u8(1).str(s),
        }
    }
}

/// Reads what [`Writer`] wrote; every short read is an error naming `what`, never a panic,
/// because a damaged value must be reported, not crash the daemon.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'a str,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], what: &'a str) -> Reader<'a> {
        Reader { buf, pos: 0, what }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], StoreError> {
        if self.buf.len() - self.pos < n {
            return Err(StoreError::Corrupt {
                what: self.what.to_string(),
                detail: format!(
                    "value ends early: needed {n} bytes at offset {}, {} left",
                    self.pos,
                    self.buf.len() - self.pos
                ),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, StoreError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, StoreError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn i64(&mut self) -> Result<i64, StoreError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], StoreError> {
        Ok(self.take(N)?.try_into().unwrap())
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], StoreError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn string(&mut self) -> Result<String, StoreError> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| StoreError::Corrupt {
            what: self.what.to_string(),
            detail: "text field is not UTF-8".into(),
        })
    }
    pub fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.u8()? {
            0 => Ok(None),
            _ => Ok(Some(self.string()?)),
        }
    }
    pub fn rest_len(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

/// Wraps a value as `crc32(key ++ body) (4 bytes BE) ++ body`. The key is inside the checksum so
/// that a value that lands under the wrong key (a torn page, a bad index) is caught too.
pub(crate) fn frame(key: &[u8], body: &[u8]) -> Vec<u8> {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(body);
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&h.finalize().to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Checks and strips the frame; on a mismatch the error names the key (`what`), so corruption
/// is reported with where it is.
pub(crate) fn unframe<'v>(key: &[u8], value: &'v [u8]) -> Result<&'v [u8], StoreError> {
    if value.len() < 4 {
        return Err(StoreError::Corrupt {
            what: super::layout::describe(key),
            detail: format!("value is {} bytes, shorter than its checksum", value.len()),
        });
    }
    let (sum, body) = value.split_at(4);
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(body);
    let want = h.finalize();
    let got = u32::from_be_bytes(sum.try_into().unwrap());
    if want != got {
        return Err(StoreError::Corrupt {
            what: super::layout::describe(key),
            detail: format!("checksum mismatch: stored {got:08x}, computed {want:08x}"),
        });
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_round_trips_and_catches_flips_and_moves() {
        let f = frame(b"l\0\0\0\0\0\0\0\x01", b"hello");
        assert_eq!(unframe(b"l\0\0\0\0\0\0\0\x01", &f).unwrap(), b"hello");
        let mut bad = f.clone();
        bad[6] ^= 1;
        assert!(unframe(b"l\0\0\0\0\0\0\0\x01", &bad).is_err());
        // The same value under another key is caught.
        assert!(unframe(b"l\0\0\0\0\0\0\0\x02", &f).is_err());
        assert!(unframe(b"x", b"ab").is_err());
    }

    #[test]
    fn reader_reports_short_values() {
        let mut w = Writer::default();
        w.u32(7).str("abc").opt_str(None).opt_str(Some("z")).i64(-5);
        let mut r = Reader::new(&w.buf, "t");
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.string().unwrap(), "abc");
        assert_eq!(r.opt_string().unwrap(), None);
        assert_eq!(r.opt_string().unwrap().as_deref(), Some("z"));
        assert_eq!(r.i64().unwrap(), -5);
        assert!(r.u8().is_err());
    }
}
