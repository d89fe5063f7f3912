//! Pictures of a flow's step graph: Mermaid (renders on GitHub) and Graphviz dot.

use super::{Expr, Flow, Lit, Root, Step, TemplatePart};

fn node_label(s: &Step) -> String {
    match s {
        Step::Send { template, .. } => {
            let mut text = String::new();
            for p in &template.parts {
                match p {
                    TemplatePart::Text(t) => text.push_str(t),
                    TemplatePart::Interp { expr, .. } => {
                        text.push_str(&format!("{{{{{}}}}}", expr_label(expr)))
                    }
                }
            }
            let short: String = text.chars().take(40).collect();
            let ell = if text.chars().count() > 40 { "..." } else { "" };
            format!("send: {short}{ell}")
        }
        Step::Wait { secs, .. } => format!("wait {}", crate::check::human_duration(*secs)),
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
            timeout_secs,
            ..
        } => {
            format!(
                "wait for {event} within {}",
                crate::check::human_duration(*timeout_secs)
            )
        }
        Step::WaitReply { timeout_secs, .. } => format!(
            "wait reply within {}",
            crate::check::human_duration(*timeout_secs)
        ),
        Step::Branch { cond, .. } => format!("if {}", expr_label(cond)),
        Step::Split { .. } => "split".into(),
        Step::Exit => "exit".into(),
        Step::End => "end".into(),
    }
}

fn days_label(days: &[u8]) -> String {
    const N: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    if days == [0, 1, 2, 3, 4] {
        return "weekdays".into();
    }
    days.iter()
        .map(|d| N[*d as usize % 7])
        .collect::<Vec<_>>()
        .join(",")
}

fn expr_label(e: &Expr) -> String {
    match e {
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
        Expr::Typed(_, inner) => expr_label(inner),
        Expr::Lit(Lit::Str(s)) => format!("'{s}'"),
        Expr::Lit(Lit::Int(n)) => n.to_string(),
        Expr::Lit(Lit::Decimal(d)) => d.clone(),
        Expr::Lit(Lit::Bool(b)) => b.to_string(),
        Expr::Lit(Lit::Duration(s)) => crate::check::human_duration(*s),
        Expr::Now => "now".into(),
        Expr::Binary(op, l, r) => format!("{} {} {}", expr_label(l), op.as_str(), expr_label(r)),
        Expr::Unary(super::UnOp::Not, e) => format!("not {}", expr_label(e)),
        Expr::Call(n, _) => format!("{n}(...)"),
        Expr::Quant {
            quant, var, list, ..
        } => format!("{quant:?}({var} in {})", expr_label(list)).to_lowercase(),
        _ => "...".into(),
    }
}

fn edges(s: &Step) -> Vec<(u32, String)> {
    match s {
        Step::Send { next, .. } | Step::Wait { next, .. } | Step::WaitUntil { next, .. } => {
            vec![(*next, String::new())]
        }
        Step::WaitEvent {
            on_event,
            on_timeout,
            ..
        } => vec![
            (*on_event, "received".into()),
            (*on_timeout, "timeout".into()),
        ],
        Step::WaitReply {
            arms,
            other,
            on_timeout,
            ..
        } => {
            let mut v: Vec<(u32, String)> = arms
                .iter()
                .map(|a| (a.next, a.answers.join(" | ")))
                .collect();
            v.push((*other, "other".into()));
            v.push((*on_timeout, "timeout".into()));
            v
        }
        Step::Branch {
            then, otherwise, ..
        } => vec![(*then, "yes".into()), (*otherwise, "no".into())],
        Step::Split { arms } => arms
            .iter()
            .map(|a| (a.next, format!("{} {}%", a.name, a.weight as f64 / 100.0)))
            .collect(),
        Step::Exit | Step::End => vec![],
    }
}

fn esc(s: &str) -> String {
    s.replace('"', "'").replace('\n', " ")
}

pub fn mermaid(f: &Flow) -> String {
    let mut out = format!(
        "flowchart TD\n  start([\"{}: {}\"]) --> s0\n",
        esc(&f.name),
        esc(&f.trigger.event)
    );
    for (i, s) in f.steps.iter().enumerate() {
        let label = esc(&node_label(s));
        let shape = match s {
            Step::Branch { .. } | Step::Split { .. } => format!("{{\"{label}\"}}"),
            Step::Exit | Step::End => format!("([\"{label}\"])"),
            _ => format!("[\"{label}\"]"),
        };
        out.push_str(&format!("  s{i}{shape}\n"));
        for (to, l) in edges(s) {
            if l.is_empty() {
                out.push_str(&format!("  s{i} --> s{to}\n"));
            } else {
                out.push_str(&format!("  s{i} -->|\"{}\"| s{to}\n", esc(&l)));
            }
        }
    }
    out
}

pub fn dot(f: &Flow) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"Helvetica\"];\n",
        esc(&f.name)
    );
    out.push_str(&format!(
        "  start [shape=oval, label=\"{}\"];\n  start -> s0;\n",
        esc(&format!("{}: {}", f.name, f.trigger.event))
    ));
    for (i, s) in f.steps.iter().enumerate() {
        let shape = match s {
            Step::Branch { .. } | Step::Split { .. } => "diamond",
            Step::Exit | Step::End => "oval",
            _ => "box",
        };
        out.push_str(&format!(
            "  s{i} [shape={shape}, label=\"{}\"];\n",
            esc(&node_label(s))
        ));
        for (to, l) in edges(s) {
            if l.is_empty() {
                out.push_str(&format!("  s{i} -> s{to};\n"));
            } else {
                out.push_str(&format!("  s{i} -> s{to} [label=\"{}\"];\n", esc(&l)));
            }
        }
    }
    out.push_str("}\n");
    out
}
