//! `MemStore`: the [`Store`] in memory, for tests and as the model the sled store is checked
//! against. Same observable behaviour, no durability, no encryption (erasure is plain deletion).

use super::*;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

#[derive(Clone, Debug)]
struct MemEvent {
    received_ms: i64,
    source: String,
    source_id: String,
    person: Option<String>,
    payload: Vec<u8>,
    erased: bool,
}

#[derive(Default)]
struct Inner {
    log: BTreeMap<Seq, MemEvent>,
    dedup: HashMap<(String, String), Seq>,
    last: Seq,
    first: Seq,
    cursor: Seq,
    /// Everyone the store has a key for in the sled store (seen in any write).
    subjects: HashSet<String>,
    people: HashMap<String, Vec<u8>>,
    /// (due ms, person, instance, step)
    timers: BTreeSet<(i64, String, String, u32)>,
    outbox: BTreeMap<String, OutboxEntry>,
    programs: HashMap<String, Vec<u8>>,
    deployed: Option<String>,
    counters: BTreeMap<String, u64>,
    links: BTreeMap<String, LinkEntry>,
}

/// The in-memory store. Timers at the same millisecond come back ordered by (person, instance,
/// step) here but in tag order in the sled store: compare them as sets.
pub struct MemStore {
    inner: Mutex<Inner>,
}

impl Default for MemStore {
    fn default() -> Self {
        MemStore {
            inner: Mutex::new(Inner {
                first: 1,
                ..Inner::default()
            }),
        }
    }
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }
}

fn bump(c: &mut BTreeMap<String, u64>, name: String, d: i64) {
    if d == 0 {
        return;
    }
    let v = c.entry(name).or_default();
    *v = if d < 0 {
        v.saturating_sub(d.unsigned_abs())
    } else {
        v.saturating_add(d as u64)
    };
}

fn timer_of(t: &(i64, String, String, u32)) -> Timer {
    Timer {
        due: from_millis(t.0),
        person: t.1.clone(),
        instance: t.2.clone(),
        step: t.3,
    }
}

impl Store for MemStore {
    fn append(&self, events: &[NewEvent]) -> Result<Vec<AppendResult>> {
        let mut s = self.inner.lock().unwrap();
        let mut out = Vec::new();
        for ev in events {
            let id = (ev.source.clone(), ev.source_id.clone());
            if let Some(&seq) = s.dedup.get(&id) {
                bump(
                    &mut s.counters,
                    format!("events.duplicate.{}", ev.source),
                    1,
                );
                out.push(AppendResult::Duplicate(seq));
                continue;
            }
            s.last += 1;
            let seq = s.last;
            s.dedup.insert(id, seq);
            if let Some(p) = &ev.person {
                s.subjects.insert(p.clone());
            }
            s.log.insert(
                seq,
                MemEvent {
                    received_ms: millis(ev.received_at),
                    source: ev.source.clone(),
                    source_id: ev.source_id.clone(),
                    person: ev.person.clone(),
                    payload: ev.payload.clone(),
                    erased: false,
                },
            );
            bump(&mut s.counters, format!("events.accepted.{}", ev.source), 1);
            out.push(AppendResult::Accepted(seq));
        }
        Ok(out)
    }

    fn commit(&self, c: CommitBatch) -> Result<()> {
        let mut s = self.inner.lock().unwrap();
        // Validate first: a failed commit changes nothing, as in the sled store.
        if let Some(cur) = c.cursor {
            if cur > s.last {
                return Err(StoreError::Invalid(format!(
                    "cursor {cur} is past the end of the log ({})",
                    s.last
                )));
            }
        }
        let mut known: HashSet<&str> = s.outbox.keys().map(|k| k.as_str()).collect();
        known.extend(c.outbox_put.iter().map(|o| o.message_id.as_str()));
        if let Some(u) = c
            .outbox_update
            .iter()
            .find(|u| !known.contains(u.message_id.as_str()))
        {
            return Err(StoreError::Invalid(format!(
                "outbox update for unknown message {}",
                u.message_id
            )));
        }
        for (seq, person) in &c.attribute {
            match s.log.get(seq) {
                None => {
                    return Err(StoreError::Invalid(format!(
                        "attribute: seq {seq} is not in the log"
                    )))
                }
                Some(e) if !e.erased && e.person.as_ref().is_some_and(|p| p != person) => {
                    return Err(StoreError::Invalid(format!(
                        "attribute: seq {seq} already belongs to another person"
                    )))
                }
                _ => {}
            }
        }
        let s = &mut *s;
        for p in &c.people_remove {
            s.people.remove(p);
        }
        for (p, st) in &c.people_put {
            s.subjects.insert(p.clone());
            s.people.insert(p.clone(), st.clone());
        }
        for t in &c.timers_remove {
            s.timers
                .remove(&(millis(t.due), t.person.clone(), t.instance.clone(), t.step));
        }
        for t in &c.timers_add {
            s.subjects.insert(t.person.clone());
            s.timers
                .insert((millis(t.due), t.person.clone(), t.instance.clone(), t.step));
        }
        for o in &c.outbox_put {
            // An id the outbox already holds is kept as it is, as SledStore does.
            if s.outbox.contains_key(&o.message_id) {
                bump(&mut s.counters, "runtime.sends_already_in_outbox".into(), 1);
                continue;
            }
            s.subjects.insert(o.person.clone());
            // `pending` counts messages created, also those put already sent (the runtime's
            // direct send), as SledStore does.
            if o.status != OutboxStatus::Pending {
                bump(
                    &mut s.counters,
                    format!("messages.{}.{}", o.flow, OutboxStatus::Pending.as_str()),
                    1,
                );
            }
            bump(
                &mut s.counters,
                format!("messages.{}.{}", o.flow, o.status.as_str()),
                1,
            );
            s.outbox.insert(o.message_id.clone(), o.clone());
        }
        for u in &c.outbox_update {
            let e = s.outbox.get_mut(&u.message_id).expect("validated");
            if e.status != u.status {
                bump(
                    &mut s.counters,
                    format!("messages.{}.{}", e.flow, u.status.as_str()),
                    1,
                );
            }
            e.status = u.status;
            e.attempts = u.attempts;
            e.provider_id = u.provider_id.clone();
            e.error_code = u.error_code.clone();
        }
        for l in &c.links_put {
            s.subjects.insert(l.person.clone());
            s.links.insert(l.code.clone(), l.clone());
        }
        for (seq, person) in &c.attribute {
            let e = s.log.get_mut(seq).expect("validated");
            if !e.erased && e.person.is_none() {
                e.person = Some(person.clone());
                s.subjects.insert(person.clone());
            }
        }
        for (name, d) in &c.counters {
            bump(&mut s.counters, name.clone(), *d);
        }
        if let Some(cur) = c.cursor {
            s.cursor = cur;
        }
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn last_seq(&self) -> Result<Seq> {
        Ok(self.inner.lock().unwrap().last)
    }

    fn first_seq(&self) -> Result<Seq> {
        Ok(self.inner.lock().unwrap().first)
    }

    fn cursor(&self) -> Result<Seq> {
        Ok(self.inner.lock().unwrap().cursor)
    }

    fn read_log(&self, from: Seq, limit: usize) -> Result<Vec<LogEntry>> {
        let s = self.inner.lock().unwrap();
        Ok(s.log
            .range(from..)
            .take(limit)
            .map(|(&seq, e)| LogEntry {
                seq,
                received_at: from_millis(e.received_ms),
                source: e.source.clone(),
                source_id: (!e.erased).then(|| e.source_id.clone()),
                person: if e.erased { None } else { e.person.clone() },
                payload: (!e.erased).then(|| e.payload.clone()),
            })
            .collect())
    }

    fn person(&self, person: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.lock().unwrap().people.get(person).cloned())
    }

    fn people(&self) -> Result<Vec<String>> {
        Ok(self.inner.lock().unwrap().people.keys().cloned().collect())
    }

    fn due_between(
        &self,
        from: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Timer>> {
        let s = self.inner.lock().unwrap();
        let (from, until) = (millis(from), millis(until));
        Ok(s.timers
            .range((from, String::new(), String::new(), 0)..)
            .take_while(|t| t.0 <= until)
            .take(limit)
            .map(timer_of)
            .collect())
    }

    fn next_due(&self) -> Result<Option<DateTime<Utc>>> {
        Ok(self
            .inner
            .lock()
            .unwrap()
            .timers
            .iter()
            .next()
            .map(|t| from_millis(t.0)))
    }

    fn timers_of(&self, person: &str) -> Result<Vec<Timer>> {
        let s = self.inner.lock().unwrap();
        Ok(s.timers
            .iter()
            .filter(|t| t.1 == person)
            .map(timer_of)
            .collect())
    }

    fn outbox(&self, message_id: &str) -> Result<Option<OutboxEntry>> {
        Ok(self.inner.lock().unwrap().outbox.get(message_id).cloned())
    }

    fn pending(&self, limit: usize) -> Result<Vec<OutboxEntry>> {
        let s = self.inner.lock().unwrap();
        Ok(s.outbox
            .values()
            .filter(|o| o.status.needs_dispatch())
            .take(limit)
            .cloned()
            .collect())
    }

    fn link(&self, code: &str) -> Result<Option<LinkEntry>> {
        Ok(self.inner.lock().unwrap().links.get(code).cloned())
    }

    fn deploy(&self, hash: &str, program: &[u8]) -> Result<()> {
        let mut s = self.inner.lock().unwrap();
        s.programs.insert(hash.to_string(), program.to_vec());
        s.deployed = Some(hash.to_string());
        Ok(())
    }

    fn program(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.lock().unwrap().programs.get(hash).cloned())
    }

    fn deployed(&self) -> Result<Option<String>> {
        Ok(self.inner.lock().unwrap().deployed.clone())
    }

    fn counters(&self) -> Result<BTreeMap<String, u64>> {
        Ok(self.inner.lock().unwrap().counters.clone())
    }

    fn export(&self, person: &str) -> Result<serde_json::Value> {
        use serde_json::json;
        let s = self.inner.lock().unwrap();
        if !s.subjects.contains(person) {
            return Ok(json!({ "person": person, "found": false }));
        }
        let events: Vec<_> = s
            .log
            .iter()
            .filter(|(_, e)| !e.erased && e.person.as_deref() == Some(person))
            .map(|(seq, e)| {
                json!({
                    "seq": seq,
                    "received_at": from_millis(e.received_ms).to_rfc3339(),
                    "source": e.source,
                    "source_id": e.source_id,
                    "payload": bytes_json(&e.payload),
                })
            })
            .collect();
        let timers: Vec<_> = s
            .timers
            .iter()
            .filter(|t| t.1 == person)
            .map(|t| json!({"due": from_millis(t.0).to_rfc3339(), "instance": t.2, "step": t.3}))
            .collect();
        let outbox: Vec<_> = s
            .outbox
            .values()
            .filter(|o| o.person == person)
            .map(|o| {
                json!({
                    "message_id": o.message_id, "flow": o.flow, "step": o.step,
                    "status": o.status.as_str(), "attempts": o.attempts,
                    "provider_id": o.provider_id, "error_code": o.error_code, "message": bytes_json(&o.message),
                })
            })
            .collect();
        Ok(json!({
            "person": person,
            "found": true,
            "state": s.people.get(person).map(|b| bytes_json(b)),
            "events": events,
            "timers": timers,
            "outbox": outbox,
        }))
    }

    fn forget(&self, person: &str) -> Result<ForgetReport> {
        let mut s = self.inner.lock().unwrap();
        if !s.subjects.remove(person) {
            return Ok(ForgetReport::default());
        }
        let mut r = ForgetReport {
            found: true,
            ..ForgetReport::default()
        };
        for e in s.log.values_mut() {
            if !e.erased && e.person.as_deref() == Some(person) {
                e.erased = true;
                e.person = None;
                // source_id stays for the dedup map (the sled store keeps its hashed entry).
                e.payload.clear();
                r.events += 1;
            }
        }
        s.people.remove(person);
        let before = s.timers.len();
        s.timers.retain(|t| t.1 != person);
        r.timers = (before - s.timers.len()) as u64;
        let before = s.outbox.len();
        s.outbox.retain(|_, o| o.person != person);
        r.messages = (before - s.outbox.len()) as u64;
        s.links.retain(|_, l| l.person != person);
        Ok(r)
    }

    fn compact(&self, before: DateTime<Utc>) -> Result<CompactReport> {
        let mut s = self.inner.lock().unwrap();
        let limit = millis(before);
        let mut dropped = 0;
        while let Some((&seq, e)) = s.log.iter().next() {
            if seq > s.cursor || e.received_ms >= limit {
                break;
            }
            let e = s.log.remove(&seq).unwrap();
            s.dedup.remove(&(e.source, e.source_id));
            s.first = seq + 1;
            dropped += 1;
        }
        Ok(CompactReport {
            dropped,
            first_seq: s.first,
        })
    }
}
