//! Durable write throughput of the store against its physical limits: the store's batch append
//! and commit with one flush per 1000 events, raw sled `apply_batch` and flush of the same
//! records, and raw file append with fdatasync per 1000 (the disk's floor). Ratios matter.
//!
//! Run: `cargo bench --bench store -- --quick` (or `--profile dev` to skip a release build).

use aftercart::store::{self, CommitBatch, NewEvent, Store};
use chrono::Utc;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

const N: usize = 1000;
const SIZE: usize = 300;

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("aftercart-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn payload(i: u64) -> Vec<u8> {
    let mut p = format!("{{\"id\":{i},\"pad\":\"").into_bytes();
    p.resize(SIZE - 2, b'x');
    p.extend_from_slice(b"\"}");
    p
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("durable_1000x300B");
    g.throughput(Throughput::Elements(N as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));

    let d = dir("store");
    let s = store::open(&d).unwrap();
    let mut next = 0u64;
    g.bench_function("store_append_commit_flush", |b| {
        b.iter(|| {
            let evs: Vec<NewEvent> = (0..N as u64)
                .map(|j| {
                    next += 1;
                    NewEvent {
                        received_at: Utc::now(),
                        source: "shopify".into(),
                        source_id: format!("ev-{next}"),
                        person: Some(format!("customer:{}", j % 100)),
                        payload: payload(next),
                    }
                })
                .collect();
            s.append(&evs).unwrap();
            s.commit(CommitBatch {
                cursor: Some(s.last_seq().unwrap()),
                ..CommitBatch::default()
            })
            .unwrap();
            s.flush().unwrap();
        })
    });
    drop(s);
    let _ = std::fs::remove_dir_all(&d);

    let d = dir("sled");
    let db = sled::open(&d).unwrap();
    let mut next = 0u64;
    g.bench_function("raw_sled_apply_batch_flush", |b| {
        b.iter(|| {
            let mut batch = sled::Batch::default();
            for _ in 0..N {
                next += 1;
                batch.insert(&next.to_be_bytes()[..], payload(next));
            }
            db.apply_batch(batch).unwrap();
            db.flush().unwrap();
        })
    });
    drop(db);
    let _ = std::fs::remove_dir_all(&d);

    let d = dir("file");
    std::fs::create_dir_all(&d).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.join("log"))
        .unwrap();
    let mut next = 0u64;
    g.bench_function("raw_file_append_fdatasync", |b| {
        b.iter(|| {
            let mut buf = Vec::with_capacity(N * (SIZE + 8));
            for _ in 0..N {
                next += 1;
                buf.extend_from_slice(&next.to_be_bytes());
                buf.extend_from_slice(&payload(next));
            }
            f.write_all(&buf).unwrap();
            f.sync_data().unwrap();
        })
    });
    let _ = std::fs::remove_dir_all(&d);
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
