//! The front end on realistic input: every example flow checks clean, the IR hash ignores
//! layout and comments, and hostile input never panics or hangs the parser.

use aftercart::check::{check_paths, check_sources};
use aftercart::diagnostic::FileId;
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn flows_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("flows")
}

fn flow_sources() -> (String, Vec<(String, String)>) {
    let project = std::fs::read_to_string(flows_dir().join("aftercart.toml")).unwrap();
    let mut files: Vec<_> = std::fs::read_dir(flows_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .collect();
    files.sort();
    let sources = files
        .iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().to_string(),
                std::fs::read_to_string(p).unwrap(),
            )
        })
        .collect();
    (project, sources)
}

#[test]
fn every_example_flow_checks_clean() {
    let checked = check_paths(&[flows_dir()]).unwrap();
    let rendered = aftercart::diagnostic::render::render(
        aftercart::diagnostic::render::Format::Human,
        &checked.map,
        &checked.diagnostics,
        false,
    );
    assert!(
        checked.diagnostics.is_empty(),
        "flows/ must check clean:\n{rendered}"
    );
    let program = checked.program.expect("a clean project lowers");
    // The seed's six, abandoned checkout, a reply quiz and an A/B test (plus the upsell).
    for name in [
        "order_confirmation",
        "order_upsell",
        "shipping_update",
        "review_request",
        "checkin_cross_sell",
        "replenishment",
        "win_back",
        "abandoned_checkout",
        "skin_quiz",
        "welcome_discount_test",
    ] {
        assert!(program.flow(name).is_some(), "missing example flow {name}");
    }
    assert_eq!(program.ir_version, aftercart::ir::IR_VERSION);
    assert_eq!(program.hash, program.compute_hash());
}

/// Re-indent, add blank lines and comments: the program hash and every flow version stay.
#[test]
fn hash_ignores_layout_and_comments() {
    let (project, sources) = flow_sources();
    let a = check_sources(
        Some(("flows/aftercart.toml".into(), project.clone())),
        sources.clone(),
    )
    .program
    .unwrap();
    let relaid: Vec<(String, String)> = sources
        .into_iter()
        .map(|(n, t)| {
            let mut in_triple = false;
            let t = t
                .lines()
                .map(|l| {
                    // Inside a triple-quoted template, only uniform re-indentation is layout.
                    let was_in = in_triple;
                    in_triple ^= l.matches("\"\"\"").count() % 2 == 1;
                    let trimmed = l.trim_start();
                    if was_in {
                        let indent = (l.len() - trimmed.len()) * 2;
                        return format!("{}{}\n", " ".repeat(indent), trimmed);
                    }
                    let indent = (l.len() - trimmed.len()) * 2;
                    if trimmed.starts_with("send") || trimmed.starts_with("wait") {
                        format!(
                            "# a comment before a step\n{}{}\n",
                            " ".repeat(indent),
                            trimmed
                        )
                    } else {
                        format!("{}{}\n\n", " ".repeat(indent), trimmed)
                    }
                })
                .collect::<String>();
            (n, t)
        })
        .collect();
    let checked = check_sources(Some(("flows/aftercart.toml".into(), project)), relaid);
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    let b = checked.program.unwrap();
    assert_eq!(a.hash, b.hash);
    for (fa, fb) in a.flows.iter().zip(&b.flows) {
        assert_eq!(fa.version, fb.version, "{}", fa.name);
    }
}

/// A behaviour change does change the hash and that flow's version, and only that flow's.
#[test]
fn hash_changes_with_behaviour() {
    let (project, sources) = flow_sources();
    let a = check_sources(
        Some(("flows/aftercart.toml".into(), project.clone())),
        sources.clone(),
    )
    .program
    .unwrap();
    let changed: Vec<(String, String)> = sources
        .into_iter()
        .map(|(n, t)| (n, t.replace("wait 25d", "wait 24d")))
        .collect();
    let b = check_sources(Some(("flows/aftercart.toml".into(), project)), changed)
        .program
        .unwrap();
    assert_ne!(a.hash, b.hash);
    for (fa, fb) in a.flows.iter().zip(&b.flows) {
        assert_eq!(
            fa.version == fb.version,
            fa.name != "replenishment",
            "{}",
            fa.name
        );
    }
}

#[test]
fn truncated_flows_never_panic() {
    let (project, sources) = flow_sources();
    for (name, text) in &sources {
        let cuts: Vec<usize> = (0..text.len())
            .step_by(7)
            .filter(|i| text.is_char_boundary(*i))
            .collect();
        for cut in cuts {
            let t = &text[..cut];
            let start = Instant::now();
            let _ = check_sources(
                Some(("flows/aftercart.toml".into(), project.clone())),
                vec![(name.clone(), t.to_string())],
            );
            assert!(
                start.elapsed().as_secs() < 5,
                "{name} cut at {cut} took too long"
            );
        }
    }
}

#[test]
fn pathological_nesting_is_refused_quickly() {
    for text in [
        format!("segment s = {}1{}", "(".repeat(5000), ")".repeat(5000)),
        format!("flow f {{ {} }}", "if true { ".repeat(3000)),
        "segment s = ".to_string() + &"not ".repeat(20_000) + "true",
        format!(
            "flow f {{ kind marketing trigger order.created where {} }}",
            "a and ".repeat(20_000)
        ),
    ] {
        let start = Instant::now();
        let (_, diags) = aftercart::syntax::parse(FileId(0), &text);
        assert!(start.elapsed().as_secs() < 5);
        assert!(
            !diags.is_empty(),
            "hostile input must be refused with a diagnostic"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn random_input_never_panics(s in "\\PC{0,300}") {
        let _ = check_sources(None, vec![("fuzz.flow".into(), s)]);
    }

    #[test]
    fn mutated_flows_never_panic(idx in 0usize..10, pos in 0usize..2000, ins in "[{}()\"'#:=|.a-z0-9 \\n%]{1,6}") {
        let (project, sources) = flow_sources();
        let (name, text) = &sources[idx % sources.len()];
        let mut p = pos % (text.len() + 1);
        while !text.is_char_boundary(p) { p -= 1; }
        let mutated = format!("{}{}{}", &text[..p], ins, &text[p..]);
        let _ = check_sources(Some(("flows/aftercart.toml".into(), project)), vec![(name.clone(), mutated)]);
    }
}
