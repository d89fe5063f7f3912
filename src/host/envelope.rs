//! Input lines: a Shopify webhook envelope (topic, headers, raw body, receive time) or one of
//! aftercart's own events (a reply, a click, a custom event). Parsing says what is wrong and
//! where; it never panics on bad input.

use chrono::{DateTime, Utc};
use serde_json::Value as Json;

#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    /// When aftercart received it (the virtual clock runs on this).
    pub at: DateTime<Utc>,
    pub payload: Payload,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Shopify {
        topic: String,
        /// `X-Shopify-Event-Id`, else `X-Shopify-Webhook-Id` (same across re-deliveries).
        event_id: String,
        body: Json,
    },
    Aftercart {
        kind: String,
        id: String,
        data: Json,
    },
}

impl Envelope {
    /// The de-duplication key: Shopify's event id, else the custom id.
    pub fn source_id(&self) -> String {
        match &self.payload {
            Payload::Shopify { event_id, .. } => format!("shopify:{event_id}"),
            Payload::Aftercart { id, .. } => format!("aftercart:{id}"),
        }
    }

    pub fn describe(&self) -> String {
        match &self.payload {
            Payload::Shopify { topic, .. } => topic.clone(),
            Payload::Aftercart { kind, .. } => kind.clone(),
        }
    }

    /// The person this event names by itself, read from the payload alone (no join tables, no
    /// phone owners): whenever this is `Some`, [`crate::host::Host::inputs`] routes the event
    /// to exactly this person, because routing takes the normalised `customer_id` first and
    /// here that field comes from the payload's own fields. The durable runtime seals the log
    /// entry under this person's key when it is appended, so processing does not have to
    /// re-seal it. `None` where routing needs state: a fulfillment's customer is joined from
    /// the stored order (`order.customer.id`), a reply belongs to its phone's owner, and a
    /// project's custom event normalises by its own schema.
    pub fn named_person(&self) -> Option<String> {
        let schemas = crate::schema::Schemas::builtin();
        let customer = |id: Option<String>| id.map(|id| format!("customer:{id}"));
        match &self.payload {
            Payload::Shopify { topic, body, .. } => {
                // Every event of the topic routes the same body; the first decides the owner.
                let event = *schemas.events_for_topic(topic, body).first()?;
                let field = event.fields.get("customer_id")?;
                // Paths rooted in what the host joins in (`order`, `fulfillment`) are only
                // known after the join.
                if field
                    .from
                    .iter()
                    .any(|p| p.starts_with("order.") || p.starts_with("fulfillment."))
                {
                    return None;
                }
                // As normalisation does: the first `from` path that is present and not null.
                let value = field
                    .from
                    .iter()
                    .filter_map(|p| crate::schema::lookup(body, p))
                    .find(|v| !v.is_null());
                customer(crate::host::text(value))
            }
            Payload::Aftercart { kind, data, .. } => match kind.as_str() {
                "sms.replied" => None,
                "message.clicked" | "message.delivered" | "message.failed" | "message.status" => {
                    crate::host::text(data.get("person"))
                }
                // A built-in event with a Shopify topic arrives already normalised: its
                // `customer_id` is used as is.
                name if schemas.event(name).is_some_and(|e| e.topic.is_some()) => {
                    customer(crate::host::text(data.get("customer_id")))
                }
                _ => None,
            },
        }
    }
}

fn time(v: Option<&Json>) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v?.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn header<'a>(headers: Option<&'a Json>, name: &str) -> Option<&'a Json> {
    let h = headers?.as_object()?;
    // HTTP header names are case-insensitive.
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Parse one JSON line. Accepted shapes:
/// `{"source":"shopify","topic":..,"received_at":..,"headers":{..},"body":{..}}` and
/// `{"source":"aftercart","type":..,"at":..,"id":..,"data":{..}}` (`source` may be omitted:
/// `topic` means Shopify, `type` aftercart).
pub fn parse_line(line: &str) -> Result<Envelope, String> {
    let v: Json = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v.as_object().ok_or("a line must be a JSON object")?;
    let source = obj.get("source").and_then(Json::as_str);
    let is_shopify = source == Some("shopify") || (source.is_none() && obj.contains_key("topic"));
    if is_shopify {
        let headers = obj.get("headers");
        let topic = obj
            .get("topic")
            .or_else(|| header(headers, "X-Shopify-Topic"))
            .and_then(Json::as_str)
            .ok_or("a Shopify envelope needs `topic` (or an X-Shopify-Topic header)")?
            .to_string();
        let event_id = header(headers, "X-Shopify-Event-Id")
            .or_else(|| header(headers, "X-Shopify-Webhook-Id"))
            .or_else(|| obj.get("id"))
            .and_then(|v| {
                v.as_str()
                    .map(String::from)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .ok_or(
                "a Shopify envelope needs an X-Shopify-Event-Id or X-Shopify-Webhook-Id header",
            )?;
        let body = obj
            .get("body")
            .cloned()
            .ok_or("a Shopify envelope needs `body`")?;
        if !body.is_object() {
            return Err("`body` must be a JSON object".into());
        }
        let at = time(obj.get("received_at"))
            .or_else(|| time(header(headers, "X-Shopify-Triggered-At")))
            .or_else(|| time(body.get("updated_at")))
            .or_else(|| time(body.get("created_at")))
            .ok_or("no time: give `received_at` (RFC 3339)")?;
        Ok(Envelope {
            at,
            payload: Payload::Shopify {
                topic,
                event_id,
                body,
            },
        })
    } else {
        let kind = obj
            .get("type")
            .and_then(Json::as_str)
            .ok_or("a line needs `topic` (Shopify) or `type` (aftercart event)")?
            .to_string();
        let at = time(obj.get("at")).ok_or("an aftercart event needs `at` (RFC 3339)")?;
        let data = obj
            .get("data")
            .cloned()
            .unwrap_or(Json::Object(Default::default()));
        let id = obj
            .get("id")
            .and_then(|v| {
                v.as_str()
                    .map(String::from)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .unwrap_or_else(|| {
                // No id: derive one from the content so a re-run de-duplicates the same way.
                crate::ir::sha256_hex(line.as_bytes())[..16].to_string()
            });
        Ok(Envelope {
            at,
            payload: Payload::Aftercart { kind, id, data },
        })
    }
}
