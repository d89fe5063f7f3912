//! `ir::diff`: the example flows compiled twice, with text edits applied in memory.

use aftercart::check;
use aftercart::ir::diff::{diff, Change, FlowStatus, ProgramDiff, Waiting};
use aftercart::ir::Program;
use std::path::Path;

/// `(name, text)` of a source file.
type Source = (String, String);

fn sources() -> (Option<Source>, Vec<Source>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
    let project = std::fs::read_to_string(dir.join("aftercart.toml")).unwrap();
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .map(|p| {
            let name = format!("flows/{}", p.file_name().unwrap().to_string_lossy());
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    (Some(("flows/aftercart.toml".into(), project)), files)
}

fn compile(edit: impl Fn(&str, String) -> Option<String>) -> Program {
    let (project, files) = sources();
    let files = files
        .into_iter()
        .filter_map(|(name, text)| edit(&name, text).map(|t| (name, t)))
        .collect();
    let checked = check::check_sources(project, files);
    let errors: Vec<String> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == aftercart::diagnostic::Severity::Error)
        .map(|d| format!("{} {}", d.code, d.message))
        .collect();
    checked
        .program
        .unwrap_or_else(|| panic!("edited flows do not compile: {errors:?}"))
}

fn base() -> Program {
    compile(|_, t| Some(t))
}

/// Replace `from` by `to` (exactly once) in the file `file`.
fn edited(file: &str, from: &str, to: &str) -> Program {
    let (file, from, to) = (file.to_string(), from.to_string(), to.to_string());
    compile(move |name, text| {
        if name.ends_with(&file) {
            assert_eq!(text.matches(&from).count(), 1, "`{from}` in {name}");
            Some(text.replace(&from, &to))
        } else {
            Some(text)
        }
    })
}

/// Every flow other than `name` is unchanged.
fn only_changed(d: &ProgramDiff, name: &str) {
    for f in &d.flows {
        if f.name != name {
            assert_eq!(f.status, FlowStatus::Unchanged, "{}", f.name);
        }
    }
    assert!(d.program.is_empty(), "{:?}", d.program);
}

#[test]
fn identical_programs_have_no_changes() {
    let d = diff(&base(), &base());
    assert!(!d.has_changes());
    assert!(d.flows.iter().all(|f| f.status == FlowStatus::Unchanged));
    assert!(d.migrations().is_empty());
    let text = d.render_text();
    assert!(text.contains("flow win_back: unchanged"), "{text}");
    assert!(text.ends_with("no changes\n"), "{text}");
}

#[test]
fn reformatting_only_has_no_changes() {
    // Comments, blank lines and indentation outside message blocks, then the formatter.
    let messy = compile(|_, text| {
        let mut out = String::from("# a comment that changes nothing\n\n");
        let mut in_block = false;
        for line in text.lines() {
            let was_in_block = in_block;
            if line.matches("\"\"\"").count() == 1 {
                in_block = !in_block;
            }
            if was_in_block {
                out.push_str(line);
                out.push('\n');
            } else {
                out.push_str("    ");
                out.push_str(line.trim_start());
                out.push('\n');
                if !in_block {
                    out.push('\n');
                }
            }
        }
        Some(out)
    });
    let d = diff(&base(), &messy);
    assert!(!d.has_changes(), "{}", d.render_text());
    let formatted = compile(|_, text| Some(aftercart::syntax::format_source(&text).unwrap()));
    assert!(!diff(&base(), &formatted).has_changes());
}

#[test]
fn changed_wait_duration() {
    let d = diff(
        &base(),
        &edited("review_request.flow", "wait 2d", "wait 3d"),
    );
    assert!(d.has_changes());
    only_changed(&d, "review_request");
    let f = d.flow("review_request").unwrap();
    assert_eq!(f.status, FlowStatus::Changed);
    assert!(f.header.is_empty());
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    let s = &f.steps[0];
    assert_eq!((s.old_step, s.new_step), (Some(0), Some(0)));
    assert_eq!(
        s.change,
        Change::Timing {
            old: "wait 2d".into(),
            new: "wait 3d".into()
        }
    );
    let m = f.migration.as_ref().unwrap();
    assert!(m.unmapped().is_empty());
    assert!((0..m.map.len() as u32).all(|i| m.get(i) == Some(i)));
    assert_eq!(m.changed, vec![0]);
    assert!(d.render_text().contains("  ~ step 0: wait 2d -> wait 3d\n"));
}

#[test]
fn changed_wait_until_and_timeout() {
    let d = diff(
        &base(),
        &edited(
            "win_back.flow",
            "wait reply within 3d",
            "wait reply within 5d",
        ),
    );
    only_changed(&d, "win_back");
    let f = d.flow("win_back").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    assert!(matches!(&f.steps[0].change, Change::Timing { old, new }
        if old.ends_with("3d") && new.ends_with("5d")));

    let d = diff(
        &base(),
        &edited(
            "review_request.flow",
            "wait until 10:00 local on weekdays",
            "wait until 11:30 local on mon, wed",
        ),
    );
    let f = d.flow("review_request").unwrap();
    assert_eq!(
        f.steps[0].change,
        Change::Timing {
            old: "wait until 10:00 local on weekdays".into(),
            new: "wait until 11:30 local on mon, wed".into()
        }
    );
}

#[test]
fn changed_message_shows_old_and_new_text() {
    let d = diff(
        &base(),
        &edited("review_request.flow", "Welcome back, ", "Hello again, "),
    );
    only_changed(&d, "review_request");
    let f = d.flow("review_request").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    let s = &f.steps[0];
    // 0 wait, 1 wait until, 2 if, 3 send (then), 4 end, 5 send (else)
    assert_eq!((s.old_step, s.new_step), (Some(5), Some(5)));
    let Change::Text { old, new } = &s.change else {
        panic!("{:?}", s.change)
    };
    assert!(old.starts_with("Welcome back, {{ profile.first_name | default('friend') }}"));
    assert!(new.starts_with("Hello again, {{ profile.first_name | default('friend') }}"));
    let text = d.render_text();
    assert!(
        text.contains("  ~ step 5: message text changed\n"),
        "{text}"
    );
    assert!(text.contains("      - Welcome back, {{"), "{text}");
    assert!(text.contains("      + Hello again, {{"), "{text}");
}

#[test]
fn inserted_step_shifts_ids_but_later_steps_match() {
    let old = base();
    let new = edited(
        "skin_quiz.flow",
        "  wait reply within 2d {",
        "  wait 1h\n  wait reply within 2d {",
    );
    let d = diff(&old, &new);
    only_changed(&d, "skin_quiz");
    let f = d.flow("skin_quiz").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    let s = &f.steps[0];
    assert_eq!((s.old_step, s.new_step), (None, Some(3)));
    assert_eq!(
        s.change,
        Change::Added {
            step: "wait 1h".into()
        }
    );
    let m = f.migration.as_ref().unwrap();
    let n = old.flow("skin_quiz").unwrap().steps.len() as u32;
    assert_eq!(m.map.len() as u32, n);
    for i in 0..n {
        let want = if i < 3 { i } else { i + 1 };
        assert_eq!(m.get(i), Some(want), "old step {i}");
    }
    assert!(m.unmapped().is_empty() && m.changed.is_empty());
    let text = d.render_text();
    assert!(text.contains("  + step 3: wait 1h (new)\n"), "{text}");
    assert!(text.contains("  migrate: 3->4 4->5"), "{text}");
}

#[test]
fn inserted_message_in_a_branch() {
    // A send inserted at the start of the `then` branch: the else branch's send still matches.
    let new = edited(
        "review_request.flow",
        "  if first_time_buyer {\n",
        "  if first_time_buyer {\n    send sms \"Thanks again for your order! Reply STOP to opt out.\"\n",
    );
    let d = diff(&base(), &new);
    let f = d.flow("review_request").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    assert!(matches!(f.steps[0].change, Change::Added { .. }));
    assert_eq!(f.steps[0].new_step, Some(3));
    let m = f.migration.as_ref().unwrap();
    assert_eq!(m.get(3), Some(4));
    assert_eq!(m.get(5), Some(6));
}

#[test]
fn removed_step_has_no_counterpart_and_waiting_people_are_shown() {
    let old = base();
    let new = edited(
        "review_request.flow",
        "  wait until 10:00 local on weekdays\n",
        "",
    );
    let mut d = diff(&old, &new);
    let f = d.flow("review_request").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    assert_eq!(
        f.steps[0].change,
        Change::Removed {
            step: "wait until 10:00 local on weekdays".into()
        }
    );
    let m = f.migration.clone().unwrap();
    assert_eq!(m.unmapped(), vec![1]);
    assert_eq!(m.get(0), Some(0));
    assert_eq!(m.get(2), Some(1));

    let ver = old.flow("review_request").unwrap().version.clone();
    let mut waiting = Waiting::new();
    waiting.insert(("review_request".into(), ver.clone(), 0), 7);
    waiting.insert(("review_request".into(), ver, 1), 12);
    waiting.insert(("review_request".into(), "otherversion".into(), 1), 99);
    d.attach_waiting(&waiting);
    let f = d.flow("review_request").unwrap();
    assert_eq!(f.waiting, Some(19));
    assert_eq!(f.steps[0].waiting, Some(12));
    let text = d.render_text();
    assert!(
        text.contains(
            "  - step 1: wait until 10:00 local on weekdays (removed)  [12 people wait here]"
        ),
        "{text}"
    );
    assert!(text.contains("no counterpart: 1 (12 waiting"), "{text}");
}

#[test]
fn removed_and_added_flows() {
    let without = compile(|name, text| (!name.ends_with("win_back.flow")).then_some(text));
    let d = diff(&base(), &without);
    assert!(d.has_changes());
    only_changed(&d, "win_back");
    let f = d.flow("win_back").unwrap();
    assert_eq!(f.status, FlowStatus::Removed);
    assert!(f.new_version.is_none() && f.migration.is_none());
    assert!(d.render_text().contains("- flow win_back ("));

    let d = diff(&without, &base());
    assert_eq!(d.flow("win_back").unwrap().status, FlowStatus::Added);
    assert!(d.render_text().contains("+ flow win_back ("));
}

#[test]
fn split_weight_change() {
    let new = compile(|name, text| {
        Some(if name.ends_with("welcome_ab.flow") {
            text.replace("50% plain", "70% plain")
                .replace("50% discount", "30% discount")
        } else {
            text
        })
    });
    let d = diff(&base(), &new);
    only_changed(&d, "welcome_discount_test");
    let f = d.flow("welcome_discount_test").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    assert_eq!(
        f.steps[0].change,
        Change::Weights {
            old: "50% plain, 50% discount".into(),
            new: "70% plain, 30% discount".into()
        }
    );
    assert!(d
        .render_text()
        .contains("~ step 2: split 50% plain, 50% discount -> split 70% plain, 30% discount"));
}

#[test]
fn header_changes_are_reported() {
    let d = diff(
        &base(),
        &edited(
            "review_request.flow",
            "goal review_submitted where event.order_id == flow.entry.order_id within 7d",
            "goal review_submitted where event.order_id == flow.entry.order_id within 10d",
        ),
    );
    let f = d.flow("review_request").unwrap();
    assert!(f.steps.is_empty());
    assert_eq!(f.header.len(), 1);
    assert_eq!(f.header[0].field, "goal");
    assert!(f.header[0].new.as_deref().unwrap().ends_with("within 10d"));

    let d = diff(
        &base(),
        &edited("review_request.flow", "when held defer", "when held drop"),
    );
    let f = d.flow("review_request").unwrap();
    assert_eq!(f.header[0].field, "when held");
}

#[test]
fn branch_condition_and_reply_answers() {
    let d = diff(
        &base(),
        &edited(
            "win_back.flow",
            "\"why\" | \"reason\" =>",
            "\"why\" | \"reason\" | \"how\" =>",
        ),
    );
    let f = d.flow("win_back").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    assert!(
        matches!(&f.steps[0].change, Change::Answers { new, .. } if new.contains("\"how\"")),
        "{:?}",
        f.steps
    );

    let d = diff(
        &base(),
        &edited(
            "review_request.flow",
            "if first_time_buyer {",
            "if not first_time_buyer {",
        ),
    );
    let f = d.flow("review_request").unwrap();
    assert_eq!(f.steps.len(), 1, "{:?}", f.steps);
    assert!(matches!(&f.steps[0].change, Change::Condition { new, .. } if new.starts_with("not ")));
}

#[test]
fn json_round_trips() {
    let d = diff(
        &base(),
        &edited("review_request.flow", "wait 2d", "wait 3d"),
    );
    let back: ProgramDiff = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(back, d);
}

#[test]
fn cli_exit_codes() {
    let exe = env!("CARGO_BIN_EXE_aftercart");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = std::env::temp_dir().join(format!("aftercart-diff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let flows = tmp.join("flows");
    std::fs::create_dir_all(&flows).unwrap();
    for e in std::fs::read_dir(root.join("flows")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, flows.join(p.file_name().unwrap())).unwrap();
        }
    }
    let ir = tmp.join("old.json");
    let st = std::process::Command::new(exe)
        .args(["compile", "-o"])
        .arg(&ir)
        .arg(&flows)
        .output()
        .unwrap();
    assert!(st.status.success(), "{st:?}");
    let run = |args: &[&std::ffi::OsStr]| {
        std::process::Command::new(exe)
            .arg("diff")
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[ir.as_os_str(), flows.as_os_str()]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    let f = flows.join("review_request.flow");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replace("wait 2d", "wait 3d")).unwrap();
    let out = run(&[ir.as_os_str(), flows.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("~ step 0: wait 2d -> wait 3d"), "{stdout}");
    let out = run(&[
        ir.as_os_str(),
        flows.as_os_str(),
        "--format".as_ref(),
        "json".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let _: ProgramDiff = serde_json::from_slice(&out.stdout).unwrap();

    let out = run(&[ir.as_os_str(), tmp.join("missing").as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    std::fs::write(tmp.join("bad.json"), "{}").unwrap();
    let out = run(&[ir.as_os_str(), tmp.join("bad.json").as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let _ = std::fs::remove_dir_all(&tmp);
}
