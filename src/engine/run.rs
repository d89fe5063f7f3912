//! Processing inputs: events (profile, goals, exits, waits, triggers, in that order), timers,
//! replies and consent; and advancing an instance through its steps until it blocks.

use super::clock::{local_label, next_local_time};
use super::eval::{LinkCtx, Scope, Src};
use super::keywords::{self, Keyword};
use super::model::*;
use super::profile;
use super::{MAX_STEPS_PER_ADVANCE, SEEN_EVENTS_PER_INSTANCE, SEEN_EVENT_IDS};
use crate::compliance::{
    area_code_state, area_code_zone, state_zone, FrequencyCap, QuietHours, Rules,
};
use crate::ir::{Entry, Flow, FlowKind, HeldPolicy, Program, Step, StepId, ZoneSource};
use crate::sms;
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// The context of one `step` call: the program, the time and the effects so far.
pub struct Cx<'p> {
    pub program: &'p Program,
    /// The catalog and order history `recommend()` reads (data handed in by the host).
    pub data: &'p crate::catalog::ShopData,
    pub now: DateTime<Utc>,
    pub effects: Vec<Effect>,
    /// Emit an [`Effect::Step`] per executed step. A host that shows only the timeline (the
    /// simulator) turns it off: three strings per step, dropped unread, were a large share of
    /// its allocations.
    pub trace: bool,
}

impl<'p> Cx<'p> {
    pub fn new(
        program: &'p Program,
        data: &'p crate::catalog::ShopData,
        now: DateTime<Utc>,
    ) -> Cx<'p> {
        Cx {
            program,
            data,
            now,
            effects: Vec::new(),
            trace: true,
        }
    }

    /// A scope over these roots; `shop`, the plugins and the data come from the call.
    fn scope<'a>(
        &'a self,
        state: &'a PersonState,
        event: Src<'a>,
        entry: Src<'a>,
        flow: Src<'a>,
        links: Option<LinkCtx<'a>>,
    ) -> Scope<'a> {
        Scope {
            event,
            entry,
            profile: Src::Profile(&state.profile, state.consent),
            flow,
            shop: Src::Shop(&self.program.shop),
            plugins: &self.program.plugins,
            data: self.data,
            now: self.now,
            links,
        }
    }

    /// Flows that accept new entries: the first flow of each name (later ones with the same
    /// name are retained older versions, kept only so that their instances can finish).
    fn current_flows(&self) -> Vec<&'p Flow> {
        let mut out: Vec<&Flow> = Vec::new();
        for f in &self.program.flows {
            if !out.iter().any(|g| g.name == f.name) {
                out.push(f);
            }
        }
        out
    }

    fn flow(&self, name: &str, version: &str) -> Option<&'p Flow> {
        self.program
            .flows
            .iter()
            .find(|f| f.name == name && f.version == version)
    }
}

fn short_hash(parts: &[&str]) -> String {
    super::eval::hash_hex(parts, 16)
}

/// Evaluate an optional filter with `event` and `flow.entry` bound.
fn matches(
    cx: &Cx,
    state: &PersonState,
    filter: &Option<crate::ir::Expr>,
    event: &Json,
    entry: &Json,
    inst: Option<&Instance>,
) -> bool {
    if filter.is_none() {
        return true;
    }
    // The payloads are read in place: only the fields the filter names are converted.
    let flow = inst.map(Src::Flow).unwrap_or(Src::Null);
    cx.scope(state, Src::Json(event), Src::Json(entry), flow, None)
        .cond(filter)
}

// ---------------------------------------------------------------- events

/// `own`, when given, holds `data` itself (the caller gave the event up): instances that keep
/// the payload share it instead of a copy.
pub fn on_event(
    cx: &mut Cx,
    state: &mut PersonState,
    name: &str,
    id: &str,
    data: &Json,
    own: Option<&SharedJson>,
) {
    // One shared copy of the payload for every instance that keeps it (made on first need).
    let mut shared = Shared { made: None, own };
    if state.seen_event_ids.iter().any(|s| s == id) {
        cx.effects.push(Effect::Duplicate { id: id.to_string() });
        return;
    }
    state.seen_event_ids.push(id.to_string());
    let excess = state.seen_event_ids.len().saturating_sub(SEEN_EVENT_IDS);
    state.seen_event_ids.drain(..excess);
    if state.person.is_empty() {
        state.person = profile::person_key(data).unwrap_or_else(|| format!("event:{id}"));
    }

    // 1. Profile first, so a first order's own trigger sees `orders_count == 1`.
    profile::update(&mut state.profile, name, data, cx.now);
    if let Some(c) = profile::stated_consent(data) {
        set_consent(cx, state, c, name);
    } else if data.get("buyer_accepts_sms_marketing") == Some(&Json::Bool(true))
        && state.consent == Consent::Unknown
    {
        // A ticked SMS opt-in at checkout is express consent for that phone. It never
        // overrides an explicit opt-out: only START or a new consent record does.
        set_consent(cx, state, Consent::Subscribed, "checkout opt-in");
    }

    // 2. Goals: credit the last message of a flow whose goal this event meets.
    conversions(cx, state, name, data);

    // 3. Exits of live instances (`event` = this event, `flow.entry` = the instance's entry).
    // Finishing an instance changes nothing another's exit filter reads, so the hits are
    // found first (only their ids copied) and finished after, in id order as before.
    let hits: Vec<String> = state
        .instances
        .iter()
        .filter(|(_, inst)| {
            cx.flow(&inst.flow, &inst.flow_version).is_some_and(|flow| {
                flow.exits.iter().any(|x| {
                    x.event == name && matches(cx, state, &x.filter, data, &inst.entry, Some(inst))
                })
            })
        })
        .map(|(id, _)| id.clone())
        .collect();
    for iid in &hits {
        finish(cx, state, iid, format!("exit when {name}"));
    }

    // 4. Waiting `wait for` steps; other instances remember the event for later waits. Only
    // instances whose flow waits for this event anywhere can do either.
    let ids: Vec<String> = state
        .instances
        .iter()
        .filter(|(_, inst)| {
            cx.flow(&inst.flow, &inst.flow_version).is_some_and(|flow| {
                flow.steps
                    .iter()
                    .any(|s| matches!(s, Step::WaitEvent { event, .. } if event == name))
            })
        })
        .map(|(id, _)| id.clone())
        .collect();
    for iid in &ids {
        let Some(inst) = state.instances.get(iid) else {
            continue;
        };
        let Some(flow) = cx.flow(&inst.flow, &inst.flow_version) else {
            continue;
        };
        let waiting_here = match (&inst.waiting, flow.steps.get(inst.step as usize)) {
            (
                Some(Waiting::Event { .. }),
                Some(Step::WaitEvent {
                    event,
                    filter,
                    on_event,
                    ..
                }),
            ) if event == name => {
                matches(cx, state, filter, data, &inst.entry, Some(inst)).then_some(*on_event)
            }
            _ => None,
        };
        if let Some(next) = waiting_here {
            let mut inst = state.instances.remove(iid).expect("present");
            cancel_timer(cx, &inst);
            inst.waiting = None;
            inst.last_event = Some(share(&mut shared, state, data));
            inst.step = next;
            advance(cx, state, inst);
        } else if flow
            .steps
            .iter()
            .any(|s| matches!(s, Step::WaitEvent { event, .. } if event == name))
        {
            let data = share(&mut shared, state, data);
            let inst = state.instances.get_mut(iid).expect("present");
            inst.seen.push(SeenEvent {
                name: name.to_string(),
                at: cx.now,
                data,
            });
            let excess = inst.seen.len().saturating_sub(SEEN_EVENTS_PER_INSTANCE);
            inst.seen.drain(..excess);
        }
    }

    // 5. Triggers.
    for flow in cx.current_flows() {
        if flow.trigger.event != name || !matches(cx, state, &flow.trigger.filter, data, data, None)
        {
            continue;
        }
        enter(cx, state, flow, name, id, data, &mut shared);
    }
}

/// The event's payload for the instances that keep it: made on first need ([`share`]), from
/// the caller's own allocation when it gave the event up.
struct Shared<'a> {
    made: Option<SharedJson>,
    own: Option<&'a SharedJson>,
}

/// The event's payload as one shared allocation, made on first need: a payload the person's
/// instances already hold when one is equal (an order's `order.fulfilled` carries the order
/// that `order.created` did), else the caller's own (no copy), else a copy of `data`. Payloads
/// held for weeks by waiting instances were most of the simulator's memory, and memory growth
/// much of its time; the copy was a twentieth of its allocations.
fn share(slot: &mut Shared, state: &PersonState, data: &Json) -> SharedJson {
    let own = slot.own;
    slot.made
        .get_or_insert_with(|| {
            held_equal(state, data)
                .or_else(|| own.cloned())
                .unwrap_or_else(|| SharedJson::new(data.clone()))
        })
        .clone()
}

/// A payload equal to `data` among those the person's instances and last message hold.
fn held_equal(state: &PersonState, data: &Json) -> Option<SharedJson> {
    // Instances of one event share one payload: compare each distinct one once.
    let mut last: *const () = std::ptr::null();
    // A payload still unparsed (read from a stored record) is compared as text with `data`'s
    // compact JSON, which is what that text is when they are equal: no parse for it.
    let mut text: Option<String> = None;
    let mut equal = |j: &SharedJson| {
        let p = SharedJson::as_ptr(j);
        if p == last {
            return false;
        }
        last = p;
        match j.unparsed_text() {
            Some(held) => {
                held == text.get_or_insert_with(|| {
                    serde_json::to_string(data).expect("a JSON value serialises")
                })
            }
            None => **j == *data,
        }
    };
    for inst in state.instances.values() {
        let held = std::iter::once(&inst.entry)
            .chain(inst.last_event.as_ref())
            .chain(inst.seen.iter().map(|s| &s.data));
        for j in held {
            if equal(j) {
                return Some(j.clone());
            }
        }
    }
    state
        .last_message
        .as_ref()
        .map(|m| &m.entry)
        .filter(|j| equal(j))
        .cloned()
}

fn conversions(cx: &mut Cx, state: &PersonState, name: &str, data: &Json) {
    let Some(last) = &state.last_message else {
        return;
    };
    let Some(flow) = cx
        .flow(&last.flow, &last.flow_version)
        .or_else(|| cx.program.flow(&last.flow))
    else {
        return;
    };
    let Some(goal) = &flow.goal else { return };
    let age = cx.now - last.at;
    if goal.event != name || age < Duration::zero() || age > Duration::seconds(goal.within_secs) {
        return;
    }
    if !matches(cx, state, &goal.filter, data, &last.entry, None) {
        return;
    }
    let text = |k: &str| match data.get(k) {
        Some(Json::String(s)) => Some(s.clone()),
        Some(Json::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    cx.effects.push(Effect::Conversion {
        flow: last.flow.clone(),
        step: last.step,
        variant: last.variant.clone(),
        message_id: last.message_id.clone(),
        order_id: text("order_id"),
        revenue: text("total_price"),
    });
}

fn enter(
    cx: &mut Cx,
    state: &mut PersonState,
    flow: &Flow,
    name: &str,
    id: &str,
    data: &Json,
    shared: &mut Shared,
) {
    // Borrowed: the entry history holds every entry key the person ever used for this flow.
    let empty = EntryHistory::default();
    let hist = state.entries.get(&flow.name).unwrap_or(&empty);
    let refuse = |cx: &mut Cx, reason: String| {
        cx.effects.push(Effect::NotEntered {
            flow: flow.name.clone(),
            reason,
        })
    };
    let key = match &flow.entry {
        Entry::OncePer(expr) => {
            let ev = Src::Json(data);
            let mut scope = cx.scope(state, ev, ev, Src::Null, None);
            let key = scope.eval(expr).display();
            if key.is_empty() {
                return refuse(cx, "entry key is empty".into());
            }
            if hist.keys.contains(&key) {
                return refuse(cx, format!("already entered once for {key}"));
            }
            key
        }
        Entry::AtMostOncePer { secs } => {
            if let Some(last) = hist.last_at {
                if cx.now - last < Duration::seconds(*secs) {
                    return refuse(
                        cx,
                        format!(
                            "entered at {} (at most once per {secs}s)",
                            last.to_rfc3339()
                        ),
                    );
                }
            }
            id.to_string()
        }
        Entry::OnceEver => {
            if hist.count > 0 {
                return refuse(cx, "entered before (once ever)".into());
            }
            "once".to_string()
        }
        Entry::EveryTime => id.to_string(),
    };
    let iid = short_hash(&[&state.person, &flow.name, &flow.version, &key]);
    if state.instances.contains_key(&iid) {
        return refuse(cx, "instance already live".into());
    }
    let h = state.entries.get_or_default(flow.name.as_str());
    h.keys.insert(key.clone());
    h.count += 1;
    h.last_at = Some(cx.now);
    cx.effects.push(Effect::Entered {
        instance: iid.clone(),
        flow: flow.name.clone(),
        flow_version: flow.version.clone(),
        entry_key: key.clone(),
    });
    let inst = Instance {
        id: iid,
        flow: flow.name.clone(),
        flow_version: flow.version.clone(),
        kind: flow.kind,
        entry_key: key,
        entry_event: name.to_string(),
        entry: share(shared, state, data),
        entered_at: cx.now,
        step: 0,
        waiting: None,
        last_event: None,
        seen: Vec::new(),
        replies: Vec::new(),
        variants: BTreeMap::new(),
    };
    advance(cx, state, Box::new(inst));
}

// ---------------------------------------------------------------- timers, replies, consent

pub fn on_timer(cx: &mut Cx, state: &mut PersonState, iid: &str, step: StepId, due: DateTime<Utc>) {
    let Some(inst) = state.instances.get(iid) else {
        return;
    };
    // A timer that no longer matches what the instance waits for is stale: ignore it.
    if inst.step != step || inst.waiting.as_ref().map(Waiting::due) != Some(due) {
        return;
    }
    let mut inst = state.instances.remove(iid).expect("present");
    let Some(flow) = cx.flow(&inst.flow, &inst.flow_version) else {
        state.instances.insert(inst.id.clone(), inst);
        return finish(cx, state, iid, "flow version no longer in program".into());
    };
    let held = matches!(inst.waiting, Some(Waiting::Held { .. }));
    inst.waiting = None;
    inst.step = match flow.steps.get(step as usize) {
        Some(Step::Wait { next, .. } | Step::WaitUntil { next, .. }) => *next,
        Some(Step::WaitEvent { on_timeout, .. } | Step::WaitReply { on_timeout, .. }) => {
            *on_timeout
        }
        // A held send: run the send step again, checks included.
        Some(Step::Send { .. }) if held => step,
        _ => step,
    };
    advance(cx, state, inst);
}

pub fn on_reply(cx: &mut Cx, state: &mut PersonState, body: &str) {
    let yes_is_keyword = state.consent != Consent::Subscribed;
    let kw = keywords::classify(body, yes_is_keyword);
    let record = |cx: &mut Cx, keyword: Option<&str>, routed: Vec<String>| {
        cx.effects.push(Effect::ReplyRecorded {
            body: body.to_string(),
            keyword: keyword.map(String::from),
            routed_to: routed,
        })
    };
    match kw {
        Some(Keyword::OptOut) => {
            record(cx, Some("opt_out"), vec![]);
            // End marketing instances first, so they exit as "opted out" (and even when
            // consent was already off), then record the consent change.
            cancel_marketing(cx, state, "opted out");
            set_consent(cx, state, Consent::Unsubscribed, "keyword");
        }
        Some(Keyword::OptIn) => {
            record(cx, Some("opt_in"), vec![]);
            set_consent(cx, state, Consent::Subscribed, "keyword");
        }
        Some(Keyword::Help) => {
            record(cx, Some("help"), vec![]);
            cx.effects.push(Effect::HelpReply {
                to: state.profile.phone.clone(),
                body: cx.program.shop.help_reply.clone(),
            });
        }
        None => {
            // The most recent question gets the answer.
            let target = state
                .instances
                .values()
                .filter_map(|i| match &i.waiting {
                    Some(Waiting::Reply { since, .. }) => Some((*since, i.id.clone())),
                    _ => None,
                })
                .max();
            let Some((_, iid)) = target else {
                return record(cx, None, vec![]);
            };
            record(cx, None, vec![iid.clone()]);
            let mut inst = state.instances.remove(&iid).expect("present");
            let Some(Step::WaitReply { arms, other, .. }) = cx
                .flow(&inst.flow, &inst.flow_version)
                .and_then(|f| f.steps.get(inst.step as usize))
            else {
                state.instances.insert(iid, inst);
                return;
            };
            let norm = keywords::normalize(body);
            let next = arms
                .iter()
                .find(|a| a.answers.iter().any(|x| keywords::normalize(x) == norm))
                .map_or(*other, |a| a.next);
            cancel_timer(cx, &inst);
            inst.waiting = None;
            inst.replies.push(norm);
            inst.step = next;
            advance(cx, state, inst);
        }
    }
}

pub fn set_consent(cx: &mut Cx, state: &mut PersonState, to: Consent, source: &str) {
    let from = state.consent;
    if from != to {
        state.consent = to;
        cx.effects.push(Effect::ConsentChanged {
            from,
            to,
            source: source.to_string(),
        });
    }
    if to == Consent::Unsubscribed && from != to {
        // FCC revocation rule (2025-04-11) allows up to 10 business days; we honour it at once.
        cancel_marketing(cx, state, "consent revoked");
    }
}

fn cancel_marketing(cx: &mut Cx, state: &mut PersonState, reason: &str) {
    let ids: Vec<String> = state
        .instances
        .values()
        .filter(|i| i.kind == FlowKind::Marketing)
        .map(|i| i.id.clone())
        .collect();
    for iid in ids {
        finish(cx, state, &iid, reason.to_string());
    }
}

fn cancel_timer(cx: &mut Cx, inst: &Instance) {
    if let Some(w) = &inst.waiting {
        cx.effects.push(Effect::CancelTimer {
            instance: inst.id.clone(),
            step: inst.step,
            at: w.due(),
        });
    }
}

/// Remove a live instance, cancelling its timer.
fn finish(cx: &mut Cx, state: &mut PersonState, iid: &str, reason: String) {
    if let Some(inst) = state.instances.remove(iid) {
        cancel_timer(cx, &inst);
        cx.effects.push(Effect::Exited {
            instance: inst.id,
            flow: inst.flow,
            reason,
        });
    }
}

// ---------------------------------------------------------------- advancing

fn block(cx: &mut Cx, state: &mut PersonState, mut inst: Box<Instance>, w: Waiting) {
    cx.effects.push(Effect::ScheduleTimer {
        instance: inst.id.clone(),
        step: inst.step,
        at: w.due(),
    });
    inst.waiting = Some(w);
    state.instances.insert(inst.id.clone(), inst);
}

/// Run `inst` from its current step until it blocks or finishes. Boxed as the person's map
/// keeps it: an instance taken out of the map to run and put back when it blocks stays in its
/// allocation (unboxing and boxing it again was an allocation and two copies per timer).
pub fn advance(cx: &mut Cx, state: &mut PersonState, mut inst: Box<Instance>) {
    let Some(flow) = cx.flow(&inst.flow, &inst.flow_version) else {
        cx.effects.push(Effect::Exited {
            instance: inst.id,
            flow: inst.flow,
            reason: "flow version no longer in program".into(),
        });
        return;
    };
    for _ in 0..MAX_STEPS_PER_ADVANCE {
        let Some(step) = flow.steps.get(inst.step as usize) else {
            cx.effects.push(Effect::Exited {
                instance: inst.id,
                flow: inst.flow,
                reason: "step out of range".into(),
            });
            return;
        };
        if cx.trace {
            let op = match step {
                Step::Send { .. } => "send",
                Step::Wait { .. } => "wait",
                Step::WaitUntil { .. } => "wait_until",
                Step::WaitEvent { .. } => "wait_event",
                Step::WaitReply { .. } => "wait_reply",
                Step::Branch { .. } => "branch",
                Step::Split { .. } => "split",
                Step::Exit => "exit",
                Step::End => "end",
            };
            cx.effects.push(Effect::Step {
                instance: inst.id.clone(),
                flow: inst.flow.clone(),
                step: inst.step,
                op: op.into(),
            });
        }
        match step {
            Step::Send { template, next } => match send(cx, state, flow, &inst, template) {
                Gate::Done => inst.step = *next,
                Gate::Hold { reason, until } => {
                    return block(cx, state, inst, Waiting::Held { due: until, reason })
                }
            },
            Step::Wait { secs, next } => {
                if *secs > 0 {
                    // Block on the wait step itself; its timer moves the instance to `next`.
                    let due = cx.now + Duration::seconds(*secs);
                    return block(cx, state, inst, Waiting::Delay { due });
                }
                inst.step = *next;
            }
            Step::WaitUntil {
                hour, minute, days, ..
            } => {
                let tz = zone(cx, state, &inst).0;
                let due = next_local_time(cx.now, tz, *hour, *minute, days);
                return block(cx, state, inst, Waiting::Delay { due });
            }
            Step::WaitEvent {
                event,
                filter,
                timeout_secs,
                on_event,
                ..
            } => {
                let seen = inst
                    .seen
                    .iter()
                    .find(|s| {
                        &s.name == event
                            && matches(cx, state, filter, &s.data, &inst.entry, Some(&*inst))
                    })
                    .map(|s| s.data.clone());
                if let Some(data) = seen {
                    inst.last_event = Some(data);
                    inst.step = *on_event;
                    continue;
                }
                let due = cx.now + Duration::seconds((*timeout_secs).max(0));
                return block(
                    cx,
                    state,
                    inst,
                    Waiting::Event {
                        event: event.clone(),
                        since: cx.now,
                        due,
                    },
                );
            }
            Step::WaitReply { timeout_secs, .. } => {
                let due = cx.now + Duration::seconds((*timeout_secs).max(0));
                return block(cx, state, inst, Waiting::Reply { since: cx.now, due });
            }
            Step::Branch {
                cond,
                then,
                otherwise,
            } => {
                let ok = eval_in(cx, state, &inst, None, |s| s.eval(cond).truthy());
                inst.step = if ok { *then } else { *otherwise };
            }
            Step::Split { arms } => {
                let bucket = split_bucket(&state.person, &inst.flow_version, inst.step);
                let mut acc = 0u32;
                let arm = arms.iter().find(|a| {
                    acc += a.weight;
                    bucket < acc
                });
                let Some(arm) = arm.or(arms.last()) else {
                    return finish_owned(cx, inst, "split without arms");
                };
                inst.variants.insert(inst.step, arm.name.clone());
                inst.step = arm.next;
            }
            Step::Exit => return finish_owned(cx, inst, "exit"),
            Step::End => return finish_owned(cx, inst, "end"),
        }
    }
    finish_owned(cx, inst, "step limit reached")
}

fn finish_owned(cx: &mut Cx, inst: Box<Instance>, reason: &str) {
    let inst = *inst;
    cx.effects.push(Effect::Exited {
        instance: inst.id,
        flow: inst.flow,
        reason: reason.to_string(),
    });
}

/// Deterministic A/B bucket in 0..10_000 from (person, flow version, step).
pub fn split_bucket(person: &str, version: &str, step: StepId) -> u32 {
    // The first 16 hex digits of the hash read as a number: its first 8 bytes, big-endian.
    let d = super::eval::hash_parts(&[person, version, &step.to_string()]);
    let head: [u8; 8] = d[..8].try_into().expect("8 bytes");
    (u64::from_be_bytes(head) % 10_000) as u32
}

fn eval_in<R>(
    cx: &Cx,
    state: &PersonState,
    inst: &Instance,
    links: Option<LinkCtx<'_>>,
    f: impl FnOnce(&mut Scope) -> R,
) -> R {
    let entry = Src::Json(&inst.entry);
    let event = inst.last_event.as_deref().map(Src::Json).unwrap_or(entry);
    let mut scope = cx.scope(state, event, entry, Src::Flow(inst), links);
    f(&mut scope)
}

// ---------------------------------------------------------------- sending and its gate

enum Gate {
    /// Sent, dropped or already sent: go on with the next step.
    Done,
    Hold {
        reason: String,
        until: DateTime<Utc>,
    },
}

/// The phone a message goes to, borrowed (only the sent message keeps a copy).
fn recipient<'a>(state: &'a PersonState, inst: &'a Instance) -> Option<&'a str> {
    let t = |j: Option<&'a Json>| j.and_then(Json::as_str).filter(|s| !s.trim().is_empty());
    state
        .profile
        .phone
        .as_deref()
        .or_else(|| t(inst.entry.get("phone")))
        .or_else(|| {
            t(inst
                .entry
                .get("shipping_address")
                .and_then(|a| a.get("phone")))
        })
}

/// The recipient's zone per `policy.zone_from`, and the (address state, area-code state) pair
/// that picks the quiet-hours rules (borrowed: they only pick).
fn zone<'a>(
    cx: &Cx,
    state: &'a PersonState,
    inst: &'a Instance,
) -> (Tz, Option<&'a str>, Option<&'static str>) {
    let phone = recipient(state, inst);
    let addr_state = state.profile.state.as_deref();
    let ac_state = phone.and_then(area_code_state);
    // Parsed only when a source needs it (it was parsed on every call).
    let shop_tz = || cx.program.shop.zone.parse::<Tz>().ok();
    let mut tz = None;
    for src in &cx.program.policy.zone_from {
        tz = match src {
            ZoneSource::Profile => state.profile.zone.as_deref().and_then(|z| z.parse().ok()),
            ZoneSource::ShippingAddress => addr_state.and_then(state_zone),
            ZoneSource::AreaCode => phone.and_then(area_code_zone),
            ZoneSource::Shop => shop_tz(),
        };
        if tz.is_some() {
            break;
        }
    }
    (
        tz.or_else(shop_tz).unwrap_or(chrono_tz::UTC),
        addr_state,
        ac_state,
    )
}

/// Quiet-hours rules with their one-line description, as [`quiet_rules`] caches them.
type CachedRules = std::rc::Rc<(Rules, String)>;

/// The quiet-hours rules for a recipient (`QuietHours::rules_for` on the program's table) and
/// their description, computed once per thread for each table and pair of states. Building
/// them (rows, intersections, source strings) per marketing send was ~2% of the simulator.
/// The key packs each state as its two upper-case letters: `rules_for` reads a state only as
/// that code, and anything else names no row, so it keys as "none" (0).
fn quiet_rules(cx: &Cx, addr_state: Option<&str>, ac_state: Option<&str>) -> CachedRules {
    fn code(s: Option<&str>) -> u32 {
        match s.map(|s| s.trim().as_bytes()) {
            Some(&[a, b]) if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                u32::from(a.to_ascii_uppercase()) << 8 | u32::from(b.to_ascii_uppercase())
            }
            _ => 0,
        }
    }
    type Cache = (usize, u64, std::collections::HashMap<u32, CachedRules>);
    thread_local! {
        static CACHE: std::cell::RefCell<Option<Cache>> = const { std::cell::RefCell::new(None) };
    }
    let key = code(addr_state) << 16 | code(ac_state);
    with_quiet_hours(cx, |q| {
        // The table is told apart by its address and the generation of the overridden table
        // (a rebuilt one may reuse a dropped one's address).
        let table = (
            q as *const QuietHours as usize,
            OVERRIDES_BUILT.with(|g| g.get()),
        );
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            let cache = match &mut *c {
                Some((p, g, m)) if (*p, *g) == table => m,
                slot => &mut slot.insert((table.0, table.1, Default::default())).2,
            };
            cache
                .entry(key)
                .or_insert_with(|| {
                    let rules = q.rules_for(addr_state, ac_state);
                    let text = rules.describe();
                    std::rc::Rc::new((rules, text))
                })
                .clone()
        })
    })
}

thread_local! {
    /// How many overridden quiet-hours tables this thread has built (see [`quiet_rules`]).
    static OVERRIDES_BUILT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The quiet-hours table: the built-in one, borrowed, or the built-in one with the program's
/// overrides applied (computed once per thread for a given set of overrides). Cloning the
/// table (and converting the overrides through TOML) per marketing send showed in the
/// simulator's profile.
fn with_quiet_hours<R>(cx: &Cx, f: impl FnOnce(&QuietHours) -> R) -> R {
    static BUILTIN: OnceLock<QuietHours> = OnceLock::new();
    let base = BUILTIN.get_or_init(QuietHours::builtin);
    let o = &cx.program.policy.quiet_hours_overrides;
    if o.is_empty() {
        return f(base);
    }
    type Overridden = Option<(BTreeMap<String, Json>, std::rc::Rc<QuietHours>)>;
    thread_local! {
        static OVERRIDDEN: std::cell::RefCell<Overridden> = const { std::cell::RefCell::new(None) };
    }
    let table = OVERRIDDEN.with(|c| {
        let mut c = c.borrow_mut();
        match c.as_ref() {
            Some((key, t)) if key == o => t.clone(),
            _ => {
                let table: toml::Table = serde_json::to_value(o)
                    .ok()
                    .and_then(|j| toml::Value::try_from(j).ok())
                    .and_then(|v| v.as_table().cloned())
                    .unwrap_or_default();
                // A malformed override cannot get past the checker; if it does, the built-in
                // rows stand.
                let t = std::rc::Rc::new(
                    base.clone()
                        .with_overrides(&table)
                        .unwrap_or_else(|_| base.clone()),
                );
                *c = Some((o.clone(), t.clone()));
                OVERRIDES_BUILT.with(|g| g.set(g.get() + 1));
                t
            }
        }
    });
    f(&table)
}

/// The earliest instant >= now inside quiet-hours rules and under the cap, if any within a year.
fn next_sendable(
    rules: &Rules,
    cap: &FrequencyCap,
    sends: &[DateTime<Utc>],
    now: DateTime<Utc>,
    tz: Tz,
) -> Option<DateTime<Utc>> {
    let mut t = now;
    for _ in 0..32 {
        let q = rules.next_allowed(t, tz);
        if q == DateTime::<Utc>::MAX_UTC || q - now > Duration::days(366) {
            return None;
        }
        let c = cap.next_allowed(sends, q)?;
        if c == q {
            return Some(q);
        }
        t = c;
    }
    None
}

fn send(
    cx: &mut Cx,
    state: &mut PersonState,
    flow: &Flow,
    inst: &Instance,
    template: &crate::ir::Template,
) -> Gate {
    let dropped = |cx: &mut Cx, reason: String| {
        cx.effects.push(Effect::Dropped {
            instance: inst.id.clone(),
            flow: inst.flow.clone(),
            step: inst.step,
            reason,
        });
        Gate::Done
    };
    let message_id = short_hash(&[
        &inst.flow_version,
        &inst.entry_key,
        &inst.step.to_string(),
        &state.person,
    ]);
    if state.sent.contains(&message_id) {
        // At most one message per (instance, step), whatever re-runs.
        return Gate::Done;
    }
    let Some(to) = recipient(state, inst).map(String::from) else {
        return dropped(cx, "no phone number".into());
    };
    let (tz, addr_state, ac_state) = zone(cx, state, inst);
    let marketing = inst.kind == FlowKind::Marketing;
    if marketing {
        // Marketing SMS needs express consent (TCPA 47 CFR 64.1200(a)(2); CTIA principles).
        if state.consent != Consent::Subscribed {
            return dropped(
                cx,
                format!(
                    "no SMS marketing consent (consent is {})",
                    state.consent.as_str()
                ),
            );
        }
        let cached = quiet_rules(cx, addr_state, ac_state);
        let (rules, described) = &*cached;
        let p = cx.program.policy.frequency_cap;
        let cap = FrequencyCap {
            max: p.max,
            per: Duration::seconds(p.per_secs),
        };
        let local = cx.now.with_timezone(&tz);
        let reason = if !rules.allows(local.naive_local()) {
            Some(format!(
                "quiet hours {} at {}",
                described,
                local_label(cx.now, tz)
            ))
        } else if !cap.allows(&state.recent_sends, cx.now) {
            Some(format!("frequency cap {} per {}s", p.max, p.per_secs))
        } else {
            None
        };
        if let Some(reason) = reason {
            let until = next_sendable(rules, &cap, &state.recent_sends, cx.now, tz);
            return match (flow.held, until) {
                (HeldPolicy::Defer, Some(until)) => {
                    cx.effects.push(Effect::Held {
                        instance: inst.id.clone(),
                        flow: inst.flow.clone(),
                        step: inst.step,
                        reason: reason.clone(),
                        until: Some(until),
                    });
                    Gate::Hold { reason, until }
                }
                (HeldPolicy::Defer, None) => {
                    dropped(cx, format!("{reason}; no allowed time within a year"))
                }
                (HeldPolicy::Drop, _) => dropped(cx, format!("{reason}; flow says drop when held")),
            };
        }
    }
    let variant = inst.variants.values().last().cloned();
    // The same scope as conditions use, with link shortening switched on for this message.
    let link_ctx = LinkCtx {
        base: cx.program.shop.link_base.as_deref(),
        message_id: &message_id,
        out: Vec::new(),
    };
    let (body, links) = eval_in(cx, state, inst, Some(link_ctx), |scope| {
        let body = scope.render(template);
        (body, scope.links.take().map(|l| l.out).unwrap_or_default())
    });
    let (encoding, segments) = segments_of(&body);
    state.sent.insert(message_id.clone());
    if marketing {
        state.recent_sends.push(cx.now);
        let window = Duration::seconds(cx.program.policy.frequency_cap.per_secs.max(0));
        let now = cx.now;
        state.recent_sends.retain(|t| now - *t < window);
    }
    if flow.goal.is_some() {
        state.last_message = Some(LastMessage {
            message_id: message_id.clone(),
            flow: inst.flow.clone(),
            flow_version: inst.flow_version.clone(),
            step: inst.step,
            variant: variant.clone(),
            at: cx.now,
            entry: inst.entry.clone(),
        });
    }
    cx.effects.push(Effect::Send(Message {
        message_id,
        instance: inst.id.clone(),
        flow: inst.flow.clone(),
        flow_version: inst.flow_version.clone(),
        step: inst.step,
        person: state.person.clone(),
        to,
        body,
        encoding: encoding.as_str().to_string(),
        segments,
        variant,
        at: cx.now,
        local_time: local_label(cx.now, tz),
        kind: inst.kind,
        links,
    }));
    Gate::Done
}

/// The encoding and segment count of `sms::count`, without building its parts (and a copy of
/// the text) when the body fits one segment, which almost every body does.
fn segments_of(body: &str) -> (sms::Encoding, usize) {
    let gsm: Option<usize> = body.chars().map(sms::gsm7_units).sum();
    let (encoding, units) = match gsm {
        Some(u) => (sms::Encoding::Gsm7, u),
        None => (sms::Encoding::Ucs2, body.chars().map(sms::ucs2_units).sum()),
    };
    match units {
        0 => (encoding, 0),
        u if u <= sms::limits(encoding).0 => (encoding, 1),
        _ => {
            let c = sms::count(body);
            (c.encoding, c.segments)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_of_agrees_with_sms_count() {
        let long = |c: &str, n: usize| c.repeat(n);
        let bodies = [
            String::new(),
            "Hi Ada, your order is on its way".to_string(),
            long("a", 160),
            long("a", 161),
            long("{", 80),
            long("{", 81),
            long("é", 160),
            long("ж", 70),
            long("ж", 71),
            long("😀", 35),
            long("😀", 36),
            format!("{}`", long("a", 69)),
        ];
        for b in &bodies {
            let c = sms::count(b);
            assert_eq!(segments_of(b), (c.encoding, c.segments), "{b:?}");
        }
    }
}
