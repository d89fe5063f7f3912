//! The in-memory host of the pure engine: turns input lines (Shopify webhook envelopes or
//! aftercart's own events) into engine inputs, routes them to people, joins fulfillment events
//! to the order they belong to, keeps the timer queue, and collects a timeline. The simulator
//! and the flow-test runner drive it on a virtual clock; the durable runtime persists the same
//! state. It never reads a clock: every call takes `now`.

pub mod envelope;

use crate::engine::{self, Effect, Input, PersonState};
use crate::ir::{Program, StepId};
use crate::schema::Schemas;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};

pub use envelope::{parse_line, Envelope, Payload};

/// One thing that happened, for timelines and the simulator's output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub at: DateTime<Utc>,
    pub person: String,
    pub effect: Effect,
}

/// A pending timer, ordered by due time then by the order it was set (deterministic).
type TimerKey = (DateTime<Utc>, u64, String, String, StepId);

pub struct Host {
    pub program: Program,
    pub schemas: Schemas,
    pub people: BTreeMap<String, PersonState>,
    /// Phone (E.164) -> person, so replies and phone-only events reach the right person.
    phones: BTreeMap<String, String>,
    /// Raw order payloads by order id, for joining fulfillments and shipment events.
    orders: BTreeMap<String, Json>,
    /// Raw fulfillment payloads by fulfillment id (shipment events carry only its id).
    fulfillments: BTreeMap<String, Json>,
    timers: BTreeSet<TimerKey>,
    timer_index: BTreeMap<(String, String, StepId), (DateTime<Utc>, u64)>,
    seq: u64,
    /// Source event ids already processed (Shopify delivers at least once).
    seen: BTreeSet<String>,
}

fn text(j: Option<&Json>) -> Option<String> {
    match j? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Host {
    pub fn new(program: Program, schemas: Schemas) -> Host {
        Host {
            program,
            schemas,
            people: BTreeMap::new(),
            phones: BTreeMap::new(),
            orders: BTreeMap::new(),
            fulfillments: BTreeMap::new(),
            timers: BTreeSet::new(),
            timer_index: BTreeMap::new(),
            seq: 0,
            seen: BTreeSet::new(),
        }
    }

    /// Who a normalised event is about: the customer id, else a person already known by this
    /// phone, else the phone itself.
    fn route(&mut self, data: &Json) -> Option<String> {
        let phone = text(data.get("phone"));
        let person = match text(data.get("customer_id")) {
            Some(id) => format!("customer:{id}"),
            None => match phone.as_ref().and_then(|p| self.phones.get(p)) {
                Some(p) => p.clone(),
                None => engine::person_key(data)?,
            },
        };
        if let Some(p) = phone {
            // The latest owner of a number wins (numbers are recycled).
            self.phones.insert(p, person.clone());
        }
        Some(person)
    }

    /// Turn one envelope into engine inputs, each with the person it is for. Errors say what is
    /// wrong with the payload; nothing is changed then.
    pub fn inputs(&mut self, env: &Envelope) -> Result<Vec<(String, Input)>, String> {
        match &env.payload {
            Payload::Shopify {
                topic,
                event_id,
                body,
            } => {
                let mut body = body.clone();
                // Joins: fulfillments and shipment events know only ids; attach what we stored.
                if let Some(oid) = text(body.get("order_id")) {
                    if let Some(order) = self.orders.get(&oid) {
                        body["order"] = order.clone();
                    }
                }
                if topic == "fulfillment_events/create" {
                    if let Some(fid) = text(body.get("fulfillment_id")) {
                        if let Some(f) = self.fulfillments.get(&fid) {
                            body["fulfillment"] = f.clone();
                        }
                    }
                }
                let events: Vec<String> = self
                    .schemas
                    .events_for_topic(topic, &body)
                    .iter()
                    .map(|e| e.name.clone())
                    .collect();
                let mut out = Vec::new();
                for name in events {
                    let data = self
                        .schemas
                        .normalize(&name, &body)
                        .map_err(|e| format!("{topic}: {e}"))?;
                    let Some(person) = self.route(&data) else {
                        continue;
                    };
                    out.push((
                        person,
                        Input::Event {
                            name: name.clone(),
                            id: format!("{event_id}:{name}"),
                            data,
                        },
                    ));
                }
                // Remember orders and fulfillments for later joins (after normalising: a bad
                // payload is refused whole).
                if topic.starts_with("orders/") {
                    if let Some(id) = text(body.get("id")) {
                        self.orders.insert(id, strip_joins(body.clone()));
                    }
                }
                if topic.starts_with("fulfillments/") {
                    if let Some(id) = text(body.get("id")) {
                        self.fulfillments.insert(id, strip_joins(body.clone()));
                    }
                }
                Ok(out)
            }
            Payload::Aftercart { kind, id, data } => match kind.as_str() {
                "sms.replied" => {
                    let from = text(data.get("from")).ok_or("sms.replied needs `from`")?;
                    let body = text(data.get("body")).unwrap_or_default();
                    let person = self
                        .phones
                        .get(&from)
                        .cloned()
                        .unwrap_or_else(|| format!("phone:{from}"));
                    self.phones
                        .entry(from.clone())
                        .or_insert_with(|| person.clone());
                    let message_sid = text(data.get("message_sid"));
                    Ok(vec![(person, Input::Reply { body, message_sid })])
                }
                "message.clicked" | "message.delivered" | "message.failed" => {
                    let person =
                        text(data.get("person")).ok_or(format!("{kind} needs `person`"))?;
                    let message_id =
                        text(data.get("message_id")).ok_or(format!("{kind} needs `message_id`"))?;
                    Ok(vec![(
                        person,
                        if kind == "message.clicked" {
                            Input::Click { message_id }
                        } else {
                            Input::Delivery {
                                message_id,
                                status: text(data.get("status"))
                                    .unwrap_or_else(|| kind[8..].to_string()),
                                error_code: text(data.get("error_code")),
                            }
                        },
                    )])
                }
                name => {
                    // A normalised event: custom (declared in the project) or a Shopify-derived
                    // name with already-normalised fields.
                    let schema = self
                        .schemas
                        .event(name)
                        .ok_or(format!("unknown event type `{name}`"))?;
                    let data = if schema.topic.is_some() {
                        data.clone()
                    } else {
                        self.schemas
                            .normalize(name, data)
                            .map_err(|e| format!("{name}: {e}"))?
                    };
                    let person = self
                        .route(&data)
                        .ok_or(format!("`{name}` names no customer_id or phone"))?;
                    Ok(vec![(
                        person,
                        Input::Event {
                            name: name.to_string(),
                            id: id.clone(),
                            data,
                        },
                    )])
                }
            },
        }
    }

    /// Run one envelope at `now`: de-duplicate on its source id, then step every person it
    /// concerns. Returns the timeline records.
    pub fn ingest(&mut self, env: &Envelope, now: DateTime<Utc>) -> Result<Vec<Record>, String> {
        let key = env.source_id();
        if !self.seen.insert(key.clone()) {
            return Ok(vec![Record {
                at: now,
                person: String::new(),
                effect: Effect::Duplicate { id: key },
            }]);
        }
        let inputs = match self.inputs(env) {
            Ok(i) => i,
            Err(e) => {
                self.seen.remove(&key);
                return Err(e);
            }
        };
        let mut out = Vec::new();
        for (person, input) in inputs {
            out.extend(self.apply(&person, &input, now));
        }
        Ok(out)
    }

    /// Step one person with one input and apply the timer effects.
    pub fn apply(&mut self, person: &str, input: &Input, now: DateTime<Utc>) -> Vec<Record> {
        let state = self
            .people
            .entry(person.to_string())
            .or_insert_with(|| PersonState::new(person));
        let effects = engine::step_mut(&self.program, state, input, now);
        let mut out = Vec::with_capacity(effects.len());
        for e in effects {
            match &e {
                Effect::ScheduleTimer { instance, step, at } => {
                    self.seq += 1;
                    let k = (person.to_string(), instance.clone(), *step);
                    if let Some((due, seq)) = self.timer_index.insert(k.clone(), (*at, self.seq)) {
                        self.timers
                            .remove(&(due, seq, k.0.clone(), k.1.clone(), k.2));
                    }
                    self.timers.insert((*at, self.seq, k.0, k.1, k.2));
                }
                Effect::CancelTimer { instance, step, .. } => {
                    let k = (person.to_string(), instance.clone(), *step);
                    if let Some((due, seq)) = self.timer_index.remove(&k) {
                        self.timers.remove(&(due, seq, k.0, k.1, k.2));
                    }
                }
                _ => {}
            }
            out.push(Record {
                at: now,
                person: person.to_string(),
                effect: e,
            });
        }
        out
    }

    pub fn next_due(&self) -> Option<DateTime<Utc>> {
        self.timers.iter().next().map(|t| t.0)
    }

    pub fn pending_timers(&self) -> usize {
        self.timers.len()
    }

    /// Fire every timer due at or before `until`, in due order, each at its own due time.
    pub fn fire_until(&mut self, until: DateTime<Utc>) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(first) = self.timers.iter().next().cloned() {
            if first.0 > until {
                break;
            }
            self.timers.remove(&first);
            let (due, _, person, instance, step) = first;
            self.timer_index
                .remove(&(person.clone(), instance.clone(), step));
            let input = Input::Timer {
                instance,
                step,
                due,
            };
            out.extend(self.apply(&person, &input, due));
        }
        out
    }
}

/// Stored payloads must not nest earlier joins (they would grow without bound).
fn strip_joins(mut v: Json) -> Json {
    if let Some(o) = v.as_object_mut() {
        o.remove("order");
        o.remove("fulfillment");
    }
    v
}
