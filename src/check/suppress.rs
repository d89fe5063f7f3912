//! Inline suppression: a comment `# allow(AC0402): reason` on the line of a finding, or on the
//! lines just above it, silences that code there. The reason is mandatory (AC0006): a
//! suppression without one is itself reported, so every silenced finding is explained in review.

use crate::diagnostic::{codes, Diagnostic, SourceMap, Span};

struct Allow {
    file: crate::diagnostic::FileId,
    /// The 1-based lines it covers: its own line and the next code line.
    lines: Vec<usize>,
    codes: Vec<String>,
}

pub fn apply(map: &SourceMap, diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut allows = Vec::new();
    let mut out = Vec::new();
    for (id, file) in map.files() {
        if !(file.name.ends_with(".flow") || file.name.ends_with(".toml")) {
            continue;
        }
        for line_no in 1..=file.line_count() {
            let line = file.line_text(line_no);
            let Some(hash) = find_comment(line) else {
                continue;
            };
            let comment = line[hash + 1..].trim();
            let Some(rest) = comment.strip_prefix("allow(") else {
                continue;
            };
            let line_start: usize = (1..line_no).map(|l| file.line_text(l).len() + 1).sum();
            let span = Span::new(id, line_start + hash, line_start + line.len());
            let Some(close) = rest.find(')') else {
                out.push(Diagnostic::new("AC0006", "unclosed `allow(`").primary(span, "here"));
                continue;
            };
            let list: Vec<String> = rest[..close]
                .split(',')
                .map(|s| s.trim().to_uppercase())
                .collect();
            let reason = rest[close + 1..].trim_start_matches(':').trim();
            let mut ok = true;
            for c in &list {
                if codes::lookup(c).is_none() {
                    out.push(
                        Diagnostic::new("AC0006", format!("unknown code `{c}` in allow comment"))
                            .primary(span, "here"),
                    );
                    ok = false;
                }
            }
            if reason.is_empty() {
                out.push(
                    Diagnostic::new("AC0006", "a suppression needs a reason")
                        .primary(span, "no reason given")
                        .help(format!(
                            "say why the finding is acceptable: `# allow({}): <reason>`",
                            list.join(", ")
                        )),
                );
                ok = false;
            }
            if !ok {
                continue;
            }
            // Covers its own line (trailing comment) and the next line that is not a comment.
            let mut lines = vec![line_no];
            let code_before = line[..hash].trim();
            if code_before.is_empty() {
                let mut n = line_no + 1;
                while n <= file.line_count()
                    && (file.line_text(n).trim().starts_with('#')
                        || file.line_text(n).trim().is_empty())
                {
                    n += 1;
                }
                lines.push(n);
            }
            allows.push(Allow {
                file: id,
                lines,
                codes: list,
            });
        }
    }
    for d in diags {
        let silenced = d.primary_span().is_some_and(|s| {
            let line = map.get(s.file).line_col(s.start).0;
            allows.iter().any(|a| {
                a.file == s.file && a.lines.contains(&line) && a.codes.iter().any(|c| c == d.code)
            })
        });
        if !silenced {
            out.push(d);
        }
    }
    out
}

/// The byte index of a `#` that starts a comment (outside a string), if any.
fn find_comment(line: &str) -> Option<usize> {
    let mut in_str: Option<char> = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match in_str {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == q {
                    in_str = None;
                }
            }
            None => match c {
                '"' | '\'' => in_str = Some(c),
                '#' => return Some(i),
                _ => {}
            },
        }
    }
    None
}
