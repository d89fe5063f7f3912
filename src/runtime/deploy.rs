//! Deploying a new program version. People already inside a flow stay on the version they
//! entered with (the default: the old flow versions are kept in the deployed program so their
//! instances can finish), or are moved by an explicit plan where step ids survive (`migrate`,
//! using the semantic diff's step map), or are ended (`end`: the old versions are dropped and
//! the engine exits those instances with a reason at their next input).

use super::state::{decode_record, PersonRecord};
use super::{Error, Result};
use crate::ir::diff::{self, Waiting};
use crate::ir::Program;
use crate::store::{CommitBatch, Store};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Keep old versions for the people inside them.
    Keep,
    /// Move waiting people to the new version where their step has a counterpart.
    Migrate,
    /// Drop old versions; their instances end.
    End,
}

#[derive(Debug, Default)]
pub struct DeployReport {
    pub changed: bool,
    pub diff: Option<diff::ProgramDiff>,
    /// (flow, old version) kept in the deployed program.
    pub kept: Vec<(String, String)>,
    pub migrated: usize,
    /// Instances that stayed on an old version because their step has no counterpart.
    pub stranded: usize,
}

/// The program currently deployed in the store, if any.
pub fn deployed(store: &dyn Store) -> Result<Option<Program>> {
    let Some(hash) = store.deployed()? else {
        return Ok(None);
    };
    let Some(bytes) = store.program(&hash)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Other(format!("deployed program {hash}: {e}")))
}

/// How many people wait at each (flow, version, step), from every person's record.
pub fn waiting(store: &dyn Store) -> Result<Waiting> {
    let mut w = Waiting::new();
    for person in store.people()? {
        if person.starts_with("idx:") {
            continue;
        }
        let Some(bytes) = store.person(&person)? else {
            continue;
        };
        let Ok(rec) = decode_record(&person, &bytes) else {
            continue;
        };
        for inst in rec.state.instances.values() {
            *w.entry((inst.flow.clone(), inst.flow_version.clone(), inst.step))
                .or_default() += 1;
        }
    }
    Ok(w)
}

/// Merge `new` with the versions of `old` that people may still be inside: new flows first
/// (the engine lets only the first flow of a name take new entries), then old versions.
pub fn with_old_versions(
    old: Option<&Program>,
    mut new: Program,
) -> (Program, Vec<(String, String)>) {
    let mut kept = Vec::new();
    if let Some(old) = old {
        for f in &old.flows {
            let present = new
                .flows
                .iter()
                .any(|g| g.name == f.name && g.version == f.version);
            if !present {
                kept.push((f.name.clone(), f.version.clone()));
                new.flows.push(f.clone());
            }
        }
    }
    if !kept.is_empty() {
        new.hash = new.compute_hash();
    }
    (new, kept)
}

/// Deploy `new` to the store with the given plan.
pub fn deploy(store: &dyn Store, new: Program, plan: Plan) -> Result<DeployReport> {
    let old = deployed(store)?;
    let mut report = DeployReport::default();
    // Compare against the current flows only (retained old versions are not "the" old program).
    if let Some(old) = &old {
        let mut current = old.clone();
        let mut seen = std::collections::BTreeSet::new();
        current.flows.retain(|f| seen.insert(f.name.clone()));
        let mut d = diff::diff(&current, &new);
        if let Ok(w) = waiting(store) {
            d.attach_waiting(&w);
        }
        report.diff = Some(d);
    }
    if plan == Plan::Migrate {
        if let Some(d) = &report.diff {
            let maps = d.migrations();
            let mut batch = CommitBatch::default();
            for person in store.people()? {
                if person.starts_with("idx:") {
                    continue;
                }
                let Some(bytes) = store.person(&person)? else {
                    continue;
                };
                let Ok(mut rec): std::result::Result<PersonRecord, _> =
                    decode_record(&person, &bytes)
                else {
                    continue;
                };
                let mut touched = false;
                for inst in rec.state.instances.values_mut() {
                    let Some(map) = maps.get(&inst.flow) else {
                        continue;
                    };
                    if map.old_version != inst.flow_version {
                        continue;
                    }
                    match map.get(inst.step) {
                        Some(step) => {
                            inst.step = step;
                            inst.flow_version = map.new_version.clone();
                            report.migrated += 1;
                            touched = true;
                        }
                        None => report.stranded += 1,
                    }
                }
                if touched {
                    let bytes = super::state::encode_record(&rec.state, &rec.joins);
                    batch.people_put.push((person, bytes));
                }
            }
            store.commit(batch)?;
            store.flush()?;
        }
    }
    let (program, kept) = match plan {
        Plan::End => (new, Vec::new()),
        _ => with_old_versions(old.as_ref(), new),
    };
    report.kept = kept;
    report.changed = super::deploy(store, &program)?;
    Ok(report)
}

/// A short human report.
pub fn render(report: &DeployReport, plan: Plan) -> String {
    let mut s = String::new();
    if let Some(d) = &report.diff {
        s.push_str(&d.render_text());
    } else {
        s.push_str("first deployment\n");
    }
    if !report.changed {
        s.push_str("already deployed: nothing changed\n");
        return s;
    }
    match plan {
        Plan::Keep => s.push_str(&format!("deployed; {} old flow version(s) kept for the people inside them\n", report.kept.len())),
        Plan::Migrate => s.push_str(&format!(
            "deployed; {} instance(s) migrated, {} stayed on their old version (no counterpart step)\n",
            report.migrated, report.stranded
        )),
        Plan::End => s.push_str("deployed; instances on old versions end at their next input\n"),
    }
    s
}
