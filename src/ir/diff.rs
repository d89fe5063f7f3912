//! A semantic diff of two compiled programs, and the migration plan it implies.
//!
//! Flows are paired by name. Inside a flow, step ids follow source order (DFS pre-order), so one
//! inserted step shifts every later id: steps are therefore paired structurally, by a weighted
//! longest common subsequence over the two DFS orders in which only steps of the same kind may
//! pair and a pair scores more the more alike its contents are. Unpaired steps are added or
//! removed; paired steps are compared field by field (timing, text, condition, weights,
//! answers, awaited event) and by where their edges lead.
//!
//! The pairing doubles as the migration plan: a [`StepMap`] per changed flow sends each old
//! step id to its counterpart in the new version, or to nothing (people waiting there must stay
//! on the old version or be ended). A runtime can attach how many people wait at each step
//! ([`ProgramDiff::attach_waiting`]) so the rendering says who is affected.

use super::{
    Entry, EventMatch, Expr, Flow, Goal, Lit, Program, Quant, Root, Step, StepId, Template,
    TemplatePart, UnOp,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// People waiting per `(flow name, flow version, step id)`, as a runtime counts them.
pub type Waiting = BTreeMap<(String, String, StepId), usize>;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProgramDiff {
    pub old_hash: String,
    pub new_hash: String,
    /// Program-wide changes: Shopify API version, `[shop]` values, `[policy]`.
    pub program: Vec<FieldChange>,
    /// Every flow of either side, sorted by name.
    pub flows: Vec<FlowDiff>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    Added,
    Removed,
    Changed,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FlowDiff {
    pub name: String,
    pub status: FlowStatus,
    pub old_version: Option<String>,
    pub new_version: Option<String>,
    /// Header changes: kind, description, trigger, entry, exits, goal, held policy.
    pub header: Vec<FieldChange>,
    /// Step changes in the order of the aligned step sequences.
    pub steps: Vec<StepChange>,
    /// For a changed flow: where people waiting at each old step go in the new version.
    pub migration: Option<StepMap>,
    /// People waiting anywhere in the old version (set by [`ProgramDiff::attach_waiting`]).
    pub waiting: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    /// `None` when the field was absent (e.g. no goal).
    pub old: Option<String>,
    pub new: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepChange {
    /// The step's id in the old version (`None` for an added step).
    pub old_step: Option<StepId>,
    /// The step's id in the new version (`None` for a removed step).
    pub new_step: Option<StepId>,
    pub change: Change,
    /// People waiting at the old step (set by [`ProgramDiff::attach_waiting`]).
    pub waiting: Option<usize>,
}

/// What changed about one step. `old`/`new` are human renderings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Change {
    Added {
        step: String,
    },
    Removed {
        step: String,
    },
    /// A wait's duration, a wait-until's time or days, a wait-for or wait-reply timeout.
    Timing {
        old: String,
        new: String,
    },
    /// A message's template text.
    Text {
        old: String,
        new: String,
    },
    /// A branch condition.
    Condition {
        old: String,
        new: String,
    },
    /// A split's arms (names and weights).
    Weights {
        old: String,
        new: String,
    },
    /// A wait-reply's answer lists.
    Answers {
        old: String,
        new: String,
    },
    /// A wait-for's event or filter.
    Event {
        old: String,
        new: String,
    },
    /// An edge now leads to another (existing) step: `edge` is its label (`next`, `yes`, ...).
    Route {
        edge: String,
        old: String,
        new: String,
    },
}

/// Where people waiting at each step of an old flow version go in the new one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepMap {
    pub flow: String,
    pub old_version: String,
    pub new_version: String,
    /// Indexed by old step id: the new step id, or `None` when the old step has no
    /// counterpart (people there must stay on the old version or be ended).
    pub map: Vec<Option<StepId>>,
    /// Old steps that have a counterpart whose contents changed (e.g. a longer wait): a runtime
    /// may want to recompute their timers.
    pub changed: Vec<StepId>,
}

impl StepMap {
    /// The new id of an old step, if it has one.
    pub fn get(&self, old: StepId) -> Option<StepId> {
        self.map.get(old as usize).copied().flatten()
    }

    /// Old steps without a counterpart in the new version.
    pub fn unmapped(&self) -> Vec<StepId> {
        self.map
            .iter()
            .enumerate()
            .filter(|(_, n)| n.is_none())
            .map(|(i, _)| i as StepId)
            .collect()
    }
}

impl ProgramDiff {
    /// Whether anything behavioural differs (the exit status of `aftercart diff`).
    pub fn has_changes(&self) -> bool {
        !self.program.is_empty()
            || self.flows.iter().any(|f| f.status != FlowStatus::Unchanged)
            || self.old_hash != self.new_hash
    }

    pub fn flow(&self, name: &str) -> Option<&FlowDiff> {
        self.flows.iter().find(|f| f.name == name)
    }

    /// The migration plans of every changed flow, by flow name.
    pub fn migrations(&self) -> BTreeMap<String, StepMap> {
        self.flows
            .iter()
            .filter_map(|f| f.migration.clone().map(|m| (f.name.clone(), m)))
            .collect()
    }

    /// Record how many people wait at each old step (keys are `(flow, old version, step)`).
    /// Counts for other versions are ignored: this diff only knows the old and new versions.
    pub fn attach_waiting(&mut self, waiting: &Waiting) {
        for f in &mut self.flows {
            let Some(ver) = f.old_version.clone() else {
                continue;
            };
            let at = |step: StepId| {
                waiting
                    .get(&(f.name.clone(), ver.clone(), step))
                    .copied()
                    .unwrap_or(0)
            };
            let total: usize = waiting
                .range((f.name.clone(), ver.clone(), 0)..=(f.name.clone(), ver.clone(), u32::MAX))
                .map(|(_, n)| *n)
                .sum();
            f.waiting = Some(total);
            for s in &mut f.steps {
                s.waiting = s.old_step.map(at);
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("diff serialises")
    }

    /// The human rendering (see `docs/language.md#versions-and-diffs`).
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for c in &self.program {
            let _ = writeln!(out, "~ {}", field_line(c));
        }
        for f in &self.flows {
            render_flow(&mut out, f);
        }
        if !self.has_changes() {
            out.push_str("no changes\n");
        }
        out
    }
}

fn short(v: &Option<String>) -> &str {
    v.as_deref().map(|s| &s[..s.len().min(8)]).unwrap_or("-")
}

fn people(n: Option<usize>) -> String {
    match n {
        Some(0) | None => String::new(),
        Some(1) => "  [1 person waits here]".into(),
        Some(n) => format!("  [{n} people wait here]"),
    }
}

fn field_line(c: &FieldChange) -> String {
    match (&c.old, &c.new) {
        (Some(o), Some(n)) => format!("{}: {o} -> {n}", c.field),
        (None, Some(n)) => format!("{}: (none) -> {n}", c.field),
        (Some(o), None) => format!("{}: {o} -> (none)", c.field),
        (None, None) => c.field.clone(),
    }
}

fn step_label(s: &StepChange) -> String {
    match (s.old_step, s.new_step) {
        (Some(o), Some(n)) if o == n => format!("step {n}"),
        (Some(o), Some(n)) => format!("step {n} (was {o})"),
        (None, Some(n)) => format!("step {n}"),
        (Some(o), None) => format!("step {o}"),
        (None, None) => "step ?".into(),
    }
}

fn render_flow(out: &mut String, f: &FlowDiff) {
    match f.status {
        FlowStatus::Unchanged => {
            let _ = writeln!(out, "flow {}: unchanged", f.name);
        }
        FlowStatus::Added => {
            let _ = writeln!(out, "+ flow {} ({})", f.name, short(&f.new_version));
        }
        FlowStatus::Removed => {
            let _ = writeln!(
                out,
                "- flow {} ({}){}",
                f.name,
                short(&f.old_version),
                match f.waiting {
                    Some(n) if n > 0 => format!("  [{n} waiting in it]"),
                    _ => String::new(),
                }
            );
        }
        FlowStatus::Changed => {
            let _ = writeln!(
                out,
                "flow {} ({} -> {})",
                f.name,
                short(&f.old_version),
                short(&f.new_version)
            );
            for c in &f.header {
                let _ = writeln!(out, "  ~ {}", field_line(c));
            }
            for s in &f.steps {
                let label = step_label(s);
                let w = people(s.waiting);
                match &s.change {
                    Change::Added { step } => {
                        let _ = writeln!(out, "  + {label}: {step} (new)");
                    }
                    Change::Removed { step } => {
                        let _ = writeln!(out, "  - {label}: {step} (removed){w}");
                    }
                    Change::Timing { old, new } | Change::Event { old, new } => {
                        let _ = writeln!(out, "  ~ {label}: {old} -> {new}{w}");
                    }
                    Change::Text { old, new } => {
                        let _ = writeln!(out, "  ~ {label}: message text changed{w}");
                        for l in old.lines() {
                            let _ = writeln!(out, "      - {l}");
                        }
                        for l in new.lines() {
                            let _ = writeln!(out, "      + {l}");
                        }
                    }
                    Change::Condition { old, new } => {
                        let _ = writeln!(out, "  ~ {label}: condition: if {old} -> if {new}{w}");
                    }
                    Change::Weights { old, new } => {
                        let _ = writeln!(out, "  ~ {label}: split {old} -> split {new}{w}");
                    }
                    Change::Answers { old, new } => {
                        let _ = writeln!(out, "  ~ {label}: reply answers {old} -> {new}{w}");
                    }
                    Change::Route { edge, old, new } => {
                        let _ = writeln!(out, "  ~ {label}: `{edge}` leads to {new}, was {old}{w}");
                    }
                }
            }
            if let Some(m) = &f.migration {
                let moved: Vec<String> = m
                    .map
                    .iter()
                    .enumerate()
                    .filter_map(|(o, n)| {
                        n.filter(|n| *n != o as StepId).map(|n| format!("{o}->{n}"))
                    })
                    .collect();
                let lost = m.unmapped();
                let mut line = String::from("  migrate:");
                if moved.is_empty() {
                    line.push_str(" step ids kept");
                } else {
                    let _ = write!(line, " {}", moved.join(" "));
                }
                if !lost.is_empty() {
                    let ids: Vec<String> = lost.iter().map(|i| i.to_string()).collect();
                    let _ = write!(line, "; no counterpart: {}", ids.join(", "));
                    let stuck: usize = f
                        .steps
                        .iter()
                        .filter(|s| s.new_step.is_none())
                        .filter_map(|s| s.waiting)
                        .sum();
                    if stuck > 0 {
                        let _ = write!(
                            line,
                            " ({stuck} waiting must stay on the old version or be ended)"
                        );
                    }
                }
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

/// The semantic diff of two programs.
pub fn diff(old: &Program, new: &Program) -> ProgramDiff {
    let mut program = Vec::new();
    if old.shopify_api_version != new.shopify_api_version {
        program.push(FieldChange {
            field: "shopify_api_version".into(),
            old: Some(old.shopify_api_version.clone()),
            new: Some(new.shopify_api_version.clone()),
        });
    }
    json_diff(
        "shop",
        &serde_json::to_value(&old.shop).expect("IR serialises"),
        &serde_json::to_value(&new.shop).expect("IR serialises"),
        &mut program,
    );
    json_diff(
        "policy",
        &serde_json::to_value(&old.policy).expect("IR serialises"),
        &serde_json::to_value(&new.policy).expect("IR serialises"),
        &mut program,
    );
    let mut names: Vec<&str> = old
        .flows
        .iter()
        .chain(&new.flows)
        .map(|f| f.name.as_str())
        .collect();
    names.sort();
    names.dedup();
    let flows = names
        .into_iter()
        .map(|n| match (old.flow(n), new.flow(n)) {
            (Some(a), Some(b)) => diff_flow(a, b),
            (Some(a), None) => FlowDiff {
                name: n.into(),
                status: FlowStatus::Removed,
                old_version: Some(a.version.clone()),
                new_version: None,
                header: vec![],
                steps: vec![],
                migration: None,
                waiting: None,
            },
            (None, Some(b)) => FlowDiff {
                name: n.into(),
                status: FlowStatus::Added,
                old_version: None,
                new_version: Some(b.version.clone()),
                header: vec![],
                steps: vec![],
                migration: None,
                waiting: None,
            },
            (None, None) => unreachable!("names come from the flows"),
        })
        .collect();
    ProgramDiff {
        old_hash: old.hash.clone(),
        new_hash: new.hash.clone(),
        program,
        flows,
    }
}

/// Leaf-level differences of two JSON values under `path`.
fn json_diff(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<FieldChange>) {
    use serde_json::Value;
    if a == b {
        return;
    }
    if let (Value::Object(x), Value::Object(y)) = (a, b) {
        let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let p = format!("{path}.{k}");
            match (x.get(k), y.get(k)) {
                (Some(u), Some(v)) => json_diff(&p, u, v, out),
                (u, v) => out.push(FieldChange {
                    field: p,
                    old: u.map(|u| u.to_string()),
                    new: v.map(|v| v.to_string()),
                }),
            }
        }
        return;
    }
    let show = |v: &Value| match v {
        Value::Null => None,
        v => Some(v.to_string()),
    };
    out.push(FieldChange {
        field: path.into(),
        old: show(a),
        new: show(b),
    });
}

fn header_changes(a: &Flow, b: &Flow) -> Vec<FieldChange> {
    let mut out = Vec::new();
    let mut push = |field: &str, o: Option<String>, n: Option<String>| {
        if o != n {
            out.push(FieldChange {
                field: field.into(),
                old: o,
                new: n,
            });
        }
    };
    push(
        "kind",
        Some(format!("{:?}", a.kind).to_lowercase()),
        Some(format!("{:?}", b.kind).to_lowercase()),
    );
    push(
        "description",
        Some(format!("{:?}", a.description)),
        Some(format!("{:?}", b.description)),
    );
    push(
        "trigger",
        Some(event_match(&a.trigger)),
        Some(event_match(&b.trigger)),
    );
    push("entry", Some(entry(&a.entry)), Some(entry(&b.entry)));
    // Exits are a set in effect: report each added or removed rule.
    for e in &a.exits {
        if !b.exits.contains(e) {
            push("exit", Some(format!("exit when {}", event_match(e))), None);
        }
    }
    for e in &b.exits {
        if !a.exits.contains(e) {
            push("exit", None, Some(format!("exit when {}", event_match(e))));
        }
    }
    push("goal", a.goal.as_ref().map(goal), b.goal.as_ref().map(goal));
    push(
        "when held",
        Some(format!("{:?}", a.held).to_lowercase()),
        Some(format!("{:?}", b.held).to_lowercase()),
    );
    out
}

fn event_match(e: &EventMatch) -> String {
    match &e.filter {
        Some(f) => format!("{} where {}", e.event, expr(f)),
        None => e.event.clone(),
    }
}

fn entry(e: &Entry) -> String {
    match e {
        Entry::OncePer(k) => format!("once per {}", expr(k)),
        Entry::AtMostOncePer { secs } => format!("at most once per {}", dur(*secs)),
        Entry::OnceEver => "once ever".into(),
        Entry::EveryTime => "every time".into(),
    }
}

fn goal(g: &Goal) -> String {
    match &g.filter {
        Some(f) => format!(
            "{} where {} within {}",
            g.event,
            expr(f),
            dur(g.within_secs)
        ),
        None => format!("{} within {}", g.event, dur(g.within_secs)),
    }
}

fn dur(secs: i64) -> String {
    crate::check::human_duration(secs)
}

/// The kind of a step: only steps of one kind may pair.
fn kind(s: &Step) -> u8 {
    match s {
        Step::Send { .. } => 0,
        Step::Wait { .. } => 1,
        Step::WaitUntil { .. } => 2,
        Step::WaitEvent { .. } => 3,
        Step::WaitReply { .. } => 4,
        Step::Branch { .. } => 5,
        Step::Split { .. } => 6,
        Step::Exit => 7,
        Step::End => 8,
    }
}

/// How alike two steps are: `None` when they cannot pair, else 10 for the same kind plus up to
/// 20 for alike contents (edges are not compared: they are what an insertion shifts).
fn similarity(a: &Step, b: &Step) -> Option<u32> {
    if kind(a) != kind(b) {
        return None;
    }
    let eq = |x: bool, w: u32| if x { w } else { 0 };
    let content = match (a, b) {
        (Step::Send { template: x, .. }, Step::Send { template: y, .. }) => {
            if x == y {
                20
            } else {
                let r = strsim::normalized_levenshtein(&template(x), &template(y));
                (r * 19.0).round() as u32
            }
        }
        (Step::Wait { secs: x, .. }, Step::Wait { secs: y, .. }) => eq(x == y, 20),
        (
            Step::WaitUntil {
                hour: h1,
                minute: m1,
                days: d1,
                ..
            },
            Step::WaitUntil {
                hour: h2,
                minute: m2,
                days: d2,
                ..
            },
        ) => eq((h1, m1) == (h2, m2), 10) + eq(d1 == d2, 10),
        (
            Step::WaitEvent {
                event: e1,
                filter: f1,
                timeout_secs: t1,
                ..
            },
            Step::WaitEvent {
                event: e2,
                filter: f2,
                timeout_secs: t2,
                ..
            },
        ) => eq(e1 == e2, 10) + eq(f1 == f2, 5) + eq(t1 == t2, 5),
        (
            Step::WaitReply {
                timeout_secs: t1,
                arms: a1,
                ..
            },
            Step::WaitReply {
                timeout_secs: t2,
                arms: a2,
                ..
            },
        ) => eq(answers(a1) == answers(a2), 12) + eq(t1 == t2, 8),
        (Step::Branch { cond: x, .. }, Step::Branch { cond: y, .. }) => eq(x == y, 20),
        (Step::Split { arms: x }, Step::Split { arms: y }) => {
            let names =
                |v: &[super::SplitArm]| v.iter().map(|a| a.name.clone()).collect::<Vec<_>>();
            let weights = |v: &[super::SplitArm]| v.iter().map(|a| a.weight).collect::<Vec<_>>();
            eq(names(x) == names(y), 12) + eq(weights(x) == weights(y), 8)
        }
        _ => 20,
    };
    Some(10 + content)
}

/// Pair the steps of two flows: a weighted LCS over their DFS (= id) orders. Returns the
/// aligned sequence: `(Some(old), Some(new))` pairs and unpaired `(Some(old), None)` /
/// `(None, Some(new))` steps, in order.
fn align(a: &[Step], b: &[Step]) -> Vec<(Option<StepId>, Option<StepId>)> {
    let (n, m) = (a.len(), b.len());
    // best[i][j]: the best score aligning a[i..] with b[j..].
    let mut best = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            let skip = best[i + 1][j].max(best[i][j + 1]);
            let take = similarity(&a[i], &b[j]).map(|s| s + best[i + 1][j + 1]);
            best[i][j] = take.map_or(skip, |t| t.max(skip));
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m {
            if let Some(s) = similarity(&a[i], &b[j]) {
                if best[i][j] == s + best[i + 1][j + 1] {
                    out.push((Some(i as StepId), Some(j as StepId)));
                    i += 1;
                    j += 1;
                    continue;
                }
            }
            // Removals first, then additions, as `diff` does.
            if best[i][j] == best[i + 1][j] {
                out.push((Some(i as StepId), None));
                i += 1;
            } else {
                out.push((None, Some(j as StepId)));
                j += 1;
            }
        } else if i < n {
            out.push((Some(i as StepId), None));
            i += 1;
        } else {
            out.push((None, Some(j as StepId)));
            j += 1;
        }
    }
    out
}

fn diff_flow(a: &Flow, b: &Flow) -> FlowDiff {
    let header = header_changes(a, b);
    let pairs = align(&a.steps, &b.steps);
    let mut map: Vec<Option<StepId>> = vec![None; a.steps.len()];
    let mut back: Vec<Option<StepId>> = vec![None; b.steps.len()];
    for (o, n) in &pairs {
        if let (Some(o), Some(n)) = (o, n) {
            map[*o as usize] = Some(*n);
            back[*n as usize] = Some(*o);
        }
    }
    let mut steps = Vec::new();
    let mut changed = Vec::new();
    for (o, n) in pairs {
        let push = |steps: &mut Vec<StepChange>, change: Change| {
            steps.push(StepChange {
                old_step: o,
                new_step: n,
                change,
                waiting: None,
            })
        };
        match (o, n) {
            (Some(o), Some(n)) => {
                let (x, y) = (&a.steps[o as usize], &b.steps[n as usize]);
                let before = steps.len();
                for c in content_changes(x, y) {
                    push(&mut steps, c);
                }
                if steps.len() > before {
                    changed.push(o);
                }
                for c in route_changes(x, y, &map, &back, a, b) {
                    push(&mut steps, c);
                }
            }
            (Some(o), None) => push(
                &mut steps,
                Change::Removed {
                    step: summary(&a.steps[o as usize]),
                },
            ),
            (None, Some(n)) => push(
                &mut steps,
                Change::Added {
                    step: summary(&b.steps[n as usize]),
                },
            ),
            (None, None) => {}
        }
    }
    let same = header.is_empty() && steps.is_empty() && a == b;
    let status = if same {
        FlowStatus::Unchanged
    } else {
        FlowStatus::Changed
    };
    let migration = (status == FlowStatus::Changed).then(|| StepMap {
        flow: a.name.clone(),
        old_version: a.version.clone(),
        new_version: b.version.clone(),
        map,
        changed,
    });
    FlowDiff {
        name: a.name.clone(),
        status,
        old_version: Some(a.version.clone()),
        new_version: Some(b.version.clone()),
        header,
        steps,
        migration,
        waiting: None,
    }
}

fn content_changes(x: &Step, y: &Step) -> Vec<Change> {
    let mut out = Vec::new();
    let timing = |o: String, n: String| Change::Timing { old: o, new: n };
    match (x, y) {
        (Step::Send { template: t1, .. }, Step::Send { template: t2, .. }) if t1 != t2 => {
            out.push(Change::Text {
                old: template(t1),
                new: template(t2),
            })
        }
        (Step::Wait { secs: s1, .. }, Step::Wait { secs: s2, .. }) if s1 != s2 => {
            out.push(timing(summary(x), summary(y)))
        }
        (Step::WaitUntil { .. }, Step::WaitUntil { .. }) if summary(x) != summary(y) => {
            out.push(timing(summary(x), summary(y)))
        }
        (
            Step::WaitEvent {
                event: e1,
                filter: f1,
                timeout_secs: t1,
                ..
            },
            Step::WaitEvent {
                event: e2,
                filter: f2,
                timeout_secs: t2,
                ..
            },
        ) => {
            if (e1, f1) != (e2, f2) {
                let m = |e: &String, f: &Option<Expr>| {
                    event_match(&EventMatch {
                        event: e.clone(),
                        filter: f.clone(),
                    })
                };
                out.push(Change::Event {
                    old: format!("wait for {}", m(e1, f1)),
                    new: format!("wait for {}", m(e2, f2)),
                });
            }
            if t1 != t2 {
                out.push(timing(
                    format!("within {}", dur(*t1)),
                    format!("within {}", dur(*t2)),
                ));
            }
        }
        (
            Step::WaitReply {
                timeout_secs: t1,
                arms: a1,
                ..
            },
            Step::WaitReply {
                timeout_secs: t2,
                arms: a2,
                ..
            },
        ) => {
            if answers(a1) != answers(a2) {
                out.push(Change::Answers {
                    old: answers(a1),
                    new: answers(a2),
                });
            }
            if t1 != t2 {
                out.push(timing(
                    format!("wait reply within {}", dur(*t1)),
                    format!("wait reply within {}", dur(*t2)),
                ));
            }
        }
        (Step::Branch { cond: c1, .. }, Step::Branch { cond: c2, .. }) if c1 != c2 => {
            out.push(Change::Condition {
                old: expr(c1),
                new: expr(c2),
            })
        }
        (Step::Split { arms: s1 }, Step::Split { arms: s2 }) => {
            let (o, n) = (split_arms(s1), split_arms(s2));
            if o != n {
                out.push(Change::Weights { old: o, new: n });
            }
        }
        _ => {}
    }
    out
}

/// Edges of a step with stable labels: `(key, label, target)`.
fn edges(s: &Step) -> Vec<(String, String, StepId)> {
    match s {
        Step::Send { next, .. } | Step::Wait { next, .. } | Step::WaitUntil { next, .. } => {
            vec![("next".into(), "next".into(), *next)]
        }
        Step::WaitEvent {
            on_event,
            on_timeout,
            ..
        } => vec![
            ("received".into(), "received".into(), *on_event),
            ("timeout".into(), "timeout".into(), *on_timeout),
        ],
        Step::WaitReply {
            arms,
            other,
            on_timeout,
            ..
        } => {
            let mut v: Vec<(String, String, StepId)> = arms
                .iter()
                .enumerate()
                .map(|(i, a)| (format!("arm {i}"), quoted(&a.answers), a.next))
                .collect();
            v.push(("other".into(), "other".into(), *other));
            v.push(("timeout".into(), "timeout".into(), *on_timeout));
            v
        }
        Step::Branch {
            then, otherwise, ..
        } => vec![
            ("yes".into(), "yes".into(), *then),
            ("no".into(), "no".into(), *otherwise),
        ],
        Step::Split { arms } => arms
            .iter()
            .map(|a| (a.name.clone(), a.name.clone(), a.next))
            .collect(),
        Step::Exit | Step::End => vec![],
    }
}

/// Edges of a paired step that now lead to another step that exists in both versions. An edge
/// into an added or out of a removed step is already told by that step's own line.
fn route_changes(
    x: &Step,
    y: &Step,
    map: &[Option<StepId>],
    back: &[Option<StepId>],
    a: &Flow,
    b: &Flow,
) -> Vec<Change> {
    let old_edges = edges(x);
    let mut out = Vec::new();
    for (key, label, to) in edges(y) {
        let Some((_, _, from)) = old_edges.iter().find(|(k, _, _)| *k == key) else {
            continue;
        };
        let (Some(mapped), Some(_)) = (map[*from as usize], back[to as usize]) else {
            continue;
        };
        if mapped != to {
            out.push(Change::Route {
                edge: label,
                old: format!(
                    "step {from} ({})",
                    clip(&summary(&a.steps[*from as usize]), 40)
                ),
                new: format!("step {to} ({})", clip(&summary(&b.steps[to as usize]), 40)),
            });
        }
    }
    out
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n).collect::<String>() + "..."
    }
}

fn quoted(answers: &[String]) -> String {
    answers
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(" | ")
}

fn answers(arms: &[super::ReplyArm]) -> String {
    let v: Vec<String> = arms.iter().map(|a| quoted(&a.answers)).collect();
    format!("[{}]", v.join(", "))
}

fn split_arms(arms: &[super::SplitArm]) -> String {
    arms.iter()
        .map(|a| format!("{}% {}", pct(a.weight), a.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pct(w: u32) -> String {
    if w.is_multiple_of(100) {
        (w / 100).to_string()
    } else {
        format!("{}.{:02}", w / 100, w % 100)
            .trim_end_matches('0')
            .to_string()
    }
}

/// One line describing a step, in the language's own words.
pub fn summary(s: &Step) -> String {
    match s {
        Step::Send { template: t, .. } => {
            let text = template(t).replace('\n', " ");
            format!("send sms {:?}", clip(&text, 60))
        }
        Step::Wait { secs, .. } => format!("wait {}", dur(*secs)),
        Step::WaitUntil {
            hour, minute, days, ..
        } => {
            let d = if days.is_empty() {
                String::new()
            } else {
                format!(" on {}", days_label(days))
            };
            format!("wait until {hour:02}:{minute:02} local{d}")
        }
        Step::WaitEvent {
            event,
            filter,
            timeout_secs,
            ..
        } => {
            let m = event_match(&EventMatch {
                event: event.clone(),
                filter: filter.clone(),
            });
            if *timeout_secs > 0 {
                format!("wait for {m} within {}", dur(*timeout_secs))
            } else {
                format!("wait for {m}")
            }
        }
        Step::WaitReply {
            timeout_secs, arms, ..
        } => format!("wait reply within {} {}", dur(*timeout_secs), answers(arms)),
        Step::Branch { cond, .. } => format!("if {}", expr(cond)),
        Step::Split { arms } => format!("split {}", split_arms(arms)),
        Step::Exit => "exit".into(),
        Step::End => "end".into(),
    }
}

fn days_label(days: &[u8]) -> String {
    const N: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    match days {
        [0, 1, 2, 3, 4] => "weekdays".into(),
        [5, 6] => "weekends".into(),
        _ => days
            .iter()
            .map(|d| N[*d as usize % 7])
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// A template as source text: literal text with `{{ expr | filter(args) }}` holes.
pub fn template(t: &Template) -> String {
    let mut s = String::new();
    for p in &t.parts {
        match p {
            TemplatePart::Text(text) => s.push_str(text),
            TemplatePart::Interp { expr: e, filters } => {
                s.push_str("{{ ");
                s.push_str(&expr(e));
                for f in filters {
                    s.push_str(" | ");
                    s.push_str(&f.name);
                    if !f.args.is_empty() {
                        let args: Vec<String> = f.args.iter().map(expr).collect();
                        let _ = write!(s, "({})", args.join(", "));
                    }
                }
                s.push_str(" }}");
            }
        }
    }
    s
}

/// An expression as source text (segments appear inlined, as the IR holds them).
pub fn expr(e: &Expr) -> String {
    expr_prec(e, 0)
}

fn prec(op: super::BinOp) -> u8 {
    use super::BinOp::*;
    match op {
        Or => 1,
        And => 2,
        Eq | Ne | Lt | Le | Gt | Ge | In | NotIn | StartsWith | EndsWith | Contains => 3,
        Add | Sub => 4,
        Mul | Div => 5,
    }
}

fn expr_prec(e: &Expr, outer: u8) -> String {
    match e {
        Expr::Plugin(name) => format!("plugin {name}"),
        Expr::Lit(l) => match l {
            Lit::Bool(b) => b.to_string(),
            Lit::Int(n) => n.to_string(),
            Lit::Decimal(d) => d.clone(),
            Lit::Str(s) => format!("'{}'", s.replace('\'', "\\'")),
            Lit::Duration(s) => dur(*s),
            Lit::TimeOfDay { hour, minute } => format!("{hour:02}:{minute:02}"),
        },
        Expr::Path(root, p) => {
            let r = match root {
                Root::Event => "event".to_string(),
                Root::Entry => "flow.entry".to_string(),
                Root::Profile => "profile".to_string(),
                Root::Flow => "flow".to_string(),
                Root::Shop => "shop".to_string(),
                Root::Var(v) => v.clone(),
            };
            std::iter::once(r)
                .chain(p.iter().cloned())
                .collect::<Vec<_>>()
                .join(".")
        }
        Expr::Now => "now".into(),
        Expr::Typed(_, inner) => expr_prec(inner, outer),
        Expr::Unary(UnOp::Not, inner) => {
            let s = format!("not {}", expr_prec(inner, 6));
            if outer > 2 {
                format!("({s})")
            } else {
                s
            }
        }
        Expr::Unary(UnOp::Neg, inner) => format!("-{}", expr_prec(inner, 6)),
        Expr::Binary(op, l, r) => {
            let p = prec(*op);
            let s = format!(
                "{} {} {}",
                expr_prec(l, p),
                op.as_str(),
                expr_prec(r, p + 1)
            );
            if p < outer {
                format!("({s})")
            } else {
                s
            }
        }
        Expr::Quant {
            quant,
            var,
            list,
            pred,
        } => {
            let q = match quant {
                Quant::Any => "any",
                Quant::All => "all",
                Quant::Count => "count",
            };
            format!("{q}({var} in {}: {})", expr(list), expr(pred))
        }
        Expr::List(items) => {
            let v: Vec<String> = items.iter().map(expr).collect();
            format!("[{}]", v.join(", "))
        }
        Expr::Call(name, args) => {
            let v: Vec<String> = args.iter().map(expr).collect();
            format!("{name}({})", v.join(", "))
        }
    }
}
