//! The checker: reads the project and every `.flow` file, produces every diagnostic (all of
//! them, never stopping at the first), and lowers a clean project to the IR. Submodules:
//! `exprs` types expressions and templates, `flows` checks flow structure and messages,
//! `budget` the cross-flow 24 h budget, `lower` the IR, `suppress` inline allow comments.

mod budget;
#[doc(hidden)]
pub mod corpus;
mod exprs;
mod flows;
pub mod lower;
mod plugins;
mod suppress;

use crate::diagnostic::{Diagnostic, FileId, Severity, SourceMap, Span};
use crate::ir::Program;
use crate::project::{self, Project};
use crate::schema::Schemas;
use crate::syntax::ast::{self, Item};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Everything a check run produced.
pub struct Checked {
    pub map: SourceMap,
    pub diagnostics: Vec<Diagnostic>,
    pub project: Project,
    /// The parsed files (FileId, AST), for the formatter and the graph command.
    pub files: Vec<(FileId, ast::File)>,
    /// The lowered program, when there are no errors.
    pub program: Option<Program>,
}

impl Checked {
    pub fn count(&self, severity: Severity) -> usize {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == severity)
            .count()
    }
    pub fn has_errors(&self) -> bool {
        self.count(Severity::Error) > 0
    }
}

/// Collect the `.flow` files under the given paths (files or folders, recursively, sorted) and
/// the project file next to them.
pub fn collect(paths: &[PathBuf]) -> Result<(Vec<PathBuf>, Option<PathBuf>), String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut files).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
        } else if p.is_file() {
            files.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    files.sort();
    files.dedup();
    let project = paths.first().and_then(|p| project::find(p));
    Ok((files, project))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            // Flow tests live in `tests/` folders and are not part of the program.
            if path
                .file_name()
                .is_some_and(|n| n == "tests" || n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            walk(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "flow") {
            out.push(path);
        }
    }
    Ok(())
}

/// Check files on disk.
pub fn check_paths(paths: &[PathBuf]) -> Result<Checked, String> {
    let (files, project_path) = collect(paths)?;
    let mut sources = Vec::new();
    for f in &files {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        sources.push((display_path(f), text));
    }
    let project = match &project_path {
        Some(p) => Some((
            display_path(p),
            std::fs::read_to_string(p).map_err(|e| format!("cannot read {}: {e}", p.display()))?,
        )),
        None => None,
    };
    Ok(check_sources(project, sources))
}

/// Read the project's `catalog = "path"` (relative to the project file) into
/// `project.products`. A file that cannot be read or parsed is AC0007 at the setting, naming
/// the file and line.
fn load_catalog(project: &mut Project, diags: &mut Vec<Diagnostic>) {
    let Some((rel, span)) = project.catalog.clone() else {
        return;
    };
    let base = project
        .path
        .as_deref()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."));
    let path = base.join(&rel);
    let shop_url = project.shop.values.get("url").map(String::as_str);
    match crate::catalog::Catalog::load(&path, shop_url) {
        Ok(c) => project.products = c,
        Err(e) => diags.push(
            Diagnostic::new("AC0007", format!("the catalog cannot be read: {}", e.0))
                .primary(span, "catalog file set here")
                .help("a JSON file `{\"products\": [...]}` as in examples/catalog.json, or Shopify's product CSV export (docs/plugins.md)"),
        ),
    }
}

/// A path as shown in diagnostics: relative to the current folder when below it.
pub fn display_path(p: &Path) -> String {
    let cwd = std::env::current_dir().ok();
    let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let shown = cwd
        .and_then(|c| std::fs::canonicalize(c).ok())
        .and_then(|c| abs.strip_prefix(&c).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf());
    shown.to_string_lossy().replace('\\', "/")
}

/// Check in-memory sources: `(name, text)` pairs plus an optional project file.
pub fn check_sources(project: Option<(String, String)>, sources: Vec<(String, String)>) -> Checked {
    let mut map = SourceMap::new();
    let mut diags = Vec::new();
    let project = match project {
        Some((name, text)) => {
            let id = map.add(name, text.clone());
            let mut p = Project::parse(id, &text, &mut diags);
            p.path = Some(PathBuf::from(map.get(id).name.clone()));
            load_catalog(&mut p, &mut diags);
            p
        }
        None => Project::defaults(),
    };
    let schemas = match Schemas::builtin().with_custom(&project.custom_events) {
        Ok(s) => s,
        Err(e) => {
            diags.push(Diagnostic::new(
                "AC0003",
                format!("invalid custom event: {e}"),
            ));
            Schemas::builtin().clone()
        }
    };
    let mut files = Vec::new();
    for (name, text) in sources {
        let id = map.add(name, text);
        let (file, d) = crate::syntax::parse(id, &map.get(id).text);
        diags.extend(d);
        files.push((id, file));
    }

    // Names: segments and flows share one namespace across every file.
    let mut segments: BTreeMap<String, &ast::SegmentDef> = BTreeMap::new();
    let mut flow_defs: Vec<&ast::FlowDef> = Vec::new();
    let mut plugin_defs: Vec<&ast::PluginDef> = Vec::new();
    let mut seen: BTreeMap<String, Span> = BTreeMap::new();
    for (_, f) in &files {
        for item in &f.items {
            let name = item.name();
            if let Some(first) = seen.get(&name.name) {
                diags.push(
                    Diagnostic::new("AC0105", format!("`{}` is defined more than once", name.name))
                        .primary(name.span, "defined again here")
                        .secondary(*first, "first defined here")
                        .help("flows and segments share one namespace across all files: rename one of them"),
                );
                continue;
            }
            seen.insert(name.name.clone(), name.span);
            match item {
                Item::Segment(s) => {
                    segments.insert(s.name.name.clone(), s);
                }
                Item::Flow(fl) => flow_defs.push(fl),
                Item::Plugin(p) => plugin_defs.push(p),
            }
        }
    }

    let plugins = plugins::load_all(&plugin_defs, &map, &mut diags);
    let ctx = exprs::Ctx::new(&schemas, &project, &segments, &plugins);
    ctx.check_segments(&mut diags);
    let mut summaries = Vec::new();
    for fl in &flow_defs {
        summaries.push(flows::check_flow(&ctx, fl, &map, &mut diags));
    }
    budget::check(&summaries, &project, &mut diags);

    // Suppressions, then a stable order: by file, position, code.
    let mut diags = suppress::apply(&map, diags);
    diags.sort_by(|a, b| {
        let ka = a
            .primary_span()
            .map(|s| (s.file, s.start))
            .unwrap_or_default();
        let kb = b
            .primary_span()
            .map(|s| (s.file, s.start))
            .unwrap_or_default();
        ka.cmp(&kb).then(a.code.cmp(b.code))
    });
    diags.dedup();

    let has_errors = diags.iter().any(|d| d.severity == Severity::Error);
    let program = if has_errors {
        None
    } else {
        Some(lower::lower(&ctx, &flow_defs))
    };
    Checked {
        map,
        diagnostics: diags,
        project,
        files,
        program,
    }
}

/// `90000` -> `25h`, `172800` -> `2d`: the shortest exact spelling of a duration.
pub fn human_duration(secs: i64) -> String {
    flows::human_secs(secs)
}
