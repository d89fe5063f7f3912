//! The registry of stable diagnostic codes: default severity and a one-line title. The long
//! explanation of each code lives in docs/diagnostics.md (embedded, so `explain` and the docs
//! can never disagree).

use super::Severity;

#[derive(Clone, Copy, Debug)]
pub struct CodeInfo {
    pub code: &'static str,
    pub severity: Severity,
    pub title: &'static str,
}

const fn c(code: &'static str, severity: Severity, title: &'static str) -> CodeInfo {
    CodeInfo {
        code,
        severity,
        title,
    }
}

use Severity::{Error as E, Note as N, Warning as W};

/// Every code aftercart can emit. Codes are never reused or renumbered.
pub const CODES: &[CodeInfo] = &[
    // 00xx: reading and parsing
    c("AC0001", E, "syntax error"),
    c("AC0003", E, "invalid project file (aftercart.toml)"),
    c("AC0004", E, "invalid template syntax"),
    c(
        "AC0005",
        E,
        "invalid literal (duration, time of day, number)",
    ),
    c(
        "AC0006",
        E,
        "suppression comment without a reason or with an unknown code",
    ),
    c("AC0007", E, "catalog file cannot be read"),
    // 01xx: names
    c("AC0101", E, "unknown name"),
    c("AC0102", E, "unknown event field"),
    c("AC0103", E, "unknown event type"),
    c("AC0104", E, "unknown function or filter"),
    c("AC0105", E, "duplicate definition"),
    c("AC0106", E, "event field removed by Shopify"),
    c("AC0107", E, "segment defined in terms of itself"),
    // 02xx: types
    c("AC0201", E, "type mismatch"),
    c("AC0202", E, "wrong number of arguments"),
    // 03xx: flow structure
    c("AC0301", E, "duration out of bounds"),
    c("AC0302", W, "unreachable step"),
    c("AC0303", E, "wait without a timeout branch"),
    c("AC0304", E, "reply branch overlaps an earlier branch"),
    c("AC0305", E, "reply branch uses a reserved keyword"),
    c("AC0306", E, "split weights do not sum to 100%"),
    c("AC0307", E, "flow header item missing or repeated"),
    c("AC0308", W, "flow sends no message"),
    c("AC0309", E, "invalid time of day or weekday"),
    // 04xx: messages and compliance
    c("AC0401", E, "first marketing message lacks opt-out wording"),
    c("AC0402", W, "message can exceed the segment budget"),
    c("AC0403", N, "message is encoded as UCS-2"),
    c("AC0404", E, "marketing send always lands in quiet hours"),
    c(
        "AC0405",
        W,
        "cross-flow marketing budget exceeds the frequency cap",
    ),
    c("AC0406", W, "transactional message carries a promotion"),
    c("AC0407", W, "tracked link without a link base URL"),
    // 05xx: plugins
    c("AC0501", E, "plugin cannot be loaded"),
    c("AC0502", E, "plugin used as the wrong kind"),
    c("AC0503", E, "products have no such field"),
    c("AC0504", E, "recommend argument is not a plugin name"),
];

pub fn lookup(code: &str) -> Option<&'static CodeInfo> {
    CODES.iter().find(|c| c.code.eq_ignore_ascii_case(code))
}

/// docs/diagnostics.md, the long form of every code.
pub const DOCS: &str = include_str!("../../docs/diagnostics.md");

/// The section of docs/diagnostics.md for one code (from its `## CODE` heading to the next).
pub fn explanation(code: &str) -> Option<String> {
    let info = lookup(code)?;
    let heading = format!("## {}", info.code);
    let start = DOCS.find(&heading)?;
    let rest = &DOCS[start..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map(|i| i + heading.len())
        .unwrap_or(rest.len());
    Some(rest[..end].trim_end().to_string() + "\n")
}
