//! The background thread that applies `commit` batches to sled while the caller goes on.
//!
//! Why: sled's `apply_batch` is the largest single cost of a runtime batch (a quarter of the
//! throughput benchmark's CPU: sled clones a leaf per insert), and it needs nothing from the
//! runtime once the batch is built. Handing it to this thread lets the runtime step the engine
//! through its next batch on the other core meanwhile.
//!
//! The rule that keeps reads exact: at most one batch is in flight, and every store operation
//! other than `commit`'s hand-off first waits for it ([`Applier::settle`]; `SledStore` reaches
//! sled only through an accessor that does). So a reader never sees the store without a batch
//! it was told is committed, and sled's own atomicity (a single-tree batch is all or nothing)
//! is unchanged. The thread flushes after each apply; a caller that must know a commit is
//! durable calls `flush`, which settles first. A failed apply is kept and returned by every
//! later settle: the caller's memory is then ahead of the store, and it must stop (the runtime
//! does, as for any commit error).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use super::{Result, StoreError};

/// The store's sled handle, shared with this thread. `None` only while a checkpoint reopens
/// the database (under the write lock, with no batch in flight) or after a reopen failed.
pub(crate) type SharedDb = Arc<parking_lot::RwLock<Option<sled::Db>>>;

#[derive(Default)]
struct State {
    in_flight: bool,
    /// The first apply that failed; sticky.
    error: Option<String>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    done: Condvar,
}

pub(crate) struct Applier {
    tx: Option<Sender<sled::Batch>>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Applier {
    /// `applied` counts writes that are in sled (the store's flush covers what it counted
    /// before flushing): the thread adds one per batch once it is applied, before it says so.
    pub(crate) fn new(db: SharedDb, applied: Arc<AtomicU64>) -> Applier {
        let (tx, rx) = channel::<sled::Batch>();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("aftercart-apply".into())
            .spawn(move || {
                for batch in rx {
                    // Applied, then flushed here, off the caller's thread: each commit is
                    // durable about one apply after its hand-off. Left to sled's 500 ms
                    // flusher instead, the dirty data piled up and each periodic flush stalled
                    // writers: peer_load's lateness p99 at 1k flows/s was 197-327 ms, with
                    // this flush 9 ms.
                    // The handle is read per batch, not kept: a checkpoint (which settles
                    // first) closes and reopens the database between batches.
                    let r = match db.read().as_ref() {
                        Some(db) => db.apply_batch(batch).and_then(|_| db.flush().map(|_| ())),
                        None => Err(sled::Error::Unsupported(
                            "the database is closed: its reopen after a checkpoint failed".into(),
                        )),
                    };
                    if r.is_ok() {
                        applied.fetch_add(1, Ordering::SeqCst);
                    }
                    let mut st = s.state.lock().unwrap();
                    if let Err(e) = r {
                        st.error.get_or_insert_with(|| e.to_string());
                    }
                    st.in_flight = false;
                    s.done.notify_all();
                }
            })
            .expect("spawn the store's apply thread");
        Applier {
            tx: Some(tx),
            shared,
            thread: Some(thread),
        }
    }

    /// Wait until no batch is in flight; the error of any failed apply.
    pub(crate) fn settle(&self) -> Result<()> {
        let mut st = self.shared.state.lock().unwrap();
        while st.in_flight {
            st = self.shared.done.wait(st).unwrap();
        }
        match &st.error {
            None => Ok(()),
            Some(e) => Err(StoreError::Io(format!(
                "a committed batch could not be applied to the database: {e} (the batches \
                 after the last flush are lost; reopen the store)"
            ))),
        }
    }

    /// Hand `batch` over. The caller has settled (and holds the store's writer lock, so no
    /// other batch can start meanwhile).
    pub(crate) fn submit(&self, batch: sled::Batch) -> Result<()> {
        self.shared.state.lock().unwrap().in_flight = true;
        let sent = self.tx.as_ref().map(|tx| tx.send(batch).is_ok());
        if sent != Some(true) {
            let mut st = self.shared.state.lock().unwrap();
            st.in_flight = false;
            st.error
                .get_or_insert_with(|| "the apply thread has stopped".into());
        }
        self.settle_if_failed()
    }

    fn settle_if_failed(&self) -> Result<()> {
        if self.shared.state.lock().unwrap().error.is_some() {
            return self.settle();
        }
        Ok(())
    }
}

impl Drop for Applier {
    /// Apply what is in flight, then stop the thread (it must be done with the `Db` before the
    /// directory can be opened again).
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
