//! Compiled-module cache: in memory by sha256 of the module bytes, and optionally on disk as
//! precompiled artefacts keyed by (module hash, engine compatibility hash), so a restart does
//! not pay cranelift again and an engine upgrade never loads a stale artefact.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::{Engine, Module};

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Feeds `std::hash::Hash` output into sha256: wasmtime exposes engine compatibility only as
/// `impl Hash`, and `DefaultHasher` is not promised to be stable across Rust releases.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        // Unused: we read the full digest instead.
        0
    }
}

/// A stable name for "artefacts from this engine configuration and wasmtime build".
pub(crate) fn engine_hash(engine: &Engine) -> String {
    let mut h = ShaHasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut h);
    hex(&h.0.finalize()[..12])
}

pub(crate) struct ModuleCache {
    memory: Mutex<HashMap<String, Module>>,
    dir: Option<PathBuf>,
    engine_hash: String,
}

impl ModuleCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        ModuleCache {
            memory: Mutex::new(HashMap::new()),
            dir,
            engine_hash: engine_hash(engine),
        }
    }

    /// The compiled module for `bytes` (binary or WAT), compiling at most once per process and,
    /// with a cache directory, at most once per engine build.
    pub(crate) fn get(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Module> {
        let key = sha256_hex(bytes);
        if let Some(m) = self
            .memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return Ok(m.clone());
        }
        let module = match &self.dir {
            Some(dir) => self.load_or_compile(engine, dir, &key, bytes)?,
            None => Module::new(engine, bytes)?,
        };
        self.memory
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, module.clone());
        Ok(module)
    }

    fn artefact(&self, dir: &Path, key: &str) -> (PathBuf, PathBuf) {
        let base = format!("{key}-{}", self.engine_hash);
        (
            dir.join(format!("{base}.cwasm")),
            dir.join(format!("{base}.sha256")),
        )
    }

    fn load_or_compile(
        &self,
        engine: &Engine,
        dir: &Path,
        key: &str,
        bytes: &[u8],
    ) -> wasmtime::Result<Module> {
        let (art, sum) = self.artefact(dir, key);
        if let (Ok(data), Ok(expected)) = (fs::read(&art), fs::read_to_string(&sum)) {
            if sha256_hex(&data) == expected.trim() {
                // SAFETY: `Module::deserialize` trusts its input to be native code wasmtime
                // produced. These bytes are an artefact this host wrote itself (below) into its
                // own cache directory under a name that binds the module hash and the engine
                // compatibility hash, and they match the sha256 we recorded when writing them,
                // so a truncated or corrupted file is never loaded. We deserialize the bytes we
                // verified rather than re-reading the file (no check-then-use race). Anyone able
                // to write this directory could also write the sidecar: keep it private to the
                // runtime's user, as docs/plugins.md says.
                if let Ok(m) = unsafe { Module::deserialize(engine, &data) } {
                    return Ok(m);
                }
            }
        }
        let data = engine.precompile_module(bytes)?;
        // SAFETY: `data` was produced just now by `precompile_module` on this very engine.
        let module = unsafe { Module::deserialize(engine, &data)? };
        // Best effort: a read-only or full disk only costs a recompile next time.
        let _ = write_atomic(dir, &art, &data)
            .and_then(|_| write_atomic(dir, &sum, sha256_hex(&data).as_bytes()));
        Ok(module)
    }
}

/// Write to a temporary file and rename, so a crash never leaves a half-written artefact.
fn write_atomic(dir: &Path, path: &Path, data: &[u8]) -> std::io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, data)?;
    fs::rename(&tmp, path)
}
