//! Flow structure and messages: required header items, events, durations, reachability, wait
//! timeouts, reply and split branches, opt-out wording, segment budgets, UCS-2, quiet hours.
//! Returns a summary per flow for the cross-flow budget.

use super::exprs::{suggest, Ctx, Scope};
use crate::compliance::QuietHours;
use crate::diagnostic::{Diagnostic, SourceMap, Span};
use crate::sms;
use crate::syntax::ast::*;
use chrono::Weekday;

/// What the cross-flow budget needs to know about one flow.
pub struct FlowSummary {
    pub name: String,
    pub span: Span,
    pub marketing: bool,
    /// Worst-case number of messages one instance can send inside any 24 h.
    pub max_per_24h: usize,
}

/// CTIA opt-out, opt-in and help keywords; a reply branch can never receive them because the
/// engine consumes them first (and the FCC rule in force since 2025-04-11 makes opt-out words
/// a revocation wherever they appear as the whole reply).
pub const RESERVED_REPLIES: &[&str] = &[
    "stop",
    "stopall",
    "unsubscribe",
    "cancel",
    "end",
    "quit",
    "revoke",
    "optout",
    "opt out",
    "start",
    "yes",
    "unstop",
    "help",
    "info",
];

const PROMO_WORDS: &[&str] = &[
    "% off",
    "discount",
    "coupon",
    "promo",
    "sale",
    "bestseller",
    "also love",
    "free shipping",
];

/// Trim, case fold and collapse inner whitespace: how replies and answers are compared.
pub fn normalize_answer(s: &str) -> String {
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

pub fn check_flow(
    ctx: &Ctx,
    f: &FlowDef,
    map: &SourceMap,
    diags: &mut Vec<Diagnostic>,
) -> FlowSummary {
    let mut kind = None;
    let mut trigger: Option<(&EventRef, &Option<Expr>)> = None;
    let mut firsts: std::collections::BTreeMap<&'static str, Span> = Default::default();
    let mut steps: Vec<&Step> = Vec::new();
    let mut has_entry = false;
    for m in &f.members {
        let key = match &m.kind {
            MemberKind::Description(_) => Some("description"),
            MemberKind::Kind(_) => Some("kind"),
            MemberKind::Trigger { .. } => Some("trigger"),
            MemberKind::Entry(_) => Some("entry"),
            MemberKind::Goal { .. } => Some("goal"),
            MemberKind::Held(_) => Some("when held"),
            _ => None,
        };
        if let Some(key) = key {
            if let Some(first) = firsts.get(key) {
                diags.push(
                    Diagnostic::new(
                        "AC0307",
                        format!("`{key}` is given more than once in flow `{}`", f.name.name),
                    )
                    .primary(m.span, "repeated here")
                    .secondary(*first, "first given here")
                    .help(format!("a flow has one `{key}`; remove one of them")),
                );
                continue;
            }
            firsts.insert(key, m.span);
        }
        match &m.kind {
            MemberKind::Kind(k) => kind = Some(*k),
            MemberKind::Trigger { event, filter } => trigger = Some((event, filter)),
            MemberKind::Entry(_) => has_entry = true,
            MemberKind::Step(s) => steps.push(s),
            _ => {}
        }
    }
    for (key, example) in [
        ("kind", "kind marketing"),
        ("trigger", "trigger order.created"),
        ("entry", "entry once per event.order_id"),
    ] {
        let present = match key {
            "kind" => kind.is_some(),
            "trigger" => trigger.is_some(),
            _ => has_entry,
        };
        if !present {
            diags.push(
                Diagnostic::new("AC0307", format!("flow `{}` has no `{key}`", f.name.name))
                    .primary(f.name.span, format!("missing `{key}`"))
                    .help(format!("add a line such as `{example}`")),
            );
        }
    }
    let marketing = kind == Some(FlowKind::Marketing);
    let trigger_event =
        trigger.and_then(|(ev, _)| check_event(ctx, ev, diags).then(|| ev.name.clone()));
    let step_scope = Scope {
        event: trigger_event.clone(),
        entry: trigger_event.clone(),
        vars: vec![],
    };

    for m in &f.members {
        match &m.kind {
            MemberKind::Trigger {
                filter: Some(e), ..
            } => {
                let s = Scope {
                    event: trigger_event.clone(),
                    entry: trigger_event.clone(),
                    vars: vec![],
                };
                ctx.condition(e, &s, diags);
            }
            MemberKind::Entry(EntryRule::OncePer(e)) => {
                ctx.expr(e, &step_scope, diags);
            }
            MemberKind::Entry(EntryRule::AtMostOncePer(d)) => {
                duration_bounds(d, "an entry interval", 3600, 365 * 86_400, diags)
            }
            MemberKind::Exit { event, filter } | MemberKind::Goal { event, filter, .. } => {
                let ok = check_event(ctx, event, diags);
                if let Some(e) = filter {
                    let s = Scope {
                        event: ok.then(|| event.name.clone()),
                        entry: trigger_event.clone(),
                        vars: vec![],
                    };
                    ctx.condition(e, &s, diags);
                }
                if let MemberKind::Goal { within, .. } = &m.kind {
                    duration_bounds(within, "a goal window", 3600, 90 * 86_400, diags);
                }
            }
            _ => {}
        }
    }

    let owned: Vec<Step> = steps.iter().map(|s| (*s).clone()).collect();
    let mut sc = StepChecker {
        ctx,
        scope: step_scope,
        diags,
        map,
        marketing,
        trigger: trigger_event.clone(),
    };
    sc.block(&owned);

    // Paths through the flow: first sends, quiet-hour placements, the 24 h count.
    let mut paths = Vec::new();
    enumerate(&owned, Vec::new(), &mut paths, &[]);
    let mut any_send = false;
    let mut max_per_24h = 0;
    let rules = QuietHours::builtin().rules_for(None, None);
    let mut reported_first = std::collections::HashSet::new();
    let mut reported_quiet = std::collections::HashSet::new();
    for path in &paths {
        let mut first_seen = false;
        for (i, ev) in path.iter().enumerate() {
            if let Ev::Send(t) = ev {
                any_send = true;
                if marketing && !first_seen && !has_opt_out(t) && reported_first.insert(t.span) {
                    sc.diags.push(
                        Diagnostic::new("AC0401", "the first marketing message of this flow has no opt-out wording")
                            .primary(t.span, "can be the first message this flow sends")
                            .help("add \"Reply STOP to opt out.\" (CTIA: the first marketing message must say how to opt out)"),
                    );
                }
                first_seen = true;
                if marketing && i > 0 {
                    if let Ev::Until(tl, days) = &path[i - 1] {
                        let time = chrono::NaiveTime::from_hms_opt(tl.hour, tl.minute, 0);
                        let wd = weekdays(days);
                        if let Some(time) = time {
                            if rules.quiet_on_all(time, &wd) && reported_quiet.insert(tl.span) {
                                sc.diags.push(
                                    Diagnostic::new(
                                        "AC0404",
                                        format!("this send always lands in quiet hours ({:02}:{:02} local)", tl.hour, tl.minute),
                                    )
                                    .primary(tl.span, format!("{:02}:{:02} is outside {}", tl.hour, tl.minute, rules.describe()))
                                    .secondary(t.span, "sent at that time")
                                    .help("pick a time inside 09:00-20:00 local, which every US state allows")
                                    .note("TCPA (47 CFR 64.1200(c)(1)) allows 08:00-21:00 recipient local time; several states are stricter"),
                                );
                            }
                        }
                    }
                }
            }
        }
        max_per_24h = max_per_24h.max(count_in_24h(path));
    }
    if !any_send {
        sc.diags.push(
            Diagnostic::new(
                "AC0308",
                format!("flow `{}` never sends a message", f.name.name),
            )
            .primary(f.name.span, "no `send sms` on any path"),
        );
    }
    FlowSummary {
        name: f.name.name.clone(),
        span: f.name.span,
        marketing,
        max_per_24h,
    }
}

fn weekdays(days: &[Ident]) -> Vec<Weekday> {
    use Weekday::*;
    let mut out = Vec::new();
    for d in days {
        match d.name.as_str() {
            "weekdays" => out.extend([Mon, Tue, Wed, Thu, Fri]),
            "weekends" => out.extend([Sat, Sun]),
            "mon" => out.push(Mon),
            "tue" => out.push(Tue),
            "wed" => out.push(Wed),
            "thu" => out.push(Thu),
            "fri" => out.push(Fri),
            "sat" => out.push(Sat),
            _ => out.push(Sun),
        }
    }
    if out.is_empty() {
        out = vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun];
    }
    out
}

fn has_opt_out(t: &Template) -> bool {
    t.parts.iter().any(|p| match p {
        TemplatePart::Text { text, .. } => text
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| w.eq_ignore_ascii_case("stop")),
        _ => false,
    })
}

fn check_event(ctx: &Ctx, ev: &EventRef, diags: &mut Vec<Diagnostic>) -> bool {
    if ctx.schemas.event(&ev.name).is_some() {
        return true;
    }
    let names = ctx.schemas.all_event_names();
    let mut d = Diagnostic::new("AC0103", format!("unknown event `{}`", ev.name))
        .primary(ev.span, "not a known event");
    d = match suggest(&ev.name, names.iter().copied()) {
        Some(s) => d.help(format!("did you mean `{s}`?")),
        None => d.help("declare custom events under [events.NAME] in aftercart.toml"),
    };
    diags.push(d);
    false
}

fn duration_bounds(d: &DurationLit, what: &str, min: i64, max: i64, diags: &mut Vec<Diagnostic>) {
    if d.secs < min || d.secs > max {
        diags.push(
            Diagnostic::new("AC0301", format!("{what} of {} is out of bounds", d.text)).primary(
                d.span,
                format!(
                    "must be between {} and {}",
                    human_secs(min),
                    human_secs(max)
                ),
            ),
        );
    }
}

pub fn human_secs(s: i64) -> String {
    if s > 0 && s <= 24 * 3600 && s % 3600 == 0 {
        return format!("{}h", s / 3600);
    }
    if s % 604_800 == 0 && s >= 604_800 && s % 86_400 != 0 {
        format!("{}w", s / 604_800)
    } else if s % 86_400 == 0 && s > 0 {
        format!("{}d", s / 86_400)
    } else if s % 3600 == 0 && s > 0 {
        format!("{}h", s / 3600)
    } else if s % 60 == 0 && s > 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

struct StepChecker<'a, 'c> {
    ctx: &'a Ctx<'c>,
    scope: Scope,
    diags: &'a mut Vec<Diagnostic>,
    map: &'a SourceMap,
    marketing: bool,
    trigger: Option<String>,
}

/// Does a block always end the flow (every path reaches `exit`)?
fn terminates(steps: &[Step]) -> bool {
    steps.iter().any(|s| match &s.kind {
        StepKind::Exit => true,
        StepKind::If {
            branches,
            otherwise: Some(o),
        } => branches.iter().all(|(_, b)| terminates(&b.steps)) && terminates(&o.steps),
        StepKind::Split { arms } => {
            !arms.is_empty() && arms.iter().all(|a| terminates(&a.body.steps))
        }
        StepKind::WaitFor { arms, .. } => {
            let has = |p: fn(&Pattern) -> bool| arms.iter().any(|a| p(&a.pattern));
            has(|p| matches!(p, Pattern::Received))
                && has(|p| matches!(p, Pattern::Timeout))
                && arms.iter().all(|a| terminates(&a.body.steps))
        }
        StepKind::WaitReply { arms, .. } => {
            let has = |p: fn(&Pattern) -> bool| arms.iter().any(|a| p(&a.pattern));
            has(|p| matches!(p, Pattern::Other))
                && has(|p| matches!(p, Pattern::Timeout))
                && arms.iter().all(|a| terminates(&a.body.steps))
        }
        _ => false,
    })
}

impl StepChecker<'_, '_> {
    fn block(&mut self, steps: &[Step]) {
        let mut reported = false;
        for (i, s) in steps.iter().enumerate() {
            // Unreachable steps are still checked, as rustc type-checks dead code: lowering
            // compiles them too, and an unknown name there must be an error, not a crash.
            self.step(s);
            if !reported && terminates(std::slice::from_ref(s)) && i + 1 < steps.len() {
                let rest = steps[i + 1].span.to(steps[steps.len() - 1].span);
                self.diags.push(
                    Diagnostic::new("AC0302", "unreachable step")
                        .primary(rest, "never runs")
                        .secondary(s.span, "every path through this step ends the flow")
                        .help("remove the unreachable steps or the `exit` before them"),
                );
                reported = true;
            }
        }
    }

    fn step(&mut self, s: &Step) {
        match &s.kind {
            StepKind::Send { template } => self.send(template),
            StepKind::Wait { duration } => {
                duration_bounds(duration, "a wait", 60, 365 * 86_400, self.diags)
            }
            StepKind::WaitUntil { time, .. } => {
                if time.hour > 23 || time.minute > 59 {
                    self.diags.push(
                        Diagnostic::new(
                            "AC0309",
                            format!("`{:02}:{:02}` is not a time of day", time.hour, time.minute),
                        )
                        .primary(time.span, "hours go from 00 to 23, minutes from 00 to 59"),
                    );
                }
            }
            StepKind::WaitFor {
                event,
                filter,
                within,
                arms,
            } => {
                let ok = check_event(self.ctx, event, self.diags);
                if let Some(e) = filter {
                    let sc = Scope {
                        event: ok.then(|| event.name.clone()),
                        entry: self.trigger.clone(),
                        vars: vec![],
                    };
                    self.ctx.condition(e, &sc, self.diags);
                }
                self.timeout(s, within.as_ref(), arms, "wait for");
                for a in arms {
                    match &a.pattern {
                        Pattern::Received | Pattern::Timeout => {}
                        _ => self.diags.push(
                            Diagnostic::new(
                                "AC0001",
                                "`wait for` has only `received` and `timeout` branches",
                            )
                            .primary(a.pattern_span, "not a branch of `wait for`")
                            .help("answers and `other` belong to `wait reply`"),
                        ),
                    }
                }
                self.dup_special(arms);
                for a in arms {
                    self.block(&a.body.steps);
                }
            }
            StepKind::WaitReply { within, arms } => {
                self.timeout(s, within.as_ref(), arms, "wait reply");
                self.dup_special(arms);
                let mut seen: std::collections::BTreeMap<String, Span> = Default::default();
                for a in arms {
                    match &a.pattern {
                        Pattern::Received => self.diags.push(
                            Diagnostic::new(
                                "AC0001",
                                "`wait reply` branches are answers, `other` or `timeout`",
                            )
                            .primary(a.pattern_span, "`received` belongs to `wait for`"),
                        ),
                        Pattern::Answers(list) => {
                            for ans in list {
                                let n = normalize_answer(&ans.value);
                                if RESERVED_REPLIES.contains(&n.as_str()) {
                                    self.diags.push(
                                        Diagnostic::new("AC0305", format!("\"{}\" is a reserved keyword and can never reach this branch", ans.value))
                                            .primary(ans.span, "handled by aftercart before any flow sees it")
                                            .help("STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT opt out; START, YES, UNSTOP opt in; HELP, INFO get the help reply (CTIA)"),
                                    );
                                } else if n.is_empty() {
                                    self.diags.push(
                                        Diagnostic::new(
                                            "AC0304",
                                            "an empty answer can never match",
                                        )
                                        .primary(ans.span, "empty after trimming"),
                                    );
                                } else if let Some(first) = seen.get(&n) {
                                    self.diags.push(
                                        Diagnostic::new("AC0304", format!("answer \"{}\" is already handled by an earlier branch", ans.value))
                                            .primary(ans.span, "never reaches this branch")
                                            .secondary(*first, "matched here first")
                                            .help("answers are compared after trimming and case folding; remove the duplicate"),
                                    );
                                } else {
                                    seen.insert(n, ans.span);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                for a in arms {
                    self.block(&a.body.steps);
                }
            }
            StepKind::If {
                branches,
                otherwise,
            } => {
                for (c, b) in branches {
                    self.ctx.condition(c, &self.scope, self.diags);
                    self.block(&b.steps);
                }
                if let Some(o) = otherwise {
                    self.block(&o.steps);
                }
            }
            StepKind::Split { arms } => {
                let sum: u32 = arms.iter().map(|a| a.weight).sum();
                if sum != 10_000 {
                    let span = arms
                        .first()
                        .map(|a| a.weight_span.to(arms[arms.len() - 1].weight_span))
                        .unwrap_or(s.span);
                    self.diags.push(
                        Diagnostic::new(
                            "AC0306",
                            format!("split weights sum to {}%, not 100%", fmt_weight(sum)),
                        )
                        .primary(span, format!("these add up to {}%", fmt_weight(sum)))
                        .help("adjust the weights so that they add up to exactly 100%"),
                    );
                }
                let mut names: std::collections::BTreeMap<&str, Span> = Default::default();
                for a in arms {
                    if let Some(first) = names.get(a.name.name.as_str()) {
                        self.diags.push(
                            Diagnostic::new(
                                "AC0105",
                                format!("variant `{}` is named twice", a.name.name),
                            )
                            .primary(a.name.span, "again here")
                            .secondary(*first, "first here"),
                        );
                    } else {
                        names.insert(&a.name.name, a.name.span);
                    }
                    self.block(&a.body.steps);
                }
            }
            StepKind::Exit => {}
        }
    }

    fn dup_special(&mut self, arms: &[Arm]) {
        let mut seen: std::collections::BTreeMap<&str, Span> = Default::default();
        for a in arms {
            let key = match a.pattern {
                Pattern::Received => "received",
                Pattern::Timeout => "timeout",
                Pattern::Other => "other",
                Pattern::Answers(_) => continue,
            };
            if let Some(first) = seen.get(key) {
                self.diags.push(
                    Diagnostic::new("AC0304", format!("a second `{key}` branch can never run"))
                        .primary(a.pattern_span, "shadowed")
                        .secondary(*first, "this one runs"),
                );
            } else {
                seen.insert(key, a.pattern_span);
            }
        }
    }

    fn timeout(&mut self, s: &Step, within: Option<&DurationLit>, arms: &[Arm], what: &str) {
        let has_timeout = arms.iter().any(|a| a.pattern == Pattern::Timeout);
        match within {
            None => self.diags.push(
                Diagnostic::new("AC0303", format!("`{what}` has no time limit"))
                    .primary(s.span, "could wait forever")
                    .help(format!("add `within 3d` (or another limit) after `{what} ...` and a `timeout => ...` branch")),
            ),
            Some(d) => {
                duration_bounds(d, "a wait limit", 60, 90 * 86_400, self.diags);
                if !has_timeout {
                    self.diags.push(
                        Diagnostic::new("AC0303", format!("`{what}` has no `timeout` branch"))
                            .primary(d.span, "what happens when this runs out?")
                            .help("add a branch such as `timeout => exit`"),
                    );
                }
            }
        }
    }

    fn send(&mut self, t: &Template) {
        let bounds = self.ctx.template(t, &self.scope, self.diags);
        let literal: String = t
            .parts
            .iter()
            .filter_map(|p| match p {
                TemplatePart::Text { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let count = sms::count(&literal);
        let raw_src = self.map.snippet(t.span);
        if let Some((_, ch)) = count.ucs2_trigger {
            let at = raw_src
                .find(ch)
                .map(|i| {
                    Span::new(
                        t.span.file,
                        t.span.start + i,
                        t.span.start + i + ch.len_utf8(),
                    )
                })
                .unwrap_or(t.span);
            self.diags.push(
                Diagnostic::new("AC0403", format!("this message is sent as UCS-2 because of '{ch}' (U+{:04X})", ch as u32))
                    .primary(at, "not in the GSM-7 alphabet")
                    .help("UCS-2 fits 70 characters per segment (67 per part) instead of 160 (153): replace the character if you can")
                    .note("GSM 03.38 default alphabet and extension table"),
            );
        }
        let max = self.ctx.project.policy.max_segments as usize;
        let mut units = count.units;
        let mut culprit = None;
        if sms::max_segments_for(units, count.encoding) > max {
            culprit = Some(None);
        }
        for b in &bounds {
            units += b.max_chars;
            if culprit.is_none() && sms::max_segments_for(units, count.encoding) > max {
                culprit = Some(Some(b.clone()));
            }
        }
        if let Some(c) = culprit {
            let segs = sms::max_segments_for(units, count.encoding);
            let (single, per) = sms::limits(count.encoding);
            let enc = if count.encoding == sms::Encoding::Gsm7 {
                "GSM-7"
            } else {
                "UCS-2"
            };
            let mut d = Diagnostic::new(
                "AC0402",
                format!("this message can take {segs} segments, above the budget of {max}"),
            );
            d = match c {
                Some(b) => d
                    .primary(
                        b.span,
                        format!("`{}` can be up to {} characters", b.label, b.max_chars),
                    )
                    .secondary(t.span, format!("up to {units} {enc} units")),
                None => d.primary(
                    t.span,
                    format!("the fixed text alone is {} {enc} units", count.units),
                ),
            };
            d = d
                .help("shorten the text, bound the variable with `| truncate(n)`, or raise `max_segments` in aftercart.toml")
                .note(format!("{enc}: {single} units in one segment, {per} per part when split"));
            self.diags.push(d);
        }
        if !self.marketing {
            let lower = literal.to_lowercase();
            if let Some(w) = PROMO_WORDS.iter().find(|w| lower.contains(*w)) {
                self.diags.push(
                    Diagnostic::new("AC0406", format!("a transactional message mentions \"{w}\""))
                        .primary(t.span, "reads as a promotion")
                        .help("transactional messages must not carry promotions: move the offer to a marketing flow"),
                );
            }
        }
        if self.ctx.project.shop.link_base.is_none() {
            for p in &t.parts {
                if let TemplatePart::Interp { expr, span, .. } = p {
                    if matches!(&expr.kind, ExprKind::Call(n, _) if n.name == "link") {
                        self.diags.push(
                            Diagnostic::new("AC0407", "tracked link without a link base URL")
                                .primary(*span, "sent as the raw URL, without click tracking")
                                .help("set `link_base = \"https://...\"` under [shop] in aftercart.toml"),
                        );
                    }
                }
            }
        }
    }
}

fn fmt_weight(w: u32) -> String {
    if w.is_multiple_of(100) {
        (w / 100).to_string()
    } else {
        format!("{}.{:02}", w / 100, w % 100)
    }
}

/// One thing on a path through a flow, for the path analyses.
#[derive(Clone)]
enum Ev<'a> {
    Send(&'a Template),
    /// At least this many seconds pass.
    Delay(i64),
    /// A wait until a local time (no minimum delay).
    Until(&'a TimeLit, &'a [Ident]),
}

const MAX_PATHS: usize = 512;

/// Every path through `steps` followed by `rest` (the continuation after the enclosing block).
fn enumerate<'a>(
    steps: &'a [Step],
    prefix: Vec<Ev<'a>>,
    out: &mut Vec<Vec<Ev<'a>>>,
    rest: &[&'a [Step]],
) {
    if out.len() >= MAX_PATHS {
        return;
    }
    let Some((s, tail)) = steps.split_first() else {
        match rest.split_last() {
            Some((next, outer)) => enumerate(next, prefix, out, outer),
            None => out.push(prefix),
        }
        return;
    };
    let mut cont: Vec<&'a [Step]> = rest.to_vec();
    cont.push(tail);
    let mut p = prefix;
    match &s.kind {
        StepKind::Send { template } => {
            p.push(Ev::Send(template));
            enumerate(tail, p, out, rest);
        }
        StepKind::Wait { duration } => {
            p.push(Ev::Delay(duration.secs));
            enumerate(tail, p, out, rest);
        }
        StepKind::WaitUntil { time, days } => {
            p.push(Ev::Until(time, days));
            enumerate(tail, p, out, rest);
        }
        StepKind::Exit => out.push(p),
        StepKind::If {
            branches,
            otherwise,
        } => {
            for (_, b) in branches {
                enumerate(&b.steps, p.clone(), out, &cont);
            }
            match otherwise {
                Some(o) => enumerate(&o.steps, p, out, &cont),
                None => enumerate(tail, p, out, rest),
            }
        }
        StepKind::Split { arms } => {
            for a in arms {
                enumerate(&a.body.steps, p.clone(), out, &cont);
            }
        }
        StepKind::WaitFor { within, arms, .. } | StepKind::WaitReply { within, arms } => {
            let mut saw_received = false;
            for a in arms {
                let mut q = p.clone();
                if a.pattern == Pattern::Timeout {
                    q.push(Ev::Delay(within.as_ref().map(|d| d.secs).unwrap_or(0)));
                }
                saw_received |= a.pattern == Pattern::Received;
                enumerate(&a.body.steps, q, out, &cont);
            }
            if matches!(s.kind, StepKind::WaitFor { .. }) && !saw_received {
                enumerate(tail, p, out, rest);
            }
        }
    }
}

/// The most sends on one path that can fall inside one 24 h window (using minimum delays).
fn count_in_24h(path: &[Ev]) -> usize {
    let mut times = Vec::new();
    let mut t = 0i64;
    for ev in path {
        match ev {
            Ev::Delay(d) => t += d,
            Ev::Send(_) => times.push(t),
            Ev::Until(..) => {}
        }
    }
    let mut best = 0;
    for i in 0..times.len() {
        let n = times[i..]
            .iter()
            .take_while(|&&x| x - times[i] < 86_400)
            .count();
        best = best.max(n);
    }
    best
}
