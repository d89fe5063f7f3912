//! Names and types of expressions and templates: resolves `event.*` against the event schema of
//! the context, `flow.entry.*` against the trigger's, `profile.*`, `shop.*`, segments and
//! quantifier variables; reports unknown names with "did you mean", removed Shopify fields,
//! and type errors. Also bounds each interpolation's length for the segment budget.

use crate::diagnostic::{Diagnostic, Span};
use crate::ir::Ty;
use crate::project::Project;
use crate::schema::{FieldError, Schemas};
use crate::syntax::ast::{self, BinOp, Expr, ExprKind, Quant, TemplatePart, UnOp};
use std::cell::RefCell;
use std::collections::BTreeMap;

pub struct Ctx<'a> {
    pub schemas: &'a Schemas,
    pub project: &'a Project,
    pub segments: &'a BTreeMap<String, &'a ast::SegmentDef>,
    pub plugins: &'a super::plugins::Plugins,
    /// Segments being expanded (to report a segment defined in terms of itself).
    expanding: RefCell<Vec<String>>,
}

/// What `event` and `flow.entry` mean where an expression is checked.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// The event being matched (trigger, exit, wait-for or goal), if any.
    pub event: Option<String>,
    /// The flow's trigger event (`flow.entry`), if inside a flow.
    pub entry: Option<String>,
    /// Quantifier variables in scope.
    pub vars: Vec<(String, Ty)>,
}

/// A checked interpolation's bound: at most `max_chars` characters.
#[derive(Clone, Debug)]
pub struct InterpBound {
    pub span: Span,
    pub label: String,
    pub max_chars: usize,
}

pub fn suggest<'s>(name: &str, candidates: impl IntoIterator<Item = &'s str>) -> Option<String> {
    let cands: Vec<&str> = candidates.into_iter().collect();
    // A name that is a whole word of a longer one (`status_url` in `order_status_url`) is a
    // better hint than any small edit.
    if name.len() >= 4 {
        if let Some(c) = cands
            .iter()
            .filter(|c| c.ends_with(&format!("_{name}")) || c.starts_with(&format!("{name}_")))
            .min_by_key(|c| c.len())
        {
            return Some(c.to_string());
        }
    }
    cands
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(name.len() / 3) && *d < c.len().max(name.len()))
        .min()
        .map(|(_, c)| c.to_string())
}

const FUNCTIONS: &[&str] = &["link", "len", "lower", "upper", "recommend", "first"];
/// Fields of the `product` record (schema data), readable as filters: `| first | title`.
const PRODUCT_FILTERS: &[&str] = &["id", "title", "price", "url", "image"];
const FILTERS: &[&str] = &[
    "default",
    "money",
    "first_word",
    "upper",
    "lower",
    "truncate",
    "first_title",
    "first",
    "tagged",
    "link",
    "id",
    "title",
    "price",
    "url",
    "image",
];

impl<'a> Ctx<'a> {
    pub fn new(
        schemas: &'a Schemas,
        project: &'a Project,
        segments: &'a BTreeMap<String, &'a ast::SegmentDef>,
        plugins: &'a super::plugins::Plugins,
    ) -> Self {
        Ctx {
            schemas,
            project,
            segments,
            plugins,
            expanding: RefCell::new(Vec::new()),
        }
    }

    /// Segments are checked where they are used (they read the user's event); here only what
    /// does not depend on the event: everything but `event.*` must resolve.
    pub fn check_segments(&self, diags: &mut Vec<Diagnostic>) {
        for seg in self.segments.values() {
            let scope = Scope {
                event: None,
                entry: None,
                vars: vec![],
            };
            self.expanding.borrow_mut().push(seg.name.name.clone());
            let ty = self.expr(&seg.expr, &scope, diags);
            self.expanding.borrow_mut().pop();
            if ty != Ty::Bool && ty != Ty::Unknown {
                diags.push(
                    Diagnostic::new(
                        "AC0201",
                        format!(
                            "segment `{}` must be a condition (bool), found {ty}",
                            seg.name.name
                        ),
                    )
                    .primary(seg.expr.span, format!("this is {ty}")),
                );
            }
        }
    }

    /// Check a condition: it must be bool.
    pub fn condition(&self, e: &Expr, scope: &Scope, diags: &mut Vec<Diagnostic>) {
        let ty = self.expr(e, scope, diags);
        if ty != Ty::Bool && ty != Ty::Unknown {
            diags.push(
                Diagnostic::new("AC0201", format!("expected a condition (bool), found {ty}"))
                    .primary(e.span, format!("this is {ty}")),
            );
        }
    }

    pub fn expr(&self, e: &Expr, scope: &Scope, diags: &mut Vec<Diagnostic>) -> Ty {
        match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Decimal(_) => Ty::Decimal,
            ExprKind::Str(_) => Ty::Str,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Duration(_) => Ty::Duration,
            ExprKind::TimeOfDay(_) => Ty::TimeOfDay,
            ExprKind::Paren(inner) => self.expr(inner, scope, diags),
            ExprKind::Plugin(id) => {
                match self.plugins.get(&id.name) {
                    Some(p) if p.kind == "segment" => {}
                    Some(p) => diags.push(
                        Diagnostic::new(
                            "AC0502",
                            format!("plugin `{}` is a {} plugin, not a segment", id.name, p.kind),
                        )
                        .primary(id.span, "used as a condition here")
                        .help("declare it with `kind segment`, or use a segment plugin"),
                    ),
                    None => self.unknown(
                        id,
                        "plugin",
                        &self.plugins.keys().map(|s| s.as_str()).collect::<Vec<_>>(),
                        diags,
                    ),
                }
                Ty::Bool
            }
            ExprKind::List(items) => {
                let mut elem = Ty::Unknown;
                for it in items {
                    let t = self.expr(it, scope, diags);
                    if elem == Ty::Unknown {
                        elem = t;
                    } else if !compatible(&elem, &t) && t != Ty::Unknown {
                        diags.push(
                            Diagnostic::new(
                                "AC0201",
                                format!(
                                    "list items must have one type: expected {elem}, found {t}"
                                ),
                            )
                            .primary(it.span, format!("this is {t}")),
                        );
                    }
                }
                Ty::List(Box::new(elem))
            }
            ExprKind::Name(_) | ExprKind::Field(..) => self.path(e, scope, diags),
            ExprKind::Call(name, args) => self.call(e.span, name, args, scope, diags),
            ExprKind::Unary(op, inner) => {
                let t = self.expr(inner, scope, diags);
                match op {
                    UnOp::Not => {
                        self.want(inner, &t, &Ty::Bool, diags);
                        Ty::Bool
                    }
                    UnOp::Neg => {
                        if !(t.is_numeric() || t == Ty::Duration) {
                            self.mismatch(inner.span, "a number or a duration", &t, diags);
                            return Ty::Unknown;
                        }
                        t
                    }
                }
            }
            ExprKind::Binary(op, l, r) => self.binary(e, *op, l, r, scope, diags),
            ExprKind::Quant {
                quant,
                var,
                list,
                pred,
            } => {
                let lt = self.expr(list, scope, diags);
                let elem = match lt {
                    Ty::List(t) => *t,
                    Ty::Unknown => Ty::Unknown,
                    other => {
                        self.mismatch(list.span, "a list", &other, diags);
                        Ty::Unknown
                    }
                };
                let mut inner = scope.clone();
                inner.vars.push((var.name.clone(), elem));
                self.condition(pred, &inner, diags);
                match quant {
                    Quant::Count => Ty::Int,
                    _ => Ty::Bool,
                }
            }
        }
    }

    fn want(&self, e: &Expr, got: &Ty, want: &Ty, diags: &mut Vec<Diagnostic>) {
        if got != want && *got != Ty::Unknown && !compatible(got, want) {
            self.mismatch(e.span, &want.to_string(), got, diags);
        }
    }

    fn mismatch(&self, span: Span, want: &str, got: &Ty, diags: &mut Vec<Diagnostic>) {
        if *got == Ty::Unknown {
            return;
        }
        diags.push(
            Diagnostic::new(
                "AC0201",
                format!("type mismatch: expected {want}, found {got}"),
            )
            .primary(span, format!("this is {got}")),
        );
    }

    fn binary(
        &self,
        e: &Expr,
        op: BinOp,
        l: &Expr,
        r: &Expr,
        scope: &Scope,
        diags: &mut Vec<Diagnostic>,
    ) -> Ty {
        let lt = self.expr(l, scope, diags);
        let rt = self.expr(r, scope, diags);
        if lt == Ty::Unknown || rt == Ty::Unknown {
            return match op {
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => Ty::Unknown,
                _ => Ty::Bool,
            };
        }
        let bad = |diags: &mut Vec<Diagnostic>, help: Option<&str>| {
            let mut d = Diagnostic::new(
                "AC0201",
                format!("`{}` cannot combine {lt} and {rt}", op.as_str()),
            )
            .primary(e.span, format!("{lt} {} {rt}", op.as_str()))
            .secondary(l.span, format!("{lt}"))
            .secondary(r.span, format!("{rt}"));
            if let Some(h) = help {
                d = d.help(h);
            }
            diags.push(d);
        };
        match op {
            BinOp::And | BinOp::Or => {
                self.want(l, &lt, &Ty::Bool, diags);
                self.want(r, &rt, &Ty::Bool, diags);
                Ty::Bool
            }
            BinOp::Eq | BinOp::Ne => {
                if !compatible(&lt, &rt) {
                    let help = (lt == Ty::Str && rt.is_numeric()
                        || rt == Ty::Str && lt.is_numeric())
                    .then_some("ids are strings: quote the number, e.g. \"12345\"");
                    bad(diags, help);
                }
                Ty::Bool
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ordered = (lt.is_numeric() && rt.is_numeric())
                    || (lt == rt
                        && matches!(lt, Ty::Time | Ty::Duration | Ty::TimeOfDay | Ty::Str));
                if !ordered {
                    let help = (lt == Ty::Time && rt == Ty::Duration
                        || lt == Ty::Duration && rt == Ty::Time)
                        .then_some("compare an age instead: `now - profile.last_order_at > 60d`");
                    bad(diags, help);
                }
                Ty::Bool
            }
            BinOp::In | BinOp::NotIn => {
                match &rt {
                    Ty::List(el) if compatible(el, &lt) || **el == Ty::Unknown => {}
                    Ty::Str if lt == Ty::Str => {}
                    _ => bad(diags, Some("`in` needs a list on the right: `event.currency in [\"USD\", \"CAD\"]`")),
                }
                Ty::Bool
            }
            BinOp::StartsWith | BinOp::EndsWith => {
                if !(lt == Ty::Str && rt == Ty::Str) {
                    bad(diags, None);
                }
                Ty::Bool
            }
            BinOp::Contains => {
                match &lt {
                    Ty::Str if rt == Ty::Str => {}
                    Ty::List(el) if compatible(el, &rt) => {}
                    _ => bad(diags, None),
                }
                Ty::Bool
            }
            BinOp::Add | BinOp::Sub => match (&lt, &rt) {
                (a, b) if a.is_numeric() && b.is_numeric() => numeric_join(a, b),
                (Ty::Str, Ty::Str) if op == BinOp::Add => Ty::Str,
                (Ty::Time, Ty::Duration) => Ty::Time,
                (Ty::Time, Ty::Time) if op == BinOp::Sub => Ty::Duration,
                (Ty::Duration, Ty::Duration) => Ty::Duration,
                _ => {
                    bad(diags, None);
                    Ty::Unknown
                }
            },
            BinOp::Mul | BinOp::Div => match (&lt, &rt) {
                (a, b) if a.is_numeric() && b.is_numeric() => numeric_join(a, b),
                (Ty::Duration, Ty::Int) => Ty::Duration,
                (Ty::Int, Ty::Duration) if op == BinOp::Mul => Ty::Duration,
                _ => {
                    bad(diags, None);
                    Ty::Unknown
                }
            },
        }
    }

    fn call(
        &self,
        span: Span,
        name: &ast::Ident,
        args: &[Expr],
        scope: &Scope,
        diags: &mut Vec<Diagnostic>,
    ) -> Ty {
        if name.name == "recommend" {
            // The argument is a plugin name, not a value: typed here, before the arguments.
            return self.recommend(span, args, diags);
        }
        let tys: Vec<Ty> = args.iter().map(|a| self.expr(a, scope, diags)).collect();
        let arity = |n: usize, diags: &mut Vec<Diagnostic>| {
            if args.len() != n {
                diags.push(
                    Diagnostic::new(
                        "AC0202",
                        format!(
                            "`{}` takes {n} argument{}, found {}",
                            name.name,
                            if n == 1 { "" } else { "s" },
                            args.len()
                        ),
                    )
                    .primary(span, "wrong number of arguments"),
                );
                false
            } else {
                true
            }
        };
        match name.name.as_str() {
            "link" => {
                if arity(1, diags) {
                    self.want(&args[0], &tys[0], &Ty::Str, diags);
                }
                Ty::Link
            }
            "len" => {
                if arity(1, diags) && !matches!(tys[0], Ty::List(_) | Ty::Str | Ty::Unknown) {
                    self.mismatch(args[0].span, "a list or a string", &tys[0], diags);
                }
                Ty::Int
            }
            "first" => {
                if !arity(1, diags) {
                    return Ty::Unknown;
                }
                match &tys[0] {
                    Ty::List(t) => (**t).clone(),
                    Ty::Unknown => Ty::Unknown,
                    other => {
                        self.mismatch(args[0].span, "a list", other, diags);
                        Ty::Unknown
                    }
                }
            }
            "lower" | "upper" => {
                if arity(1, diags) {
                    self.want(&args[0], &tys[0], &Ty::Str, diags);
                }
                Ty::Str
            }
            other => {
                let mut d = Diagnostic::new("AC0104", format!("unknown function `{other}`"))
                    .primary(name.span, "not a function");
                if let Some(s) = suggest(other, FUNCTIONS.iter().copied()) {
                    d = d.help(format!("did you mean `{s}`?"));
                } else {
                    d = d.help(format!("functions: {}", FUNCTIONS.join(", ")));
                }
                diags.push(d);
                Ty::Unknown
            }
        }
    }

    /// `recommend()` (the built-in recommender) or `recommend(PLUGIN)` (a declared `kind
    /// recommend` plugin): a list of catalog products, best first.
    fn recommend(&self, span: Span, args: &[Expr], diags: &mut Vec<Diagnostic>) -> Ty {
        let products = Ty::List(Box::new(Ty::Record("product".into())));
        match args {
            [] => {}
            [arg] => match &arg.kind {
                ExprKind::Name(id) => match self.plugins.get(&id.name) {
                    Some(p) if p.kind == "recommend" => {}
                    Some(p) => diags.push(
                        Diagnostic::new(
                            "AC0502",
                            format!(
                                "plugin `{}` is a {} plugin, not a recommender",
                                id.name, p.kind
                            ),
                        )
                        .primary(id.span, "used for recommendations here")
                        .help("declare it with `kind recommend`, or write `recommend()` for the built-in recommender"),
                    ),
                    None => {
                        let names: Vec<&str> = self
                            .plugins
                            .values()
                            .filter(|p| p.kind == "recommend")
                            .map(|p| p.name.as_str())
                            .collect();
                        let mut d = Diagnostic::new(
                            "AC0101",
                            format!("unknown plugin `{}`", id.name),
                        )
                        .primary(id.span, "not found");
                        d = match suggest(&id.name, names.iter().copied()) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(
                                "declare it: `plugin NAME = \"path.wasm\" kind recommend`, or write `recommend()` for the built-in recommender",
                            ),
                        };
                        diags.push(d);
                    }
                },
                _ => diags.push(
                    Diagnostic::new(
                        "AC0504",
                        "`recommend` takes the name of a recommend plugin, not a value",
                    )
                    .primary(arg.span, "not a plugin name")
                    .help("write `recommend()` for the built-in recommender or `recommend(NAME)` for a declared plugin"),
                ),
            },
            _ => diags.push(
                Diagnostic::new(
                    "AC0202",
                    format!(
                        "`recommend` takes 0 or 1 arguments, found {}",
                        args.len()
                    ),
                )
                .primary(span, "wrong number of arguments"),
            ),
        }
        products
    }

    /// A product field that does not exist: AC0503, listing the fields products have.
    fn no_product_field(&self, f: &ast::Ident, diags: &mut Vec<Diagnostic>) {
        let names: Vec<&str> = self
            .schemas
            .record("product")
            .map(|r| r.fields.keys().map(|s| s.as_str()).collect())
            .unwrap_or_default();
        let mut d = Diagnostic::new("AC0503", format!("products have no field `{}`", f.name))
            .primary(f.span, "not a product field");
        d = match suggest(&f.name, names.iter().copied()) {
            Some(s) => d.help(format!(
                "did you mean `{s}`? products have {}",
                names.join(", ")
            )),
            None => d.help(format!("products have {}", names.join(", "))),
        };
        diags.push(d);
    }

    fn path(&self, e: &Expr, scope: &Scope, diags: &mut Vec<Diagnostic>) -> Ty {
        let Some(path) = e.as_path() else {
            // A field of a non-name (e.g. of a call): type the base, then walk records.
            if let ExprKind::Field(base, f) = &e.kind {
                let bt = self.expr(base, scope, diags);
                return self.record_field(&bt, f, diags);
            }
            return Ty::Unknown;
        };
        let root = path[0];
        let rest: Vec<&str> = path[1..].iter().map(|i| i.name.as_str()).collect();
        match root.name.as_str() {
            "event" => match &scope.event {
                Some(ev) => self.event_path(ev, &path, 1, "event", diags),
                None => Ty::Unknown,
            },
            "flow" => {
                if rest.is_empty() {
                    diags.push(
                        Diagnostic::new("AC0101", "`flow` needs a field")
                            .primary(root.span, "here")
                            .help("use `flow.entry.FIELD`, `flow.entry_at` or `flow.name`"),
                    );
                    return Ty::Unknown;
                }
                if rest[0] == "entry" {
                    return match &scope.entry {
                        Some(ev) if rest.len() > 1 => {
                            self.event_path(ev, &path, 2, "flow.entry", diags)
                        }
                        Some(ev) => Ty::Record(format!("event:{ev}")),
                        None => {
                            diags.push(
                                Diagnostic::new(
                                    "AC0101",
                                    "`flow.entry` is only available inside a flow",
                                )
                                .primary(e.span, "no flow here")
                                .help(
                                    "segments used by several flows should test `event.*` instead",
                                ),
                            );
                            Ty::Unknown
                        }
                    };
                }
                let fields = self.schemas.flow_fields();
                match fields.get(rest[0]) {
                    Some(f) if rest.len() == 1 => f.ty.clone(),
                    Some(f) => self.walk_record(f.ty.clone(), &path[2..], diags),
                    None => {
                        let mut names: Vec<&str> = fields.keys().map(|s| s.as_str()).collect();
                        names.push("entry");
                        self.unknown(path[1], "field of `flow`", &names, diags);
                        Ty::Unknown
                    }
                }
            }
            "profile" => {
                let fields = self.schemas.profile_fields();
                let Some(first) = path.get(1) else {
                    diags.push(
                        Diagnostic::new("AC0101", "`profile` needs a field")
                            .primary(root.span, "here"),
                    );
                    return Ty::Unknown;
                };
                match fields.get(&first.name) {
                    Some(f) => self.walk_record(f.ty.clone(), &path[2..], diags),
                    None => {
                        let names: Vec<&str> = fields.keys().map(|s| s.as_str()).collect();
                        self.unknown(first, "profile field", &names, diags);
                        Ty::Unknown
                    }
                }
            }
            "shop" => {
                let Some(first) = path.get(1) else {
                    diags.push(
                        Diagnostic::new("AC0101", "`shop` needs a field")
                            .primary(root.span, "here"),
                    );
                    return Ty::Unknown;
                };
                if self.project.shop.values.contains_key(&first.name) || first.name == "name" {
                    if path.len() > 2 {
                        self.mismatch(path[2].span, "a record", &Ty::Str, diags);
                    }
                    Ty::Str
                } else {
                    let names: Vec<&str> = self
                        .project
                        .shop
                        .values
                        .keys()
                        .map(|s| s.as_str())
                        .collect();
                    let mut d = Diagnostic::new(
                        "AC0101",
                        format!("unknown shop setting `shop.{}`", first.name),
                    )
                    .primary(first.span, "not in the project file's [shop] table");
                    d = match suggest(&first.name, names.iter().copied()) {
                        Some(s) => d.help(format!("did you mean `shop.{s}`?")),
                        None => d.help(format!(
                            "add `{} = \"...\"` under [shop] in aftercart.toml",
                            first.name
                        )),
                    };
                    diags.push(d);
                    Ty::Unknown
                }
            }
            "now" if path.len() == 1 => Ty::Time,
            name => {
                if let Some((_, t)) = scope.vars.iter().rev().find(|(v, _)| v == name) {
                    return self.walk_record(t.clone(), &path[1..], diags);
                }
                if let Some(seg) = self.segments.get(name) {
                    if path.len() > 1 {
                        self.mismatch(path[1].span, "a record", &Ty::Bool, diags);
                    }
                    self.use_segment(root, seg, scope, diags);
                    return Ty::Bool;
                }
                let mut cands: Vec<&str> = vec!["event", "profile", "flow", "shop", "now"];
                cands.extend(self.segments.keys().map(|s| s.as_str()));
                cands.extend(scope.vars.iter().map(|(v, _)| v.as_str()));
                self.unknown(root, "name", &cands, diags);
                Ty::Unknown
            }
        }
    }

    /// A segment used here: check its body with this use's `event`, and report problems at the
    /// use with a pointer into the segment.
    fn use_segment(
        &self,
        at: &ast::Ident,
        seg: &ast::SegmentDef,
        scope: &Scope,
        diags: &mut Vec<Diagnostic>,
    ) {
        if self.expanding.borrow().contains(&seg.name.name) {
            diags.push(
                Diagnostic::new(
                    "AC0107",
                    format!("segment `{}` is defined in terms of itself", seg.name.name),
                )
                .primary(at.span, "used here")
                .secondary(seg.name.span, "while expanding this segment"),
            );
            return;
        }
        if scope.event.is_none() {
            return;
        }
        self.expanding.borrow_mut().push(seg.name.name.clone());
        let inner = Scope {
            event: scope.event.clone(),
            entry: scope.entry.clone(),
            vars: vec![],
        };
        let mut local = Vec::new();
        self.expr(&seg.expr, &inner, &mut local);
        self.expanding.borrow_mut().pop();
        for d in local {
            if d.code == "AC0107" {
                diags.push(d);
                continue;
            }
            let ev = scope.event.as_deref().unwrap_or("?");
            let mut nd = Diagnostic::new(
                d.code,
                format!(
                    "segment `{}` does not fit `{ev}`: {}",
                    seg.name.name, d.message
                ),
            )
            .primary(at.span, format!("used with `{ev}` here"));
            for l in &d.labels {
                nd = nd.secondary(l.span, l.message.clone());
            }
            nd.help = d.help.clone();
            diags.push(nd);
        }
    }

    fn event_path(
        &self,
        event: &str,
        path: &[&ast::Ident],
        from: usize,
        prefix: &str,
        diags: &mut Vec<Diagnostic>,
    ) -> Ty {
        let names: Vec<&str> = path[from..].iter().map(|i| i.name.as_str()).collect();
        if names.is_empty() {
            return Ty::Record(format!("event:{event}"));
        }
        if let Some(rem) = self.schemas.removed(event, &names) {
            let shown = format!("{prefix}.{}", names.join("."));
            diags.push(
                Diagnostic::new(
                    "AC0106",
                    format!(
                        "`{shown}` was removed from Shopify's `{event}` payload in API {}",
                        rem.since
                    ),
                )
                .primary(
                    path[from].span.to(path[path.len() - 1].span),
                    "removed field",
                )
                .help(rem.help.clone())
                .note(format!(
                    "aftercart pins Shopify API {}",
                    self.schemas.api_version
                )),
            );
            return Ty::Unknown;
        }
        match self.schemas.field_type(event, &names) {
            Ok(t) => t,
            Err(FieldError::UnknownEvent) => Ty::Unknown,
            Err(FieldError::UnknownField { at, known }) => {
                let bad = path[from + at];
                let known: Vec<&str> = known.iter().map(|s| s.as_str()).collect();
                let mut d =
                    Diagnostic::new("AC0102", format!("`{event}` has no field `{}`", bad.name))
                        .primary(bad.span, "unknown field");
                d = match suggest(&bad.name, known.iter().copied()) {
                    Some(s) => d.help(format!("did you mean `{s}`?")),
                    None => d.help(format!("fields here: {}", short_list(&known))),
                };
                diags.push(d);
                Ty::Unknown
            }
            Err(FieldError::NotARecord { at, ty }) => {
                self.mismatch(path[from + at].span, "a record", &ty, diags);
                Ty::Unknown
            }
        }
    }

    fn walk_record(&self, mut ty: Ty, rest: &[&ast::Ident], diags: &mut Vec<Diagnostic>) -> Ty {
        for f in rest {
            ty = self.record_field(&ty, f, diags);
            if ty == Ty::Unknown {
                break;
            }
        }
        ty
    }

    fn record_field(&self, ty: &Ty, f: &ast::Ident, diags: &mut Vec<Diagnostic>) -> Ty {
        match ty {
            Ty::Record(name) => match self.schemas.record(name) {
                Some(rec) => match rec.fields.get(&f.name) {
                    Some(field) => field.ty.clone(),
                    None if name == "product" => {
                        self.no_product_field(f, diags);
                        Ty::Unknown
                    }
                    None => {
                        let names: Vec<&str> = rec.fields.keys().map(|s| s.as_str()).collect();
                        self.unknown(f, &format!("field of `{name}`"), &names, diags);
                        Ty::Unknown
                    }
                },
                None => Ty::Unknown,
            },
            Ty::Unknown => Ty::Unknown,
            other => {
                self.mismatch(f.span, "a record", other, diags);
                Ty::Unknown
            }
        }
    }

    fn unknown(&self, id: &ast::Ident, what: &str, cands: &[&str], diags: &mut Vec<Diagnostic>) {
        let mut d = Diagnostic::new("AC0101", format!("unknown {what} `{}`", id.name))
            .primary(id.span, "not found");
        if let Some(s) = suggest(&id.name, cands.iter().copied()) {
            d = d.help(format!("did you mean `{s}`?"));
        }
        diags.push(d);
    }

    /// Check a template; returns each interpolation's length bound (for the segment budget).
    pub fn template(
        &self,
        t: &ast::Template,
        scope: &Scope,
        diags: &mut Vec<Diagnostic>,
    ) -> Vec<InterpBound> {
        let mut bounds = Vec::new();
        for part in &t.parts {
            let TemplatePart::Interp {
                expr,
                filters,
                span,
            } = part
            else {
                continue;
            };
            let mut ty = self.expr(expr, scope, diags);
            let mut bound = self.bound(expr, &ty);
            for f in filters {
                let tys: Vec<Ty> = f.args.iter().map(|a| self.expr(a, scope, diags)).collect();
                let arg_count = |n: std::ops::RangeInclusive<usize>,
                                 diags: &mut Vec<Diagnostic>| {
                    if !n.contains(&f.args.len()) {
                        diags.push(
                            Diagnostic::new(
                                "AC0202",
                                format!(
                                    "filter `{}` takes {} argument(s), found {}",
                                    f.name.name,
                                    fmt_range(&n),
                                    f.args.len()
                                ),
                            )
                            .primary(f.span, "wrong number of arguments"),
                        );
                    }
                };
                match f.name.name.as_str() {
                    "default" => {
                        arg_count(1..=1, diags);
                        if let Some(a) = f.args.first() {
                            bound = bound.max(self.bound(a, &tys[0]));
                            if ty != Ty::Unknown
                                && tys[0] != Ty::Unknown
                                && !compatible(&ty, &tys[0])
                            {
                                self.mismatch(a.span, &ty.to_string(), &tys[0], diags);
                            }
                        }
                    }
                    "money" => {
                        arg_count(0..=1, diags);
                        if !matches!(ty, Ty::Money | Ty::Decimal | Ty::Int | Ty::Unknown) {
                            self.mismatch(
                                f.name.span,
                                "money (the value before `| money`)",
                                &ty,
                                diags,
                            );
                        }
                        ty = Ty::Str;
                        bound = 14;
                    }
                    "first_word" | "upper" | "lower" => {
                        arg_count(0..=0, diags);
                        if !matches!(ty, Ty::Str | Ty::Unknown) {
                            self.mismatch(
                                f.name.span,
                                "a string (the value before the filter)",
                                &ty,
                                diags,
                            );
                        }
                        ty = Ty::Str;
                    }
                    "truncate" => {
                        arg_count(1..=1, diags);
                        if let Some(ExprKind::Int(n)) = f.args.first().map(|a| &a.kind) {
                            bound = bound.min(*n as usize + 3);
                        } else if let Some(a) = f.args.first() {
                            self.mismatch(a.span, "an integer literal", &tys[0], diags);
                        }
                        ty = Ty::Str;
                    }
                    "first_title" => {
                        arg_count(0..=0, diags);
                        match &ty {
                            Ty::List(_) | Ty::Unknown => {}
                            other => {
                                self.mismatch(f.name.span, "a list of line items", other, diags)
                            }
                        }
                        ty = Ty::Str;
                        // A product title; Shopify allows 255 but storefront titles rarely pass 60.
                        bound = 60;
                    }
                    "first" => {
                        arg_count(0..=0, diags);
                        ty = match &ty {
                            Ty::List(t) => (**t).clone(),
                            Ty::Unknown => Ty::Unknown,
                            other => {
                                self.mismatch(f.name.span, "a list", other, diags);
                                Ty::Unknown
                            }
                        };
                    }
                    "tagged" => {
                        arg_count(1..=1, diags);
                        if let (Some(a), Some(t)) = (f.args.first(), tys.first()) {
                            self.want(a, t, &Ty::Str, diags);
                        }
                        if !matches!(&ty, Ty::List(t) if **t == Ty::Record("product".into()))
                            && ty != Ty::Unknown
                        {
                            self.mismatch(f.name.span, "a list of products", &ty, diags);
                            ty = Ty::Unknown;
                        }
                    }
                    "link" => {
                        // A tracked link to a product's URL, or to a URL string.
                        arg_count(0..=0, diags);
                        if !matches!(ty, Ty::Str | Ty::Link | Ty::Unknown)
                            && ty != Ty::Record("product".into())
                        {
                            self.mismatch(f.name.span, "a product or a URL", &ty, diags);
                        }
                        ty = Ty::Link;
                        bound = match &self.project.shop.link_base {
                            Some(b) => b.chars().count() + 11,
                            None => 100,
                        };
                    }
                    field if PRODUCT_FILTERS.contains(&field) => {
                        arg_count(0..=0, diags);
                        ty = match &ty {
                            Ty::Record(r) if r == "product" => self
                                .schemas
                                .record("product")
                                .and_then(|r| r.fields.get(field))
                                .map(|f| f.ty.clone())
                                .unwrap_or(Ty::Unknown),
                            Ty::Unknown => Ty::Unknown,
                            other => {
                                self.mismatch(
                                    f.name.span,
                                    "a product (e.g. `recommend() | first`)",
                                    other,
                                    diags,
                                );
                                Ty::Unknown
                            }
                        };
                        // Storefront titles rarely pass 60 characters; URLs are a shop's
                        // domain plus a handle.
                        bound = match field {
                            "title" => 60,
                            "price" => 12,
                            "id" => 20,
                            _ => 100,
                        };
                    }
                    other if ty == Ty::Record("product".into()) => {
                        self.no_product_field(&f.name, diags);
                        let _ = other;
                        ty = Ty::Unknown;
                    }
                    other => {
                        let mut d = Diagnostic::new("AC0104", format!("unknown filter `{other}`"))
                            .primary(f.name.span, "not a filter");
                        d = match suggest(other, FILTERS.iter().copied()) {
                            Some(s) => d.help(format!("did you mean `{s}`?")),
                            None => d.help(format!("filters: {}", FILTERS.join(", "))),
                        };
                        diags.push(d);
                        ty = Ty::Unknown;
                    }
                }
            }
            if matches!(ty, Ty::List(_) | Ty::Record(_) | Ty::Bool) {
                diags.push(
                    Diagnostic::new("AC0201", format!("a {ty} cannot be written into a message"))
                        .primary(expr.span, format!("this is {ty}"))
                        .help(if ty == Ty::Record("product".into()) {
                            "pick a product field such as `| title`, `| price` or `| link`"
                        } else {
                            "pick a field, or use a filter such as `| first_title`"
                        }),
                );
            }
            let mut label = self.label(expr);
            for f in filters {
                label.push_str(&format!(" | {}", f.name.name));
            }
            bounds.push(InterpBound {
                span: *span,
                label,
                max_chars: bound,
            });
        }
        bounds
    }

    fn label(&self, e: &Expr) -> String {
        match e.as_path() {
            Some(p) => p
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join("."),
            None => match &e.kind {
                ExprKind::Call(n, _) => format!("{}(...)", n.name),
                _ => "expression".into(),
            },
        }
    }

    /// The longest plausible rendering of a value, in characters. Person data is bounded by
    /// what real payloads hold (a first name over 20 characters is rare); shop settings are
    /// known exactly.
    fn bound(&self, e: &Expr, ty: &Ty) -> usize {
        match &e.kind {
            ExprKind::Str(s) => return s.chars().count(),
            ExprKind::Int(n) => return n.to_string().len(),
            ExprKind::Paren(inner) => return self.bound(inner, ty),
            ExprKind::Binary(BinOp::Add, l, r) if *ty == Ty::Str => {
                return self.bound(l, ty) + self.bound(r, ty)
            }
            ExprKind::Call(n, _) if n.name == "link" => {
                // A tracked link is `{link_base}/{7-char code}`; without a base, the raw URL.
                return match &self.project.shop.link_base {
                    Some(b) => b.chars().count() + 8,
                    None => 100,
                };
            }
            _ => {}
        }
        if let Some(p) = e.as_path() {
            let names: Vec<&str> = p.iter().map(|i| i.name.as_str()).collect();
            if names[0] == "shop" && names.len() == 2 {
                if let Some(v) = self.project.shop.values.get(names[1]) {
                    return v.chars().count();
                }
            }
            let last = *names.last().unwrap();
            let by_name = match last {
                "first_name" | "last_name" => Some(20),
                "order_number" | "name" => Some(12),
                "tracking_company" => Some(20),
                "tracking_number" => Some(30),
                "currency" | "state" | "province_code" | "country_code" => Some(3),
                "title" => Some(60),
                "sku" => Some(20),
                "email" => Some(40),
                "phone" => Some(16),
                _ => None,
            };
            if let Some(b) = by_name {
                return b;
            }
        }
        match ty {
            Ty::Int => 10,
            Ty::Money | Ty::Decimal => 12,
            Ty::Time => 25,
            Ty::Link | Ty::Str => 40,
            _ => 20,
        }
    }
}

/// At most 12 names, then "and N more".
fn short_list(names: &[&str]) -> String {
    if names.len() <= 12 {
        names.join(", ")
    } else {
        format!("{}, and {} more", names[..12].join(", "), names.len() - 12)
    }
}

fn fmt_range(r: &std::ops::RangeInclusive<usize>) -> String {
    if r.start() == r.end() {
        r.start().to_string()
    } else {
        format!("{} to {}", r.start(), r.end())
    }
}

/// Types that may be compared or mixed.
pub fn compatible(a: &Ty, b: &Ty) -> bool {
    a == b
        || *a == Ty::Unknown
        || *b == Ty::Unknown
        || (a.is_numeric() && b.is_numeric())
        || (matches!(a, Ty::Str | Ty::Link) && matches!(b, Ty::Str | Ty::Link))
        || matches!((a, b), (Ty::List(x), Ty::List(y)) if compatible(x, y))
}

fn numeric_join(a: &Ty, b: &Ty) -> Ty {
    if *a == Ty::Money || *b == Ty::Money {
        Ty::Money
    } else if *a == Ty::Decimal || *b == Ty::Decimal {
        Ty::Decimal
    } else {
        Ty::Int
    }
}
