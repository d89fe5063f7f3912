//! The engine's data: what goes in ([`Input`]), what comes out ([`Effect`]) and what it
//! remembers about one person ([`PersonState`]). All serde, all ordered (sorted vectors with the
//! B-trees' serde shape, BTreeMap, Vec), so a serialised state or effect list is byte-for-byte
//! reproducible.

use super::small::{SortedMap, SortedSet};
use crate::ir::{FlowKind, StepId};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An event payload held by instances: shared, not copied, and parsed only when read.
///
/// Shared: one event is kept by every live instance that may `wait for` it and by each
/// instance it starts. Deep-cloning the payload for each of them was most of the simulator's
/// allocations and memory growth (docs/performance.md).
///
/// Parsed when read: a payload decoded from a stored person record is kept as its JSON text
/// and parsed on first use. Why: the durable runtime decodes a person's whole record at each
/// timer firing and event for them, but a firing reads at most its own instance's payloads;
/// building every instance's payload tree was ~28% of the record's decoding, itself ~24% of
/// the 200k timers benchmark's runtime thread. An unparsed payload is written back as the same
/// text (serde_json's `RawValue`), which is what serialising the parsed value would write, so
/// records and every JSON output keep their bytes. Serialised as the plain JSON value, the
/// shape the state always had.
#[derive(Clone)]
pub struct SharedJson(Arc<Held>);

struct Held {
    /// The payload's JSON text as read from a record, while it may still be unparsed.
    text: Option<Box<serde_json::value::RawValue>>,
    value: std::sync::OnceLock<serde_json::Value>,
}

impl SharedJson {
    pub fn new(value: serde_json::Value) -> SharedJson {
        SharedJson(Arc::new(Held {
            text: None,
            value: std::sync::OnceLock::from(value),
        }))
    }

    /// Identity of the shared payload (instances of one event hold the same one).
    pub fn as_ptr(this: &SharedJson) -> *const () {
        Arc::as_ptr(&this.0).cast()
    }

    /// The payload's text while it has not been parsed: comparing it as text spares a parse.
    pub fn unparsed_text(&self) -> Option<&str> {
        match self.0.value.get() {
            Some(_) => None,
            None => self.0.text.as_deref().map(serde_json::value::RawValue::get),
        }
    }
}

impl std::ops::Deref for SharedJson {
    type Target = serde_json::Value;

    fn deref(&self) -> &serde_json::Value {
        self.0.value.get_or_init(|| {
            let text = self
                .0
                .text
                .as_deref()
                .expect("a payload is either parsed or text");
            // The text came from a `RawValue`, which serde_json checked while decoding the
            // record, so it parses.
            serde_json::from_str(text.get()).expect("a stored payload is JSON")
        })
    }
}

impl PartialEq for SharedJson {
    fn eq(&self, other: &SharedJson) -> bool {
        match (self.unparsed_text(), other.unparsed_text()) {
            (Some(a), Some(b)) if a == b => true,
            _ => **self == **other,
        }
    }
}

impl std::fmt::Debug for SharedJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Serialize for SharedJson {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match (self.0.value.get(), &self.0.text) {
            (None, Some(text)) => text.serialize(s),
            _ => (**self).serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for SharedJson {
    /// Kept as text (see the type's doc). Only serde_json's own deserialisers can hand a
    /// payload's text over; person states are only ever read from JSON.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<SharedJson, D::Error> {
        let text = Box::<serde_json::value::RawValue>::deserialize(d)?;
        Ok(SharedJson(Arc::new(Held {
            text: Some(text),
            value: std::sync::OnceLock::new(),
        })))
    }
}

/// SMS marketing consent. `Unknown` is not consent: marketing needs `Subscribed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    #[default]
    Unknown,
    Subscribed,
    Unsubscribed,
}

impl Consent {
    pub fn as_str(self) -> &'static str {
        match self {
            Consent::Unknown => "unknown",
            Consent::Subscribed => "subscribed",
            Consent::Unsubscribed => "unsubscribed",
        }
    }
}

/// One thing that happened to a person. Time is never part of an input's meaning except
/// through `now`, the argument of [`super::step`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "input")]
pub enum Input {
    /// A normalised event (`order.created`, `shipment.delivered`, ...) with a unique source id
    /// (Shopify's `X-Shopify-Event-Id`) used to drop re-deliveries.
    Event {
        name: String,
        id: String,
        data: serde_json::Value,
    },
    /// A timer the engine asked for with [`Effect::ScheduleTimer`]; stale timers are ignored.
    Timer {
        instance: String,
        step: StepId,
        due: DateTime<Utc>,
    },
    /// An inbound SMS from the person.
    Reply {
        body: String,
        message_sid: Option<String>,
    },
    /// Consent set out of band (admin, import).
    Consent { state: Consent },
    /// A provider status callback.
    Delivery {
        message_id: String,
        status: String,
        error_code: Option<String>,
    },
    /// A tracked link was opened.
    Click { message_id: String },
}

/// A tracked link inside a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub code: String,
    pub url: String,
}

/// One outbound SMS, complete: the runtime sends it as is, keyed by `message_id`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Derived from (flow version, entry key, step, person): a re-run cannot mint another.
    pub message_id: String,
    pub instance: String,
    pub flow: String,
    pub flow_version: String,
    pub step: StepId,
    pub person: String,
    pub to: String,
    pub body: String,
    /// `GSM-7` or `UCS-2`.
    pub encoding: String,
    pub segments: usize,
    pub variant: Option<String>,
    pub at: DateTime<Utc>,
    /// The recipient's wall clock at `at`, with offset and zone name.
    pub local_time: String,
    pub kind: FlowKind,
    pub links: Vec<Link>,
}

/// What the host must do or record. Emitted in processing order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "effect")]
pub enum Effect {
    Entered {
        instance: String,
        flow: String,
        flow_version: String,
        entry_key: String,
    },
    /// A step was executed (for analytics and the simulator's trace).
    Step {
        instance: String,
        flow: String,
        step: StepId,
        op: String,
    },
    ScheduleTimer {
        instance: String,
        step: StepId,
        at: DateTime<Utc>,
    },
    CancelTimer {
        instance: String,
        step: StepId,
        at: DateTime<Utc>,
    },
    Send(Message),
    /// A send could not happen now and will be retried at `until` (defer policy).
    Held {
        instance: String,
        flow: String,
        step: StepId,
        reason: String,
        until: Option<DateTime<Utc>>,
    },
    /// A send was skipped for good; the flow goes on with the next step.
    Dropped {
        instance: String,
        flow: String,
        step: StepId,
        reason: String,
    },
    /// An entry was refused by the flow's entry rule.
    NotEntered {
        flow: String,
        reason: String,
    },
    Exited {
        instance: String,
        flow: String,
        reason: String,
    },
    Conversion {
        flow: String,
        step: StepId,
        variant: Option<String>,
        message_id: String,
        order_id: Option<String>,
        revenue: Option<String>,
    },
    ConsentChanged {
        from: Consent,
        to: Consent,
        source: String,
    },
    HelpReply {
        to: Option<String>,
        body: String,
    },
    /// An inbound reply and where it went (`routed_to` empty when nothing waited).
    ReplyRecorded {
        body: String,
        keyword: Option<String>,
        routed_to: Vec<String>,
    },
    DeliveryRecorded {
        message_id: String,
        status: String,
        error_code: Option<String>,
    },
    ClickRecorded {
        message_id: String,
    },
    /// A plugin call failed (trap, out of fuel, memory limit, bad output, not loaded); the
    /// plugin's declared fallback was used and the flow went on.
    PluginFailed {
        plugin: String,
        reason: String,
    },
    /// An event id seen before: nothing else happened.
    Duplicate {
        id: String,
    },
}

/// What the engine knows about a person, derived from their events.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub customer_id: Option<String>,
    pub orders_count: i64,
    pub total_spent: Decimal,
    pub first_order_at: Option<DateTime<Utc>>,
    pub last_order_at: Option<DateTime<Utc>>,
    pub product_ids: SortedSet<String>,
    pub skus: SortedSet<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    /// An explicit IANA zone (from a `zone`/`timezone` field).
    pub zone: Option<String>,
    /// US state (two letters) of the latest shipping address.
    pub state: Option<String>,
    pub tags: SortedSet<String>,
    /// Orders already counted, so `order.created` and `order.paid` of one order count once.
    pub order_ids: SortedSet<String>,
}

/// Where an instance stands while it is blocked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Waiting {
    /// `wait` or `wait until`: the timer moves on to the step's `next`.
    Delay { due: DateTime<Utc> },
    /// `wait for`: an event resumes, the timer times out.
    Event {
        event: String,
        since: DateTime<Utc>,
        due: DateTime<Utc>,
    },
    /// `wait reply`: a reply resumes, the timer times out.
    Reply {
        since: DateTime<Utc>,
        due: DateTime<Utc>,
    },
    /// A held send: the timer re-runs the send step and its checks.
    Held { due: DateTime<Utc>, reason: String },
}

impl Waiting {
    pub fn due(&self) -> DateTime<Utc> {
        match self {
            Waiting::Delay { due }
            | Waiting::Event { due, .. }
            | Waiting::Reply { due, .. }
            | Waiting::Held { due, .. } => *due,
        }
    }
}

/// An event an instance saw after it entered, kept for `wait for` steps that start later.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeenEvent {
    pub name: String,
    pub at: DateTime<Utc>,
    pub data: SharedJson,
}

/// One person inside one flow (version).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    pub flow: String,
    pub flow_version: String,
    pub kind: FlowKind,
    pub entry_key: String,
    pub entry_event: String,
    pub entry: SharedJson,
    pub entered_at: DateTime<Utc>,
    pub step: StepId,
    pub waiting: Option<Waiting>,
    /// The event that resumed the latest `wait for` (what `event` means in later steps).
    #[serde(default)]
    pub last_event: Option<SharedJson>,
    pub seen: Vec<SeenEvent>,
    pub replies: Vec<String>,
    /// Split step -> chosen arm.
    pub variants: BTreeMap<StepId, String>,
}

/// Entry history of one flow, kept after instances finish (entry rules need it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntryHistory {
    pub keys: SortedSet<String>,
    pub count: u64,
    pub last_at: Option<DateTime<Utc>>,
}

/// The last message of a flow with a goal: who gets credit for a conversion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastMessage {
    pub message_id: String,
    pub flow: String,
    pub flow_version: String,
    pub step: StepId,
    pub variant: Option<String>,
    pub at: DateTime<Utc>,
    pub entry: SharedJson,
}

/// Everything the engine remembers about one person.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PersonState {
    /// The routing key ([`super::person_key`]); part of message ids and split hashing.
    pub person: String,
    pub profile: Profile,
    pub consent: Consent,
    /// Live instances by id, in a sorted vector ([`SortedMap`]: a B-tree node for a person's
    /// two or three instances cost ~370 B). Boxed, so that inserting and removing, which
    /// `advance` does at every step, moves pointers rather than whole instances. Serialised as
    /// the map of instances it always was.
    pub instances: SortedMap<String, Box<Instance>>,
    /// Entry history by flow name.
    pub entries: SortedMap<String, EntryHistory>,
    /// Marketing send times inside the frequency-cap window.
    pub recent_sends: Vec<DateTime<Utc>>,
    /// Every message id ever emitted: at most one message per (instance, step).
    pub sent: SortedSet<String>,
    pub last_message: Option<LastMessage>,
    /// Recent event ids (bounded), to drop at-least-once re-deliveries.
    pub seen_event_ids: Vec<String>,
    /// Message ids clicked (bounded).
    pub clicks: Vec<String>,
    /// The latest failed plugin calls (bounded; the fallback applied), for `inspect person`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plugin_failures: Vec<PluginFailure>,
}

/// A plugin call that failed for this person: when, which plugin, and why (`reason: detail`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginFailure {
    pub at: DateTime<Utc>,
    pub plugin: String,
    pub reason: String,
}

impl PersonState {
    pub fn new(person: impl Into<String>) -> PersonState {
        PersonState {
            person: person.into(),
            ..PersonState::default()
        }
    }
}
