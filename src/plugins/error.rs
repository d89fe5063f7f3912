//! Errors of the plugin host: `PluginError` when a module cannot be loaded (it never runs),
//! `CallError` when one call fails (the caller applies the plugin's fallback and goes on).

use std::fmt;
use std::path::PathBuf;

/// A plugin that cannot be loaded. Always names the plugin's path, because the merchant who
/// reads it (in `aftercart check` or `aftercart plugin test`) has to find the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub path: PathBuf,
    pub kind: LoadErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadErrorKind {
    /// The file could not be read.
    Io(String),
    /// Not a valid wasm binary or WAT text, or cranelift refused it.
    Compile(String),
    MissingExport {
        name: String,
    },
    WrongSignature {
        name: String,
        expected: String,
        found: String,
    },
    AbiVersion {
        found: i32,
    },
    /// An import outside the `aftercart` host module (or an unknown name inside it).
    ForbiddenImport {
        module: String,
        name: String,
    },
    /// `abi_version` or the module's start function failed when probed at load.
    Instantiate(String),
    /// A limit in the spec is above what the host was configured for.
    Limit(String),
}

impl PluginError {
    pub(crate) fn new(path: impl Into<PathBuf>, kind: LoadErrorKind) -> Self {
        PluginError {
            path: path.into(),
            kind,
        }
    }

    /// Short, stable name for metrics, diagnostics and CLI exit messages.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            LoadErrorKind::Io(_) => "io",
            LoadErrorKind::Compile(_) => "compile",
            LoadErrorKind::MissingExport { .. } => "missing_export",
            LoadErrorKind::WrongSignature { .. } => "wrong_signature",
            LoadErrorKind::AbiVersion { .. } => "abi_version",
            LoadErrorKind::ForbiddenImport { .. } => "forbidden_import",
            LoadErrorKind::Instantiate(_) => "instantiate",
            LoadErrorKind::Limit(_) => "limit",
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plugin {}: ", self.path.display())?;
        match &self.kind {
            LoadErrorKind::Io(e) => write!(f, "cannot read the file: {e}"),
            LoadErrorKind::Compile(e) => write!(f, "not a valid WebAssembly module: {e}"),
            LoadErrorKind::MissingExport { name } => {
                write!(f, "missing export `{name}` (ABI v1 needs `memory`, `abi_version`, `alloc` and `segment` or `recommend`)")
            }
            LoadErrorKind::WrongSignature { name, expected, found } => {
                write!(f, "`{name}` has type {found}, ABI v1 expects {expected}")
            }
            LoadErrorKind::AbiVersion { found } => {
                write!(f, "abi_version() returned {found}; this aftercart speaks ABI version {}", super::ABI_VERSION)
            }
            LoadErrorKind::ForbiddenImport { module, name } => write!(
                f,
                "forbidden import `{module}.{name}`: plugins may import only the `aftercart` host module \
                 (field, field_len, array_len, decimal_cmp); no WASI, clocks, randomness or I/O"
            ),
            LoadErrorKind::Instantiate(e) => write!(f, "cannot be instantiated: {e}"),
            LoadErrorKind::Limit(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PluginError {}

/// One failed call. Never fatal: see [`super::call_with_fallback`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The fuel budget (about one unit per wasm instruction) ran out.
    OutOfFuel,
    /// The plugin tried to grow its memory past its limit.
    MemoryLimit,
    /// A wasm trap (`unreachable`, out-of-bounds access, division by zero, stack overflow...).
    Trap(String),
    /// The wall-clock backstop (epoch deadline) fired before fuel ran out.
    Timeout,
    /// The plugin returned something outside the ABI (bad pointer, not JSON, too many ids...).
    BadOutput(String),
    /// The plugin itself reported an error (a negative return from `segment`).
    PluginErrorCode(i32),
    /// The plugin does not export the entry point for this kind of call.
    NotExported(&'static str),
    /// The host could not make an instance (e.g. every pooled slot is busy).
    Unavailable(String),
}

impl CallError {
    /// Short, stable name for metrics and the person's timeline.
    pub fn reason(&self) -> &'static str {
        match self {
            CallError::OutOfFuel => "out_of_fuel",
            CallError::MemoryLimit => "memory_limit",
            CallError::Trap(_) => "trap",
            CallError::Timeout => "timeout",
            CallError::BadOutput(_) => "bad_output",
            CallError::PluginErrorCode(_) => "plugin_error",
            CallError::NotExported(_) => "not_exported",
            CallError::Unavailable(_) => "unavailable",
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::OutOfFuel => {
                write!(f, "out of fuel: the plugin ran past its instruction budget")
            }
            CallError::MemoryLimit => write!(
                f,
                "memory limit: the plugin tried to grow its memory past its limit"
            ),
            CallError::Trap(t) => write!(f, "trap: {t}"),
            CallError::Timeout => write!(f, "timeout: the plugin ran past its wall-clock deadline"),
            CallError::BadOutput(e) => write!(f, "bad output: {e}"),
            CallError::PluginErrorCode(c) => write!(f, "plugin error code {c}"),
            CallError::NotExported(name) => write!(f, "the plugin does not export `{name}`"),
            CallError::Unavailable(e) => write!(f, "no instance available: {e}"),
        }
    }
}

impl std::error::Error for CallError {}
