//! The compiled program: typed, versioned, content-hashed, serde. The engine only sees this.
//! Produced by `check::lower` (which cannot fail); it holds no spans, no comments and no
//! layout, so its hash changes only when behaviour can.

pub mod diff;
pub mod graph;
pub mod types;
pub use types::Ty;

pub use crate::syntax::ast::{BinOp, FlowKind, HeldPolicy, Quant, UnOp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Bumped whenever the serialised shape changes; a runtime refuses a program of another version.
pub const IR_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub ir_version: u32,
    /// sha256 of the canonical JSON of everything below (see [`Program::compute_hash`]).
    pub hash: String,
    pub shopify_api_version: String,
    pub shop: Shop,
    pub policy: Policy,
    /// WebAssembly plugins the flows call, pinned by module hash.
    #[serde(default)]
    pub plugins: Vec<PluginDecl>,
    pub flows: Vec<Flow>,
    /// The project's `catalog` file, read by the checker: the catalog the hosts start from
    /// (products webhooks in the log update it). Data, so a deployed program replays the same.
    #[serde(default, skip_serializing_if = "crate::catalog::Catalog::is_empty")]
    pub catalog: crate::catalog::Catalog,
}

/// A declared plugin (docs/plugins.md). The module hash pins the exact code: a changed module
/// changes the program's hash and every version that uses it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PluginDecl {
    pub name: String,
    pub path: String,
    pub module_hash: String,
    /// `segment` or `recommend`.
    pub kind: String,
    pub fuel: u64,
    pub memory_bytes: u64,
    /// A segment's answer when a call fails (trap, out of fuel, memory limit, bad output).
    pub fallback: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Shop {
    pub name: String,
    /// IANA zone, the last resort for a recipient's zone.
    pub zone: String,
    pub sender: String,
    /// Base URL of tracked short links (`{link_base}/{code}`).
    pub link_base: Option<String>,
    pub help_reply: String,
    /// Every `[shop]` key as a string, for `shop.*` in templates.
    pub values: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ZoneSource {
    Profile,
    ShippingAddress,
    AreaCode,
    Shop,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub held: HeldPolicy,
    pub frequency_cap: FrequencyCap,
    pub max_segments: u32,
    pub zone_from: Vec<ZoneSource>,
    /// Shop overrides of quiet-hours rows, in the table's own format (see compliance).
    pub quiet_hours_overrides: BTreeMap<String, serde_json::Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FrequencyCap {
    pub max: u32,
    pub per_secs: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            held: HeldPolicy::Defer,
            // Florida's 3 commercial messages per 24 h (Fla. Stat. 501.616(6)(b)) is the default.
            frequency_cap: FrequencyCap {
                max: 3,
                per_secs: 86_400,
            },
            max_segments: 2,
            zone_from: vec![
                ZoneSource::Profile,
                ZoneSource::ShippingAddress,
                ZoneSource::AreaCode,
                ZoneSource::Shop,
            ],
            quiet_hours_overrides: BTreeMap::new(),
        }
    }
}

pub type StepId = u32;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub name: String,
    pub description: String,
    pub kind: FlowKind,
    /// sha256 of this flow's canonical JSON (without this field): the version instances pin.
    pub version: String,
    pub trigger: EventMatch,
    pub entry: Entry,
    pub exits: Vec<EventMatch>,
    pub goal: Option<Goal>,
    pub held: HeldPolicy,
    /// Step 0 is the first step; the graph is acyclic and every path ends in `Exit` or `End`.
    pub steps: Vec<Step>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventMatch {
    pub event: String,
    pub filter: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// At most one live or finished instance per value of the key (e.g. the order id).
    OncePer(Expr),
    /// Not again within this many seconds of the previous entry.
    AtMostOncePer {
        secs: i64,
    },
    OnceEver,
    EveryTime,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Goal {
    pub event: String,
    pub filter: Option<Expr>,
    pub within_secs: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "op")]
pub enum Step {
    Send {
        template: Template,
        next: StepId,
    },
    Wait {
        secs: i64,
        next: StepId,
    },
    /// Wait until the next `hour:minute` in the recipient's zone, on one of `days`
    /// (0 = Monday ... 6 = Sunday; empty = any day).
    WaitUntil {
        hour: u32,
        minute: u32,
        days: Vec<u8>,
        next: StepId,
    },
    WaitEvent {
        event: String,
        filter: Option<Expr>,
        timeout_secs: i64,
        on_event: StepId,
        on_timeout: StepId,
    },
    WaitReply {
        timeout_secs: i64,
        arms: Vec<ReplyArm>,
        other: StepId,
        on_timeout: StepId,
    },
    Branch {
        cond: Expr,
        then: StepId,
        otherwise: StepId,
    },
    Split {
        arms: Vec<SplitArm>,
    },
    /// An explicit `exit`.
    Exit,
    /// The end of the flow's steps.
    End,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyArm {
    /// Normalised answers (trimmed, case-folded, inner whitespace collapsed).
    pub answers: Vec<String>,
    pub next: StepId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitArm {
    pub name: String,
    /// Hundredths of a percent; the arms sum to 10_000.
    pub weight: u32,
    pub next: StepId,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePart {
    Text(String),
    Interp {
        expr: Expr,
        filters: Vec<FilterCall>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FilterCall {
    pub name: String,
    pub args: Vec<Expr>,
}

/// A literal value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lit {
    Bool(bool),
    Int(i64),
    /// Decimal as text: exact, never a float.
    Decimal(String),
    Str(String),
    Duration(i64),
    TimeOfDay {
        hour: u32,
        minute: u32,
    },
}

/// Where a name's value comes from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Root {
    /// The event being matched (the trigger, an exit, a wait-for or a goal candidate).
    Event,
    /// The event that started the instance (`flow.entry`).
    Entry,
    Profile,
    /// `flow.entry_at`, `flow.name`, `flow.version`.
    Flow,
    Shop,
    /// A quantifier's variable.
    Var(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    Lit(Lit),
    /// A field path under a root: `Path(Event, ["customer_id"])`.
    Path(Root, Vec<String>),
    /// The current time (the engine's `now` argument).
    Now,
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Quant {
        quant: Quant,
        var: String,
        list: Box<Expr>,
        pred: Box<Expr>,
    },
    List(Vec<Expr>),
    /// A built-in function (`link`, `len`, `lower`, `upper`, `days`).
    Call(String, Vec<Expr>),
    /// A segment plugin's answer, by plugin name (see `Program::plugins`).
    Plugin(String),
    /// The type the checker proved for `expr`, where a conversion matters at run time.
    Typed(Ty, Box<Expr>),
}

impl Program {
    /// Hash of the canonical JSON of the program without its `hash` field. serde_json writes
    /// struct fields in declaration order and maps are BTreeMaps, so the text is canonical.
    pub fn compute_hash(&self) -> String {
        let mut copy = self.clone();
        copy.hash = String::new();
        sha256_hex(&serde_json::to_vec(&copy).expect("IR serialises"))
    }

    pub fn flow(&self, name: &str) -> Option<&Flow> {
        self.flows.iter().find(|f| f.name == name)
    }
}

impl Flow {
    pub fn compute_version(&self) -> String {
        let mut copy = self.clone();
        copy.version = String::new();
        sha256_hex(&serde_json::to_vec(&copy).expect("IR serialises"))[..16].to_string()
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}
