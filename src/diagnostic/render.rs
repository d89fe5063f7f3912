//! Renderers of diagnostics: human (miette, rustc-like), JSON lines, SARIF 2.1.0 and GitHub
//! workflow commands. Every renderer returns a `String`; printing is `cli`'s job. None of them
//! sorts: diagnostics come out in the order they were given (the checker sorts).

mod github;
mod human;
mod json;
mod sarif;

pub use github::github;
pub use human::{human, HumanOptions};
pub use json::json;
pub use sarif::sarif;

use super::{Diagnostic, SourceFile, SourceMap, Span};

/// An output format for diagnostics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// rustc-like snippets with labels, for terminals.
    Human,
    /// JSON lines: one object per diagnostic.
    Json,
    /// SARIF 2.1.0, for GitHub code scanning and other static-analysis viewers.
    Sarif,
    /// GitHub Actions workflow commands (`::error file=...::message`).
    Github,
}

impl Format {
    /// Every format, in the order `--help` lists them.
    pub const ALL: [Format; 4] = [Format::Human, Format::Json, Format::Sarif, Format::Github];

    /// Parses a format name, case-insensitively (`human`, `json`, `sarif`, `github`, plus the
    /// aliases `text`, `jsonl` and `github-actions`).
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "human" | "text" => Some(Format::Human),
            "json" | "jsonl" => Some(Format::Json),
            "sarif" => Some(Format::Sarif),
            "github" | "github-actions" | "gh" => Some(Format::Github),
            _ => None,
        }
    }

    /// The canonical name, which [`Format::parse`] accepts.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Human => "human",
            Format::Json => "json",
            Format::Sarif => "sarif",
            Format::Github => "github",
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Renders `diags` in `format`. Human output uses the default width (100 columns); SARIF uses
/// file names as given (no base directory).
pub fn render(format: Format, map: &SourceMap, diags: &[Diagnostic], color: bool) -> String {
    match format {
        Format::Human => human(
            map,
            diags,
            &HumanOptions {
                color,
                ..HumanOptions::default()
            },
        ),
        Format::Json => json(map, diags),
        Format::Sarif => sarif(map, diags, None),
        Format::Github => github(map, diags),
    }
}

/// The project's home page (the crate's `repository`, or the canonical GitHub address).
pub(crate) fn repository_url() -> &'static str {
    let repo = env!("CARGO_PKG_REPOSITORY");
    if repo.is_empty() {
        "https://github.com/aftercart/aftercart"
    } else {
        repo.trim_end_matches('/')
    }
}

/// Where a code is documented: its section of docs/diagnostics.md.
pub(crate) fn docs_url(code: &str) -> String {
    format!(
        "{}/blob/main/docs/diagnostics.md#{}",
        repository_url(),
        code.to_ascii_lowercase()
    )
}

/// A byte offset moved into the text and back onto a character boundary, so slicing and
/// `line_col` never panic on a malformed span.
pub(crate) fn clamp_offset(file: &SourceFile, offset: usize) -> usize {
    let mut offset = offset.min(file.text.len());
    while !file.text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// `span` with both ends clamped (and ordered) within its file.
pub(crate) fn clamp_span(file: &SourceFile, span: Span) -> Span {
    let start = clamp_offset(file, span.start);
    let end = clamp_offset(file, span.end).max(start);
    Span {
        file: span.file,
        start,
        end,
    }
}

/// 1-based lines and columns (columns in characters; the end column is exclusive) of a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Region {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

pub(crate) fn region(map: &SourceMap, span: Span) -> Region {
    let file = map.get(span.file);
    let span = clamp_span(file, span);
    let (line, column) = file.line_col(span.start);
    let (end_line, end_column) = file.line_col(span.end);
    Region {
        line,
        column,
        end_line,
        end_column,
    }
}

/// A file name with forward slashes and no leading `./`.
pub(crate) fn slash_path(name: &str) -> String {
    let mut path = name.replace('\\', "/");
    while let Some(rest) = path.strip_prefix("./") {
        path = rest.to_string();
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_names_round_trip() {
        for format in Format::ALL {
            assert_eq!(Format::parse(format.as_str()), Some(format));
            assert_eq!(
                Format::parse(&format.to_string().to_uppercase()),
                Some(format)
            );
        }
        assert_eq!(Format::parse("github-actions"), Some(Format::Github));
        assert_eq!(Format::parse("xml"), None);
    }

    #[test]
    fn clamping_keeps_char_boundaries() {
        let file = SourceFile::new("a.flow", "é\nab");
        assert_eq!(clamp_offset(&file, 1), 0);
        assert_eq!(clamp_offset(&file, 99), file.text.len());
        let span = clamp_span(&file, Span::new(Default::default(), 5, 2));
        assert_eq!((span.start, span.end), (5, 5));
    }

    #[test]
    fn slash_paths() {
        assert_eq!(slash_path(".\\flows\\a.flow"), "flows/a.flow");
        assert_eq!(slash_path("./././a.flow"), "a.flow");
    }

    #[test]
    fn docs_urls_use_lowercase_anchors() {
        assert!(docs_url("AC0101").ends_with("docs/diagnostics.md#ac0101"));
    }
}
