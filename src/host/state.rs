//! What the host keeps between people, behind a trait: the join tables (orders, fulfillments,
//! phone -> person), lazy loading of people, and the timer queue. The simulator and flow tests
//! use [`MemState`] (plain maps); the durable runtime implements the same trait over the store,
//! so both hosts run the very same routing, join and timer-order code.

use crate::engine::PersonState;
use crate::ir::StepId;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
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
    /// Remove and return the first timer (in [`TimerKey`] order) due at or before `until`.
    fn pop_due(&mut self, until: DateTime<Utc>) -> Option<TimerKey>;
    fn next_due(&mut self) -> Option<DateTime<Utc>>;
    fn pending_timers(&self) -> usize;
}

/// Everything in memory: the simulator's and the flow tests' state.
#[derive(Default)]
pub struct MemState {
    /// Looked up for every input; never iterated.
    phones: HashMap<String, String>,
    orders: BTreeMap<String, Json>,
    fulfillments: BTreeMap<String, Json>,
    /// Pending timers by due time, then (person, instance, step): [`TimerKey`] order. Most
    /// dues hold one timer, so the queue orders by time alone and strings are compared only
    /// between timers due at the same instant.
    timers: BTreeMap<DateTime<Utc>, BTreeSet<Slot>>,
    pending: usize,
    /// person -> (instance, step, due) of their pending timers, to replace a re-scheduled timer
    /// and find a cancelled one. A person has a handful of timers: a short list, searched
    /// without building a key (the old `(String, String, StepId)` keys cloned both strings on
    /// every schedule, cancel and pop).
    timer_index: HashMap<Rc<str>, Vec<Indexed>>,
}

/// A person's pending timer in the index: (instance, step, due).
type Indexed = (Rc<str>, StepId, DateTime<Utc>);

/// A pending timer at its due time: the rest of a [`TimerKey`], with strings shared with the
/// index, ordered as in [`TimerKey`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    person: Rc<str>,
    instance: Rc<str>,
    step: StepId,
}

impl HostState for MemState {
    fn phone_owner(&mut self, phone: &str) -> Option<String> {
        self.phones.get(phone).cloned()
    }
    fn set_phone_owner(&mut self, phone: &str, person: &str) {
        self.phones.insert(phone.to_string(), person.to_string());
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
        let person = match self.timer_index.get_key_value(t.person.as_str()) {
            Some((p, _)) => p.clone(),
            None => Rc::from(t.person),
        };
        let list = self.timer_index.entry(person.clone()).or_default();
        let same = list
            .iter()
            .position(|(i, s, _)| **i == *t.instance && *s == t.step);
        let instance = match same {
            Some(k) => {
                // Replace: the old timer of this (person, instance, step) leaves the queue.
                let (instance, _, due) = &mut list[k];
                let old = Slot {
                    person: person.clone(),
                    instance: instance.clone(),
                    step: t.step,
                };
                let old_due = std::mem::replace(due, t.due);
                let instance = instance.clone();
                self.unqueue(old_due, &old);
                instance
            }
            None => {
                // Another step of the same instance shares its id.
                let instance = list
                    .iter()
                    .find(|(i, _, _)| **i == *t.instance)
                    .map(|(i, _, _)| i.clone())
                    .unwrap_or_else(|| Rc::from(t.instance));
                list.push((instance.clone(), t.step, t.due));
                instance
            }
        };
        if self.timers.entry(t.due).or_default().insert(Slot {
            person,
            instance,
            step: t.step,
        }) {
            self.pending += 1;
        }
    }
    fn cancel(&mut self, t: &TimerKey) {
        let Some((person, list)) = self.timer_index.get_key_value(t.person.as_str()) else {
            return;
        };
        let Some(k) = list
            .iter()
            .position(|(i, s, _)| **i == *t.instance && *s == t.step)
        else {
            return;
        };
        let (instance, step, due) = list[k].clone();
        let person = person.clone();
        self.forget(&person, k);
        self.unqueue(
            due,
            &Slot {
                person,
                instance,
                step,
            },
        );
    }
    fn pop_due(&mut self, until: DateTime<Utc>) -> Option<TimerKey> {
        let mut entry = self.timers.first_entry()?;
        let due = *entry.key();
        if due > until {
            return None;
        }
        let first = entry.get_mut().pop_first().expect("no empty sets are kept");
        if entry.get().is_empty() {
            entry.remove();
        }
        self.pending -= 1;
        if let Some(list) = self.timer_index.get(&first.person) {
            if let Some(k) = list
                .iter()
                .position(|(i, s, _)| *i == first.instance && *s == first.step)
            {
                self.forget(&first.person, k);
            }
        }
        Some(TimerKey {
            due,
            person: first.person.to_string(),
            instance: first.instance.to_string(),
            step: first.step,
        })
    }
    fn next_due(&mut self) -> Option<DateTime<Utc>> {
        self.timers.first_key_value().map(|(due, _)| *due)
    }
    fn pending_timers(&self) -> usize {
        self.pending
    }
}

impl MemState {
    /// Take a timer out of the queue (a no-op when it is not there).
    fn unqueue(&mut self, due: DateTime<Utc>, slot: &Slot) {
        if let Some(set) = self.timers.get_mut(&due) {
            if set.remove(slot) {
                self.pending -= 1;
            }
            if set.is_empty() {
                self.timers.remove(&due);
            }
        }
    }

    /// Drop entry `k` of a person's timer list (and the person when it is empty).
    fn forget(&mut self, person: &str, k: usize) {
        if let Some(list) = self.timer_index.get_mut(person) {
            list.swap_remove(k);
            if list.is_empty() {
                self.timer_index.remove(person);
            }
        }
    }
}
