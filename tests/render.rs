//! Golden tests of the diagnostic renderers: full output for human (no colour) and GitHub, key
//! fields for JSON lines and SARIF.

use aftercart::diagnostic::render::{self, Format, HumanOptions};
use aftercart::diagnostic::{Diagnostic, FileId, Severity, SourceMap, Span};
use serde_json::Value;
use std::path::Path;

const MAIN: &str = "flow \"Café ☕\" on order.created {\n  send \"🎉 Hi {{ custmer.name }}\"\n";
const OTHER: &str = "segment vip = orders > 3\n";

fn span_of(map: &SourceMap, file: FileId, needle: &str) -> Span {
    let start = map.get(file).text.find(needle).expect("needle in text");
    Span::new(file, start, start + needle.len())
}

/// A source map with two files and three diagnostics: an error with help, a secondary label and
/// a fix; a warning with a label in another file and a note; an error without labels.
fn fixture_with(main: &str) -> (SourceMap, Vec<Diagnostic>) {
    let mut map = SourceMap::new();
    let a = map.add("flows/welcome.flow", main);
    let b = map.add("flows/segments.flow", OTHER);
    let name = span_of(&map, a, "custmer");
    let diags = vec![
        Diagnostic::new("AC0101", "unknown name `custmer`")
            .primary(name, "not defined")
            .secondary(span_of(&map, a, "order.created"), "event bound here")
            .help("did you mean `customer`?")
            .fix(name, "customer", "replace with `customer`"),
        Diagnostic::new("AC0302", "step can never run")
            .primary(span_of(&map, a, "send"), "unreachable")
            .secondary(span_of(&map, b, "vip"), "segment is always empty")
            .note("remove the step or fix the segment"),
        Diagnostic::new("AC0002", "cannot read `flows/missing.flow`"),
    ];
    (map, diags)
}

fn fixture() -> (SourceMap, Vec<Diagnostic>) {
    fixture_with(MAIN)
}

#[test]
fn human_golden() {
    let (map, diags) = fixture();
    let out = render::human(
        &map,
        &diags,
        &HumanOptions {
            color: false,
            width: 100,
        },
    );
    let expected = r#"AC0101

  × unknown name `custmer`
   ╭─[flows/welcome.flow:2:17]
 1 │ flow "Café ☕" on order.created {
   ·                   ──────┬──────
   ·                         ╰── event bound here
 2 │   send "🎉 Hi {{ custmer.name }}"
   ·                  ───┬───
   ·                     ╰── not defined
   ╰────
  help: did you mean `customer`?

AC0302

  ⚠ step can never run
   ╭─[flows/welcome.flow:2:3]
 1 │ flow "Café ☕" on order.created {
 2 │   send "🎉 Hi {{ custmer.name }}"
   ·   ──┬─
   ·     ╰── unreachable
   ╰────
  note: remove the step or fix the segment
  ☞ see also flows/segments.flow:1:9
   ╭─[flows/segments.flow:1:9]
 1 │ segment vip = orders > 3
   ·         ─┬─
   ·          ╰── segment is always empty
   ╰────

AC0002

  × cannot read `flows/missing.flow`

error: 2 errors, 1 warning emitted
"#;
    assert_eq!(out, expected, "actual:\n{out}");
}

#[test]
fn human_is_empty_when_clean_and_colours_on_request() {
    let (map, diags) = fixture();
    assert_eq!(render::human(&map, &[], &HumanOptions::default()), "");
    let plain = render::render(Format::Human, &map, &diags, false);
    assert!(!plain.contains('\x1b'));
    assert_eq!(plain, render::human(&map, &diags, &HumanOptions::default()));
    let coloured = render::render(Format::Human, &map, &diags, true);
    assert!(coloured.contains('\x1b'));
    assert!(coloured.contains("flows/welcome.flow:2:17"));
}

#[test]
fn human_summary_for_warnings_only() {
    let (map, diags) = fixture();
    let out = render::human(&map, &diags[1..2], &HumanOptions::default());
    assert!(out.ends_with("\nwarning: 1 warning emitted\n"), "{out}");
}

#[test]
fn github_golden() {
    let (map, diags) = fixture();
    let expected = concat!(
        "::error file=flows/welcome.flow,line=2,col=17,endLine=2,endColumn=24,title=AC0101::unknown name `custmer`%0Ahelp: did you mean `customer`?\n",
        "::warning file=flows/welcome.flow,line=2,col=3,endLine=2,endColumn=7,title=AC0302::step can never run%0Anote: remove the step or fix the segment\n",
        "::error title=AC0002::cannot read `flows/missing.flow`\n",
    );
    assert_eq!(render::github(&map, &diags), expected);
    assert_eq!(render::render(Format::Github, &map, &diags, true), expected);
}

#[test]
fn github_escapes_messages_and_properties() {
    let mut map = SourceMap::new();
    let f = map.add("dir,with:odd%name.flow", "x\n");
    let d = Diagnostic::new("AC0403", "100% off:\r\nnow, really")
        .primary(Span::new(f, 0, 1), "")
        .severity(Severity::Note);
    assert_eq!(
        render::github(&map, &[d]),
        "::notice file=dir%2Cwith%3Aodd%25name.flow,line=1,col=1,endLine=1,endColumn=2,\
         title=AC0403::100%25 off:%0D%0Anow, really\n"
    );
}

fn json_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect()
}

#[test]
fn json_lines_fields() {
    let (map, diags) = fixture();
    let out = render::json(&map, &diags);
    assert!(out.ends_with('\n'));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    let first = &lines[0];
    assert_eq!(first["code"], "AC0101");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["message"], "unknown name `custmer`");
    assert_eq!(first["file"], "flows/welcome.flow");
    // Columns count characters: the 4-byte emoji before the name is one column.
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_u64()),
        (Some(2), Some(17))
    );
    assert_eq!(
        (first["end_line"].as_u64(), first["end_column"].as_u64()),
        (Some(2), Some(24))
    );
    let start = MAIN.find("custmer").unwrap() as u64;
    assert_eq!(first["span"]["start"].as_u64(), Some(start));
    assert_eq!(first["span"]["end"].as_u64(), Some(start + 7));
    assert_eq!(first["labels"][1]["message"], "event bound here");
    assert_eq!(first["labels"][1]["primary"], false);
    assert_eq!(first["labels"][1]["line"].as_u64(), Some(1));
    assert_eq!(first["labels"][1]["column"].as_u64(), Some(18));
    assert_eq!(first["help"], "did you mean `customer`?");
    assert_eq!(first["fix"]["replacement"], "customer");
    assert_eq!(first["fix"]["file"], "flows/welcome.flow");
    assert_eq!(lines[1]["notes"][0], "remove the step or fix the segment");
    assert_eq!(lines[1]["labels"][1]["file"], "flows/segments.flow");
    assert!(lines[1]["fix"].is_null());
    assert!(lines[2]["file"].is_null() && lines[2]["line"].is_null());
    assert_eq!(render::json(&map, &[]), "");
}

fn sarif(map: &SourceMap, diags: &[Diagnostic], base: Option<&Path>) -> Value {
    serde_json::from_str(&render::sarif(map, diags, base)).expect("SARIF is JSON")
}

#[test]
fn sarif_fields() {
    let (map, diags) = fixture();
    let log = sarif(&map, &diags, None);
    assert_eq!(
        log["$schema"],
        "https://json.schemastore.org/sarif-2.1.0.json"
    );
    assert_eq!(log["version"], "2.1.0");
    assert_eq!(log["runs"].as_array().unwrap().len(), 1);
    let run = &log["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "aftercart");
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    let rules = driver["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["AC0002", "AC0101", "AC0302"]);
    assert_eq!(rules[1]["shortDescription"]["text"], "unknown name");
    assert_eq!(rules[1]["name"], "UnknownName");
    assert!(rules[1]["helpUri"]
        .as_str()
        .unwrap()
        .ends_with("docs/diagnostics.md#ac0101"));
    assert_eq!(rules[2]["defaultConfiguration"]["level"], "warning");
    assert!(run["originalUriBaseIds"]["%SRCROOT%"].is_object());

    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    let first = &results[0];
    assert_eq!(first["ruleId"], "AC0101");
    assert_eq!(first["ruleIndex"].as_u64(), Some(1));
    assert_eq!(first["level"], "error");
    assert_eq!(
        first["message"]["text"],
        "unknown name `custmer`\nhelp: did you mean `customer`?"
    );
    let loc = &first["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "flows/welcome.flow");
    assert_eq!(loc["artifactLocation"]["uriBaseId"], "%SRCROOT%");
    let region = &loc["region"];
    assert_eq!(region["startLine"].as_u64(), Some(2));
    assert_eq!(region["startColumn"].as_u64(), Some(17));
    assert_eq!(region["endLine"].as_u64(), Some(2));
    assert_eq!(region["endColumn"].as_u64(), Some(24));
    let related = &first["relatedLocations"][0];
    assert_eq!(related["message"]["text"], "event bound here");
    assert_eq!(
        related["physicalLocation"]["region"]["startLine"].as_u64(),
        Some(1)
    );
    assert_eq!(results[1]["level"], "warning");
    let other = &results[1]["relatedLocations"][0]["physicalLocation"]["artifactLocation"];
    assert_eq!(other["uri"], "flows/segments.flow");
    assert_eq!(results[2]["ruleIndex"].as_u64(), Some(0));
    assert!(results[2].get("locations").is_none());
}

#[test]
fn sarif_uris_are_relative_to_the_base_dir() {
    let (map, diags) = fixture();
    let log = sarif(&map, &diags, Some(Path::new("flows")));
    let run = &log["runs"][0];
    let uri = &run["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"];
    assert_eq!(uri, "welcome.flow");
    let base = run["originalUriBaseIds"]["%SRCROOT%"]["uri"]
        .as_str()
        .unwrap();
    assert!(
        base.starts_with("file:///") && base.ends_with("/flows/"),
        "{base}"
    );
}

fn fingerprints(log: &Value) -> Vec<String> {
    log["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["partialFingerprints"]["primaryLocationLineHash/v1"].as_str())
        .map(str::to_string)
        .collect()
}

#[test]
fn sarif_fingerprints_survive_moving_code() {
    let (map, diags) = fixture();
    let before = fingerprints(&sarif(&map, &diags, None));
    assert_eq!(before.len(), 2);
    assert_ne!(before[0], before[1]);
    // Two lines inserted above, and the flagged line re-indented: same fingerprints.
    let moved = format!("# welcome flow\n\n{}", MAIN.replace("  send", "    send"));
    let (map2, diags2) = fixture_with(&moved);
    let log = sarif(&map2, &diags2, None);
    let region = &log["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startLine"].as_u64(), Some(4));
    assert_eq!(fingerprints(&log), before);
    // Same run twice: same output.
    assert_eq!(
        render::sarif(&map, &diags, None),
        render::sarif(&map, &diags, None)
    );
    // A different message on the same line: a different fingerprint.
    let mut changed = diags.clone();
    changed[0].message = "unknown name `custmr`".into();
    assert_ne!(fingerprints(&sarif(&map, &changed, None))[0], before[0]);
}

#[test]
fn sarif_fingerprints_count_identical_findings() {
    let (map, diags) = fixture();
    let twice = [diags[0].clone(), diags[0].clone()];
    let prints = fingerprints(&sarif(&map, &twice, None));
    assert!(
        prints[0].ends_with(":1") && prints[1].ends_with(":2"),
        "{prints:?}"
    );
    assert_eq!(prints[0].split(':').next(), prints[1].split(':').next());
}

#[test]
fn render_dispatches_on_format() {
    let (map, diags) = fixture();
    assert_eq!(
        render::render(Format::Json, &map, &diags, false),
        render::json(&map, &diags)
    );
    assert_eq!(
        render::render(Format::Sarif, &map, &diags, false),
        render::sarif(&map, &diags, None)
    );
    assert_eq!(Format::parse("SARIF"), Some(Format::Sarif));
}

#[test]
fn odd_spans_never_panic() {
    let mut map = SourceMap::new();
    let f = map.add("a.flow", "é\nsend");
    let len = map.get(f).text.len();
    let diags = [
        Diagnostic::new("AC0001", "at end of file").primary(Span::new(f, len, len), "here"),
        Diagnostic::new("AC0001", "inside a character").primary(Span::new(f, 1, 1), ""),
        Diagnostic::new("AC0001", "past the end").primary(Span::new(f, len + 5, len + 9), "x"),
        Diagnostic::new("AC9999", "unknown code").severity(Severity::Note),
    ];
    for format in Format::ALL {
        assert!(!render::render(format, &map, &diags, false).is_empty());
    }
    let human = render::render(Format::Human, &map, &diags, false);
    assert!(human.contains("[a.flow:2:5]"), "{human}");
    assert!(
        human.ends_with("error: 3 errors, 1 note emitted\n"),
        "{human}"
    );
    let lines = json_lines(&render::json(&map, &diags));
    assert_eq!(lines[0]["span"]["start"].as_u64(), Some(len as u64));
    assert_eq!(
        (lines[0]["line"].as_u64(), lines[0]["column"].as_u64()),
        (Some(2), Some(5))
    );
    assert_eq!(lines[1]["column"].as_u64(), Some(1));
    let log = sarif(&map, &diags, None);
    let rules = log["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules[1]["id"], "AC9999");
    assert_eq!(rules[1]["defaultConfiguration"]["level"], "note");
}
