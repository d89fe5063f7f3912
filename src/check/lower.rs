//! Lowering a checked project to the IR. It cannot fail: it runs only when the checker found no
//! errors, so a failure here is a bug. Segments are inlined; blocks become a step graph whose
//! ids follow source order (step 0 first); the hash covers behaviour only, never layout.

use super::exprs::{Ctx, Scope};
use crate::ir::{self, Expr as IExpr, Lit, Root, StepId, Ty};
use crate::syntax::ast::{self, EntryRule, ExprKind, MemberKind, Pattern, StepKind, TemplatePart};

pub fn lower(ctx: &Ctx, flows: &[&ast::FlowDef]) -> ir::Program {
    let mut out = Vec::new();
    for f in flows {
        out.push(lower_flow(ctx, f));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    let mut shop = ctx.project.shop.clone();
    shop.values
        .entry("name".into())
        .or_insert_with(|| shop.name.clone());
    let mut p = ir::Program {
        ir_version: ir::IR_VERSION,
        hash: String::new(),
        shopify_api_version: ctx.schemas.api_version.clone(),
        shop,
        policy: ctx.project.policy.clone(),
        plugins: ctx.plugins.values().cloned().collect(),
        flows: out,
        catalog: ctx.project.products.clone(),
    };
    // The same text `Program::compute_hash` hashes (it clones the whole program to blank the
    // hash field, which is already blank here): no copy, and streamed into the hasher.
    p.hash = json_sha256_hex(&p);
    debug_assert_eq!(p.hash, p.compute_hash());
    p
}

/// `ir::sha256_hex` of `value`'s JSON, with the JSON written straight into the hasher rather
/// than into a buffer first (the whole program's JSON is megabytes of fresh pages on a big
/// project).
fn json_sha256_hex(value: &impl serde::Serialize) -> String {
    use sha2::{Digest, Sha256};
    use std::fmt::Write as _;
    let mut h = Sha256::new();
    serde_json::to_writer(&mut h, value).expect("IR serialises");
    let mut hex = String::with_capacity(64);
    for b in h.finalize() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

struct L<'a, 'c, 'f> {
    ctx: &'a Ctx<'c>,
    /// The trigger's event name, borrowed from the AST (read for every step and path).
    trigger: Option<&'f str>,
    steps: Vec<ir::Step>,
}

fn lower_flow(ctx: &Ctx, f: &ast::FlowDef) -> ir::Flow {
    let mut description = String::new();
    let mut kind = ast::FlowKind::Marketing;
    let mut trigger = None;
    let mut entry = ir::Entry::EveryTime;
    let mut exits = Vec::new();
    let mut goal = None;
    let mut held = ctx.project.policy.held;
    let mut steps = Vec::new();
    let trig_name = f.members.iter().find_map(|m| match &m.kind {
        MemberKind::Trigger { event, .. } => Some(event.name.as_str()),
        _ => None,
    });
    let mut l = L {
        ctx,
        trigger: trig_name,
        steps: Vec::new(),
    };
    for m in &f.members {
        match &m.kind {
            MemberKind::Description(s) => description = s.value.clone(),
            MemberKind::Kind(k) => kind = *k,
            MemberKind::Trigger { event, filter } => {
                trigger = Some(ir::EventMatch {
                    event: event.name.clone(),
                    filter: filter.as_ref().map(|e| l.expr(e, Some(&event.name), &[])),
                })
            }
            MemberKind::Entry(r) => {
                entry = match r {
                    EntryRule::OncePer(e) => ir::Entry::OncePer(l.expr(e, trig_name, &[])),
                    EntryRule::AtMostOncePer(d) => ir::Entry::AtMostOncePer { secs: d.secs },
                    EntryRule::OnceEver => ir::Entry::OnceEver,
                    EntryRule::EveryTime => ir::Entry::EveryTime,
                }
            }
            MemberKind::Exit { event, filter } => exits.push(ir::EventMatch {
                event: event.name.clone(),
                filter: filter.as_ref().map(|e| l.expr(e, Some(&event.name), &[])),
            }),
            MemberKind::Goal {
                event,
                filter,
                within,
            } => {
                goal = Some(ir::Goal {
                    event: event.name.clone(),
                    filter: filter.as_ref().map(|e| l.expr(e, Some(&event.name), &[])),
                    within_secs: within.secs,
                })
            }
            MemberKind::Held(h) => held = *h,
            MemberKind::Step(s) => steps.push(s),
        }
    }
    // Build the graph backwards (each step needs its successor's id), then renumber so that
    // ids follow source order.
    let end = l.push(ir::Step::End);
    let start = l.block(steps.iter().copied(), end);
    let graph = renumber(l.steps, start);
    let mut flow = ir::Flow {
        name: f.name.name.clone(),
        description,
        kind,
        version: String::new(),
        trigger: trigger.unwrap_or(ir::EventMatch {
            event: String::new(),
            filter: None,
        }),
        entry,
        exits,
        goal,
        held,
        steps: graph,
    };
    // As `Flow::compute_version`, without its clone of the flow (the version is blank here).
    flow.version = json_sha256_hex(&flow)[..16].to_string();
    debug_assert_eq!(flow.version, flow.compute_version());
    flow
}

fn successors(s: &ir::Step) -> Vec<StepId> {
    use ir::Step::*;
    match s {
        Send { next, .. } | Wait { next, .. } | WaitUntil { next, .. } => vec![*next],
        WaitEvent {
            on_event,
            on_timeout,
            ..
        } => vec![*on_event, *on_timeout],
        WaitReply {
            arms,
            other,
            on_timeout,
            ..
        } => {
            let mut v: Vec<StepId> = arms.iter().map(|a| a.next).collect();
            v.push(*other);
            v.push(*on_timeout);
            v
        }
        Branch {
            then, otherwise, ..
        } => vec![*then, *otherwise],
        Split { arms } => arms.iter().map(|a| a.next).collect(),
        Exit | End => vec![],
    }
}

fn renumber(mut steps: Vec<ir::Step>, start: StepId) -> Vec<ir::Step> {
    let mut order = Vec::new();
    let mut seen = vec![false; steps.len()];
    let mut stack = vec![start];
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id as usize], true) {
            continue;
        }
        order.push(id);
        let mut succ = successors(&steps[id as usize]);
        succ.reverse();
        stack.extend(succ);
    }
    let mut map = vec![0 as StepId; steps.len()];
    for (new, &old) in order.iter().enumerate() {
        map[old as usize] = new as StepId;
    }
    let m = |id: &mut StepId| *id = map[*id as usize];
    let mut out = Vec::with_capacity(order.len());
    for &old in &order {
        // Each id is visited once: move the step out instead of cloning it.
        let mut s = std::mem::replace(&mut steps[old as usize], ir::Step::End);
        use ir::Step::*;
        match &mut s {
            Send { next, .. } | Wait { next, .. } | WaitUntil { next, .. } => m(next),
            WaitEvent {
                on_event,
                on_timeout,
                ..
            } => {
                m(on_event);
                m(on_timeout);
            }
            WaitReply {
                arms,
                other,
                on_timeout,
                ..
            } => {
                arms.iter_mut().for_each(|a| m(&mut a.next));
                m(other);
                m(on_timeout);
            }
            Branch {
                then, otherwise, ..
            } => {
                m(then);
                m(otherwise);
            }
            Split { arms } => arms.iter_mut().for_each(|a| m(&mut a.next)),
            Exit | End => {}
        }
        out.push(s);
    }
    out
}

fn weekday_numbers(days: &[ast::Ident]) -> Vec<u8> {
    let mut v: Vec<u8> = Vec::new();
    for d in days {
        match d.name.as_str() {
            "weekdays" => v.extend([0, 1, 2, 3, 4]),
            "weekends" => v.extend([5, 6]),
            "mon" => v.push(0),
            "tue" => v.push(1),
            "wed" => v.push(2),
            "thu" => v.push(3),
            "fri" => v.push(4),
            "sat" => v.push(5),
            _ => v.push(6),
        }
    }
    v.sort();
    v.dedup();
    v
}

impl L<'_, '_, '_> {
    fn push(&mut self, s: ir::Step) -> StepId {
        self.steps.push(s);
        (self.steps.len() - 1) as StepId
    }

    fn block<'s>(
        &mut self,
        steps: impl DoubleEndedIterator<Item = &'s ast::Step>,
        next: StepId,
    ) -> StepId {
        let mut k = next;
        for s in steps.rev() {
            k = self.step(s, k);
        }
        k
    }

    fn step(&mut self, s: &ast::Step, next: StepId) -> StepId {
        let trig = self.trigger;
        match &s.kind {
            StepKind::Send { template } => {
                let t = self.template(template);
                self.push(ir::Step::Send { template: t, next })
            }
            StepKind::Wait { duration } => self.push(ir::Step::Wait {
                secs: duration.secs,
                next,
            }),
            StepKind::WaitUntil { time, days } => self.push(ir::Step::WaitUntil {
                hour: time.hour,
                minute: time.minute,
                days: weekday_numbers(days),
                next,
            }),
            StepKind::WaitFor {
                event,
                filter,
                within,
                arms,
            } => {
                let mut on_event = next;
                let mut on_timeout = next;
                for a in arms {
                    let target = self.block(a.body.steps.iter(), next);
                    match a.pattern {
                        Pattern::Received => on_event = target,
                        _ => on_timeout = target,
                    }
                }
                let filter = filter
                    .as_ref()
                    .map(|e| self.expr(e, Some(&event.name), &[]));
                self.push(ir::Step::WaitEvent {
                    event: event.name.clone(),
                    filter,
                    timeout_secs: within.as_ref().map(|d| d.secs).unwrap_or(0),
                    on_event,
                    on_timeout,
                })
            }
            StepKind::WaitReply { within, arms } => {
                let mut out = Vec::new();
                let mut other = next;
                let mut on_timeout = next;
                for a in arms {
                    let target = self.block(a.body.steps.iter(), next);
                    match &a.pattern {
                        Pattern::Answers(list) => out.push(ir::ReplyArm {
                            answers: list
                                .iter()
                                .map(|s| super::flows::normalize_answer(&s.value))
                                .collect(),
                            next: target,
                        }),
                        Pattern::Other => other = target,
                        _ => on_timeout = target,
                    }
                }
                self.push(ir::Step::WaitReply {
                    timeout_secs: within.as_ref().map(|d| d.secs).unwrap_or(0),
                    arms: out,
                    other,
                    on_timeout,
                })
            }
            StepKind::If {
                branches,
                otherwise,
            } => {
                let mut k = match otherwise {
                    Some(b) => self.block(b.steps.iter(), next),
                    None => next,
                };
                for (cond, b) in branches.iter().rev() {
                    let then = self.block(b.steps.iter(), next);
                    let c = self.expr(cond, trig, &[]);
                    k = self.push(ir::Step::Branch {
                        cond: c,
                        then,
                        otherwise: k,
                    });
                }
                k
            }
            StepKind::Split { arms } => {
                let arms = arms
                    .iter()
                    .map(|a| ir::SplitArm {
                        name: a.name.name.clone(),
                        weight: a.weight,
                        next: self.block(a.body.steps.iter(), next),
                    })
                    .collect();
                self.push(ir::Step::Split { arms })
            }
            StepKind::Exit => self.push(ir::Step::Exit),
        }
    }

    fn template(&mut self, t: &ast::Template) -> ir::Template {
        let trig = self.trigger;
        let mut parts: Vec<ir::TemplatePart> = Vec::new();
        for p in &t.parts {
            match p {
                TemplatePart::Text { text, .. } => match parts.last_mut() {
                    Some(ir::TemplatePart::Text(prev)) => prev.push_str(text),
                    _ => parts.push(ir::TemplatePart::Text(text.clone())),
                },
                TemplatePart::Interp { expr, filters, .. } => {
                    let e = self.expr(expr, trig, &[]);
                    let filters = filters
                        .iter()
                        .map(|f| ir::FilterCall {
                            name: f.name.name.clone(),
                            args: f.args.iter().map(|a| self.expr(a, trig, &[])).collect(),
                        })
                        .collect();
                    parts.push(ir::TemplatePart::Interp { expr: e, filters });
                }
            }
        }
        ir::Template { parts }
    }

    /// Lower an expression where `event` means `event_name` and `vars` are quantifier variables.
    fn expr(&mut self, e: &ast::Expr, event_name: Option<&str>, vars: &[(String, Ty)]) -> IExpr {
        match &e.kind {
            ExprKind::Int(n) => IExpr::Lit(Lit::Int(*n)),
            ExprKind::Decimal(d) => IExpr::Lit(Lit::Decimal(d.clone())),
            ExprKind::Str(s) => IExpr::Lit(Lit::Str(s.clone())),
            ExprKind::Bool(b) => IExpr::Lit(Lit::Bool(*b)),
            ExprKind::Duration(d) => IExpr::Lit(Lit::Duration(d.secs)),
            ExprKind::TimeOfDay(t) => IExpr::Lit(Lit::TimeOfDay {
                hour: t.hour,
                minute: t.minute,
            }),
            ExprKind::Paren(inner) => self.expr(inner, event_name, vars),
            ExprKind::Plugin(id) => IExpr::Plugin(id.name.clone()),
            ExprKind::List(items) => IExpr::List(
                items
                    .iter()
                    .map(|i| self.expr(i, event_name, vars))
                    .collect(),
            ),
            // `recommend(PLUGIN)`: the plugin's name, not a value (the checker made sure).
            ExprKind::Call(n, args) if n.name == "recommend" => IExpr::Call(
                n.name.clone(),
                args.iter()
                    .filter_map(|a| match &a.kind {
                        ExprKind::Name(id) => Some(IExpr::Lit(Lit::Str(id.name.clone()))),
                        _ => None,
                    })
                    .collect(),
            ),
            ExprKind::Call(n, args) => IExpr::Call(
                n.name.clone(),
                args.iter()
                    .map(|a| self.expr(a, event_name, vars))
                    .collect(),
            ),
            ExprKind::Unary(op, inner) => {
                IExpr::Unary(*op, Box::new(self.expr(inner, event_name, vars)))
            }
            ExprKind::Binary(op, l, r) => IExpr::Binary(
                *op,
                Box::new(self.expr(l, event_name, vars)),
                Box::new(self.expr(r, event_name, vars)),
            ),
            ExprKind::Quant {
                quant,
                var,
                list,
                pred,
            } => {
                let list_ir = self.expr(list, event_name, vars);
                let elem = match self.type_of(list, event_name, vars) {
                    Ty::List(t) => *t,
                    _ => Ty::Unknown,
                };
                let mut inner: Vec<(String, Ty)> = vars.to_vec();
                inner.push((var.name.clone(), elem));
                let pred_ir = self.expr(pred, event_name, &inner);
                IExpr::Quant {
                    quant: *quant,
                    var: var.name.clone(),
                    list: Box::new(list_ir),
                    pred: Box::new(pred_ir),
                }
            }
            ExprKind::Name(_) | ExprKind::Field(..) => self.path(e, event_name, vars),
        }
    }

    fn type_of(&self, e: &ast::Expr, event_name: Option<&str>, vars: &[(String, Ty)]) -> Ty {
        let scope = Scope {
            event: event_name.map(String::from),
            entry: self.trigger.map(String::from),
            vars: vars.to_vec(),
        };
        let mut sink = Vec::new();
        self.ctx.expr(e, &scope, &mut sink)
    }

    fn path(&mut self, e: &ast::Expr, event_name: Option<&str>, vars: &[(String, Ty)]) -> IExpr {
        let Some(path) = e.as_path() else {
            // A field of a computed value: not produced by the checker's accepted forms today.
            if let ExprKind::Field(base, f) = &e.kind {
                let b = self.expr(base, event_name, vars);
                return IExpr::Call(
                    "field".into(),
                    vec![b, IExpr::Lit(Lit::Str(f.name.clone()))],
                );
            }
            unreachable!("checked paths are names")
        };
        let names: Vec<String> = path.iter().map(|i| i.name.clone()).collect();
        let (root, rest) = match names[0].as_str() {
            "event" => (Root::Event, names[1..].to_vec()),
            "flow" if names.get(1).map(String::as_str) == Some("entry") => {
                (Root::Entry, names[2..].to_vec())
            }
            "flow" => (Root::Flow, names[1..].to_vec()),
            "profile" => (Root::Profile, names[1..].to_vec()),
            "shop" => (Root::Shop, names[1..].to_vec()),
            "now" if names.len() == 1 => return IExpr::Now,
            n if vars.iter().any(|(v, _)| v == n) => {
                (Root::Var(n.to_string()), names[1..].to_vec())
            }
            n => {
                if let Some(seg) = self.ctx.segments.get(n) {
                    let body = seg.expr.clone();
                    return self.expr(&body, event_name, &[]);
                }
                unreachable!("unknown names are errors")
            }
        };
        let ty = self.type_of(e, event_name, vars);
        let p = IExpr::Path(root, rest);
        match ty {
            Ty::Str | Ty::Bool | Ty::Unknown | Ty::Record(_) => p,
            t => IExpr::Typed(t, Box::new(p)),
        }
    }
}
