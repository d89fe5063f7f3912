//! What the host keeps between people, behind a trait: the join tables (orders, fulfillments,
//! phone -> person), lazy loading of people, and the timer queue. The simulator and flow tests
//! use [`MemState`] (plain maps); the durable runtime implements the same trait over the store,
//! so both hosts run the very same routing, join and timer-order code.

use crate::engine::PersonState;
use crate::ir::StepId;
use chrono::{DateTime, Utc};
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

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
    phones: BTreeMap<String, String>,
    orders: BTreeMap<String, Json>,
    fulfillments: BTreeMap<String, Json>,
    timers: BTreeSet<TimerKey>,
    /// (person, instance, step) -> due, to replace a re-scheduled timer.
    timer_index: BTreeMap<(String, String, StepId), DateTime<Utc>>,
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
        let k = (t.person.clone(), t.instance.clone(), t.step);
        if let Some(due) = self.timer_index.insert(k, t.due) {
            self.timers.remove(&TimerKey { due, ..t.clone() });
        }
        self.timers.insert(t);
    }
    fn cancel(&mut self, t: &TimerKey) {
        let k = (t.person.clone(), t.instance.clone(), t.step);
        if let Some(due) = self.timer_index.remove(&k) {
            self.timers.remove(&TimerKey { due, ..t.clone() });
        }
    }
    fn pop_due(&mut self, until: DateTime<Utc>) -> Option<TimerKey> {
        let first = self.timers.first()?.clone();
        if first.due > until {
            return None;
        }
        self.timers.remove(&first);
        self.timer_index
            .remove(&(first.person.clone(), first.instance.clone(), first.step));
        Some(first)
    }
    fn next_due(&mut self) -> Option<DateTime<Utc>> {
        self.timers.first().map(|t| t.due)
    }
    fn pending_timers(&self) -> usize {
        self.timers.len()
    }
}
