//! The GitHub renderer: Actions workflow commands (`::error file=..,line=..::message`), which
//! the runner turns into annotations on the pull request's diff.

use super::{region, slash_path};
use crate::diagnostic::{Diagnostic, Severity, SourceMap};

/// One workflow command per diagnostic: errors become `::error`, warnings `::warning`, notes
/// `::notice`. Help and notes follow the message on lines of their own.
pub fn github(map: &SourceMap, diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for diag in diags {
        let command = match diag.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        let mut props = Vec::new();
        if let Some(span) = diag.primary_span() {
            let at = region(map, span);
            props.push(("file", slash_path(&map.get(span.file).name)));
            props.push(("line", at.line.to_string()));
            props.push(("col", at.column.to_string()));
            props.push(("endLine", at.end_line.to_string()));
            props.push(("endColumn", at.end_column.to_string()));
        }
        props.push(("title", diag.code.to_string()));
        let props: Vec<String> = props
            .iter()
            .map(|(k, v)| format!("{k}={}", escape_property(v)))
            .collect();
        let mut message = diag.message.clone();
        if let Some(help) = &diag.help {
            message.push_str("\nhelp: ");
            message.push_str(help);
        }
        for note in &diag.notes {
            message.push_str("\nnote: ");
            message.push_str(note);
        }
        out.push_str(&format!(
            "::{command} {}::{}\n",
            props.join(","),
            escape_data(&message)
        ));
    }
    out
}

/// Escapes a command's message as the Actions toolkit does.
pub(crate) fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a property value as the Actions toolkit does (data escapes plus `:` and `,`).
pub(crate) fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_the_toolkit() {
        assert_eq!(escape_data("100% a:b,c\r\nd"), "100%25 a:b,c%0D%0Ad");
        assert_eq!(escape_property("100% a:b,c\nd"), "100%25 a%3Ab%2Cc%0Ad");
    }

    #[test]
    fn a_diagnostic_without_labels_has_only_a_title() {
        let map = SourceMap::new();
        let d = Diagnostic::new("AC0002", "cannot read `x.flow`").note("it is missing");
        assert_eq!(
            github(&map, &[d]),
            "::error title=AC0002::cannot read `x.flow`%0Anote: it is missing\n"
        );
    }
}
