//! The syntax tree of a `.flow` file: every node carries its span. Built by `parser`, read by
//! `check` and `format`; nothing here knows pest.

use crate::diagnostic::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    Segment(SegmentDef),
    Flow(FlowDef),
    Plugin(PluginDef),
}

/// `plugin NAME = "path" kind segment|recommend [fuel N] [memory NMiB] [fallback BOOL]`.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginDef {
    pub name: Ident,
    pub path: StrLit,
    /// `segment` or `recommend`.
    pub kind: String,
    pub fuel: Option<u64>,
    pub memory_bytes: Option<usize>,
    pub fallback: Option<bool>,
    pub span: Span,
}

impl Item {
    pub fn span(&self) -> Span {
        match self {
            Item::Segment(s) => s.span,
            Item::Flow(f) => f.span,
            Item::Plugin(p) => p.span,
        }
    }
    pub fn name(&self) -> &Ident {
        match self {
            Item::Segment(s) => &s.name,
            Item::Flow(f) => &f.name,
            Item::Plugin(p) => &p.name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SegmentDef {
    pub name: Ident,
    pub expr: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FlowDef {
    pub name: Ident,
    pub members: Vec<Member>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowKind {
    Transactional,
    Marketing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeldPolicy {
    Defer,
    Drop,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EventRef {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EntryRule {
    OncePer(Expr),
    AtMostOncePer(DurationLit),
    OnceEver,
    EveryTime,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MemberKind {
    Description(StrLit),
    Kind(FlowKind),
    Trigger {
        event: EventRef,
        filter: Option<Expr>,
    },
    Entry(EntryRule),
    Exit {
        event: EventRef,
        filter: Option<Expr>,
    },
    Goal {
        event: EventRef,
        filter: Option<Expr>,
        within: DurationLit,
    },
    Held(HeldPolicy),
    Step(Step),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    pub kind: MemberKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct StrLit {
    pub value: String,
    pub span: Span,
}

/// A duration literal such as `30m`; `secs` is its length in seconds (ms rounds down).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DurationLit {
    pub secs: i64,
    pub text: String,
    pub span: Span,
}

/// `HH:MM`; validated by the checker (AC0309), so hour/minute may be out of range here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeLit {
    pub hour: u32,
    pub minute: u32,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub kind: StepKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    Send {
        template: Template,
    },
    Wait {
        duration: DurationLit,
    },
    WaitUntil {
        time: TimeLit,
        days: Vec<Ident>,
    },
    WaitFor {
        event: EventRef,
        filter: Option<Expr>,
        within: Option<DurationLit>,
        arms: Vec<Arm>,
    },
    WaitReply {
        within: Option<DurationLit>,
        arms: Vec<Arm>,
    },
    If {
        branches: Vec<(Expr, Block)>,
        otherwise: Option<Block>,
    },
    Split {
        arms: Vec<SplitArm>,
    },
    Exit,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub steps: Vec<Step>,
    /// Written with braces (`=> { ... }`) rather than as a single step after `=>`.
    pub braced: bool,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Pattern {
    Received,
    Timeout,
    Other,
    Answers(Vec<StrLit>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arm {
    pub pattern: Pattern,
    pub pattern_span: Span,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SplitArm {
    /// Weight in hundredths of a percent (`12.5%` = 1250) so sums are exact.
    pub weight: u32,
    pub weight_text: String,
    pub weight_span: Span,
    pub name: Ident,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
    /// Written as `"""..."""`.
    pub triple: bool,
    /// The source text between the quotes, for the formatter.
    pub raw: String,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TemplatePart {
    Text {
        text: String,
        span: Span,
    },
    Interp {
        expr: Expr,
        filters: Vec<Filter>,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Filter {
    pub name: Ident,
    pub args: Vec<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    StartsWith,
    EndsWith,
    Contains,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn as_str(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::NotIn => "not in",
            BinOp::StartsWith => "starts_with",
            BinOp::EndsWith => "ends_with",
            BinOp::Contains => "contains",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
    /// Binding strength: higher binds tighter.
    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And => 2,
            BinOp::Add | BinOp::Sub => 5,
            BinOp::Mul | BinOp::Div => 6,
            _ => 4,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnOp {
    Not,
    Neg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quant {
    Any,
    All,
    Count,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    Int(i64),
    /// Kept as its source text so that money never passes through a float.
    Decimal(String),
    Str(String),
    Bool(bool),
    Duration(DurationLit),
    TimeOfDay(TimeLit),
    /// A name: `event`, `profile`, `flow`, `shop`, `now`, a segment, or a quantifier variable.
    Name(Ident),
    Field(Box<Expr>, Ident),
    Call(Ident, Vec<Expr>),
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Quant {
        quant: Quant,
        var: Ident,
        list: Box<Expr>,
        pred: Box<Expr>,
    },
    List(Vec<Expr>),
    /// Parenthesised (kept so the formatter can keep the user's grouping).
    Paren(Box<Expr>),
    /// `plugin NAME`: a segment plugin's answer.
    Plugin(Ident),
}

impl Expr {
    /// The dotted path of a name with fields (`event.customer.id`), if it is one.
    pub fn as_path(&self) -> Option<Vec<&Ident>> {
        match &self.kind {
            ExprKind::Name(id) => Some(vec![id]),
            ExprKind::Field(base, f) => {
                let mut p = base.as_path()?;
                p.push(f);
                Some(p)
            }
            _ => None,
        }
    }
}
