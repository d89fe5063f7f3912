//! The engine: a pure function from (compiled program, one person's state, one input, the
//! current time) to (new state, effects). No I/O, no clock reads, no randomness and no hash
//! map iteration in outputs, so the same inputs give the same effects byte for byte. The
//! semantics are written down in `docs/semantics.md`.

mod clock;
mod eval;
mod keywords;
mod model;
mod profile;
mod run;
mod small;
mod value;

pub use clock::{local_label, next_local_time, resolve_local};
pub use eval::{link_code, money, truncate};
pub use keywords::{classify as classify_keyword, normalize as normalize_reply, Keyword};
pub use model::{
    Consent, Effect, EntryHistory, Input, Instance, LastMessage, Link, Message, PersonState,
    PluginFailure, Profile, SeenEvent, SharedJson, Waiting,
};
pub use profile::person_key;
pub use small::{SortedMap, SortedSet};
pub use value::Value;

use crate::ir::{FlowKind, Program};
use chrono::{DateTime, Utc};

/// Upper bound on steps executed in one advance of one instance. The IR is acyclic, so a
/// flow can never need more than its step count; this guards against a malformed program.
pub const MAX_STEPS_PER_ADVANCE: usize = 1024;
/// Event ids remembered for de-duplication (Shopify delivers at least once).
pub const SEEN_EVENT_IDS: usize = 512;
/// Failed plugin calls kept per person for `inspect` (metrics count every one).
pub const PLUGIN_FAILURES_KEPT: usize = 32;
/// Events kept per instance for `wait for` steps that start after the event arrived.
pub const SEEN_EVENTS_PER_INSTANCE: usize = 16;

/// Process one input for one person at `now`. Pure: `state` is not modified.
pub fn step(
    program: &Program,
    state: &PersonState,
    input: &Input,
    now: DateTime<Utc>,
) -> (PersonState, Vec<Effect>) {
    let mut next = state.clone();
    let effects = step_mut(program, &mut next, input, now);
    (next, effects)
}

/// As [`step`], updating `state` in place (what a host that owns the state calls). Recommends
/// from nothing: use [`step_with`] to hand in the catalog and order history.
pub fn step_mut(
    program: &Program,
    state: &mut PersonState,
    input: &Input,
    now: DateTime<Utc>,
) -> Vec<Effect> {
    step_with(program, state, input, now, &crate::catalog::EMPTY)
}

/// As [`step_mut`], with the shop's catalog and order history (what `recommend()` reads). They
/// are data like the state: the same (program, state, input, now, data) give the same effects.
pub fn step_with(
    program: &Program,
    state: &mut PersonState,
    input: &Input,
    now: DateTime<Utc>,
    data: &crate::catalog::ShopData,
) -> Vec<Effect> {
    step_inner(program, state, input, None, now, data, true)
}

/// As [`step_with`], for a host done with the input: an event's payload moves into the state
/// of the instances that keep it instead of being copied. Same effects, same state, except
/// that `trace: false` leaves out the [`Effect::Step`] traces (for a host that drops them).
pub fn step_owned(
    program: &Program,
    state: &mut PersonState,
    input: Input,
    now: DateTime<Utc>,
    data: &crate::catalog::ShopData,
    trace: bool,
) -> Vec<Effect> {
    match input {
        Input::Event {
            name,
            id,
            data: payload,
        } => {
            let own = model::SharedJson::new(payload);
            // The input's payload is read through `own`; the placeholder is never looked at.
            let input = Input::Event {
                name,
                id,
                data: serde_json::Value::Null,
            };
            step_inner(program, state, &input, Some(&own), now, data, trace)
        }
        input => step_inner(program, state, &input, None, now, data, trace),
    }
}

/// [`step_with`]; `own` holds an event input's payload when the caller gave it up, `trace`
/// says whether to emit [`Effect::Step`] traces.
fn step_inner(
    program: &Program,
    state: &mut PersonState,
    input: &Input,
    own: Option<&model::SharedJson>,
    now: DateTime<Utc>,
    data: &crate::catalog::ShopData,
    trace: bool,
) -> Vec<Effect> {
    let mut cx = run::Cx::new(program, data, now);
    cx.trace = trace;
    match input {
        Input::Event { name, id, data } => {
            let data = own.map_or(data, |o| &**o);
            run::on_event(&mut cx, state, name, id, data, own)
        }
        Input::Timer {
            instance,
            step,
            due,
        } => run::on_timer(&mut cx, state, instance, *step, *due),
        Input::Reply { body, .. } => run::on_reply(&mut cx, state, body),
        Input::Consent { state: c } => run::set_consent(&mut cx, state, *c, "consent input"),
        Input::Delivery {
            message_id,
            status,
            error_code,
        } => {
            cx.effects.push(Effect::DeliveryRecorded {
                message_id: message_id.clone(),
                status: status.clone(),
                error_code: error_code.clone(),
            });
            // Twilio error 21610: the recipient has replied STOP to this sender; the carrier
            // will refuse every further message, so honour it as an opt-out.
            if error_code.as_deref() == Some("21610") {
                run::set_consent(
                    &mut cx,
                    state,
                    Consent::Unsubscribed,
                    "provider error 21610",
                );
            }
        }
        Input::Click { message_id } => {
            cx.effects.push(Effect::ClickRecorded {
                message_id: message_id.clone(),
            });
            state.clicks.push(message_id.clone());
            let excess = state.clicks.len().saturating_sub(64);
            state.clicks.drain(..excess);
        }
    }
    // Plugin calls that failed during this step (their fallback applied) go on the timeline.
    for (plugin, reason) in crate::plugins::take_failures() {
        state.plugin_failures.push(PluginFailure {
            at: now,
            plugin: plugin.clone(),
            reason: reason.clone(),
        });
        cx.effects.push(Effect::PluginFailed { plugin, reason });
    }
    let excess = state
        .plugin_failures
        .len()
        .saturating_sub(PLUGIN_FAILURES_KEPT);
    state.plugin_failures.drain(..excess);
    cx.effects
}

/// Is this a marketing flow (subject to consent, quiet hours and the cap)?
pub fn is_marketing(kind: FlowKind) -> bool {
    kind == FlowKind::Marketing
}
