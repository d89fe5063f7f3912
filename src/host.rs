//! The in-memory host of the pure engine: turns input lines (Shopify webhook envelopes or
//! aftercart's own events) into engine inputs, routes them to people, joins fulfillment events
//! to the order they belong to, keeps the timer queue, and collects a timeline. The simulator
//! and the flow-test runner drive it on a virtual clock; the durable runtime persists the same
//! state. It never reads a clock: every call takes `now`.

pub mod envelope;
mod queue;
pub mod state;

use crate::engine::{self, Effect, Input, PersonState};
use crate::ir::Program;
use crate::schema::Schemas;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

pub use envelope::{parse_line, Envelope, Payload};
pub use state::{FastHash, FastMap, HostState, MemState, TimerKey};

/// One thing that happened, for timelines and the simulator's output.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Record {
    pub at: DateTime<Utc>,
    pub person: String,
    pub effect: Effect,
}

/// What [`Host::admit`] made of an envelope.
pub enum Admitted {
    /// Its source id was seen before (the id): nothing else happens.
    Duplicate(String),
    /// The inputs it makes, each with the person it is for, in order.
    Inputs(Vec<(String, Input)>),
}

/// The record of a duplicate input: who it concerns is unknown, so it names no one.
pub fn duplicate(id: String, now: DateTime<Utc>) -> Record {
    Record {
        at: now,
        person: String::new(),
        effect: Effect::Duplicate { id },
    }
}

/// A timer [`Host::fire_next_timer`] fired: the due instant it was queued at, whose it was,
/// and the records of the step.
pub struct Fired {
    pub due: DateTime<Utc>,
    pub person: String,
    pub records: Vec<Record>,
}

/// The host: the program, the people it has touched, and the state between people `S` (in
/// memory for the simulator, over the store for the runtime).
pub struct Host<S: HostState = MemState> {
    pub program: Program,
    pub schemas: Schemas,
    /// People touched in this process (the runtime loads them lazily through `S`).
    pub people: People,
    pub state: S,
    /// The catalog and order history `recommend()` reads: the program's catalog file, then
    /// every `products/*` and order webhook processed, in log order (so a replay rebuilds it).
    pub data: crate::catalog::ShopData,
    /// Source event ids already processed (Shopify delivers at least once). The runtime
    /// de-duplicates in the store instead and calls [`Host::process`].
    /// A hash set: it only answers "seen?", and holds every input's id (half a million for
    /// 100k people), where ordered lookups compared long common prefixes.
    seen: HashSet<String, FastHash>,
    /// Record everything the engine emits (the default). When false, the engine emits no
    /// [`Effect::Step`] traces and cancelled timers are applied but not recorded: the records
    /// are then the timeline the simulator shows (`sim::shown`), without the allocations of
    /// the traces it used to drop unread.
    pub trace: bool,
}

/// The people a host has touched, by key. A hash map (nothing iterates it, and ordered lookups
/// compared key strings on every input and timer) of BOXED states: a state is ~650 B, and
/// every growth of a map of inline states moved all of them into a fresh table (the kernel
/// zeroing its pages): ~8% of the simulator's main thread at 100k people.
#[derive(Default)]
pub struct People(HashMap<String, Box<PersonState>>);

impl People {
    pub fn get(&self, person: &str) -> Option<&PersonState> {
        self.0.get(person).map(|b| &**b)
    }
    pub fn get_mut(&mut self, person: &str) -> Option<&mut PersonState> {
        self.0.get_mut(person).map(|b| &mut **b)
    }
    pub fn contains_key(&self, person: &str) -> bool {
        self.0.contains_key(person)
    }
    pub fn insert(&mut self, person: String, state: PersonState) {
        self.0.insert(person, Box::new(state));
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn clear(&mut self) {
        self.0.clear()
    }
    /// Move every person of `other` in (a person in both keeps `other`'s state).
    pub fn absorb(&mut self, other: People) {
        self.0.extend(other.0)
    }
}

/// A JSON string (non-empty) or number as text: how ids and phones are read from payloads.
pub(crate) fn text(j: Option<&Json>) -> Option<String> {
    match j? {
        Json::String(s) if !s.is_empty() => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Host<MemState> {
    pub fn new(program: Program, schemas: Schemas) -> Host<MemState> {
        Host::with_state(program, schemas, MemState::default())
    }
}

impl<S: HostState> Host<S> {
    pub fn with_state(program: Program, schemas: Schemas, state: S) -> Host<S> {
        let data = crate::catalog::ShopData {
            catalog: program.catalog.clone(),
            ..Default::default()
        };
        Host {
            program,
            schemas,
            data,
            people: People::default(),
            state,
            seen: HashSet::default(),
            trace: true,
        }
    }

    /// Who a normalised event is about: the customer id, else a person already known by this
    /// phone, else the phone itself.
    fn route(&mut self, data: &Json) -> Option<String> {
        let phone = text(data.get("phone"));
        let person = match text(data.get("customer_id")) {
            Some(id) => format!("customer:{id}"),
            None => match phone.as_ref().and_then(|p| self.state.phone_owner(p)) {
                Some(p) => p,
                None => engine::person_key(data)?,
            },
        };
        if let Some(p) = phone {
            // The latest owner of a number wins (numbers are recycled). Only a change is
            // written, so the runtime does not rewrite its index on every event.
            if !self.state.phone_owned_by(&p, &person) {
                self.state.set_phone_owner(&p, &person);
            }
        }
        Some(person)
    }

    /// Turn one envelope into engine inputs, each with the person it is for. Errors say what is
    /// wrong with the payload; nothing is changed then.
    pub fn inputs(&mut self, env: &Envelope) -> Result<Vec<(String, Input)>, String> {
        self.inputs_of(Cow::Borrowed(env))
    }

    /// [`Host::inputs`]; an owned envelope's event data is moved into its input, not copied
    /// (the simulator owns every envelope it parsed, and copying each order's JSON tree once
    /// more per event was a share of its allocations).
    fn inputs_of(&mut self, env: Cow<'_, Envelope>) -> Result<Vec<(String, Input)>, String> {
        let (name, id, normalized) = match &env.payload {
            Payload::Shopify {
                topic,
                event_id,
                body,
            } => {
                // Products webhooks feed the catalog; they concern no person.
                let shop_url = self.program.shop.values.get("url").cloned();
                if self
                    .data
                    .apply_product_webhook(topic, body, shop_url.as_deref().unwrap_or(""))
                    .map_err(|e| format!("{topic}: {}", e.0))?
                {
                    return Ok(Vec::new());
                }
                let mut body = body.clone();
                // Joins: fulfillments and shipment events know only ids; attach what we stored.
                let order_id = text(body.get("order_id"));
                if let Some(oid) = &order_id {
                    if let Some(order) = self.state.order(oid) {
                        body["order"] = order;
                    }
                }
                if topic == "fulfillment_events/create" {
                    if let Some(fid) = text(body.get("fulfillment_id")) {
                        if let Some(f) = self.state.fulfillment(order_id.as_deref(), &fid) {
                            body["fulfillment"] = f;
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
                // The owner is the person the payload was routed to: the runtime files the
                // payload (which holds names, phones, addresses) inside that person's record.
                let owner = out.first().map(|(p, _)| p.as_str());
                if topic.starts_with("orders/") {
                    if let Some(id) = text(body.get("id")) {
                        // Bought together: what this order held, for the built-in recommender.
                        self.data
                            .orders
                            .record(&id, crate::catalog::order_product_ids(&body));
                        self.state
                            .remember_order(&id, owner, strip_joins(body.clone()));
                    }
                }
                if topic.starts_with("fulfillments/") {
                    if let Some(id) = text(body.get("id")) {
                        self.state.remember_fulfillment(
                            &id,
                            order_id.as_deref(),
                            owner,
                            strip_joins(body.clone()),
                        );
                    }
                }
                return Ok(out);
            }
            Payload::Aftercart { kind, id, data } => match kind.as_str() {
                "sms.replied" => {
                    let from = text(data.get("from")).ok_or("sms.replied needs `from`")?;
                    let body = text(data.get("body")).unwrap_or_default();
                    let person = match self.state.phone_owner(&from) {
                        Some(p) => p,
                        None => {
                            let p = format!("phone:{from}");
                            self.state.set_phone_owner(&from, &p);
                            p
                        }
                    };
                    let message_sid = text(data.get("message_sid"));
                    return Ok(vec![(person, Input::Reply { body, message_sid })]);
                }
                // `message.status`: a provider status that is neither delivered nor failed
                // (queued, sent, ...), from the webhook server's Twilio status callback.
                "message.clicked" | "message.delivered" | "message.failed" | "message.status" => {
                    let person =
                        text(data.get("person")).ok_or(format!("{kind} needs `person`"))?;
                    let message_id =
                        text(data.get("message_id")).ok_or(format!("{kind} needs `message_id`"))?;
                    return Ok(vec![(
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
                    )]);
                }
                name => {
                    // A normalised event: custom (declared in the project) or a Shopify-derived
                    // name with already-normalised fields.
                    let schema = self
                        .schemas
                        .event(name)
                        .ok_or(format!("unknown event type `{name}`"))?;
                    let normalized = match schema.topic {
                        Some(_) => None,
                        None => Some(
                            self.schemas
                                .normalize(name, data)
                                .map_err(|e| format!("{name}: {e}"))?,
                        ),
                    };
                    (name.to_string(), id.clone(), normalized)
                }
            },
        };
        // A normalised event: its data as normalised, else as it came (moved when owned).
        let data = normalized.unwrap_or_else(|| match env {
            Cow::Owned(Envelope {
                payload: Payload::Aftercart { data, .. },
                ..
            }) => data,
            Cow::Borrowed(Envelope {
                payload: Payload::Aftercart { data, .. },
                ..
            }) => data.clone(),
            _ => unreachable!("only aftercart events get here"),
        });
        let person = self
            .route(&data)
            .ok_or(format!("`{name}` names no customer_id or phone"))?;
        Ok(vec![(person, Input::Event { name, id, data })])
    }

    /// Learn from one envelope what `recommend()` reads (products into the catalog, orders into
    /// the order history) without stepping anyone: how a restarted runtime rebuilds
    /// [`Host::data`] from the log entries it already processed. A payload the host cannot use
    /// is skipped, as processing skipped it.
    pub fn learn(&mut self, env: &Envelope) {
        let Payload::Shopify { topic, body, .. } = &env.payload else {
            return;
        };
        let shop_url = self.program.shop.values.get("url").cloned();
        if let Ok(true) =
            self.data
                .apply_product_webhook(topic, body, shop_url.as_deref().unwrap_or(""))
        {
            return;
        }
        // As in `inputs`: an order whose payload does not normalise was refused, not recorded.
        let refused = self
            .schemas
            .events_for_topic(topic, body)
            .iter()
            .any(|e| self.schemas.normalize(&e.name, body).is_err());
        if topic.starts_with("orders/") && !refused {
            if let Some(id) = text(body.get("id")) {
                self.data
                    .orders
                    .record(&id, crate::catalog::order_product_ids(body));
            }
        }
    }

    /// Run one envelope at `now`: de-duplicate on its source id, then step every person it
    /// concerns. Returns the timeline records.
    pub fn ingest(&mut self, env: &Envelope, now: DateTime<Utc>) -> Result<Vec<Record>, String> {
        self.ingest_of(Cow::Borrowed(env), now)
    }

    /// [`Host::ingest`]; an owned envelope (one the caller is done with) has its event data
    /// moved into the engine input instead of copied.
    pub fn ingest_of(
        &mut self,
        env: Cow<'_, Envelope>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Record>, String> {
        Ok(match self.admit(env)? {
            Admitted::Duplicate(id) => vec![duplicate(id, now)],
            Admitted::Inputs(inputs) => self.step_inputs(inputs, now),
        })
    }

    /// The first half of [`Host::ingest_of`]: de-duplicate on the envelope's source id and
    /// route it to the people it concerns, stepping no one. What it changes (the seen ids, the
    /// phone owners and join tables) depends on the inputs alone, never on a person's state,
    /// which lets the simulator route on one thread and step people on others.
    pub fn admit(&mut self, env: Cow<'_, Envelope>) -> Result<Admitted, String> {
        let key = env.source_id();
        if !self.seen.insert(key.clone()) {
            return Ok(Admitted::Duplicate(key));
        }
        let out = self.inputs_of(env);
        if out.is_err() {
            self.seen.remove(&key);
        }
        out.map(Admitted::Inputs)
    }

    /// Run one envelope at `now` without the in-memory de-duplication (the runtime's store
    /// refuses a duplicate at append, so what reaches this is new).
    pub fn process(&mut self, env: &Envelope, now: DateTime<Utc>) -> Result<Vec<Record>, String> {
        self.process_of(Cow::Borrowed(env), now)
    }

    fn process_of(
        &mut self,
        env: Cow<'_, Envelope>,
        now: DateTime<Utc>,
    ) -> Result<Vec<Record>, String> {
        let inputs = self.inputs_of(env)?;
        Ok(self.step_inputs(inputs, now))
    }

    /// Step each person with their input, in order: the second half of [`Host::ingest_of`].
    fn step_inputs(&mut self, inputs: Vec<(String, Input)>, now: DateTime<Utc>) -> Vec<Record> {
        let mut out = Vec::new();
        for (person, input) in inputs {
            out.extend(self.step_input(&person, input, now));
        }
        out
    }

    /// Step one person with one input the host is done with (its payload is moved, not
    /// copied) and apply the timer effects.
    pub fn step_input(&mut self, person: &str, input: Input, now: DateTime<Utc>) -> Vec<Record> {
        let state = load(&mut self.people, &mut self.state, person);
        let effects = engine::step_owned(&self.program, state, input, now, &self.data, self.trace);
        self.recorded(person, effects, now)
    }

    /// Room for `n` more inputs in the de-duplication set (the simulator knows how many lines
    /// it will run: growing the set rehashed every id seen so far, ~1% of its time).
    pub fn reserve_inputs(&mut self, n: usize) {
        self.seen.reserve(n);
    }

    /// A person's state, loading it through `S` the first time this process touches them.
    pub fn person_mut(&mut self, person: &str) -> &mut PersonState {
        load(&mut self.people, &mut self.state, person)
    }

    /// Step one person with one input and apply the timer effects.
    pub fn apply(&mut self, person: &str, input: &Input, now: DateTime<Utc>) -> Vec<Record> {
        let state = load(&mut self.people, &mut self.state, person);
        let effects = engine::step_with(&self.program, state, input, now, &self.data);
        self.recorded(person, effects, now)
    }

    /// The records of one step of `person`, with its timer effects applied to the queue.
    fn recorded(&mut self, person: &str, effects: Vec<Effect>, now: DateTime<Utc>) -> Vec<Record> {
        self.state.touched(person);
        let mut out = Vec::with_capacity(effects.len());
        for e in effects {
            match &e {
                Effect::ScheduleTimer { instance, step, at } => {
                    self.state.schedule_parts(*at, person, instance, *step)
                }
                Effect::CancelTimer { instance, step, at } => {
                    self.state.cancel_parts(*at, person, instance, *step);
                    if !self.trace {
                        continue;
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

    pub fn next_due(&mut self) -> Option<DateTime<Utc>> {
        self.state.next_due()
    }

    pub fn pending_timers(&self) -> usize {
        self.state.pending_timers()
    }

    /// Fire the first timer (in [`TimerKey`] order) due at or before `until`, at `now` (its
    /// own due time when `None`: the virtual clock). `None` when nothing is due.
    pub fn fire_next(
        &mut self,
        until: DateTime<Utc>,
        now: Option<DateTime<Utc>>,
    ) -> Option<Vec<Record>> {
        self.fire_next_timer(until, now).map(|f| f.records)
    }

    /// [`Host::fire_next`], saying which timer fired: its due instant and person are the
    /// first two fields of its [`TimerKey`], which is what orders the timers of different
    /// people (the simulator merges the timers of people stepped on different threads by it).
    pub fn fire_next_timer(
        &mut self,
        until: DateTime<Utc>,
        now: Option<DateTime<Utc>>,
    ) -> Option<Fired> {
        let t = self.state.pop_due(until)?;
        // The person is looked up once, for the check below and the step.
        let state = load(&mut self.people, &mut self.state, &t.person);
        // A store may keep dues at millisecond precision: the engine's instance knows the
        // exact instant, and a stale timer must stay stale, so take it only when they agree.
        let mut due = t.due;
        if let Some(w) = state
            .instances
            .get(&t.instance)
            .and_then(|i| i.waiting.as_ref())
        {
            if w.due().timestamp_millis() == t.due.timestamp_millis() {
                due = w.due();
            }
        }
        let input = Input::Timer {
            instance: t.instance,
            step: t.step,
            due,
        };
        let now = now.unwrap_or(due);
        let effects = engine::step_owned(&self.program, state, input, now, &self.data, self.trace);
        let records = self.recorded(&t.person, effects, now);
        Some(Fired {
            due: t.due,
            person: t.person,
            records,
        })
    }

    /// Fire every timer due at or before `until`, in [`TimerKey`] order, each at its own due
    /// time.
    pub fn fire_until(&mut self, until: DateTime<Utc>) -> Vec<Record> {
        let mut out = Vec::new();
        while let Some(r) = self.fire_next(until, None) {
            out.extend(r);
        }
        out
    }
}

/// `people[person]`, loaded through `state` (or new) the first time (a free function so that
/// callers can hold the person while reading the host's other fields).
fn load<'a, S: HostState>(
    people: &'a mut People,
    state: &mut S,
    person: &str,
) -> &'a mut PersonState {
    if !people.contains_key(person) {
        let st = state
            .load_person(person)
            .unwrap_or_else(|| PersonState::new(person));
        people.insert(person.to_string(), st);
    }
    people.get_mut(person).expect("just inserted")
}

/// Stored payloads must not nest earlier joins (they would grow without bound).
fn strip_joins(mut v: Json) -> Json {
    if let Some(o) = v.as_object_mut() {
        o.remove("order");
        o.remove("fulfillment");
    }
    v
}
