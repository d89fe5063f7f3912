//! Plugin declarations: each `plugin NAME = "path" kind ...` is loaded once by the checker
//! (exports, ABI version and imports validated by `crate::plugins`) and registered, so that the
//! program the checker produces can call it. A plugin that cannot be loaded is an AC0501
//! diagnostic at its path, naming the reason.

use crate::diagnostic::{Diagnostic, SourceMap};
use crate::ir::PluginDecl;
use crate::plugins::{self, Fallback, PluginKind, PluginSpec};
use crate::syntax::ast::PluginDef;
use std::collections::BTreeMap;
use std::path::Path;

/// The declared plugins that loaded, by name.
pub type Plugins = BTreeMap<String, PluginDecl>;

pub fn load_all(defs: &[&PluginDef], map: &SourceMap, diags: &mut Vec<Diagnostic>) -> Plugins {
    let mut out = Plugins::new();
    if defs.is_empty() {
        return out;
    }
    let host = match plugins::shared_host() {
        Ok(h) => h,
        Err(e) => {
            diags.push(
                Diagnostic::new("AC0501", format!("the plugin host cannot start: {e}"))
                    .primary(defs[0].span, "here"),
            );
            return out;
        }
    };
    for d in defs {
        // Paths are relative to the file that declares the plugin.
        let file = Path::new(&map.get(d.path.span.file).name);
        let path = file.parent().unwrap_or(Path::new(".")).join(&d.path.value);
        let kind = if d.kind == "recommend" {
            PluginKind::Recommend
        } else {
            PluginKind::Segment
        };
        let mut spec = PluginSpec::new(d.name.name.clone(), path.clone(), kind);
        if let Some(f) = d.fuel {
            spec.fuel = f;
        }
        if let Some(m) = d.memory_bytes {
            spec.memory_bytes = m;
        }
        let fallback = d.fallback.unwrap_or(false);
        if kind == PluginKind::Segment {
            spec.fallback = Fallback::Segment(fallback);
        }
        match host.load(&spec) {
            Ok(loaded) => {
                let hash = loaded.module_hash().to_string();
                plugins::register(&hash, loaded);
                out.insert(
                    d.name.name.clone(),
                    PluginDecl {
                        name: d.name.name.clone(),
                        path: path.to_string_lossy().replace('\\', "/"),
                        module_hash: hash,
                        kind: d.kind.clone(),
                        fuel: spec.fuel,
                        memory_bytes: spec.memory_bytes as u64,
                        fallback,
                    },
                );
            }
            Err(e) => {
                diags.push(
                    Diagnostic::new("AC0501", format!("plugin `{}` cannot be loaded: {e}", d.name.name))
                        .primary(d.path.span, e.reason().to_string())
                        .help("run `aftercart plugin test PATH` for details; docs/plugins.md lists what ABI v1 allows"),
                );
                // Still declared (uses are not "unknown"); the error keeps it out of any program.
                out.insert(
                    d.name.name.clone(),
                    PluginDecl {
                        name: d.name.name.clone(),
                        path: path.to_string_lossy().replace('\\', "/"),
                        module_hash: String::new(),
                        kind: d.kind.clone(),
                        fuel: spec.fuel,
                        memory_bytes: spec.memory_bytes as u64,
                        fallback,
                    },
                );
            }
        }
    }
    out
}
