//! The SARIF renderer: a SARIF 2.1.0 log GitHub code scanning accepts, with one rule per code
//! that occurs, relative artifact URIs under `%SRCROOT%` and line-hash fingerprints that survive
//! code moving up or down.

use super::{clamp_span, docs_url, region, repository_url, slash_path, Region};
use crate::diagnostic::codes::{self, CodeInfo};
use crate::diagnostic::{Diagnostic, Severity, SourceMap, Span};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

/// The `uriBaseId` every artifact location is relative to.
pub const SRCROOT: &str = "%SRCROOT%";

/// A pretty-printed SARIF 2.1.0 log with one run. File names are made relative to `base_dir`
/// when they lie under it (relative names are taken relative to the working directory).
pub fn sarif(map: &SourceMap, diags: &[Diagnostic], base_dir: Option<&Path>) -> String {
    let mut codes: Vec<&'static str> = Vec::new();
    for diag in diags {
        if !codes.contains(&diag.code) {
            codes.push(diag.code);
        }
    }
    codes.sort_unstable();
    let rules: Vec<Value> = codes
        .iter()
        .map(|&code| {
            let fallback = diags.iter().find(|d| d.code == code).map(|d| d.severity);
            rule(
                code,
                codes::lookup(code),
                fallback.unwrap_or(Severity::Error),
            )
        })
        .collect();

    let mut seen: HashMap<String, usize> = HashMap::new();
    let results: Vec<Value> = diags
        .iter()
        .map(|diag| {
            let rule_index = codes.iter().position(|&c| c == diag.code).unwrap_or(0);
            result(map, diag, rule_index, base_dir, &mut seen)
        })
        .collect();

    let mut base = json!({ "description": { "text": "The project root" } });
    if let Some(uri) = base_dir.and_then(base_uri) {
        base["uri"] = json!(uri);
    }
    let log = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "aftercart",
                    "informationUri": repository_url(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "rules": rules,
                }
            },
            "originalUriBaseIds": { SRCROOT: base },
            "columnKind": "unicodeCodePoints",
            "results": results,
        }]
    });
    let mut out = serde_json::to_string_pretty(&log).expect("SARIF serializes");
    out.push('\n');
    out
}

fn level(severity: Severity) -> &'static str {
    match severity {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    }
}

/// `unknown name` -> `UnknownName`: the rule's friendly name.
fn pascal_case(title: &str) -> String {
    title
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut chars = w.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

/// The first paragraph of a code's explanation in docs/diagnostics.md, if it has one.
fn first_paragraph(code: &str) -> Option<String> {
    let text = codes::explanation(code)?;
    let body = text.split_once('\n').map(|(_, rest)| rest).unwrap_or("");
    let paragraph = body
        .split("\n\n")
        .map(|p| p.split_whitespace().collect::<Vec<_>>().join(" "))
        .find(|p| !p.is_empty())?;
    Some(paragraph)
}

fn rule(code: &str, info: Option<&CodeInfo>, fallback: Severity) -> Value {
    let title = info.map(|i| i.title).unwrap_or(code);
    let severity = info.map(|i| i.severity).unwrap_or(fallback);
    let full = first_paragraph(code).unwrap_or_else(|| format!("{code}: {title}"));
    json!({
        "id": code,
        "name": pascal_case(title),
        "shortDescription": { "text": title },
        "fullDescription": { "text": full },
        "helpUri": docs_url(code),
        "help": { "text": format!("See {} for an explanation of {code}.", docs_url(code)) },
        "defaultConfiguration": { "level": level(severity) },
    })
}

fn result(
    map: &SourceMap,
    diag: &Diagnostic,
    rule_index: usize,
    base_dir: Option<&Path>,
    seen: &mut HashMap<String, usize>,
) -> Value {
    let mut text = diag.message.clone();
    if let Some(help) = &diag.help {
        text.push_str("\nhelp: ");
        text.push_str(help);
    }
    for note in &diag.notes {
        text.push_str("\nnote: ");
        text.push_str(note);
    }
    let mut result = json!({
        "ruleId": diag.code,
        "ruleIndex": rule_index,
        "level": level(diag.severity),
        "message": { "text": text },
    });
    let primary = diag.primary_span();
    if let Some(span) = primary {
        let uri = artifact_uri(&map.get(span.file).name, base_dir);
        let line = region(map, span).line;
        let hash = line_hash(
            diag.code,
            &uri,
            map.get(span.file).line_text(line),
            &diag.message,
        );
        let n = seen.entry(hash.clone()).or_insert(0);
        *n += 1;
        result["locations"] = json!([location(map, span, base_dir)]);
        result["partialFingerprints"] =
            json!({ "primaryLocationLineHash/v1": format!("{hash}:{n}") });
    }
    let related: Vec<Value> = diag
        .labels
        .iter()
        .filter(|l| Some(l.span) != primary || !l.primary)
        .enumerate()
        .map(|(i, l)| {
            let mut loc = location(map, l.span, base_dir);
            loc["id"] = json!(i);
            if !l.message.is_empty() {
                loc["message"] = json!({ "text": l.message });
            }
            loc
        })
        .collect();
    if !related.is_empty() {
        result["relatedLocations"] = json!(related);
    }
    if let Some(fix) = &diag.fix {
        let artifact = artifact_location(&map.get(fix.span.file).name, base_dir);
        result["fixes"] = json!([{
            "description": { "text": fix.message },
            "artifactChanges": [{
                "artifactLocation": artifact,
                "replacements": [{
                    "deletedRegion": region_json(region(map, fix.span)),
                    "insertedContent": { "text": fix.replacement },
                }],
            }],
        }]);
    }
    result
}

fn region_json(r: Region) -> Value {
    json!({
        "startLine": r.line,
        "startColumn": r.column,
        "endLine": r.end_line,
        "endColumn": r.end_column,
    })
}

fn location(map: &SourceMap, span: Span, base_dir: Option<&Path>) -> Value {
    let file = map.get(span.file);
    let span = clamp_span(file, span);
    json!({
        "physicalLocation": {
            "artifactLocation": artifact_location(&file.name, base_dir),
            "region": region_json(region(map, span)),
        }
    })
}

fn artifact_location(name: &str, base_dir: Option<&Path>) -> Value {
    let uri = artifact_uri(name, base_dir);
    if uri.starts_with("file:") {
        json!({ "uri": uri })
    } else {
        json!({ "uri": uri, "uriBaseId": SRCROOT })
    }
}

/// `code`, the file's URI, the trimmed text of the primary line and the message, hashed: the
/// hash ignores the line number, so code moving up or down keeps its fingerprint.
fn line_hash(code: &str, uri: &str, line_text: &str, message: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [code, uri, line_text.trim(), message] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A path with `.` components dropped (and `..` folded where possible), for prefix tests.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The file's path relative to `base`, when it lies under it.
fn relative_to(path: &Path, base: &Path) -> Option<PathBuf> {
    let (path, base) = (normalize(path), normalize(base));
    if let Ok(rel) = path.strip_prefix(&base) {
        return Some(rel.to_path_buf());
    }
    // A relative name against an absolute base (or the reverse): compare from the working dir.
    let cwd = std::env::current_dir().ok()?;
    let absolute = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize(&cwd.join(p))
        }
    };
    absolute(&path)
        .strip_prefix(absolute(&base))
        .ok()
        .map(Path::to_path_buf)
}

/// The artifact URI of a file: relative (to `base_dir`, or as given), forward slashes,
/// percent-encoded; `file://` for an absolute path outside `base_dir`.
fn artifact_uri(name: &str, base_dir: Option<&Path>) -> String {
    let path = Path::new(name);
    let rel = base_dir.and_then(|base| relative_to(path, base));
    let shown = rel.unwrap_or_else(|| normalize(path));
    let slashed = slash_path(&shown.to_string_lossy());
    if shown.is_absolute() || slashed.starts_with('/') {
        let slashed = if slashed.starts_with('/') {
            slashed
        } else {
            format!("/{slashed}")
        };
        format!("file://{}", encode(&slashed))
    } else {
        encode(&slashed)
    }
}

/// The absolute `file://` URI of the base directory, ending in `/` as SARIF requires.
fn base_uri(base: &Path) -> Option<String> {
    let absolute = if base.is_absolute() {
        base.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(base)
    };
    let mut slashed = slash_path(&normalize(&absolute).to_string_lossy());
    if !slashed.starts_with('/') {
        slashed.insert(0, '/');
    }
    if !slashed.ends_with('/') {
        slashed.push('/');
    }
    Some(format!("file://{}", encode(&slashed)))
}

/// Percent-encodes everything but unreserved characters and `/`.
fn encode(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_names_are_pascal_case() {
        assert_eq!(pascal_case("unknown name"), "UnknownName");
        assert_eq!(
            pascal_case("invalid project file (aftercart.toml)"),
            "InvalidProjectFileAftercartToml"
        );
    }

    #[test]
    fn uris_are_relative_slashed_and_encoded() {
        assert_eq!(artifact_uri("./flows/a b.flow", None), "flows/a%20b.flow");
        assert_eq!(
            artifact_uri("proj/flows/a.flow", Some(Path::new("proj"))),
            "flows/a.flow"
        );
        assert_eq!(
            artifact_uri("proj/flows/a.flow", Some(Path::new("./proj/"))),
            "flows/a.flow"
        );
        assert_eq!(
            artifact_uri("/srv/p/a.flow", Some(Path::new("/srv/p"))),
            "a.flow"
        );
        assert_eq!(
            artifact_uri("/srv/q/a.flow", Some(Path::new("/srv/p"))),
            "file:///srv/q/a.flow"
        );
        assert_eq!(base_uri(Path::new("/srv/p")).unwrap(), "file:///srv/p/");
    }

    #[test]
    fn line_hash_ignores_indentation_only() {
        let a = line_hash("AC0101", "a.flow", "  send x", "m");
        assert_eq!(a, line_hash("AC0101", "a.flow", "send x\t", "m"));
        assert_ne!(a, line_hash("AC0102", "a.flow", "send x", "m"));
        assert_eq!(a.len(), 16);
    }
}
