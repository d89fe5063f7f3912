//! Pictures of a flow's step graph: Mermaid (renders on GitHub) and Graphviz dot.

use super::{Flow, Step};

/// A node's text: the step in the language's own words, as `aftercart diff` prints it.
fn node_label(s: &Step) -> String {
    super::diff::summary(s)
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
