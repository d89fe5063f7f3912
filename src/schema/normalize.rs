//! Normalising a webhook payload into aftercart's event object, following the schema's `from`
//! paths and converting every value to the one representation the engine compares and stores.
//!
//! Representations: ids and text are JSON strings (integers are turned into their exact decimal
//! text: serde_json keeps integers up to u64 exact, and Shopify ids are at most 18 digits);
//! money and decimals are decimal strings validated by rust_decimal (Shopify sends money as
//! strings such as "29.99" and it must never pass through f64); times are RFC 3339 in UTC
//! (Shopify sends local offsets such as `2021-12-31T19:00:00-05:00`). Payload shapes: the sample
//! payloads of <https://shopify.dev/docs/api/webhooks/2026-07> (tests/fixtures/shopify).

use super::{Field, NormalizeError, Schemas};
use crate::ir::Ty;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

pub(super) fn normalize(
    s: &Schemas,
    event: &str,
    payload: &Value,
) -> Result<Value, NormalizeError> {
    let schema = s.event(event).ok_or_else(|| NormalizeError {
        field: String::new(),
        message: format!("unknown event `{event}`"),
    })?;
    if !payload.is_object() {
        return Err(NormalizeError {
            field: String::new(),
            message: format!("the `{event}` payload must be a JSON object"),
        });
    }
    let source = schema.topic.as_deref().unwrap_or(event);
    Normalizer { s, source }.object(&schema.fields, payload, "")
}

struct Normalizer<'a> {
    s: &'a Schemas,
    /// The topic (or event name) the payload came from, for error messages.
    source: &'a str,
}

impl Normalizer<'_> {
    fn object(
        &self,
        fields: &BTreeMap<String, Field>,
        obj: &Value,
        at: &str,
    ) -> Result<Value, NormalizeError> {
        let mut out = Map::new();
        for (name, f) in fields {
            let here = if at.is_empty() {
                name.clone()
            } else {
                format!("{at}.{name}")
            };
            // The first `from` path that is present and not null.
            let found = f
                .from
                .iter()
                .find_map(|p| lookup(obj, p).filter(|v| !v.is_null()).map(|v| (p, v)));
            let value = match found {
                Some((path, v)) => self.value(&f.ty, f.split.as_deref(), v, &here, path)?,
                None if f.required => {
                    return Err(NormalizeError {
                        field: here,
                        message: format!(
                            "missing `{}`: every {} payload has it",
                            f.from.join("` or `"),
                            self.source
                        ),
                    })
                }
                None => Value::Null,
            };
            // Phones arrive as typed by the customer ("(303) 555-0105"); SMS providers take
            // E.164 (Twilio: the `To` parameter), and routing compares numbers exactly.
            let value = match (name.ends_with("phone"), value) {
                (true, Value::String(p)) => Value::String(e164(&p)),
                (_, v) => v,
            };
            out.insert(name.clone(), value);
        }
        Ok(Value::Object(out))
    }

    fn value(
        &self,
        ty: &Ty,
        split: Option<&str>,
        v: &Value,
        at: &str,
        path: &str,
    ) -> Result<Value, NormalizeError> {
        let bad = |what: &str| NormalizeError {
            field: at.to_string(),
            message: format!(
                "{} (payload `{path}` = {}) is not {what}",
                describe(v),
                short(v)
            ),
        };
        if v.is_null() {
            return Ok(Value::Null);
        }
        Ok(match ty {
            Ty::Str | Ty::Link | Ty::Duration | Ty::TimeOfDay => match v {
                Value::String(s) => Value::String(s.clone()),
                // Integers (ids) keep their exact digits; a float id would already have lost them.
                Value::Number(n) if n.is_u64() || n.is_i64() => Value::String(n.to_string()),
                _ => return Err(bad("text or an integer id")),
            },
            Ty::Int => match v {
                Value::Number(n) if n.is_u64() || n.is_i64() => v.clone(),
                Value::String(s) => match s.trim().parse::<i64>() {
                    Ok(i) => Value::Number(Number::from(i)),
                    Err(_) => return Err(bad("an integer")),
                },
                _ => return Err(bad("an integer")),
            },
            Ty::Money | Ty::Decimal => {
                // Strings as Shopify sends them; a JSON number is read from its text, not via f64
                // arithmetic, so "12.5" stays 12.5.
                let text = match v {
                    Value::String(s) => s.trim().to_string(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(bad("a decimal amount")),
                };
                match Decimal::from_str(&text) {
                    Ok(d) if plain_decimal(&text) => Value::String(d.to_string()),
                    _ => return Err(bad("a decimal amount")),
                }
            }
            Ty::Bool => match v {
                Value::Bool(_) => v.clone(),
                _ => return Err(bad("true or false")),
            },
            Ty::Time => match v.as_str().map(DateTime::parse_from_rfc3339) {
                Some(Ok(t)) => Value::String(
                    t.with_timezone(&Utc)
                        .to_rfc3339_opts(SecondsFormat::AutoSi, true),
                ),
                _ => return Err(bad("an RFC 3339 time")),
            },
            Ty::List(inner) => match (v, split) {
                (Value::Array(items), _) => Value::Array(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, item)| self.value(inner, None, item, &format!("{at}[{i}]"), path))
                        .collect::<Result<_, _>>()?,
                ),
                // Shopify's tags: "tag1, tag2" (an empty string is no tags).
                (Value::String(s), Some(sep)) => Value::Array(
                    s.split(sep)
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .enumerate()
                        .map(|(i, p)| {
                            self.value(
                                inner,
                                None,
                                &Value::String(p.into()),
                                &format!("{at}[{i}]"),
                                path,
                            )
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => return Err(bad("a list")),
            },
            Ty::Record(r) => match (v, self.s.record(r)) {
                (Value::Object(_), Some(rec)) => self.object(&rec.fields, v, at)?,
                _ => return Err(bad(&format!("a `{r}` object"))),
            },
            Ty::Unknown => v.clone(),
        })
    }
}

/// Plain decimal text: digits, at most one point with digits on both sides, optional `-`. rust_decimal
/// alone also takes `1_000` and rounds past 28 digits; an amount must be written plainly.
fn plain_decimal(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    all_digits(int) && all_digits(frac)
}

/// A dotted path into JSON: object keys, and array indexes (`tracking_numbers.0`).
pub(crate) fn lookup<'v>(v: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(v, |v, seg| match v {
        Value::Object(m) => m.get(seg),
        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "the text",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The value as JSON, cut short: error messages must stay readable.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

/// E.164 for North American numbers written loosely: 10 digits, or 11 starting with 1, become
/// `+1...`; a number already starting with `+` keeps its digits; anything else (too short,
/// letters such as Shopify's sample `555-555-SHIP`) is kept as written and will not be routable.
pub fn e164(raw: &str) -> String {
    let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let plus = raw.trim_start().starts_with('+');
    if raw.chars().any(|c| c.is_ascii_alphabetic()) {
        return raw.to_string();
    }
    match (plus, digits.len()) {
        (true, 8..=15) => format!("+{digits}"),
        (false, 10) => format!("+1{digits}"),
        (false, 11) if digits.starts_with('1') => format!("+{digits}"),
        _ => raw.to_string(),
    }
}
