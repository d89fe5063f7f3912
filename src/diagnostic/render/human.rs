//! The human renderer: rustc-like reports drawn by miette's `GraphicalReportHandler`, one per
//! diagnostic, followed by a summary line ("error: 2 errors, 1 warning emitted").

use super::{clamp_span, region};
use crate::diagnostic::{Diagnostic, FileId, Label, Severity, SourceFile, SourceMap};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents,
    SourceCode, SourceSpan, SpanContents,
};
use std::fmt;

/// Options of the human renderer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HumanOptions {
    /// ANSI colours. Without them the output is plain unicode, stable for golden tests.
    pub color: bool,
    /// The width text is wrapped to, in columns.
    pub width: usize,
}

impl Default for HumanOptions {
    fn default() -> HumanOptions {
        HumanOptions {
            color: false,
            width: 100,
        }
    }
}

/// Renders every diagnostic (in the given order) and a summary line; the empty string when
/// there are no diagnostics.
pub fn human(map: &SourceMap, diags: &[Diagnostic], opts: &HumanOptions) -> String {
    let theme = if opts.color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(opts.width)
        .with_urls(false)
        .without_syntax_highlighting();
    let mut out = String::new();
    for diag in diags {
        render_one(&handler, map, diag, opts, &mut out);
        out.push('\n');
    }
    out.push_str(&summary(diags, opts.color));
    out
}

/// The closing line: counts per severity, led by the worst one. Empty when `diags` is.
fn summary(diags: &[Diagnostic], color: bool) -> String {
    let count = |s: Severity| diags.iter().filter(|d| d.severity == s).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let (errors, warnings, notes) = (
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Note),
    );
    let mut parts = Vec::new();
    if errors > 0 {
        parts.push(plural(errors, "error"));
    }
    if warnings > 0 {
        parts.push(plural(warnings, "warning"));
    }
    if notes > 0 {
        parts.push(plural(notes, "note"));
    }
    let Some(worst) = diags.iter().map(|d| d.severity).max() else {
        return String::new();
    };
    let lead = if color {
        let code = match worst {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Note => "1;36",
        };
        format!("\x1b[{code}m{worst}\x1b[0m")
    } else {
        worst.to_string()
    };
    format!("{lead}: {} emitted\n", parts.join(", "))
}

fn render_one(
    handler: &GraphicalReportHandler,
    map: &SourceMap,
    diag: &Diagnostic,
    opts: &HumanOptions,
    out: &mut String,
) {
    let main_file = diag.primary_span().map(|s| s.file);
    let report = Report {
        message: diag.message.clone(),
        code: Some(diag.code),
        severity: diag.severity,
        help: diag.help.clone(),
        source: main_file.map(|id| FileSource::new(map.get(id))),
        labels: main_file
            .map(|id| labels_in(map, &diag.labels, id))
            .unwrap_or_default(),
    };
    render_report(handler, &report, out);
    for note in &diag.notes {
        out.push_str(&wrap(note, "  note: ", "        ", opts.width));
    }
    // miette draws one source per report: labels in other files get a report of their own.
    let mut others: Vec<FileId> = Vec::new();
    for label in &diag.labels {
        if Some(label.span.file) != main_file && !others.contains(&label.span.file) {
            others.push(label.span.file);
        }
    }
    for id in others {
        let file = map.get(id);
        let first = diag
            .labels
            .iter()
            .find(|l| l.span.file == id)
            .expect("a label in the file");
        let at = region(map, first.span);
        let related = Report {
            message: format!("see also {}:{}:{}", file.name, at.line, at.column),
            code: None,
            severity: Severity::Note,
            help: None,
            source: Some(FileSource::new(file)),
            labels: labels_in(map, &diag.labels, id),
        };
        render_report(handler, &related, out);
    }
}

fn render_report(handler: &GraphicalReportHandler, report: &Report<'_>, out: &mut String) {
    let mut text = String::new();
    if handler.render_report(&mut text, report).is_err() {
        // Only a broken `fmt::Write` fails; a String never does. Fall back to the bare message.
        text = format!("{}: {}\n", report.severity, report.message);
    }
    out.push_str(&text);
}

/// The labels of `labels` that lie in `file`, clamped, in miette's form.
fn labels_in(map: &SourceMap, labels: &[Label], file: FileId) -> Vec<LabeledSpan> {
    let source = map.get(file);
    labels
        .iter()
        .filter(|l| l.span.file == file)
        .map(|l| {
            let span = clamp_span(source, l.span);
            let text = (!l.message.is_empty()).then(|| l.message.clone());
            let span = SourceSpan::new(span.start.into(), span.len());
            if l.primary {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            }
        })
        .collect()
}

/// Greedy word wrap of `text` to `width` columns: `first` prefixes the first line, `rest` the
/// others. Explicit newlines are kept.
fn wrap(text: &str, first: &str, rest: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = first.to_string();
    let mut fresh = true;
    for (i, paragraph) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str(line.trim_end());
            out.push('\n');
            line = rest.to_string();
            fresh = true;
        }
        for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
            let len = line.chars().count();
            if !fresh && len + 1 + word.chars().count() > width {
                out.push_str(&line);
                out.push('\n');
                line = rest.to_string();
                fresh = true;
            }
            if !fresh {
                line.push(' ');
            }
            line.push_str(word);
            fresh = false;
        }
    }
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

/// One miette report: a diagnostic, or the part of one that lies in another file.
#[derive(Debug)]
struct Report<'a> {
    message: String,
    code: Option<&'static str>,
    severity: Severity,
    help: Option<String>,
    source: Option<FileSource<'a>>,
    labels: Vec<LabeledSpan>,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.code.map(|c| Box::new(c) as Box<dyn fmt::Display>)
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Note => miette::Severity::Advice,
        })
    }
    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.labels.is_empty() {
            return None;
        }
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            return None;
        }
        Some(Box::new(self.labels.iter().cloned()))
    }
}

/// A borrowed source file under its display name (miette's `NamedSource` wants owned text).
#[derive(Debug)]
struct FileSource<'a> {
    name: &'a str,
    text: &'a str,
}

impl<'a> FileSource<'a> {
    fn new(file: &'a SourceFile) -> FileSource<'a> {
        FileSource {
            name: &file.name,
            text: &file.text,
        }
    }
}

impl SourceCode for FileSource<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let inner = self
            .text
            .read_span(span, context_lines_before, context_lines_after)?;
        // miette counts columns in bytes; ours (and rustc's) are in characters.
        let offset = inner.span().offset().min(self.text.len());
        let before = self.text.as_bytes()[..offset]
            .iter()
            .rposition(|&b| b == b'\n');
        let line_start = before.map(|i| i + 1).unwrap_or(0);
        let column = String::from_utf8_lossy(&self.text.as_bytes()[line_start..offset])
            .chars()
            .count();
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.to_string(),
            inner.data(),
            *inner.span(),
            inner.line(),
            column,
            inner.line_count(),
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_and_leads_with_the_worst() {
        let e = Diagnostic::new("AC0101", "x");
        let w = Diagnostic::new("AC0302", "y");
        assert_eq!(summary(&[], false), "");
        assert_eq!(
            summary(std::slice::from_ref(&w), false),
            "warning: 1 warning emitted\n"
        );
        assert_eq!(
            summary(&[e.clone(), w, e], false),
            "error: 2 errors, 1 warning emitted\n"
        );
    }

    #[test]
    fn wrap_breaks_at_words_and_keeps_newlines() {
        assert_eq!(wrap("aa bb cc", "> ", "  ", 6), "> aa\n  bb\n  cc\n");
        assert_eq!(wrap("a\nb", "> ", "  ", 80), "> a\n  b\n");
    }

    #[test]
    fn empty_input_renders_nothing() {
        assert_eq!(human(&SourceMap::new(), &[], &HumanOptions::default()), "");
    }
}
