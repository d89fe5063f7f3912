//! Read-only views of a data directory for `aftercart inspect`: a person's timeline, who waits
//! where, what is due next, and counts. Values are JSON so the CLI (the only printer) renders
//! them and the edges issue can serve them over HTTP.

use super::state::{decode_record, is_index, PersonRecord};
use super::Result;
use crate::host::parse_line;
use crate::store::Store;
use chrono::{DateTime, Utc};
use serde_json::{json, Value as Json};

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn record(store: &dyn Store, person: &str) -> Result<Option<PersonRecord>> {
    match store.person(person)? {
        Some(b) => Ok(Some(decode_record(person, &b)?)),
        None => Ok(None),
    }
}

/// A person's timeline: their events from the log (decrypted), their instances and where they
/// wait, their timers and their messages with delivery states.
pub fn person(store: &dyn Store, person: &str) -> Result<Json> {
    let export = store.export(person)?;
    let rec = record(store, person)?;
    let events: Vec<Json> = export
        .get("events")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let payload = e.get("payload").cloned().unwrap_or(Json::Null);
            let what = parse_line(&payload.to_string())
                .map(|env| env.describe())
                .unwrap_or_else(|_| "(erased)".into());
            json!({
                "seq": e.get("seq"),
                "received_at": e.get("received_at"),
                "what": what,
                "payload": payload,
            })
        })
        .collect();
    let instances: Vec<Json> = rec
        .as_ref()
        .map(|r| {
            r.state
                .instances
                .values()
                .map(|i| {
                    json!({
                        "instance": i.id, "flow": i.flow, "flow_version": i.flow_version,
                        "step": i.step, "entered_at": rfc(i.entered_at), "waiting": i.waiting,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let messages: Vec<Json> = export
        .get("outbox")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|o| {
            let m = o.get("message").cloned().unwrap_or(Json::Null);
            json!({
                "message_id": o.get("message_id"), "flow": o.get("flow"), "step": o.get("step"),
                "status": o.get("status"), "attempts": o.get("attempts"),
                "at": m.get("at"), "to": m.get("to"), "body": m.get("body"),
            })
        })
        .collect();
    Ok(json!({
        "person": person,
        "found": export.get("found").cloned().unwrap_or(json!(false)),
        "consent": rec.as_ref().map(|r| r.state.consent.as_str()),
        "profile": rec.as_ref().map(|r| &r.state.profile),
        "events": events,
        "instances": instances,
        "timers": export.get("timers").cloned().unwrap_or(json!([])),
        "messages": messages,
        "plugin_failures": rec.as_ref().map(|r| &r.state.plugin_failures),
    }))
}

/// Every live instance (optionally of one flow): who waits where, until when.
pub fn instances(store: &dyn Store, flow: Option<&str>) -> Result<Vec<Json>> {
    let mut people = store.people()?;
    people.retain(|p| !is_index(p));
    people.sort();
    let mut out = Vec::new();
    for p in people {
        let Some(rec) = record(store, &p)? else {
            continue;
        };
        for i in rec.state.instances.values() {
            if flow.is_some_and(|f| f != i.flow) {
                continue;
            }
            out.push(json!({
                "person": p, "flow": i.flow, "instance": i.id, "step": i.step,
                "waiting": i.waiting.as_ref().map(|w| match w {
                    crate::engine::Waiting::Delay { .. } => "delay",
                    crate::engine::Waiting::Event { .. } => "event",
                    crate::engine::Waiting::Reply { .. } => "reply",
                    crate::engine::Waiting::Held { .. } => "held",
                }),
                "due": i.waiting.as_ref().map(|w| rfc(w.due())),
            }));
        }
    }
    Ok(out)
}

/// The next `limit` timers across everyone, and how many there are in all.
pub fn timers(store: &dyn Store, limit: usize) -> Result<(Vec<Json>, usize)> {
    let all = store.due(DateTime::<Utc>::MAX_UTC, usize::MAX)?;
    let mut first: Vec<_> = all.iter().take(limit).cloned().collect();
    first.sort();
    Ok((
        first
            .iter()
            .map(|t| json!({"due": rfc(t.due), "person": t.person, "instance": t.instance, "step": t.step}))
            .collect(),
        all.len(),
    ))
}

/// Counts: the log, the cursor, the outbox, people and the counters.
pub fn stats(store: &dyn Store) -> Result<Json> {
    let people = store.people()?.iter().filter(|p| !is_index(p)).count();
    let pending = store.pending(usize::MAX)?.len();
    Ok(json!({
        "log": { "first_seq": store.first_seq()?, "last_seq": store.last_seq()?, "cursor": store.cursor()? },
        "people": people,
        "outbox_pending": pending,
        "next_due": store.next_due()?.map(rfc),
        "deployed": store.deployed()?,
        "counters": store.counters()?,
    }))
}
