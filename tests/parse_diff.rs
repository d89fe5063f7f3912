//! Differential test of the two parsers: the hand-written fast path must build exactly the AST
//! pest builds (nodes and spans) wherever it accepts a file, must accept every file pest parses
//! without a diagnostic, and `parse` (fast, pest on the rest) must equal pest alone, diagnostics
//! included. Inputs: every `.flow` file in the repository, the `flow` blocks of the docs, the
//! benchmark's generated corpus, hand-written edge cases, cut and re-spaced variants of all of
//! those, random valid flows (`flowgen`, shared with the formatter's tests) and random token
//! soups.

use aftercart::diagnostic::FileId;
use aftercart::syntax::parser::{parse, parse_fast, parse_with_pest};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

mod flowgen;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Compare the parsers on one text; returns whether pest parsed it without a diagnostic. The
/// fast path must accept every such text unless `may_refuse` (it gives up on purpose on a few
/// valid constructs, see `src/syntax/fast.rs`; cut and re-spaced variants may contain them).
fn compare(name: &str, text: &str, may_refuse: bool) -> bool {
    let id = FileId(0);
    let (pest_file, pest_diags) = parse_with_pest(id, text);
    let mixed = parse(id, text);
    assert_eq!(
        mixed,
        (pest_file.clone(), pest_diags.clone()),
        "parse differs from pest alone on {name}:\n{text}"
    );
    let clean = pest_diags.is_empty();
    match parse_fast(id, text) {
        Some(fast) => {
            assert!(
                clean,
                "fast path accepted what pest refuses: {name}:\n{text}"
            );
            assert_eq!(fast, pest_file, "ASTs differ on {name}:\n{text}");
        }
        None => assert!(
            !clean || may_refuse,
            "fast path refused a valid file: {name}:\n{text}"
        ),
    }
    clean
}

fn flow_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if p.is_dir() && name != "target" && !name.starts_with('.') {
            flow_files(&p, out);
        } else if name.ends_with(".flow") {
            out.push(p);
        }
    }
}

/// Every `.flow` file and every fenced `flow` block of the Markdown docs.
fn repository_sources() -> Vec<(String, String)> {
    let mut paths = Vec::new();
    for d in ["flows", "tests", "examples", "benches", "docs"] {
        flow_files(&Path::new(ROOT).join(d), &mut paths);
    }
    paths.sort();
    let mut out: Vec<(String, String)> = paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            (p.display().to_string(), text)
        })
        .collect();
    let mut docs = vec![PathBuf::from(ROOT).join("README.md")];
    if let Ok(entries) = std::fs::read_dir(Path::new(ROOT).join("docs")) {
        docs.extend(entries.flatten().map(|e| e.path()));
    }
    for md in docs
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
    {
        let text = std::fs::read_to_string(md).unwrap();
        let mut block: Option<String> = None;
        for line in text.lines() {
            match &mut block {
                None if line.trim_start().starts_with("```flow") => block = Some(String::new()),
                Some(b) if line.trim_start().starts_with("```") => {
                    out.push((format!("{} block {}", md.display(), out.len()), b.clone()));
                    block = None;
                }
                Some(b) => {
                    b.push_str(line);
                    b.push('\n');
                }
                None => {}
            }
        }
    }
    out
}

/// Inputs chosen for the places where pest's behaviour is subtle (see `src/syntax/fast.rs`).
const EDGE_CASES: &[&str] = &[
    // Interpolation spans keep the trivia before an optional part that matched nothing.
    "flow f {\n  send sms \"{{ x | upper }}{{ not a }}{{ -b }}{{ a == b }}{{ a.b == c.d }}\"\n}\n",
    "flow f {\n  send sms \"{{ a + b * c.d  }} {{ x + y.z }} {{ p == q + r * s.t }} {{ f(a) | g }}\"\n}\n",
    "flow f {\n  send sms \"{{a|b(1,2)|c}} {{ not not x.y  }} {{ - - 3 }} {{ x not in [1,] }}\"\n}\n",
    "flow f {\n  send sms \"{{ any(i in xs: i > 1) }} {{ count (i in xs : true) }} {{ plugin p }}\"\n}\n",
    "flow f {\n  send sms \"{{ a # comment }}{{x}}{{ 'q\\'s' | d('}') }}\"\n}\n",
    "flow f {\n  send sms \"\"\"\n    Hi {{ profile.first_name\n      | default(\"there\") }}!\n    Bye\n  \"\"\"\n}\n",
    "flow f {\n  send sms \"tail {{ a }\"\n}\n",
    "flow f {\n  send sms \"esc \\\" \\\\ \\n \\t \\q {{ x }}\\\"\"\n}\n",
    // Names, literals and calls.
    "segment s = f(,) and [a,] == [] or g(a, b,) and (x) in [1.5, 10:00, 5ms, 2w, 'a', true]\n",
    "segment s = 5.x + flow.entry.y - any(xs) + count(x) * all (x in l: x) / -(-1)\n",
    "segment s = a not  in b\nsegment t = a starts_with 'x' and b ends_with \"y\" and c contains d\n",
    "segment s = a . b . c\nsegment t = truex or falsey or notx or inx or flowers\n",
    "segment s = not\n  # comment\n  a <= b and c >= d and e != f and g < h and i > j\n",
    "segment s = 99999999999999999999\n",
    "segment s = a not\nin b\n",
    // Valid, refused on purpose: pest backtracks from the quantifier to a call here.
    "# fallback\nsegment s = any(x in l)\n",
    "segment s = f(a b)\n",
    "segment s = a.5\n",
    // Members and steps.
    "flow f {\n  exit when held defer\n  exit\n  when held drop\n}\n",
    "flow f {\n  exit when order.created where event.x == 1\n  goal a.b where x within 5d\n}\n",
    "flow f {\n  entry at most once per 2d\n  entry once ever\n  entry every time\n}\n",
    "flow f {\n  wait until 9:05 local on mon, tue,weekends\n  wait until 10:00 local\n}\n",
    "flow f {\n  wait for a.b where x within 2h { received => exit timeout => { } }\n}\n",
    "flow f {\n  wait reply { \"1\" | 'y' | \"\"\"z\"\"\" => send sms \"a\" other => exit }\n}\n",
    "flow f {\n  split { 50% a => exit 12.5% b => { wait 1d } 37.5% c => exit }\n}\n",
    "flow f {\n  if a { exit } else if b { exit } else { exit }\n  if c { } else { } else { }\n}\n",
    "flow f {\n  if a { exit } else if { exit }\n}\n",
    "flow f {\n  wait 5mx\n}\n",
    "flow f {\n  wait 123:00 local\n}\n",
    "segment s = 5mss + 5_000 + 5x + 2.5d\n",
    "segment s = f # c\n (x) + any # c\n (x in l: x) + count\n(x)\n",
    "segment s = a in.b\n",
    "plugin p = \"x.wat\" kind segment fuel 10 memory 8MiB fallback true memory 2KiB\n",
    "plugin p = 'x.wat' kind recommend fuel 99999999999999999999999 memory 99999999999999999999MiB\n",
    "plugin p = \"x.wat\" kind segment fuel\n",
    "# lead\n\nflow a {\n}\n# between\nsegment b = 1\nflow c { kind transactional }\n",
    "flow f {\n  description \"\"\"\"\n}\n",
    "",
    "   \n# only a comment",
];

fn variants(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    // Cut at several places: mostly failing inputs, which must fall back identically.
    let step = (text.len() / 12).max(1);
    let mut i = step;
    while i < text.len() {
        if text.is_char_boundary(i) {
            out.push(text[..i].to_string());
        }
        i += step;
    }
    // Other trivia between tokens.
    out.push(text.replace(' ', "  "));
    out.push(text.replace(" == ", "==").replace(", ", ","));
    out.push(text.replace("\n  ", " # c\n\t"));
    out.push(text.replace("{{ ", "{{").replace(" }}", "}}"));
    out.push(text.replace("{{ ", "{{\t ").replace(" }}", "  }}"));
    out.push(text.replace('\n', "\r\n"));
    out
}

#[test]
fn both_parsers_agree_on_repository_sources() {
    let sources = repository_sources();
    assert!(sources.len() > 40, "found only {} sources", sources.len());
    let mut clean = 0;
    for (name, text) in &sources {
        clean += compare(name, text, false) as usize;
        for (k, v) in variants(text).iter().enumerate() {
            compare(&format!("{name} variant {k}"), v, false);
        }
    }
    // Most sources are valid: the fast path is exercised, not just fallen back from.
    assert!(clean > 20, "only {clean} clean sources");
}

#[test]
fn both_parsers_agree_on_edge_cases() {
    let mut clean = 0;
    for (i, text) in EDGE_CASES.iter().enumerate() {
        let may_refuse = text.starts_with("# fallback");
        clean += compare(&format!("edge case {i}"), text, may_refuse) as usize;
        for (k, v) in variants(text).iter().enumerate() {
            compare(&format!("edge case {i} variant {k}"), v, may_refuse);
        }
    }
    assert!(clean > 20, "only {clean} clean edge cases");
}

#[test]
fn both_parsers_agree_on_the_benchmark_corpus() {
    let files = aftercart::check::corpus::corpus(3_000);
    assert!(files.len() >= 3);
    for (name, text) in &files {
        assert!(compare(name, text, false), "{name} does not parse");
        assert!(parse_fast(FileId(0), text).is_some());
    }
}

/// Tokens of the language and some that are not, for random soups.
const TOKENS: &[&str] = &[
    "flow",
    "f",
    "{",
    "}",
    "segment",
    "s",
    "=",
    "send",
    "sms",
    "\"hi {{ x }}\"",
    "'a'",
    "wait",
    "2d",
    "10:00",
    "until",
    "local",
    "on",
    "mon",
    ",",
    "if",
    "else",
    "exit",
    "when",
    "held",
    "defer",
    "a.b",
    "where",
    "x",
    "==",
    "and",
    "or",
    "not",
    "in",
    "(",
    ")",
    "[",
    "]",
    "1",
    "1.5",
    "-",
    "+",
    "*",
    ".",
    "any",
    "reply",
    "=>",
    "other",
    "timeout",
    "split",
    "50%",
    "trigger",
    "order.created",
    "#c\n",
    "\n",
    "plugin",
    "true",
    "\"{{ a | f(1) }}\"",
    "|",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Valid flows with one random edit (a byte removed, or one of a few inserted): mostly
    /// invalid, where the fast path must give up, or valid in another way, where it must agree.
    #[test]
    fn both_parsers_agree_on_edited_flows(
        src in flowgen::source(),
        at in any::<prop::sample::Index>(),
        insert in prop::option::of(prop::sample::select(vec![
            " ", "\n", "#", "\"", "'", "{", "}", "(", ")", ",", ".", "|", "=", "-", "not ", "5", "x", "%", "\\",
        ])),
    ) {
        let mut text = src.clone();
        let mut i = at.index(text.len().max(1));
        while !text.is_char_boundary(i) {
            i -= 1;
        }
        match insert {
            Some(ins) => text.insert_str(i, ins),
            None if i < text.len() => {
                text.remove(i);
            }
            None => {}
        }
        compare("edited flow", &text, text.contains("any") || text.contains("all") || text.contains("count"));
    }

    /// Random expressions and filters inside a `{{ }}` with random layout: where the pest path
    /// keeps trivia at the end of some spans.
    #[test]
    fn both_parsers_agree_on_random_interpolations(
        expr in flowgen::expr(),
        seps in prop::collection::vec(any::<u8>(), 64),
        filters in prop::collection::vec(prop::sample::select(vec![
            vec!["|", "upper"], vec!["|", "default", "(", "'x'", ")"], vec!["|", "f", "(", "1", ",", "a.b", ")"],
        ]), 0..3),
        pad in prop::sample::select(vec!["", " ", "  ", "\t", "\n"]),
    ) {
        let mut tokens = expr;
        tokens.extend(filters.into_iter().flatten().map(str::to_string));
        let seps: Vec<u8> = seps.iter().copied().cycle().take(tokens.len()).collect();
        let inner = flowgen::render(&tokens, &seps);
        let text = format!("flow f {{\n  send sms \"\"\"\n    a {{{{{pad}{inner}{pad}}}}} b\n  \"\"\"\n}}\n");
        eprintln!("TEXT {text:?}");
        prop_assert!(compare("random interpolation", &text, false), "not valid:\n{}", text);
    }

    /// Valid flows with random layout: always taken by the fast path, always the same AST.
    #[test]
    fn both_parsers_agree_on_random_flows(src in flowgen::source()) {
        prop_assert!(compare("random flow", &src, false), "not valid:\n{}", src);
    }

    #[test]
    fn both_parsers_agree_on_token_soups(
        prefix in prop::sample::select(vec!["", "flow f {\n", "segment s = ", "flow f {\n  if x {\n"]),
        toks in prop::collection::vec((0..TOKENS.len(), prop::sample::select(vec![" ", "", "\n  "])), 0..30),
        suffix in prop::sample::select(vec!["", "}\n", "}\n}\n"]),
    ) {
        let mut text = prefix.to_string();
        for (t, sep) in toks {
            text.push_str(TOKENS[t]);
            text.push_str(sep);
        }
        text.push_str(suffix);
        compare("token soup", &text, text.contains("any"));
    }
}
