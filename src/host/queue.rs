//! [`MemState`](super::MemState)'s timer queue: a 4-ary min-heap of 32-byte entries in
//! [`TimerKey`](super::TimerKey) order, the timers' strings kept beside it in a slab.
//!
//! The simulator pops every timer it ever schedules, and a binary heap of 64-byte entries
//! (strings inline) was ~8% of its main thread: each pop walks ~20 levels of an array of
//! tens of megabytes, most of them cache misses. Here an entry is the due instant, the
//! person's first 16 bytes and a slot number, so a cache line holds two entries and a level
//! of four children is two lines; four children per level halve the levels. The slab (person,
//! instance, step) is read only to tell apart timers due at the same instant whose people
//! share their first 16 bytes, and once per pop.

use crate::ir::StepId;
use chrono::{DateTime, Utc};
use std::cmp::Ordering;
use std::rc::Rc;

/// A queued timer as the heap orders it: (due, lead, then the slot's person, instance, step).
#[derive(Clone, Copy)]
struct Entry {
    lead: u128,
    due: DateTime<Utc>,
    slot: u32,
}

/// What a slot holds: the rest of the timer's key.
pub struct Timer {
    pub due: DateTime<Utc>,
    pub person: Rc<str>,
    pub instance: Rc<str>,
    pub step: StepId,
}

/// A slot's contents: the timer's person, instance and step.
type Rest = (Rc<str>, Rc<str>, StepId);

/// A min-heap of timers (with duplicates: the caller decides what is stale).
#[derive(Default)]
pub struct Queue {
    heap: Vec<Entry>,
    /// Slot -> (person, instance, step); `None` when free.
    slots: Vec<Option<Rest>>,
    free: Vec<u32>,
}

/// The first 16 bytes of `s`, big-endian, zero-padded. A smaller lead means a smaller string
/// (bytewise order; the padding sorts a prefix first); equal leads leave it to the strings.
fn lead(s: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = s.len().min(16);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    u128::from_be_bytes(b)
}

/// Children per heap node.
const ARITY: usize = 4;

impl Queue {
    /// The least timer's due instant.
    pub fn peek_due(&self) -> Option<DateTime<Utc>> {
        self.heap.first().map(|e| e.due)
    }

    /// The least timer's due instant and (person, instance, step), borrowed.
    pub fn peek(&self) -> Option<(DateTime<Utc>, &Rest)> {
        let e = self.heap.first()?;
        Some((e.due, self.slots[e.slot as usize].as_ref()?))
    }

    pub fn push(&mut self, due: DateTime<Utc>, person: Rc<str>, instance: Rc<str>, step: StepId) {
        let lead = lead(&person);
        let filled = Some((person, instance, step));
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = filled;
                s
            }
            None => {
                self.slots.push(filled);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 timers queued")
            }
        };
        self.heap.push(Entry { lead, due, slot });
        self.sift_up(self.heap.len() - 1);
    }

    /// Remove and return the least timer.
    pub fn pop(&mut self) -> Option<Timer> {
        let last = self.heap.pop()?;
        let top = match self.heap.first_mut() {
            Some(first) => {
                let top = std::mem::replace(first, last);
                self.sift_down(0);
                top
            }
            None => last,
        };
        let (person, instance, step) = self.slots[top.slot as usize]
            .take()
            .expect("a queued entry's slot is filled");
        self.free.push(top.slot);
        Some(Timer {
            due: top.due,
            person,
            instance,
            step,
        })
    }

    /// `a < b` in [`TimerKey`](super::TimerKey) order.
    fn less(&self, a: &Entry, b: &Entry) -> bool {
        match (a.due, a.lead).cmp(&(b.due, b.lead)) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => {
                let key = |e: &Entry| {
                    let (p, i, s) = self.slots[e.slot as usize]
                        .as_ref()
                        .expect("a queued entry's slot is filled");
                    (&**p, &**i, *s)
                };
                key(a) < key(b)
            }
        }
    }

    fn sift_up(&mut self, mut i: usize) {
        let e = self.heap[i];
        while i > 0 {
            let parent = (i - 1) / ARITY;
            if !self.less(&e, &self.heap[parent]) {
                break;
            }
            self.heap[i] = self.heap[parent];
            i = parent;
        }
        self.heap[i] = e;
    }

    fn sift_down(&mut self, mut i: usize) {
        let e = self.heap[i];
        let n = self.heap.len();
        loop {
            let first = ARITY * i + 1;
            if first >= n {
                break;
            }
            let mut least = first;
            for c in first + 1..(first + ARITY).min(n) {
                if self.less(&self.heap[c], &self.heap[least]) {
                    least = c;
                }
            }
            if !self.less(&self.heap[least], &e) {
                break;
            }
            self.heap[i] = self.heap[least];
            i = least;
        }
        self.heap[i] = e;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    /// Pops come out in (due, person, instance, step) order, duplicates included, whatever
    /// the pushes' order; people longer than 16 bytes share leads.
    #[test]
    fn pops_in_key_order() {
        let t0 = DateTime::parse_from_rfc3339("2026-03-02T14:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let people = [
            "customer:1",
            "phone:+12125550100",
            "phone:+12125550101",
            "",
            "c",
        ];
        let mut keys = Vec::new();
        let mut x = 7u64;
        for n in 0..2000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let due = t0 + Duration::seconds((x >> 40) as i64 % 5);
            let person = people[(x >> 20) as usize % people.len()];
            let instance = format!("i{}", (x >> 8) % 3);
            keys.push((due, person.to_string(), instance, (n % 2) as StepId));
        }
        let mut q = Queue::default();
        let mut expect = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            q.push(k.0, Rc::from(k.1.as_str()), Rc::from(k.2.as_str()), k.3);
            expect.push(k.clone());
            // Interleave pops with pushes, as a run does.
            if i % 3 == 2 {
                expect.sort();
                let least = expect.remove(0);
                let t = q.pop().unwrap();
                assert_eq!(
                    (t.due, t.person.to_string(), t.instance.to_string(), t.step),
                    least
                );
            }
        }
        expect.sort();
        for k in expect {
            assert_eq!(q.peek_due(), Some(k.0));
            let t = q.pop().unwrap();
            assert_eq!(
                (t.due, t.person.to_string(), t.instance.to_string(), t.step),
                k
            );
        }
        assert!(q.pop().is_none());
    }
}
