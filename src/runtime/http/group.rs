//! Group commit for the webhook server: one thread appends what concurrent requests bring in
//! one store batch and one flush, then answers each of them.
//!
//! Why: every webhook is acknowledged only once it is durable (Shopify retries anything else),
//! and each append then flush costs two fsyncs (the key file for a new person, then sled). One
//! append + flush per request serialised those on the store's writer lock: 386 accepted/s with
//! 8 clients, and FEWER with more clients (286/s with 64), since each request waited for every
//! fsync queued before it. Requests that arrive while a group is being written wait for the
//! next group, so a group grows with the load and the fsyncs per request fall.

use crate::store::{AppendResult, NewEvent, Store};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use tokio::sync::oneshot;

/// At most this many requests in one group (a bound on one batch's size and on how long the
/// last of a burst waits for the group before it).
const MAX_GROUP: usize = 512;

type Reply = oneshot::Sender<Result<Vec<AppendResult>, String>>;
/// One request: its events and where its answer goes.
type Job = (Vec<NewEvent>, Reply);

pub(crate) struct GroupCommit {
    tx: Mutex<Option<Sender<Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    pub(crate) fn new(store: Arc<dyn Store>) -> GroupCommit {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("aftercart-webhook-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut group = vec![first];
                    while group.len() < MAX_GROUP {
                        match rx.try_recv() {
                            Ok(job) => group.push(job),
                            Err(_) => break,
                        }
                    }
                    write_group(&*store, group);
                }
            })
            .expect("spawn the webhook commit thread");
        GroupCommit {
            tx: Mutex::new(Some(tx)),
            thread: Some(thread),
        }
    }

    /// Append `events` durably with whatever else is waiting; the results are in the order of
    /// `events`, as `Store::append` gives them.
    pub(crate) async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AppendResult>, String> {
        let (reply, rx) = oneshot::channel();
        let sent = match &*self.tx.lock().unwrap() {
            Some(tx) => tx.send((events, reply)).is_ok(),
            None => false,
        };
        if !sent {
            return Err("the server is stopping".into());
        }
        rx.await
            .map_err(|_| "the commit thread stopped before answering".to_string())?
    }
}

/// One append and one flush for the whole group. An input repeated across requests of one
/// group is a duplicate of the first, as across groups. If the append or the flush fails,
/// every request of the group gets the error: none of them was acknowledged.
fn write_group(store: &dyn Store, group: Vec<Job>) {
    let mut all = Vec::new();
    let mut replies = Vec::with_capacity(group.len());
    for (events, reply) in group {
        replies.push((events.len(), reply));
        all.extend(events);
    }
    match crate::runtime::append_durable(store, &all) {
        Ok(results) => {
            let mut results = results.into_iter();
            for (n, reply) in replies {
                // A request whose client went away meanwhile: its events are stored anyway.
                let _ = reply.send(Ok(results.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            let e = e.to_string();
            for (_, reply) in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

impl Drop for GroupCommit {
    /// Answer what is queued, then stop the thread: it holds the store, which must be gone
    /// before the directory can be opened again in this process.
    fn drop(&mut self) {
        drop(self.tx.lock().unwrap().take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;
    use chrono::TimeZone;

    fn ev(id: &str) -> NewEvent {
        NewEvent {
            received_at: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            source: "shopify".into(),
            source_id: id.into(),
            person: Some(format!("customer:{id}")),
            payload: format!(r#"{{"id":"{id}"}}"#).into_bytes(),
        }
    }

    /// Concurrent requests each get their own results, in order, and an input sent by two
    /// requests is stored once.
    #[test]
    fn each_request_gets_its_own_results_and_duplicates_across_requests_are_found() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let g = Arc::new(GroupCommit::new(store.clone()));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let answers = rt.block_on(async {
            let tasks: Vec<_> = (0..40)
                .map(|i| {
                    let g = g.clone();
                    // Request i brings inputs i and i+1: every input but the ends twice.
                    tokio::spawn(async move {
                        g.append(vec![ev(&format!("e{i}")), ev(&format!("e{}", i + 1))])
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        assert!(answers.iter().all(|a| a.len() == 2));
        let accepted = answers
            .iter()
            .flatten()
            .filter(|r| matches!(r, AppendResult::Accepted(_)))
            .count();
        assert_eq!(accepted, 41);
        assert_eq!(store.last_seq().unwrap(), 41);
        // Each answer is its own request's: request i's second input is request i+1's first,
        // so both must name the same seq, whichever group stored it; and the 41 inputs have
        // 41 different seqs. Answers handed to the wrong request would break one or the other.
        for i in 0..39 {
            assert_eq!(answers[i][1].seq(), answers[i + 1][0].seq(), "request {i}");
        }
        let seqs: std::collections::BTreeSet<_> =
            answers.iter().flatten().map(|r| r.seq()).collect();
        assert_eq!(seqs.len(), 41);
        drop(g);
    }
}
