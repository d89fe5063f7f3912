//! The command line as CI and users drive it: output formats, exit codes, explain, compile,
//! graph and sms-count, run as a real process.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aftercart"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn check_exit_codes() {
    assert_eq!(run(&["check", "flows"]).status.code(), Some(0));
    assert_eq!(
        run(&["check", "tests/ui/ac0106_removed_field.flow"])
            .status
            .code(),
        Some(1)
    );
    // A warning fails only at --fail-level warning.
    assert_eq!(
        run(&["check", "tests/ui/ac0302_unreachable.flow"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        run(&[
            "check",
            "--fail-level",
            "warning",
            "tests/ui/ac0302_unreachable.flow"
        ])
        .status
        .code(),
        Some(1)
    );
    assert_eq!(run(&["check", "no/such/dir"]).status.code(), Some(2));
    assert_eq!(
        run(&["check", "--format", "xml", "flows"]).status.code(),
        Some(2)
    );
}

#[test]
fn check_json_lines() {
    let o = run(&[
        "check",
        "--format",
        "json",
        "tests/ui/ac0106_removed_field.flow",
    ]);
    let text = stdout(&o);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let d = lines
        .iter()
        .find(|d| d["code"] == "AC0106")
        .expect("AC0106 in JSON");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["file"], "tests/ui/ac0106_removed_field.flow");
    assert_eq!(d["line"], 3);
    assert!(d["column"].as_u64().unwrap() > 1);
    assert!(d["span"]["start"].as_u64().unwrap() < d["span"]["end"].as_u64().unwrap());
    assert!(d["help"].as_str().unwrap().contains("profile.orders_count"));
}

#[test]
fn check_sarif_for_code_scanning() {
    let o = run(&[
        "check",
        "--format",
        "sarif",
        "tests/ui/ac0402_segments.flow",
        "tests/ui/ac0106_removed_field.flow",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["version"], "2.1.0");
    let run0 = &v["runs"][0];
    assert_eq!(run0["tool"]["driver"]["name"], "aftercart");
    let rules = run0["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "AC0106"));
    let results = run0["results"].as_array().unwrap();
    let r = results.iter().find(|r| r["ruleId"] == "AC0106").unwrap();
    let loc = &r["locations"][0]["physicalLocation"];
    let uri = loc["artifactLocation"]["uri"].as_str().unwrap();
    assert!(!uri.starts_with('/'), "relative URI, got {uri}");
    assert!(uri.ends_with("ac0106_removed_field.flow"));
    assert_eq!(loc["region"]["startLine"], 3);
    assert!(r["partialFingerprints"]["primaryLocationLineHash/v1"].is_string());
}

#[test]
fn check_github_annotations() {
    let o = run(&[
        "check",
        "--format",
        "github",
        "tests/ui/ac0106_removed_field.flow",
    ]);
    let text = stdout(&o);
    let line = text.lines().find(|l| l.contains("AC0106")).unwrap();
    assert!(
        line.starts_with("::error file=tests/ui/ac0106_removed_field.flow,line=3,col="),
        "{line}"
    );
    assert!(line.contains("title=AC0106::"));
    // Newlines in the message are escaped as GitHub's toolkit does.
    assert!(!line.contains('\n'));
}

#[test]
fn explain_prints_the_docs_section() {
    let o = run(&["explain", "AC0401"]);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    assert!(t.starts_with("## AC0401"));
    assert!(t.contains("Fix:"));
    assert_eq!(run(&["explain", "AC9999"]).status.code(), Some(2));
    // Every registered code is documented.
    for c in aftercart::diagnostic::codes::CODES {
        assert!(
            aftercart::diagnostic::codes::explanation(c.code).is_some(),
            "{} undocumented",
            c.code
        );
    }
}

#[test]
fn compile_writes_versioned_ir() {
    let o = run(&["compile", "flows"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["ir_version"], aftercart::ir::IR_VERSION);
    assert_eq!(v["hash"].as_str().unwrap().len(), 64);
    let program: aftercart::ir::Program = serde_json::from_value(v).unwrap();
    assert_eq!(program.hash, program.compute_hash());
    // A project with errors compiles nothing.
    assert_eq!(
        run(&["compile", "tests/ui/ac0106_removed_field.flow"])
            .status
            .code(),
        Some(1)
    );
}

#[test]
fn graph_mermaid_and_dot() {
    let o = run(&["graph", "skin_quiz"]);
    let t = stdout(&o);
    assert!(t.starts_with("flowchart TD"));
    assert!(t.contains("wait reply within 2d"));
    assert!(t.contains("\"timeout\""));
    let o = run(&["graph", "welcome_discount_test", "--format", "dot"]);
    let t = stdout(&o);
    assert!(t.starts_with("digraph"));
    assert!(t.contains("plain 50%"));
    assert_eq!(run(&["graph", "nope"]).status.code(), Some(2));
}

#[test]
fn sms_count_json_matches_fixture_rules() {
    let o = run(&["sms-count", "--json", "We’re shipping today"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["encoding"], "UCS-2");
    assert_eq!(v["segments"], 1);
    let long = "a".repeat(161);
    let v: serde_json::Value =
        serde_json::from_str(&stdout(&run(&["sms-count", "--json", &long]))).unwrap();
    assert_eq!(v["encoding"], "GSM-7");
    assert_eq!(v["segments"], 2);
    assert_eq!(v["units"], 161);
    let human = stdout(&run(&["sms-count", "Hello {world}"]));
    assert!(human.contains("GSM-7"));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sms/segment_vectors.json")
        .exists());
}

#[test]
fn plugin_test_reports_answer_or_reason() {
    let o = run(&["plugin", "test", "examples/plugins/vip_segment.wat"]);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    assert!(
        t.contains("segment: true") || t.contains("segment: false"),
        "{t}"
    );
    assert!(t.contains("fuel used"));
    // Removed when the test ends (the plain directory was left behind by every run).
    let dir = common::TmpDir::new("cli-plugin", true);
    let looping = dir.join("loop.wat");
    std::fs::write(
        &looping,
        r#"(module (func (export "abi_version") (result i32) i32.const 1) (memory (export "memory") 1)
           (func (export "alloc") (param i32) (result i32) i32.const 0)
           (func (export "segment") (param i32 i32) (result i32) (loop $l br $l) i32.const 0))"#,
    )
    .unwrap();
    let o = run(&["plugin", "test", looping.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("fuel"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn plugin_project_checks_tests_and_records_fallbacks() {
    assert_eq!(
        run(&["check", "tests/plugin_project"]).status.code(),
        Some(0)
    );
    assert_eq!(
        run(&["test", "tests/plugin_project"]).status.code(),
        Some(0)
    );
    let o = run(&[
        "simulate",
        "--flows",
        "tests/plugin_project",
        "--events",
        "examples/events/tiny.jsonl",
        "--format",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    let failed = t
        .lines()
        .find(|l| l.contains("\"type\":\"plugin_failed\""))
        .expect("the looping plugin's failure is on the timeline");
    assert!(
        failed.contains("broken_model") && failed.contains("out_of_fuel"),
        "{failed}"
    );
    assert!(
        t.contains("\"flow\":\"fallback_thanks\""),
        "the fallback (true) lets the flow run"
    );
}

#[test]
fn maintenance_commands_refuse_a_missing_data_directory() {
    let dir = std::env::temp_dir().join(format!("aftercart-cli-missing-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.to_str().unwrap();
    for args in [
        vec!["inspect", "--data", d, "stats"],
        vec!["report", "--data", d],
        vec!["compact", "--data", d, "--before", "2026-03-04"],
        vec!["forget", "--data", d, "customer:1"],
        vec!["export", "--data", d, "customer:1"],
    ] {
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!(
                "error: {d} is not an aftercart data directory (no `db` inside); run \
                 `aftercart run --data {d}` first"
            )),
            "{args:?}: {err}"
        );
        assert!(!dir.exists(), "{args:?} created {d}");
    }
}

/// `inspect instances` and `inspect timers` on a store where the example week's people wait:
/// one text line per item with its footer, or one JSON object per line.
#[test]
fn inspect_lists_who_waits_and_what_is_due() {
    use aftercart::runtime::{self, Options, Runtime};
    let (program, schemas) = common::example_program();
    let dir = std::env::temp_dir().join(format!("aftercart-cli-inspect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let store: std::sync::Arc<dyn aftercart::store::Store> =
            std::sync::Arc::new(aftercart::store::open(&dir).unwrap());
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/events/week.jsonl"),
        )
        .unwrap();
        runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
        let mut rt = Runtime::new(store, program, schemas, Options::default()).unwrap();
        // The log only: every wait stays open.
        while rt.process_log().unwrap().0 > 0 {}
    }
    let d = dir.to_str().unwrap();
    let o = run(&["inspect", "--data", d, "instances"]);
    assert_eq!(o.status.code(), Some(0));
    let t = stdout(&o);
    let lines: Vec<&str> = t.lines().collect();
    let n = lines.len() - 1;
    assert!(n > 0, "{t}");
    assert_eq!(lines[n], format!("-- {n} live instances"));
    assert!(
        lines[..n]
            .iter()
            .all(|l| l.contains("  step ") && l.contains(" until ")),
        "{t}"
    );
    let o = run(&["inspect", "--data", d, "--json", "instances"]);
    let objs: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objs.len(), n);
    assert!(objs.iter().all(|i| i["flow"].is_string()));

    let t = stdout(&run(&["inspect", "--data", d, "timers"]));
    let last = t.lines().last().unwrap();
    assert!(
        last.starts_with("-- ") && last.ends_with(" timers in all"),
        "{t}"
    );
    let first = t.lines().next().unwrap();
    assert!(
        first.starts_with("2026-") && first.contains("  step "),
        "{t}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The main command with a checkpoint (sled closed and reopened) every KiB written sends
/// exactly what it sends without, and says how many it took; a malformed size is refused,
/// naming the variable.
#[test]
fn checkpoints_every_few_kib_change_no_message_and_a_bad_size_is_refused() {
    let base = std::env::temp_dir().join(format!("aftercart-cli-ckpt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let sent = |every: Option<&str>, name: &str| {
        let data = base.join(name);
        let sink = base.join(format!("{name}.jsonl"));
        let mut c = Command::new(env!("CARGO_BIN_EXE_aftercart"));
        c.args(["run", "--data"])
            .arg(&data)
            .args(["--flows", "flows", "--events", "examples/events/week.jsonl"])
            .args(["--clock", "virtual", "--until-idle", "--provider"])
            .arg(format!("file:{}", sink.display()))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("NO_COLOR", "1");
        if let Some(e) = every {
            c.env("AFTERCART_CHECKPOINT_BYTES", e);
        }
        let o = c.output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        (
            std::fs::read_to_string(sink).unwrap(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (plain, said) = sent(None, "plain");
    assert!(plain.lines().count() > 50, "{plain}");
    assert!(!said.contains("checkpoints"), "{said}");
    let (every, said) = sent(Some("1K"), "every-1k");
    assert_eq!(every, plain);
    // The run says it did checkpoint, and how often: at 1 KiB, before each batch after the
    // first (the week is a few batches: its events appended, then the runtime's commits).
    let line = said
        .lines()
        .find(|l| l.starts_with("store: "))
        .unwrap_or_else(|| panic!("no checkpoint report in {said}"));
    let count: u64 = line["store: ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(count >= 2, "{line}");
    assert!(
        line.contains(" checkpoints (AFTERCART_CHECKPOINT_BYTES), ") && line.ends_with(" ms"),
        "{line}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_aftercart"))
        .args(["inspect", "--data"])
        .arg(base.join("plain"))
        .arg("stats")
        .env("AFTERCART_CHECKPOINT_BYTES", "lots")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        "error: AFTERCART_CHECKPOINT_BYTES must be a size such as 256M, 64K or 1G (0: never \
         checkpoint), not \"lots\"\n"
    );
    let _ = std::fs::remove_dir_all(&base);
}
