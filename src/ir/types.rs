//! The value types of the flow language, shared by schemas, the checker and the IR.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A type in the flow language. Money is decimal, never float; ids are strings (Shopify's
/// 18-digit ids and GraphQL gids both fit without loss).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ty {
    Bool,
    Int,
    Decimal,
    Money,
    Str,
    Duration,
    /// An instant (RFC 3339 in events).
    Time,
    /// A wall-clock time of day such as 10:00.
    TimeOfDay,
    List(Box<Ty>),
    /// A named record type from the schemas (e.g. `line_item`, `address`).
    Record(String),
    /// A tracked link (the value of `link(...)`).
    Link,
    /// The type of an expression that already produced an error: never reported again.
    Unknown,
}

impl Ty {
    /// Parse the compact spelling used in schema data files: `str`, `money`, `list<line_item>`.
    pub fn parse(s: &str) -> Option<Ty> {
        let s = s.trim();
        if let Some(inner) = s.strip_prefix("list<").and_then(|r| r.strip_suffix('>')) {
            return Ty::parse(inner).map(|t| Ty::List(Box::new(t)));
        }
        Some(match s {
            "bool" => Ty::Bool,
            "int" => Ty::Int,
            "decimal" => Ty::Decimal,
            "money" => Ty::Money,
            "str" | "string" | "id" => Ty::Str,
            "duration" => Ty::Duration,
            "time" => Ty::Time,
            "time_of_day" => Ty::TimeOfDay,
            "link" => Ty::Link,
            other
                if !other.is_empty()
                    && other.chars().all(|c| c.is_ascii_lowercase() || c == '_') =>
            {
                Ty::Record(other.to_string())
            }
            _ => return None,
        })
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Decimal | Ty::Money | Ty::Unknown)
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Bool => f.write_str("bool"),
            Ty::Int => f.write_str("int"),
            Ty::Decimal => f.write_str("decimal"),
            Ty::Money => f.write_str("money"),
            Ty::Str => f.write_str("str"),
            Ty::Duration => f.write_str("duration"),
            Ty::Time => f.write_str("time"),
            Ty::TimeOfDay => f.write_str("time_of_day"),
            Ty::List(t) => write!(f, "list<{t}>"),
            Ty::Record(r) => f.write_str(r),
            Ty::Link => f.write_str("link"),
            Ty::Unknown => f.write_str("{unknown}"),
        }
    }
}
