//! What the host keeps between people, behind a trait: the join tables (orders, fulfillments,
//! phone -> person), lazy loading of people, and the timer queue. The simulator and flow tests
//! use [`MemState`] (plain maps); the durable runtime implements the same trait over the store,
//! so both hosts run the very same routing, join and timer-order code.

use super::queue::Queue;
use crate::engine::PersonState;
use crate::ir::StepId;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

/// A pending timer. The derived order — (due, person, instance, step) — is THE tie-break for
/// timers due at the same instant, in every host: it depends only on the timers themselves,
/// never on when or in which process they were scheduled, so a runtime that restarted (and
/// reads its timers back from disk) fires them in the same order as the simulator.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerKey {
    pub due: DateTime<Utc>,
    pub person: String,
    pub instance: String,
    pub step: StepId,
}

/// The state a host keeps outside the engine's per-person state.
pub trait HostState {
    /// A person's engine state the first time the host touches them in this process (`None`
    /// for a new person). Called once per person per process; the host caches the result.
    fn load_person(&mut self, _person: &str) -> Option<PersonState> {
        None
    }
    /// The host stepped this person: their state must be persisted (runtime) or nothing.
    fn touched(&mut self, _person: &str) {}

    /// Who last used this phone number (E.164).
    fn phone_owner(&mut self, phone: &str) -> Option<String>;
    fn set_phone_owner(&mut self, phone: &str, person: &str);
    /// Is `person` the latest owner of this phone? (Asked for every event that names a phone;
    /// a state that can answer without copying the owner's key should.)
    fn phone_owned_by(&mut self, phone: &str, person: &str) -> bool {
        self.phone_owner(phone).as_deref() == Some(person)
    }

    /// An order payload seen earlier, by order id.
    fn order(&mut self, id: &str) -> Option<Json>;
    /// A fulfillment payload seen earlier, by id (`order_id` helps stores that file
    /// fulfillments under their order's owner).
    fn fulfillment(&mut self, order_id: Option<&str>, id: &str) -> Option<Json>;
    /// Remember an order for later joins; `owner` is the person the order was routed to.
    fn remember_order(&mut self, id: &str, owner: Option<&str>, payload: Json);
    fn remember_fulfillment(
        &mut self,
        id: &str,
        order_id: Option<&str>,
        owner: Option<&str>,
        payload: Json,
    );

    /// Add a timer; it replaces a timer of the same (person, instance, step).
    fn schedule(&mut self, t: TimerKey);
    /// Remove a timer (a no-op when it is not there).
    fn cancel(&mut self, t: &TimerKey);
    /// [`HostState::schedule`] from borrowed parts: a state that keeps its own copies (or
    /// shares them, as [`MemState`] does) need not have the host allocate a key per timer.
    fn schedule_parts(&mut self, due: DateTime<Utc>, person: &str, instance: &str, step: StepId) {
        self.schedule(TimerKey {
            due,
            person: person.to_string(),
            instance: instance.to_string(),
            step,
        })
    }
    /// [`HostState::cancel`] from borrowed parts.
    fn cancel_parts(&mut self, due: DateTime<Utc>, person: &str, instance: &str, step: StepId) {
        self.cancel(&TimerKey {
            due,
            person: person.to_string(),
            instance: instance.to_string(),
            step,
        })
    }
    /// Remove and return the first timer (in [`TimerKey`] order) due at or before `until`.
    fn pop_due(&mut self, until: DateTime<Utc>) -> Option<TimerKey>;
    fn next_due(&mut self) -> Option<DateTime<Utc>>;
    fn pending_timers(&self) -> usize;
}

/// The hasher of the in-memory maps of the simulator and the flow tests: FxHash (the
/// `rustc-hash` crate, rustc's own). SipHash was ~2% of the simulator's time: every input and
/// timer hashes a person or phone several times. Their keys come from the input file the user
/// runs, not from the network, so flooding is no concern here; nothing iterates these maps,
/// so the hasher cannot change any output. The runtime's maps keep std's hasher.
pub type FastHash = rustc_hash::FxBuildHasher;

/// A hash map with [`FastHash`].
pub type FastMap<K, V> = HashMap<K, V, FastHash>;

/// Everything in memory: the simulator's and the flow tests' state.
#[derive(Default)]
pub struct MemState {
    /// Looked up for every input; never iterated.
    phones: FastMap<String, String>,
    orders: BTreeMap<String, Json>,
    fulfillments: BTreeMap<String, Json>,
    /// Pending timers, least first in [`TimerKey`] order, with lazy deletion: a cancelled or
    /// re-scheduled timer stays queued and is skipped when it surfaces (the index no longer
    /// holds it). A B-tree of dues, each with a B-tree set of timers, cost ~370 B per timer in
    /// nodes (most dues hold one timer); the queue's entries are compact (see [`Queue`]).
    timers: Queue,
    pending: usize,
    /// person -> (instance, step, due) of their pending timers: what is live, to replace a
    /// re-scheduled timer, find a cancelled one and tell a stale heap entry. A person has a
    /// handful of timers: a short list, searched without building a key (the old
    /// `(String, String, StepId)` keys cloned both strings on every schedule, cancel and pop).
    timer_index: FastMap<Rc<str>, Vec<Indexed>>,
}

/// A person's pending timer in the index: (instance, step, due).
type Indexed = (Rc<str>, StepId, DateTime<Utc>);

impl HostState for MemState {
    fn phone_owner(&mut self, phone: &str) -> Option<String> {
        self.phones.get(phone).cloned()
    }
    fn set_phone_owner(&mut self, phone: &str, person: &str) {
        self.phones.insert(phone.to_string(), person.to_string());
    }
    fn phone_owned_by(&mut self, phone: &str, person: &str) -> bool {
        self.phones.get(phone).is_some_and(|p| p == person)
    }
    fn order(&mut self, id: &str) -> Option<Json> {
        self.orders.get(id).cloned()
    }
    fn fulfillment(&mut self, _order_id: Option<&str>, id: &str) -> Option<Json> {
        self.fulfillments.get(id).cloned()
    }
    fn remember_order(&mut self, id: &str, _owner: Option<&str>, payload: Json) {
        self.orders.insert(id.to_string(), payload);
    }
    fn remember_fulfillment(
        &mut self,
        id: &str,
        _order_id: Option<&str>,
        _owner: Option<&str>,
        payload: Json,
    ) {
        self.fulfillments.insert(id.to_string(), payload);
    }
    fn schedule(&mut self, t: TimerKey) {
        self.schedule_parts(t.due, &t.person, &t.instance, t.step);
    }
    fn cancel(&mut self, t: &TimerKey) {
        self.cancel_parts(t.due, &t.person, &t.instance, t.step);
    }
    fn schedule_parts(&mut self, due: DateTime<Utc>, person: &str, instance: &str, step: StepId) {
        let person = match self.timer_index.get_key_value(person) {
            Some((p, _)) => p.clone(),
            None => Rc::from(person),
        };
        let list = self.timer_index.entry(person.clone()).or_default();
        let instance = match list
            .iter_mut()
            .find(|(i, s, _)| **i == *instance && *s == step)
        {
            // Replace: the old entry of this (person, instance, step) goes stale in the heap.
            Some((instance, _, old)) => {
                *old = due;
                instance.clone()
            }
            None => {
                // Another step of the same instance shares its id.
                let instance = list
                    .iter()
                    .find(|(i, _, _)| **i == *instance)
                    .map(|(i, _, _)| i.clone())
                    .unwrap_or_else(|| Rc::from(instance));
                list.push((instance.clone(), step, due));
                self.pending += 1;
                instance
            }
        };
        self.timers.push(due, person, instance, step);
    }
    fn cancel_parts(&mut self, _due: DateTime<Utc>, person: &str, instance: &str, step: StepId) {
        let Some(list) = self.timer_index.get(person) else {
            return;
        };
        if let Some(k) = list
            .iter()
            .position(|(i, s, _)| **i == *instance && *s == step)
        {
            self.forget(person, k);
        }
    }
    fn pop_due(&mut self, until: DateTime<Utc>) -> Option<TimerKey> {
        // Stale entries met on the way are dropped; a stale top due later than `until` is
        // left (nothing before it is live either).
        while self.timers.peek_due()? <= until {
            let first = self.timers.pop().expect("peeked");
            let Some(list) = self.timer_index.get_mut(&first.person) else {
                continue;
            };
            let Some(k) = list.iter().position(|(i, s, due)| {
                Rc::ptr_eq(i, &first.instance) && *s == first.step && *due == first.due
            }) else {
                continue;
            };
            list.swap_remove(k);
            self.pending -= 1;
            if list.is_empty() {
                self.timer_index.remove(&first.person);
            }
            return Some(TimerKey {
                due: first.due,
                person: String::from(&*first.person),
                instance: String::from(&*first.instance),
                step: first.step,
            });
        }
        None
    }
    fn next_due(&mut self) -> Option<DateTime<Utc>> {
        self.skip_stale();
        self.timers.peek_due()
    }
    fn pending_timers(&self) -> usize {
        self.pending
    }
}

impl MemState {
    /// Every pending timer, in no particular order (to move them into another state with
    /// [`HostState::schedule`]).
    pub fn live_timers(&self) -> Vec<TimerKey> {
        let mut out = Vec::with_capacity(self.pending);
        for (person, list) in &self.timer_index {
            for (instance, step, due) in list {
                out.push(TimerKey {
                    due: *due,
                    person: person.to_string(),
                    instance: instance.to_string(),
                    step: *step,
                });
            }
        }
        out
    }

    /// Drop the stale entries (cancelled or re-scheduled since) from the top of the heap. An
    /// entry is live when its person's index holds the same (instance, step) at the same due.
    /// Two identical entries (scheduled, cancelled, scheduled again) are one timer: the first
    /// to surface fires and unindexes it, and the second is then stale.
    fn skip_stale(&mut self) {
        while let Some((due, (person, instance, step))) = self.timers.peek() {
            let live = self.timer_index.get(person).is_some_and(|list| {
                list.iter()
                    .any(|(i, s, d)| Rc::ptr_eq(i, instance) && s == step && *d == due)
            });
            if live {
                return;
            }
            self.timers.pop();
        }
    }

    /// Drop entry `k` of a person's timer list (and the person when it is empty).
    fn forget(&mut self, person: &str, k: usize) {
        if let Some(list) = self.timer_index.get_mut(person) {
            list.swap_remove(k);
            self.pending -= 1;
            if list.is_empty() {
                self.timer_index.remove(person);
            }
        }
    }
}
