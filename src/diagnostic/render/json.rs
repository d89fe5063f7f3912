//! The JSON renderer: JSON lines, one object per diagnostic, with 1-based lines and columns
//! (columns in characters, end columns exclusive) and byte spans.

use super::{clamp_span, region};
use crate::diagnostic::{Diagnostic, Severity, SourceMap, Span};
use serde::Serialize;

#[derive(Serialize)]
struct JsonDiagnostic<'a> {
    code: &'a str,
    severity: Severity,
    message: &'a str,
    file: Option<&'a str>,
    line: Option<usize>,
    column: Option<usize>,
    end_line: Option<usize>,
    end_column: Option<usize>,
    span: Option<ByteSpan>,
    labels: Vec<JsonLabel<'a>>,
    help: Option<&'a str>,
    notes: &'a [String],
    fix: Option<JsonFix<'a>>,
}

#[derive(Serialize)]
struct ByteSpan {
    start: usize,
    end: usize,
}

#[derive(Serialize)]
struct JsonLabel<'a> {
    file: &'a str,
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    span: ByteSpan,
    message: &'a str,
    primary: bool,
}

#[derive(Serialize)]
struct JsonFix<'a> {
    file: &'a str,
    span: ByteSpan,
    replacement: &'a str,
    message: &'a str,
}

fn byte_span(map: &SourceMap, span: Span) -> ByteSpan {
    let span = clamp_span(map.get(span.file), span);
    ByteSpan {
        start: span.start,
        end: span.end,
    }
}

/// One JSON object per diagnostic, each on its own line (the empty string when there are none).
pub fn json(map: &SourceMap, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in diags {
        let primary = diag.primary_span();
        let at = primary.map(|s| region(map, s));
        let object = JsonDiagnostic {
            code: diag.code,
            severity: diag.severity,
            message: &diag.message,
            file: primary.map(|s| map.get(s.file).name.as_str()),
            line: at.map(|r| r.line),
            column: at.map(|r| r.column),
            end_line: at.map(|r| r.end_line),
            end_column: at.map(|r| r.end_column),
            span: primary.map(|s| byte_span(map, s)),
            labels: diag
                .labels
                .iter()
                .map(|l| {
                    let at = region(map, l.span);
                    JsonLabel {
                        file: &map.get(l.span.file).name,
                        line: at.line,
                        column: at.column,
                        end_line: at.end_line,
                        end_column: at.end_column,
                        span: byte_span(map, l.span),
                        message: &l.message,
                        primary: l.primary,
                    }
                })
                .collect(),
            help: diag.help.as_deref(),
            notes: &diag.notes,
            fix: diag.fix.as_ref().map(|f| JsonFix {
                file: &map.get(f.span.file).name,
                span: byte_span(map, f.span),
                replacement: &f.replacement,
                message: &f.message,
            }),
        };
        // Serializing plain structs of strings and numbers cannot fail.
        out.push_str(&serde_json::to_string(&object).expect("diagnostics serialize"));
        out.push('\n');
    }
    out
}
