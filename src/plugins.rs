//! The WebAssembly plugin host (ABI v1, see `docs/plugins.md`): merchants' segments and
//! recommenders run sandboxed in wasmtime, bounded in fuel, memory and wall-clock time, with
//! no imports but the deterministic `aftercart` host module. The only code that names wasmtime.
//!
//! A failing call never fails a flow: callers get a [`CallError`] with a stable
//! [`CallError::reason`] and apply the plugin's [`Fallback`] via [`call_with_fallback`].

mod cache;
mod error;
mod hostfns;

pub use error::{CallError, LoadErrorKind, PluginError};
pub use hostfns::{HOST_MODULE, NOT_A_NUMBER, NOT_FOUND, TOO_SMALL};

use hostfns::CallState;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{
    Config, Engine, ExternType, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    PoolingAllocationConfig, Store, Trap, TypedFunc,
};

/// The ABI this host speaks; a plugin's `abi_version()` must return it.
pub const ABI_VERSION: i32 = 1;
/// Default instruction budget per call (about one fuel unit per wasm instruction).
pub const DEFAULT_FUEL: u64 = 10_000_000;
/// Default linear-memory limit per call.
pub const DEFAULT_MEMORY_BYTES: usize = 16 << 20;
/// Bounds on `recommend` output: ids, bytes per id, bytes of JSON.
pub const MAX_PRODUCT_IDS: usize = 16;
pub const MAX_PRODUCT_ID_BYTES: usize = 64;
pub const MAX_OUTPUT_BYTES: usize = 64 << 10;
/// Inputs above this are refused before reaching the plugin (a profile plus an order is a
/// few KiB; anything near this is a bug upstream).
pub const MAX_INPUT_BYTES: usize = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    Segment,
    Recommend,
}

impl PluginKind {
    fn export(self) -> &'static str {
        match self {
            PluginKind::Segment => "segment",
            PluginKind::Recommend => "recommend",
        }
    }
}

/// What a flow gets when a call fails.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fallback {
    Segment(bool),
    Recommend(Vec<String>),
    /// The built-in recommender ([`crate::catalog::recommend`]); for a segment, `false`.
    BuiltIn,
}

/// A plugin as declared in a flow or the project file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginSpec {
    pub name: String,
    /// `.wasm` or `.wat`; also the name used in every error message.
    pub path: PathBuf,
    pub kind: PluginKind,
    pub fuel: u64,
    pub memory_bytes: usize,
    pub fallback: Fallback,
}

impl PluginSpec {
    /// A spec with the default limits and the natural fallback (`false` / built-in).
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>, kind: PluginKind) -> Self {
        let fallback = match kind {
            PluginKind::Segment => Fallback::Segment(false),
            PluginKind::Recommend => Fallback::BuiltIn,
        };
        PluginSpec {
            name: name.into(),
            path: path.into(),
            kind,
            fuel: DEFAULT_FUEL,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            fallback,
        }
    }
}

/// Host-wide settings; per-plugin limits live in [`PluginSpec`].
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Upper bound for any plugin's `memory_bytes` (the pooled slot size).
    pub max_memory_bytes: usize,
    /// Pooled instance slots, i.e. calls that may run at the same time.
    pub max_concurrent_calls: u32,
    /// Epoch ticker period and the number of ticks a call may run: the wall-clock backstop.
    pub epoch_tick: Duration,
    pub deadline_ticks: u64,
    /// Where precompiled artefacts are kept between runs; `None` keeps them in memory only.
    pub precompiled_dir: Option<PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            max_memory_bytes: 64 << 20,
            max_concurrent_calls: 32,
            epoch_tick: Duration::from_millis(10),
            deadline_ticks: 100,
            precompiled_dir: None,
        }
    }
}

/// Increments the engine's epoch every tick until the last user is dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine, tick: Duration) -> Ticker {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("aftercart-plugin-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    engine.increment_epoch();
                }
            })
            .ok();
        Ticker { stop, handle }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// One wasmtime engine, its linker, the compiled-module cache and the epoch ticker.
pub struct Host {
    engine: Engine,
    linker: Linker<CallState>,
    cache: cache::ModuleCache,
    config: HostConfig,
    ticker: Arc<Ticker>,
}

impl Host {
    pub fn new() -> Result<Host, PluginError> {
        Host::with_config(HostConfig::default())
    }

    pub fn with_config(config: HostConfig) -> Result<Host, PluginError> {
        let err = |e: wasmtime::Error| {
            PluginError::new("<host>", LoadErrorKind::Instantiate(format!("{e:#}")))
        };
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(config.max_concurrent_calls)
            .total_memories(config.max_concurrent_calls)
            .total_tables(config.max_concurrent_calls)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(config.max_memory_bytes)
            // Reset small memories and tables with memset instead of madvise: a plugin call
            // touches a few pages, and a syscall per call would dominate its cost.
            .linear_memory_keep_resident(1 << 20)
            .table_keep_resident(64 << 10);
        let mut c = Config::new();
        // Fuel bounds work deterministically; the epoch is only a wall-clock backstop (its
        // firing depends on machine load, which is why fuel is the primary limit).
        c.consume_fuel(true)
            .epoch_interruption(true)
            // Float results must not depend on the CPU: NaN bit patterns are canonicalised.
            .cranelift_nan_canonicalization(true)
            // Relaxed SIMD is implementation-defined by design; refuse it. Plain SIMD is
            // deterministic once NaNs are canonical. Threads are not compiled in at all.
            .wasm_relaxed_simd(false)
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&c).map_err(err)?;
        let linker = hostfns::linker(&engine).map_err(err)?;
        let cache = cache::ModuleCache::new(&engine, config.precompiled_dir.clone());
        let ticker = Arc::new(Ticker::start(engine.clone(), config.epoch_tick));
        Ok(Host {
            engine,
            linker,
            cache,
            config,
            ticker,
        })
    }

    /// Reads, compiles (cached), validates and probes a plugin. `.wat` text is accepted.
    pub fn load(&self, spec: &PluginSpec) -> Result<LoadedPlugin, PluginError> {
        let bytes = std::fs::read(&spec.path)
            .map_err(|e| PluginError::new(&spec.path, LoadErrorKind::Io(e.to_string())))?;
        self.load_bytes(spec, &bytes)
    }

    /// As [`Host::load`], with the module's bytes (binary or WAT) given; `spec.path` is only a label.
    pub fn load_bytes(&self, spec: &PluginSpec, bytes: &[u8]) -> Result<LoadedPlugin, PluginError> {
        let path = spec.path.as_path();
        let fail = |kind| Err(PluginError::new(path, kind));
        if spec.memory_bytes > self.config.max_memory_bytes {
            return fail(LoadErrorKind::Limit(format!(
                "memory limit {} bytes is above the host's maximum of {} bytes",
                spec.memory_bytes, self.config.max_memory_bytes
            )));
        }
        match (&spec.kind, &spec.fallback) {
            (PluginKind::Segment, Fallback::Recommend(_))
            | (PluginKind::Recommend, Fallback::Segment(_)) => {
                return fail(LoadErrorKind::Limit(
                    "the fallback does not match the plugin's kind".into(),
                ));
            }
            _ => {}
        }
        let module = self
            .cache
            .get(&self.engine, bytes)
            .map_err(|e| PluginError::new(path, LoadErrorKind::Compile(format!("{e:#}"))))?;
        // Imports first: a module reaching for WASI is refused for that, whatever else it has.
        hostfns::check_imports(&module, path)?;
        let exports = check_exports(&module, path, spec.kind)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::new(path, LoadErrorKind::Instantiate(format!("{e:#}"))))?;
        let plugin = LoadedPlugin {
            inner: Arc::new(Inner {
                spec: spec.clone(),
                engine: self.engine.clone(),
                pre,
                exports,
                deadline_ticks: self.config.deadline_ticks,
                _ticker: self.ticker.clone(),
                module_hash: cache::sha256_hex(bytes),
            }),
        };
        plugin.probe_abi()?;
        Ok(plugin)
    }

    /// Which entry points (`segment`, `recommend`) a module exports, without fully loading it.
    pub fn exported_kinds(
        &self,
        path: &Path,
        bytes: &[u8],
    ) -> Result<Vec<PluginKind>, PluginError> {
        let module = self
            .cache
            .get(&self.engine, bytes)
            .map_err(|e| PluginError::new(path, LoadErrorKind::Compile(format!("{e:#}"))))?;
        Ok([PluginKind::Segment, PluginKind::Recommend]
            .into_iter()
            .filter(|k| module.get_export(k.export()).is_some())
            .collect())
    }
}

/// Which optional entry points the module has.
#[derive(Clone, Copy, Debug)]
struct Exports {
    segment: bool,
    recommend: bool,
}

fn check_exports(module: &Module, path: &Path, kind: PluginKind) -> Result<Exports, PluginError> {
    let missing =
        |name: &str| PluginError::new(path, LoadErrorKind::MissingExport { name: name.into() });
    match module.get_export("memory") {
        None => return Err(missing("memory")),
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(other) => {
            return Err(PluginError::new(
                path,
                LoadErrorKind::WrongSignature {
                    name: "memory".into(),
                    expected: "a 32-bit unshared memory".into(),
                    found: format!("{other:?}").chars().take(80).collect(),
                },
            ))
        }
    }
    let func = |name: &str, expected: &str, required: bool| -> Result<bool, PluginError> {
        match module.get_export(name) {
            None if required => Err(missing(name)),
            None => Ok(false),
            Some(ExternType::Func(f)) => {
                let found = hostfns::fmt_func(&f);
                if found == expected {
                    Ok(true)
                } else {
                    Err(PluginError::new(
                        path,
                        LoadErrorKind::WrongSignature {
                            name: name.into(),
                            expected: expected.into(),
                            found,
                        },
                    ))
                }
            }
            Some(_) => Err(PluginError::new(
                path,
                LoadErrorKind::WrongSignature {
                    name: name.into(),
                    expected: expected.into(),
                    found: "not a function".into(),
                },
            )),
        }
    };
    func("abi_version", "() -> i32", true)?;
    func("alloc", "(i32) -> i32", true)?;
    let segment = func("segment", "(i32, i32) -> i32", kind == PluginKind::Segment)?;
    let recommend = func(
        "recommend",
        "(i32, i32) -> i64",
        kind == PluginKind::Recommend,
    )?;
    Ok(Exports { segment, recommend })
}

/// The result of one successful call, with what it cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome<T> {
    pub value: T,
    /// Fuel consumed, instantiation (start function) included.
    pub fuel_used: u64,
    /// Largest linear-memory size reached, in bytes.
    pub peak_memory: usize,
}

struct Inner {
    spec: PluginSpec,
    engine: Engine,
    pre: InstancePre<CallState>,
    exports: Exports,
    deadline_ticks: u64,
    /// Keeps the epoch ticking while any plugin is alive, even after the `Host` is gone.
    _ticker: Arc<Ticker>,
    module_hash: String,
}

/// A validated plugin, cheap to clone and to share across threads; each call gets a fresh
/// instance in a fresh store, so no state leaks from one call (or one person) to the next.
#[derive(Clone)]
pub struct LoadedPlugin {
    inner: Arc<Inner>,
}

/// A live instance inside its store, ready for one call.
struct Call {
    store: Store<CallState>,
    memory: Memory,
    instance: wasmtime::Instance,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("spec", &self.inner.spec)
            .field("module_hash", &self.inner.module_hash)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    pub fn spec(&self) -> &PluginSpec {
        &self.inner.spec
    }

    /// sha256 of the module bytes, for the timeline and `inspect` (which version answered).
    pub fn module_hash(&self) -> &str {
        &self.inner.module_hash
    }

    fn classify(store: &Store<CallState>, e: wasmtime::Error) -> CallError {
        if store.data().limiter.hit {
            return CallError::MemoryLimit;
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::OutOfFuel) => CallError::OutOfFuel,
            Some(Trap::Interrupt) => CallError::Timeout,
            Some(t) => CallError::Trap(t.to_string()),
            None => CallError::Trap(format!("{e:#}")),
        }
    }

    fn instantiate(&self, input: &str) -> Result<Call, CallError> {
        let inner = &*self.inner;
        let mut store = Store::new(
            &inner.engine,
            CallState::new(input, inner.spec.memory_bytes),
        );
        store.limiter(|s| &mut s.limiter);
        store
            .set_fuel(inner.spec.fuel)
            .map_err(|e| CallError::Unavailable(e.to_string()))?;
        store.set_epoch_deadline(inner.deadline_ticks);
        let instance = match inner.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) if e.downcast_ref::<Trap>().is_some() || store.data().limiter.hit => {
                return Err(Self::classify(&store, e))
            }
            Err(e) => return Err(CallError::Unavailable(format!("{e:#}"))),
        };
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or(CallError::NotExported("memory"))?;
        Ok(Call {
            store,
            memory,
            instance,
        })
    }

    fn typed<P: wasmtime::WasmParams, R: wasmtime::WasmResults>(
        call: &mut Call,
        name: &'static str,
    ) -> Result<TypedFunc<P, R>, CallError> {
        call.instance
            .get_typed_func::<P, R>(&mut call.store, name)
            .map_err(|_| CallError::NotExported(name))
    }

    /// Copies the input into the plugin's memory via its `alloc`.
    fn pass_input(call: &mut Call, input: &str) -> Result<(i32, i32), CallError> {
        if input.len() > MAX_INPUT_BYTES {
            return Err(CallError::Unavailable(format!(
                "input of {} bytes is above {MAX_INPUT_BYTES}",
                input.len()
            )));
        }
        let alloc = Self::typed::<i32, i32>(call, "alloc")?;
        let len = input.len() as i32;
        let ptr = alloc
            .call(&mut call.store, len)
            .map_err(|e| Self::classify(&call.store, e))?;
        call.memory
            .write(&mut call.store, ptr as u32 as usize, input.as_bytes())
            .map_err(|_| {
                CallError::BadOutput(format!(
                    "alloc({len}) returned {} but memory is only {} bytes",
                    ptr as u32,
                    call.memory.data_size(&call.store)
                ))
            })?;
        Ok((ptr, len))
    }

    fn finish<T>(&self, call: &Call, value: T) -> Outcome<T> {
        let fuel_used = call
            .store
            .get_fuel()
            .map(|left| self.inner.spec.fuel.saturating_sub(left))
            .unwrap_or(0);
        Outcome {
            value,
            fuel_used,
            peak_memory: call.store.data().limiter.peak,
        }
    }

    fn probe_abi(&self) -> Result<(), PluginError> {
        let path = &self.inner.spec.path;
        let probe = || -> Result<i32, CallError> {
            let mut call = self.instantiate("{}")?;
            let f = Self::typed::<(), i32>(&mut call, "abi_version")?;
            f.call(&mut call.store, ())
                .map_err(|e| Self::classify(&call.store, e))
        };
        match probe() {
            Ok(ABI_VERSION) => Ok(()),
            Ok(found) => Err(PluginError::new(path, LoadErrorKind::AbiVersion { found })),
            Err(e) => Err(PluginError::new(
                path,
                LoadErrorKind::Instantiate(format!("probing abi_version(): {e}")),
            )),
        }
    }

    /// Runs `segment` on the input JSON (see [`plugin_input`]).
    pub fn segment(&self, input_json: &str) -> Result<Outcome<bool>, CallError> {
        if !self.inner.exports.segment {
            return Err(CallError::NotExported("segment"));
        }
        let mut call = self.instantiate(input_json)?;
        let (ptr, len) = Self::pass_input(&mut call, input_json)?;
        let f = Self::typed::<(i32, i32), i32>(&mut call, "segment")?;
        let r = f
            .call(&mut call.store, (ptr, len))
            .map_err(|e| Self::classify(&call.store, e))?;
        let value = match r {
            1 => true,
            0 => false,
            c if c < 0 => return Err(CallError::PluginErrorCode(c)),
            c => {
                return Err(CallError::BadOutput(format!(
                    "segment returned {c}; expected 1, 0 or a negative error code"
                )))
            }
        };
        Ok(self.finish(&call, value))
    }

    /// Runs `recommend` on the input JSON; the answer is at most [`MAX_PRODUCT_IDS`] ids, in
    /// the plugin's order, duplicates dropped.
    pub fn recommend(&self, input_json: &str) -> Result<Outcome<Vec<String>>, CallError> {
        if !self.inner.exports.recommend {
            return Err(CallError::NotExported("recommend"));
        }
        let mut call = self.instantiate(input_json)?;
        let (ptr, len) = Self::pass_input(&mut call, input_json)?;
        let f = Self::typed::<(i32, i32), i64>(&mut call, "recommend")?;
        let r = f
            .call(&mut call.store, (ptr, len))
            .map_err(|e| Self::classify(&call.store, e))?;
        let packed = r as u64;
        let (optr, olen) = ((packed >> 32) as usize, (packed & 0xffff_ffff) as usize);
        if olen > MAX_OUTPUT_BYTES {
            return Err(CallError::BadOutput(format!(
                "output is {olen} bytes; the limit is {MAX_OUTPUT_BYTES}"
            )));
        }
        let data = call.memory.data(&call.store);
        let bytes = data.get(optr..optr + olen).ok_or_else(|| {
            CallError::BadOutput(format!(
                "output at {optr}+{olen} is outside memory ({} bytes)",
                data.len()
            ))
        })?;
        let ids = parse_recommend_output(bytes)?;
        Ok(self.finish(&call, ids))
    }

    /// `segment`, or the declared fallback when it fails.
    pub fn segment_or_fallback(&self, input_json: &str) -> (bool, Option<CallError>) {
        let fallback = match self.inner.spec.fallback {
            Fallback::Segment(b) => b,
            _ => false,
        };
        call_with_fallback(self.segment(input_json), || fallback)
    }

    /// `recommend`, or the declared fallback when it fails; `builtin` runs only for
    /// [`Fallback::BuiltIn`] and only on failure.
    pub fn recommend_or_fallback(
        &self,
        input_json: &str,
        builtin: impl FnOnce() -> Vec<String>,
    ) -> (Vec<String>, Option<CallError>) {
        let fallback = &self.inner.spec.fallback;
        call_with_fallback(self.recommend(input_json), || match fallback {
            Fallback::Recommend(ids) => ids.clone(),
            _ => builtin(),
        })
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RecommendOutput {
    product_ids: Vec<String>,
}

fn parse_recommend_output(bytes: &[u8]) -> Result<Vec<String>, CallError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CallError::BadOutput("output is not UTF-8".into()))?;
    let out: RecommendOutput = serde_json::from_str(text).map_err(|e| {
        CallError::BadOutput(format!(
            "output is not JSON of the form {{\"product_ids\": [...]}}: {e}"
        ))
    })?;
    if out.product_ids.len() > MAX_PRODUCT_IDS {
        return Err(CallError::BadOutput(format!(
            "{} product ids; the limit is {MAX_PRODUCT_IDS}",
            out.product_ids.len()
        )));
    }
    let mut ids: Vec<String> = Vec::with_capacity(out.product_ids.len());
    for id in out.product_ids {
        if id.is_empty() || id.len() > MAX_PRODUCT_ID_BYTES {
            return Err(CallError::BadOutput(format!(
                "product id of {} bytes; ids must be 1 to {MAX_PRODUCT_ID_BYTES} bytes",
                id.len()
            )));
        }
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Ok(ids)
}

/// The value a flow goes on with, and the failure to record (timeline, `inspect`, metrics)
/// when the plugin did not answer.
pub fn call_with_fallback<T>(
    result: Result<Outcome<T>, CallError>,
    fallback: impl FnOnce() -> T,
) -> (T, Option<CallError>) {
    match result {
        Ok(o) => (o.value, None),
        Err(e) => (fallback(), Some(e)),
    }
}

/// JSON with object keys sorted at every depth and no insignificant whitespace, whatever
/// serde_json's `preserve_order` feature is: plugins see the same bytes for the same data.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                write_canonical(&m[k], out);
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The input document of ABI v1: `{"order": ..., "profile": ...}` in canonical form (the
/// order only when there is one, i.e. for `recommend` and order-triggered segments).
pub fn plugin_input(profile: &Value, order: Option<&Value>) -> String {
    let mut m = serde_json::Map::new();
    m.insert("profile".into(), profile.clone());
    if let Some(o) = order {
        m.insert("order".into(), o.clone());
    }
    canonical_json(&Value::Object(m))
}

/// A realistic input (a repeat customer and their latest order), used by `plugin test` when
/// no input file is given and by the benchmark.
pub fn sample_input() -> String {
    let profile = serde_json::json!({
        "id": "gid://shopify/Customer/7021",
        "phone": "+15125550143",
        "first_name": "Dana",
        "accepts_sms": true,
        "zone": "America/Chicago",
        "tags": ["newsletter", "wholesale-no"],
        "orders_count": 7,
        "total_spent": "612.40",
        "average_order_value": "87.49",
        "first_order_at": "2024-02-11T15:04:05Z",
        "last_order_at": "2026-05-30T18:22:10Z",
        "products_bought": ["8001", "8002", "8010", "8042"]
    });
    let order = serde_json::json!({
        "id": "5550001234",
        "name": "#1088",
        "created_at": "2026-05-30T18:22:10Z",
        "currency": "USD",
        "total_price": "96.50",
        "subtotal_price": "89.00",
        "discount_codes": ["WELCOME10"],
        "line_items": [
            {"product_id": "8042", "variant_id": "44001", "title": "Pour-over kettle", "quantity": 1, "price": "64.00", "tags": ["brewing", "kettle"]},
            {"product_id": "8010", "variant_id": "44017", "title": "Paper filters (100)", "quantity": 2, "price": "12.50", "tags": ["brewing", "filters"]}
        ]
    });
    plugin_input(&profile, Some(&order))
}

/// What `aftercart plugin test PLUGIN [--input FILE]` prints: loads the plugin, runs every
/// entry point it exports on the input (or [`sample_input`]) and reports the answer, fuel
/// used and peak memory. `Err` names the reason (for a non-zero exit); the CLI only prints.
pub fn plugin_test_report(path: &Path, input_json: Option<&str>) -> Result<String, String> {
    let sample;
    let input = match input_json {
        Some(i) => i,
        None => {
            sample = sample_input();
            &sample
        }
    };
    serde_json::from_str::<Value>(input).map_err(|e| format!("the input is not JSON: {e}"))?;
    let host = Host::new().map_err(|e| format!("{} ({})", e, e.reason()))?;
    let bytes = std::fs::read(path)
        .map_err(|e| format!("plugin {}: cannot read the file: {e} (io)", path.display()))?;
    let kinds = host
        .exported_kinds(path, &bytes)
        .map_err(|e| format!("{e} ({})", e.reason()))?;
    let Some(&first) = kinds.first() else {
        let e = PluginError::new(
            path,
            LoadErrorKind::MissingExport {
                name: "segment` or `recommend".into(),
            },
        );
        return Err(format!("{e} ({})", e.reason()));
    };
    let spec = PluginSpec::new("test", path, first);
    let plugin = host
        .load_bytes(&spec, &bytes)
        .map_err(|e| format!("{e} ({})", e.reason()))?;
    let mut report = format!(
        "plugin {} (ABI v{ABI_VERSION}, sha256 {})\n",
        path.display(),
        &plugin.module_hash()[..16]
    );
    let line = |name: &str, answer: String, fuel: u64, mem: usize| {
        format!(
            "{name}: {answer}\n  fuel used: {fuel} of {}\n  peak memory: {mem} bytes of {}\n",
            spec.fuel, spec.memory_bytes
        )
    };
    for kind in kinds {
        let fail =
            |e: CallError| format!("{report}{}: failed: {e} ({})", kind.export(), e.reason());
        match kind {
            PluginKind::Segment => {
                let o = plugin.segment(input).map_err(fail)?;
                report += &line("segment", o.value.to_string(), o.fuel_used, o.peak_memory);
            }
            PluginKind::Recommend => {
                let o = plugin.recommend(input).map_err(fail)?;
                report += &line(
                    "recommend",
                    format!("{:?}", o.value),
                    o.fuel_used,
                    o.peak_memory,
                );
            }
        }
    }
    Ok(report)
}

// ---- the process-wide registry the engine calls through ------------------------------------

static SHARED: std::sync::OnceLock<std::result::Result<Host, String>> = std::sync::OnceLock::new();
static REGISTRY: std::sync::OnceLock<
    std::sync::Mutex<std::collections::HashMap<String, LoadedPlugin>>,
> = std::sync::OnceLock::new();

thread_local! {
    /// Failed calls since the last `take_failures` on this thread: the engine turns them into
    /// timeline effects after each step (a failing plugin never fails the flow).
    static FAILURES: std::cell::RefCell<Vec<(String, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One host (one wasmtime `Engine`) per process, shared by the checker and the engine.
pub fn shared_host() -> std::result::Result<&'static Host, String> {
    SHARED
        .get_or_init(|| Host::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

fn registry() -> &'static std::sync::Mutex<std::collections::HashMap<String, LoadedPlugin>> {
    REGISTRY.get_or_init(Default::default)
}

/// Make a loaded plugin callable by its module hash.
pub fn register(module_hash: &str, plugin: LoadedPlugin) {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(module_hash.to_string(), plugin);
}

/// Call a registered segment plugin; on any failure (or when the module is not loaded in this
/// process) the fallback applies and the reason is recorded for `take_failures`.
pub fn call_segment(name: &str, module_hash: &str, input_json: &str, fallback: bool) -> bool {
    let (value, err) = match registered(module_hash) {
        Ok(p) => p.segment_or_fallback(input_json),
        Err(e) => (fallback, Some(e)),
    };
    match err {
        Some(e) => {
            record_failure(name, &e);
            fallback
        }
        None => value,
    }
}

/// The plugin loaded for `module_hash` in this process.
fn registered(module_hash: &str) -> Result<LoadedPlugin, CallError> {
    registry()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(module_hash)
        .cloned()
        .ok_or_else(|| CallError::Unavailable(format!("module {module_hash} is not loaded")))
}

/// Remember a failed call for [`take_failures`] (the timeline and the counters read them).
fn record_failure(name: &str, e: &CallError) {
    FAILURES.with(|f| {
        f.borrow_mut()
            .push((name.to_string(), format!("{}: {e}", e.reason())))
    });
}

/// Call a registered recommend plugin; on any failure the plugin's declared fallback applies
/// (`builtin` runs the built-in recommender) and the reason is recorded for `take_failures`.
pub fn call_recommend(
    name: &str,
    module_hash: &str,
    input_json: &str,
    builtin: impl FnOnce() -> Vec<String>,
) -> Vec<String> {
    let (value, err) = match registered(module_hash) {
        Ok(p) => p.recommend_or_fallback(input_json, builtin),
        Err(e) => (builtin(), Some(e)),
    };
    if let Some(e) = err {
        record_failure(name, &e);
    }
    value
}

/// The failed calls recorded on this thread since the last call.
pub fn take_failures() -> Vec<(String, String)> {
    FAILURES.with(|f| std::mem::take(&mut *f.borrow_mut()))
}
