//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4) built from the store's
//! aggregate counters (never personal) and the server's own refusal counters. Metric names are
//! listed in docs/server.md.

use crate::store::Store;
use chrono::Utc;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Refusals at the HTTP edge (they never reach the store): (source, reason) -> count.
#[derive(Default)]
pub struct Edge {
    refused: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl Edge {
    pub fn refuse(&self, source: &'static str, reason: &'static str) {
        *self
            .refused
            .lock()
            .unwrap()
            .entry((source, reason))
            .or_default() += 1;
    }

    pub fn refused(&self) -> BTreeMap<(&'static str, &'static str), u64> {
        self.refused.lock().unwrap().clone()
    }
}

/// A label value escaped as the exposition format requires (`\`, `"` and newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Scans of the timer index are bounded so a scrape stays cheap with millions of timers; the
/// gauges then say "at least" (documented in docs/server.md).
pub const TIMER_SCAN_LIMIT: usize = 100_000;

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Render every metric. Store errors become a comment line and the `aftercart_up 0` gauge, so a
/// scrape never fails silently.
pub fn render(store: &dyn Store, edge: &Edge, runtime_error: Option<&str>) -> String {
    let mut out = String::new();
    family(
        &mut out,
        "aftercart_up",
        "gauge",
        "1 while the runtime loop runs and the store answers",
    );
    let counters = match store.counters() {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(out, "# store error: {}", e.to_string().replace('\n', " "));
            let _ = writeln!(out, "aftercart_up 0");
            return out;
        }
    };
    let _ = writeln!(out, "aftercart_up {}", u8::from(runtime_error.is_none()));

    family(
        &mut out,
        "aftercart_events_accepted_total",
        "counter",
        "Events appended to the log, by source",
    );
    for (name, v) in &counters {
        if let Some(src) = name.strip_prefix("events.accepted.") {
            let _ = writeln!(
                out,
                "aftercart_events_accepted_total{{source=\"{}\"}} {v}",
                label(src)
            );
        }
    }
    family(
        &mut out,
        "aftercart_events_duplicate_total",
        "counter",
        "Re-deliveries recognised by source id and not stored again, by source",
    );
    for (name, v) in &counters {
        if let Some(src) = name.strip_prefix("events.duplicate.") {
            let _ = writeln!(
                out,
                "aftercart_events_duplicate_total{{source=\"{}\"}} {v}",
                label(src)
            );
        }
    }
    family(
        &mut out,
        "aftercart_events_refused_total",
        "counter",
        "Requests refused at the edge (signature, bad body, too large) and log entries the \
         runtime could not use (source=\"runtime\"), by source and reason",
    );
    for ((src, reason), v) in edge.refused() {
        let _ = writeln!(
            out,
            "aftercart_events_refused_total{{source=\"{src}\",reason=\"{reason}\"}} {v}"
        );
    }
    let _ = writeln!(
        out,
        "aftercart_events_refused_total{{source=\"runtime\",reason=\"unusable\"}} {}",
        counters.get("runtime.events_refused").copied().unwrap_or(0)
    );
    family(
        &mut out,
        "aftercart_events_processed_total",
        "counter",
        "Log entries the runtime processed",
    );
    let _ = writeln!(
        out,
        "aftercart_events_processed_total {}",
        counters
            .get("runtime.events_processed")
            .copied()
            .unwrap_or(0)
    );
    family(
        &mut out,
        "aftercart_messages_total",
        "counter",
        "Outbox status transitions, by flow and status (pending counts messages created)",
    );
    for (name, v) in &counters {
        if let Some(rest) = name.strip_prefix("messages.") {
            // Flow names are identifiers (no dots); the status is the last part.
            if let Some((flow, status)) = rest.rsplit_once('.') {
                let _ = writeln!(
                    out,
                    "aftercart_messages_total{{flow=\"{}\",status=\"{}\"}} {v}",
                    label(flow),
                    label(status)
                );
            }
        }
    }
    family(
        &mut out,
        "aftercart_timers_fired_total",
        "counter",
        "Timers the runtime fired",
    );
    let _ = writeln!(
        out,
        "aftercart_timers_fired_total {}",
        counters.get("runtime.timers_fired").copied().unwrap_or(0)
    );

    let (last, cursor) = (store.last_seq(), store.cursor());
    family(
        &mut out,
        "aftercart_log_lag",
        "gauge",
        "Log entries appended but not yet processed (last_seq - cursor)",
    );
    match (last, cursor) {
        (Ok(l), Ok(c)) => {
            let _ = writeln!(out, "aftercart_log_lag {}", l.saturating_sub(c));
        }
        _ => {
            let _ = writeln!(out, "# store error reading the log position");
        }
    }
    let far = chrono::DateTime::<Utc>::MAX_UTC;
    let all = store.due(far, TIMER_SCAN_LIMIT).unwrap_or_default();
    let due = all.iter().filter(|t| t.due <= Utc::now()).count();
    let waiting: std::collections::BTreeSet<&str> = all.iter().map(|t| t.person.as_str()).collect();
    family(
        &mut out,
        "aftercart_people_waiting",
        "gauge",
        "People with at least one pending timer (a wait in a flow)",
    );
    let _ = writeln!(out, "aftercart_people_waiting {}", waiting.len());
    family(
        &mut out,
        "aftercart_timers_pending",
        "gauge",
        "Timers scheduled",
    );
    let _ = writeln!(out, "aftercart_timers_pending {}", all.len());
    family(
        &mut out,
        "aftercart_timers_due",
        "gauge",
        "Timers due now and not yet fired (should stay near 0)",
    );
    let _ = writeln!(out, "aftercart_timers_due {due}");
    family(
        &mut out,
        "aftercart_plugin_errors_total",
        "counter",
        "Plugin calls that failed (trap, fuel, deadline, bad answer); the engine used the fallback",
    );
    // The runtime counts `plugin_errors.{plugin}.{reason}` (the reason code has no dot); the
    // total is their sum, so it is not kept as a counter of its own.
    let mut total = 0;
    for (k, n) in counters.range("plugin_errors.".to_string()..) {
        let Some(rest) = k.strip_prefix("plugin_errors.") else {
            break;
        };
        let (plugin, reason) = rest.rsplit_once('.').unwrap_or((rest, ""));
        total += n;
        let _ = writeln!(
            out,
            "aftercart_plugin_errors_total{{plugin=\"{}\",reason=\"{}\"}} {n}",
            label(plugin),
            label(reason)
        );
    }
    if total == 0 {
        let _ = writeln!(out, "aftercart_plugin_errors_total 0");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CommitBatch, MemStore};

    fn lines(text: &str, family: &str) -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(family))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn plugin_errors_are_labelled_by_plugin_and_reason() {
        let store = MemStore::default();
        assert_eq!(
            lines(
                &render(&store, &Edge::default(), None),
                "aftercart_plugin_errors_total"
            ),
            ["aftercart_plugin_errors_total 0"]
        );
        store
            .commit(CommitBatch {
                counters: vec![
                    ("plugin_errors.vip.fuel".into(), 2),
                    ("plugin_errors.vip.trap".into(), 1),
                    ("plugin_errors.recs\"x.bad_answer".into(), 3),
                    ("runtime.timers_fired".into(), 5),
                ],
                ..CommitBatch::default()
            })
            .unwrap();
        let text = render(&store, &Edge::default(), None);
        assert_eq!(
            lines(&text, "aftercart_plugin_errors_total"),
            [
                // A quote in a plugin name is escaped, as the exposition format requires.
                "aftercart_plugin_errors_total{plugin=\"recs\\\"x\",reason=\"bad_answer\"} 3",
                "aftercart_plugin_errors_total{plugin=\"vip\",reason=\"fuel\"} 2",
                "aftercart_plugin_errors_total{plugin=\"vip\",reason=\"trap\"} 1",
            ]
        );
        assert!(text.contains("# TYPE aftercart_plugin_errors_total counter"));
        assert_eq!(
            lines(&text, "aftercart_timers_fired_total "),
            ["aftercart_timers_fired_total 5"]
        );
    }
}
