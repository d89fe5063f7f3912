//! Helpers shared by the integration tests: for erasure, every file under a data directory,
//! read whole, and a byte search (a forgotten phone or e-mail must appear nowhere); for the
//! runtime, the example flows compiled, the simulator's sends, and a provider that collects.

#![allow(dead_code)] // each test binary uses its own subset

use aftercart::engine::Message;
use aftercart::ir::Program;
use aftercart::runtime::{Provider, ProviderError, ProviderReceipt};
use aftercart::schema::Schemas;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A sent message as the runtime tests compare it: (message_id, to, body, send time).
pub type Sent = (String, String, String, String);

/// The example flows (`flows/`), compiled, with their schemas.
pub fn example_program() -> (Program, Schemas) {
    let checked = aftercart::check::check_paths(&[PathBuf::from("flows")]).unwrap();
    assert!(!checked.has_errors(), "the example flows must check clean");
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    (checked.program.unwrap(), schemas)
}

pub fn sent_key(m: &Message) -> Sent {
    (
        m.message_id.clone(),
        m.to.clone(),
        m.body.clone(),
        m.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The simulator's answer for `text`: every send.
pub fn simulated_sends(program: Program, schemas: Schemas, text: &str) -> BTreeSet<Sent> {
    let out = aftercart::sim::simulate(program, schemas, text, &Default::default(), &|_, _| {});
    out.records
        .iter()
        .filter_map(|r| match &r.effect {
            aftercart::engine::Effect::Send(m) => Some(sent_key(m)),
            _ => None,
        })
        .collect()
}

/// A provider that keeps what it was given. It outlives runtime restarts, like a real SMS
/// provider, so it sees every dispatch.
#[derive(Default)]
pub struct Collect(pub Mutex<Vec<Message>>);

impl Provider for Collect {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        self.0.lock().unwrap().push(msg.clone());
        Ok(ProviderReceipt::default())
    }
}

impl Collect {
    /// What was sent, asserting that no message was dispatched twice.
    pub fn sent(&self) -> BTreeSet<Sent> {
        let v = self.0.lock().unwrap();
        let set: BTreeSet<Sent> = v.iter().map(sent_key).collect();
        assert_eq!(set.len(), v.len(), "a message was dispatched twice");
        set
    }
}

/// Every file under `dir`, recursively, with its bytes.
pub fn all_bytes(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Whether `needle` occurs anywhere in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Fail, naming the file and the needle, if any file under `dir` holds one of `needles` (the
/// erasure tests' byte scan). Returns how many files were scanned.
pub fn assert_no_file_holds(dir: &Path, needles: &[&[u8]]) -> usize {
    let files = all_bytes(dir);
    for (path, bytes) in &files {
        for n in needles {
            assert!(
                !contains(bytes, n),
                "{} still holds {:?}",
                path.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    files.len()
}

/// A fresh directory under the system temp dir, named `aftercart-{name}-{pid}`, removed when
/// dropped, also when the test fails (a failed assertion unwinds through the drop), so the
/// suite leaves nothing under /tmp. `created`: whether to create it (stores create their own).
pub struct TmpDir(PathBuf);

impl TmpDir {
    pub fn new(name: &str, created: bool) -> TmpDir {
        let d = std::env::temp_dir().join(format!("aftercart-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        if created {
            std::fs::create_dir_all(&d).unwrap();
        }
        TmpDir(d)
    }
}

impl std::ops::Deref for TmpDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TmpDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl AsRef<std::ffi::OsStr> for TmpDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}
