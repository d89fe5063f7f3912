//! The physical baselines the runtime's benchmarks are measured against, in the same run: raw
//! sled batches (`apply_batch` + `flush` per group) and raw file appends (`write` +
//! `fdatasync` per group) of `n` records of `size` bytes. Here because only `store` names sled;
//! used by `benches/runtime.rs` and `examples/peer_load.rs`. Returns seconds.

use super::{Result, StoreError};
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// A JSON-ish record of exactly `size` bytes (at least the `{"id":N,"pad":""}` frame).
pub fn record(i: u64, size: usize) -> Vec<u8> {
    let mut p = format!("{{\"id\":{i},\"pad\":\"").into_bytes();
    p.resize(size.saturating_sub(2), b'x');
    p.extend_from_slice(b"\"}");
    p
}

fn io(dir: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(format!("{}: {e}", dir.display()))
}

/// Raw sled in a fresh directory `dir` (removed afterwards): one `Batch` + `flush` per `group`.
pub fn raw_sled(dir: &Path, n: usize, size: usize, group: usize) -> Result<f64> {
    let db = sled::open(dir)?;
    let t = Instant::now();
    let mut i = 0u64;
    while (i as usize) < n {
        let mut batch = sled::Batch::default();
        for _ in 0..group.min(n - i as usize) {
            i += 1;
            batch.insert(&i.to_be_bytes()[..], record(i, size));
        }
        db.apply_batch(batch)?;
        db.flush()?;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(db);
    std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    Ok(secs)
}

/// Raw appends to one file in a fresh directory `dir` (removed afterwards): one `write` +
/// `fdatasync` per `group` records (each an 8-byte sequence number and the record).
pub fn raw_file(dir: &Path, n: usize, size: usize, group: usize) -> Result<f64> {
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("log"))
        .map_err(|e| io(dir, e))?;
    let t = Instant::now();
    let mut i = 0u64;
    while (i as usize) < n {
        let mut buf = Vec::with_capacity(group * (size + 8));
        for _ in 0..group.min(n - i as usize) {
            i += 1;
            buf.extend_from_slice(&i.to_be_bytes());
            buf.extend_from_slice(&record(i, size));
        }
        f.write_all(&buf)
            .and_then(|_| f.sync_data())
            .map_err(|e| io(dir, e))?;
    }
    let secs = t.elapsed().as_secs_f64();
    std::fs::remove_dir_all(dir).map_err(|e| io(dir, e))?;
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_have_the_asked_size_and_baselines_clean_up() {
        assert_eq!(record(7, 300).len(), 300);
        let d = std::env::temp_dir().join(format!("aftercart-baseline-{}", std::process::id()));
        let (a, b) = (d.join("sled"), d.join("file"));
        assert!(raw_sled(&a, 50, 100, 20).unwrap() >= 0.0);
        assert!(raw_file(&b, 50, 100, 20).unwrap() >= 0.0);
        assert!(!a.exists() && !b.exists());
        let _ = std::fs::remove_dir_all(&d);
    }
}
