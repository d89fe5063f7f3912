//! Typed event schemas: which events exist, the type of every `event.*` field, where each field
//! comes from in a Shopify webhook body, and the normalisation of a body into aftercart's event.
//!
//! The schemas are data (`schema/shopify-2026-07.toml`, pinned to Shopify API 2026-07), read once
//! by [`Schemas::builtin`]. The checker asks [`Schemas::field_type`] and [`Schemas::removed`];
//! the engine asks [`Schemas::events_for_topic`] and [`Schemas::normalize`].

use crate::ir::Ty;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

mod load;
mod normalize;
pub(crate) use normalize::lookup;

/// The builtin schema file, embedded so the binary stands alone.
pub const BUILTIN_TOML: &str = include_str!("schema/shopify-2026-07.toml");

/// All event, record, profile and flow schemas of one Shopify API version (plus custom events).
#[derive(Clone, Debug, PartialEq)]
pub struct Schemas {
    pub api_version: String,
    pub events: BTreeMap<String, EventSchema>,
    pub records: BTreeMap<String, RecordSchema>,
    /// Removed payload paths per event pattern (`order.*` or an exact event name).
    pub removed: BTreeMap<String, BTreeMap<String, Removed>>,
    profile: BTreeMap<String, Field>,
    flow: BTreeMap<String, Field>,
    /// Topics that give one event per value of a payload field: topic -> (payload field,
    /// catch-all event name). fulfillment_events/create -> (`status`, `shipment.updated`).
    dispatch: BTreeMap<String, (String, String)>,
}

/// One event a flow can be triggered by or wait for.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSchema {
    pub name: String,
    /// The Shopify webhook topic, None for aftercart's own inputs and custom events.
    pub topic: Option<String>,
    /// For events of a family (`shipment.delivered`): the payload value that selects it. None for
    /// the family's catch-all (`shipment.updated`) and every other event.
    pub status: Option<String>,
    pub doc: String,
    /// The natural entry key (a field name): one run per value by default.
    pub key: Option<String>,
    pub fields: BTreeMap<String, Field>,
}

/// A named record type (`line_item`, `address`, ...).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordSchema {
    pub name: String,
    pub fields: BTreeMap<String, Field>,
}

/// A typed field and where it comes from in the payload.
#[derive(Clone, Debug, PartialEq)]
pub struct Field {
    pub ty: Ty,
    /// Dotted payload paths, tried in order: the first present and non-null wins. Empty for
    /// fields aftercart computes (profile, flow).
    pub from: Vec<String>,
    pub doc: String,
    /// The payload sends this list as one string joined by this separator (Shopify's `tags`).
    pub split: Option<String>,
    /// Normalising fails when the payload lacks it (e.g. an order's `id`).
    pub required: bool,
}

/// A payload path that existed in an earlier API version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Removed {
    /// The API version that removed it.
    pub since: String,
    /// What to use instead.
    pub help: String,
}

/// Why a field path under an event does not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldError {
    UnknownEvent,
    /// `path[at]` is not a field of what `path[..at]` names; `known` are the fields there.
    UnknownField {
        at: usize,
        known: Vec<String>,
    },
    /// `path[at]` was applied to `path[..at]`, whose type `ty` is not a record.
    NotARecord {
        at: usize,
        ty: Ty,
    },
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldError::UnknownEvent => f.write_str("unknown event"),
            FieldError::UnknownField { at, .. } => write!(f, "unknown field (segment {at})"),
            FieldError::NotARecord { at, ty } => {
                write!(f, "segment {at} applied to a `{ty}`, which has no fields")
            }
        }
    }
}

/// A payload that does not fit its event's schema: which field, what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizeError {
    /// The event field (with its place inside lists and records, e.g. `line_items[2].price`).
    pub field: String,
    pub message: String,
}

impl fmt::Display for NormalizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "field `{}`: {}", self.field, self.message)
        }
    }
}

impl std::error::Error for NormalizeError {}

impl Schemas {
    /// The builtin schemas (Shopify 2026-07 and aftercart's own inputs), parsed once.
    pub fn builtin() -> &'static Schemas {
        static BUILTIN: OnceLock<Schemas> = OnceLock::new();
        BUILTIN.get_or_init(|| {
            // The file is part of the crate and a test parses it: failing here is a build bug.
            Schemas::from_toml(BUILTIN_TOML).expect("builtin schema file is valid")
        })
    }

    /// Parse and validate a schema file (format described at the top of the builtin file).
    pub fn from_toml(text: &str) -> Result<Schemas, String> {
        load::from_toml(text)
    }

    /// Merge custom events declared in the project file, given either the `events` table
    /// (`review_submitted = { fields = { rating = "int" } }`) or a table holding it under
    /// `events`. A custom event may not reuse a builtin name or a builtin namespace.
    pub fn with_custom(&self, custom: &toml::Table) -> Result<Schemas, String> {
        load::with_custom(self, custom)
    }

    pub fn event(&self, name: &str) -> Option<&EventSchema> {
        self.events.get(name)
    }

    pub fn record(&self, name: &str) -> Option<&RecordSchema> {
        self.records.get(name)
    }

    /// The fields of `profile.*`.
    pub fn profile_fields(&self) -> &BTreeMap<String, Field> {
        &self.profile
    }

    /// The fields of `flow.*` (`flow.entry` is typed by the checker from the trigger).
    pub fn flow_fields(&self) -> &BTreeMap<String, Field> {
        &self.flow
    }

    /// The type at a path under an event (`["shipping_address", "province_code"]`), following
    /// records. Lists are not entered: `line_items.sku` is [`FieldError::NotARecord`].
    pub fn field_type(&self, event: &str, path: &[&str]) -> Result<Ty, FieldError> {
        let schema = self.event(event).ok_or(FieldError::UnknownEvent)?;
        self.path_type(&schema.fields, path)
    }

    /// The type at a path under a field map (an event's, a record's, `profile` or `flow`).
    pub fn path_type(
        &self,
        fields: &BTreeMap<String, Field>,
        path: &[&str],
    ) -> Result<Ty, FieldError> {
        let known = |fields: &BTreeMap<String, Field>| fields.keys().cloned().collect::<Vec<_>>();
        let mut fields = fields;
        let mut ty: Option<Ty> = None;
        for (at, seg) in path.iter().enumerate() {
            if let Some(t) = ty.take() {
                match &t {
                    Ty::Record(r) => match self.records.get(r) {
                        Some(rec) => fields = &rec.fields,
                        None => return Err(FieldError::NotARecord { at, ty: t }),
                    },
                    _ => return Err(FieldError::NotARecord { at, ty: t }),
                }
            }
            match fields.get(*seg) {
                Some(f) => ty = Some(f.ty.clone()),
                None => {
                    return Err(FieldError::UnknownField {
                        at,
                        known: known(fields),
                    })
                }
            }
        }
        ty.ok_or_else(|| FieldError::UnknownField {
            at: 0,
            known: known(fields),
        })
    }

    /// A removed payload path under an event (`["customer", "orders_count"]` for order events).
    pub fn removed(&self, event: &str, path: &[&str]) -> Option<&Removed> {
        let joined = path.join(".");
        self.removed
            .iter()
            .filter(|(pattern, _)| pattern_matches(pattern, event))
            .find_map(|(_, paths)| paths.get(&joined))
    }

    /// The events a webhook of `topic` produces for `payload`. fulfillment_events/create gives
    /// `shipment.<status>` for a known status, then `shipment.updated` (for every status: the
    /// set is open and new values appear across API versions: FulfillmentEvent `status`,
    /// <https://shopify.dev/docs/api/admin-rest/2026-07/resources/fulfillmentevent>).
    pub fn events_for_topic(&self, topic: &str, payload: &serde_json::Value) -> Vec<&EventSchema> {
        let of_topic = || {
            self.events
                .values()
                .filter(move |e| e.topic.as_deref() == Some(topic))
        };
        match self.dispatch.get(topic) {
            Some((on, catch_all)) => {
                let value = payload.get(on).and_then(|v| v.as_str());
                let mut out: Vec<&EventSchema> = of_topic()
                    .filter(|e| e.status.is_some() && e.status.as_deref() == value)
                    .collect();
                out.extend(self.events.get(catch_all));
                out
            }
            None => of_topic().collect(),
        }
    }

    /// Build the event object `{field: value}` from a payload using the `from` paths. Money and
    /// decimals become decimal strings, times RFC 3339 UTC strings, ids strings; missing or null
    /// fields become null. Errors for present-but-invalid values and missing required fields.
    pub fn normalize(
        &self,
        event: &str,
        payload: &serde_json::Value,
    ) -> Result<serde_json::Value, NormalizeError> {
        normalize::normalize(self, event, payload)
    }

    /// Every event name, sorted (for "did you mean").
    pub fn all_event_names(&self) -> Vec<&str> {
        self.events.keys().map(String::as_str).collect()
    }
}

/// `order.*` matches `order.created`; anything else matches only itself.
fn pattern_matches(pattern: &str, event: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event.starts_with(prefix),
        None => pattern == event,
    }
}
