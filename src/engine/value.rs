//! Run-time values of the flow language and their conversion from event JSON. Money and
//! decimals are `rust_decimal`, never `f64`: JSON numbers are read through their text.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Decimal(Decimal),
    Str(String),
    /// Seconds.
    Duration(i64),
    Time(DateTime<Utc>),
    TimeOfDay(u32, u32),
    List(Vec<Value>),
    Record(BTreeMap<String, Value>),
}

impl Value {
    pub fn from_json(j: &serde_json::Value) -> Value {
        match j {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                // Through the number's text, so `29.99` stays exactly 29.99.
                None => Decimal::from_str(&n.to_string())
                    .or_else(|_| Decimal::from_scientific(&n.to_string()))
                    .map(Value::Decimal)
                    .unwrap_or(Value::Null),
            },
            serde_json::Value::String(s) => Value::Str(s.clone()),
            serde_json::Value::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Record(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Back to JSON (decimals and times as strings, as the plugin ABI wants them).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(n) => J::from(*n),
            Value::Decimal(d) => J::String(d.to_string()),
            Value::Str(s) => J::String(s.clone()),
            Value::Duration(d) => J::from(*d),
            Value::Time(t) => J::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            Value::List(l) => J::Array(l.iter().map(Value::to_json).collect()),
            Value::Record(m) => {
                J::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
            other => J::String(other.display()),
        }
    }

    pub fn field_ref(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Record(m) => m.get(name),
            _ => None,
        }
    }

    pub fn field(&self, name: &str) -> Value {
        match self {
            Value::Record(m) => m.get(name).cloned().unwrap_or(Value::Null),
            _ => Value::Null,
        }
    }

    /// Truthiness for conditions: null, false, 0, "" and [] are false.
    pub fn truthy(&self) -> bool {
        match self {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::Int(i) => *i != 0,
            Value::Decimal(d) => !d.is_zero(),
            Value::Str(s) => !s.is_empty(),
            Value::List(l) => !l.is_empty(),
            _ => true,
        }
    }

    /// Null, the empty string and the empty list: what `default(x)` replaces.
    pub fn is_empty(&self) -> bool {
        matches!(self, Value::Null)
            || matches!(self, Value::Str(s) if s.trim().is_empty())
            || matches!(self, Value::List(l) if l.is_empty())
    }

    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Int(i) => Some(Decimal::from(*i)),
            Value::Decimal(d) => Some(*d),
            Value::Str(s) => Decimal::from_str(s.trim()).ok(),
            _ => None,
        }
    }

    pub fn as_time(&self) -> Option<DateTime<Utc>> {
        match self {
            Value::Time(t) => Some(*t),
            Value::Str(s) => DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            _ => None,
        }
    }

    /// The text of a value in a message or a key. Null is the empty string.
    pub fn display(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Bool(b) => b.to_string(),
            Value::Int(i) => i.to_string(),
            Value::Decimal(d) => d.normalize().to_string(),
            Value::Str(s) => s.clone(),
            Value::Duration(s) => format!("{s}s"),
            Value::Time(t) => t.to_rfc3339(),
            Value::TimeOfDay(h, m) => format!("{h:02}:{m:02}"),
            Value::List(l) => l.iter().map(Value::display).collect::<Vec<_>>().join(", "),
            Value::Record(_) => String::new(),
        }
    }
}
