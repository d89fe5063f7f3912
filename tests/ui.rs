//! Golden tests of rendered diagnostics: each `tests/ui/*.flow` is checked on its own (with
//! `tests/ui/aftercart.toml`) and the full human rendering, without colour, must equal the
//! `.out` file beside it (cases under `projects/` are named by their path from the package
//! root, since plugin paths are read relative to the declaring file). `UPDATE_GOLDEN=1 cargo test --test ui` rewrites the `.out` files.

use aftercart::check::check_sources;
use aftercart::diagnostic::render::{render, Format};
use std::path::Path;

#[test]
fn ui_golden() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui");
    let project = std::fs::read_to_string(dir.join("aftercart.toml")).unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "flow"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 25, "expected a ui case per diagnostic code");
    let mut failures = Vec::new();
    for case in &cases {
        let name = format!("ui/{}", case.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(case).unwrap();
        let checked = check_sources(
            Some(("ui/aftercart.toml".into(), project.clone())),
            vec![(name.clone(), text)],
        );
        let got = render(Format::Human, &checked.map, &checked.diagnostics, false);
        let out = case.with_extension("out");
        if update {
            std::fs::write(&out, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out).unwrap_or_default();
        if got != want {
            failures.push(format!("--- {name}: expected\n{want}\n--- got\n{got}"));
        }
        // Every case named after a code must produce that code (guards against a golden file
        // that silently stopped showing the diagnostic it exists for).
        let stem = case.file_stem().unwrap().to_string_lossy().to_string();
        if let Some(code) = stem.strip_prefix("ac").map(|s| format!("AC{}", &s[..4])) {
            assert!(
                checked.diagnostics.iter().any(|d| d.code == code),
                "{name} does not produce {code}: {:?}",
                checked
                    .diagnostics
                    .iter()
                    .map(|d| d.code)
                    .collect::<Vec<_>>()
            );
        }
    }
    // Cases that need their own project file: tests/ui/projects/NAME/{aftercart.toml, *.flow},
    // rendered to tests/ui/projects/NAME.out.
    let mut projects: Vec<_> = std::fs::read_dir(dir.join("projects"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    projects.sort();
    for proj in &projects {
        let pname = proj.file_name().unwrap().to_string_lossy().to_string();
        let toml = std::fs::read_to_string(proj.join("aftercart.toml")).unwrap();
        let mut sources = Vec::new();
        for e in std::fs::read_dir(proj).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "flow") {
                let n = format!(
                    "tests/ui/projects/{pname}/{}",
                    p.file_name().unwrap().to_string_lossy()
                );
                sources.push((n, std::fs::read_to_string(&p).unwrap()));
            }
        }
        sources.sort();
        let checked = check_sources(
            Some((format!("tests/ui/projects/{pname}/aftercart.toml"), toml)),
            sources,
        );
        let got = render(Format::Human, &checked.map, &checked.diagnostics, false);
        let out = dir.join("projects").join(format!("{pname}.out"));
        let code = format!("AC{}", &pname[2..6]);
        assert!(
            checked.diagnostics.iter().any(|d| d.code == code),
            "{pname} does not produce {code}"
        );
        if update {
            std::fs::write(&out, &got).unwrap();
        } else if std::fs::read_to_string(&out).unwrap_or_default() != got {
            failures.push(format!("--- {pname}: got\n{got}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
