//! The profile: facts derived from a person's own events. Shopify removed
//! `customer.orders_count` and `total_spent` from order payloads in API 2022-04, so "first-time
//! buyer" must come from aftercart's history: `order.created`/`order.paid` count once per order.

use super::model::{Consent, Profile};
use super::value::Value;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value as Json;
use std::str::FromStr;

fn text(j: Option<&Json>) -> Option<String> {
    match j? {
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn phone_of(data: &Json) -> Option<String> {
    text(data.get("phone"))
        .or_else(|| text(data.get("shipping_address").and_then(|a| a.get("phone"))))
}

/// Who an event is about: `customer:{id}`, else `phone:{e164}`. The host routes inputs by it.
pub fn person_key(data: &Json) -> Option<String> {
    if let Some(id) = text(data.get("customer_id"))
        .or_else(|| text(data.get("customer").and_then(|c| c.get("id"))))
    {
        return Some(format!("customer:{id}"));
    }
    phone_of(data).map(|p| format!("phone:{p}"))
}

/// The consent an event states, if any. Shopify `customers_marketing_consent/update` carries
/// `sms_marketing_consent.state`; normalised events may flatten it to `sms_consent`/`consent`.
pub fn stated_consent(data: &Json) -> Option<Consent> {
    let s = text(
        data.get("sms_marketing_consent")
            .and_then(|c| c.get("state")),
    )
    .or_else(|| text(data.get("sms_consent")))
    .or_else(|| text(data.get("consent")))
    .or_else(|| text(data.get("sms_marketing_consent_state")))?;
    match s.to_ascii_lowercase().as_str() {
        "subscribed" => Some(Consent::Subscribed),
        "unsubscribed" | "not_subscribed" | "redacted" => Some(Consent::Unsubscribed),
        _ => None,
    }
}

/// [`text`] without a copy when the JSON holds a string.
fn text_ref(j: Option<&Json>) -> Option<std::borrow::Cow<'_, str>> {
    match j? {
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().into()),
        Json::Number(n) => Some(n.to_string().into()),
        _ => None,
    }
}

/// `*slot = Some(v)`, allocating only when the value changes (most events repeat the name,
/// phone and email the profile already has).
fn set(slot: &mut Option<String>, v: Option<std::borrow::Cow<'_, str>>) {
    if let Some(v) = v {
        if slot.as_deref() != Some(&*v) {
            *slot = Some(v.into_owned());
        }
    }
}

/// Fold one event into the profile.
pub fn update(p: &mut Profile, name: &str, data: &Json, now: DateTime<Utc>) {
    set(&mut p.customer_id, text_ref(data.get("customer_id")));
    set(
        &mut p.phone,
        text_ref(data.get("phone"))
            .or_else(|| text_ref(data.get("shipping_address").and_then(|a| a.get("phone")))),
    );
    set(&mut p.first_name, text_ref(data.get("first_name")));
    set(&mut p.last_name, text_ref(data.get("last_name")));
    set(&mut p.email, text_ref(data.get("email")));
    if let Some(z) = text(data.get("zone")).or_else(|| text(data.get("timezone"))) {
        if z.parse::<chrono_tz::Tz>().is_ok() {
            p.zone = Some(z);
        }
    }
    if let Some(addr) = data.get("shipping_address") {
        let us = text(addr.get("country_code")).is_none_or(|c| c.eq_ignore_ascii_case("US"));
        if let (true, Some(st)) = (us, text(addr.get("province_code"))) {
            p.state = Some(st.to_ascii_uppercase());
        }
    }
    match data.get("tags") {
        Some(Json::String(s)) => p.tags.extend(
            s.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(String::from),
        ),
        Some(Json::Array(a)) => p.tags.extend(a.iter().filter_map(|t| text(Some(t)))),
        _ => {}
    }
    if matches!(name, "order.created" | "order.paid") {
        if let Some(order) = text(data.get("order_id")) {
            if p.order_ids.insert(order) {
                p.orders_count += 1;
                if let Some(total) =
                    text(data.get("total_price")).and_then(|t| Decimal::from_str(&t).ok())
                {
                    p.total_spent += total;
                }
                let at = text(data.get("created_at"))
                    .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .unwrap_or(now);
                p.first_order_at = Some(p.first_order_at.map_or(at, |f| f.min(at)));
                p.last_order_at = Some(p.last_order_at.map_or(at, |l| l.max(at)));
                if let Some(Json::Array(items)) = data.get("line_items") {
                    for it in items {
                        if let Some(v) = text(it.get("product_id")) {
                            p.product_ids.insert(v);
                        }
                        if let Some(v) = text(it.get("sku")) {
                            p.skus.insert(v);
                        }
                    }
                }
            }
        }
    }
}

/// The fields of `profile.*`, in the order of the record. Names as in the schema's
/// `[profile]` table; `product_ids`/`skus` kept as aliases.
const FIELDS: [&str; 17] = [
    "customer_id",
    "orders_count",
    "total_spent",
    "first_order_at",
    "last_order_at",
    "products_bought",
    "skus_bought",
    "product_ids",
    "skus",
    "last_name",
    "first_name",
    "phone",
    "email",
    "zone",
    "state",
    "tags",
    "consent",
];

/// One field of `profile.*` (null when there is no such field). Expressions read fields one at
/// a time: building the whole record per evaluation was a large share of the engine's time.
pub fn field(p: &Profile, consent: Consent, name: &str) -> Value {
    let s = |o: &Option<String>| o.clone().map(Value::Str).unwrap_or(Value::Null);
    let t = |o: &Option<DateTime<Utc>>| o.map(Value::Time).unwrap_or(Value::Null);
    let l = |set: &super::small::SortedSet<String>| {
        Value::List(set.iter().cloned().map(Value::Str).collect())
    };
    match name {
        "customer_id" => s(&p.customer_id),
        "orders_count" => Value::Int(p.orders_count),
        "total_spent" => Value::Decimal(p.total_spent),
        "first_order_at" => t(&p.first_order_at),
        "last_order_at" => t(&p.last_order_at),
        "products_bought" | "product_ids" => l(&p.product_ids),
        "skus_bought" | "skus" => l(&p.skus),
        "last_name" => s(&p.last_name),
        "first_name" => s(&p.first_name),
        "phone" => s(&p.phone),
        "email" => s(&p.email),
        "zone" => s(&p.zone),
        "state" => s(&p.state),
        "tags" => l(&p.tags),
        "consent" => Value::Str(consent.as_str().into()),
        _ => Value::Null,
    }
}

/// `profile.*` as a value.
pub fn to_value(p: &Profile, consent: Consent) -> Value {
    Value::Record(
        FIELDS
            .iter()
            .map(|f| (f.to_string(), field(p, consent, f)))
            .collect(),
    )
}
