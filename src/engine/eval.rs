//! Expression evaluation and template rendering. Null propagates: a missing field is null,
//! arithmetic on null is null, every comparison with null is false, and the `default`
//! filter replaces null or empty text.

use super::model::{Consent, Instance, Link, Profile};
use super::value::Value;
use crate::ir::{BinOp, Expr, Lit, Quant, Root, Template, TemplatePart, Ty, UnOp};
use chrono::{DateTime, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::str::FromStr;

/// What names mean while evaluating one expression.
pub struct Scope<'a> {
    pub event: Src<'a>,
    pub entry: Src<'a>,
    pub profile: Src<'a>,
    pub flow: Src<'a>,
    pub shop: Src<'a>,
    pub now: DateTime<Utc>,
    /// Set while rendering a message: `link()` then shortens and records links.
    pub links: Option<LinkCtx<'a>>,
    /// The program's plugins, for `plugin NAME` conditions.
    pub plugins: &'a [crate::ir::PluginDecl],
    /// Catalog and order history for `recommend()`.
    pub data: &'a crate::catalog::ShopData,
}

/// Where a root name's value comes from. Roots are read in place and only the leaf a path
/// reaches is converted: converting whole payloads (`Value::from_json`), building the profile
/// and shop records and the `flow` record for every evaluation was most of the engine's
/// allocation (docs/performance.md). The values are the same as converting first.
#[derive(Clone, Copy)]
pub enum Src<'a> {
    Null,
    /// Event JSON, read as [`Value::from_json`] would convert it.
    Json(&'a serde_json::Value),
    /// `profile.*`, as [`super::profile::to_value`] builds it.
    Profile(&'a Profile, Consent),
    /// `shop.*`: the `[shop]` table's values with the named settings over them.
    Shop(&'a crate::ir::Shop),
    /// `flow.*` of an instance.
    Flow(&'a Instance),
}

impl Src<'_> {
    /// The value at `path` (empty: the whole root), as if the root were converted first.
    pub fn get(&self, path: &[String]) -> Value {
        let Some((first, rest)) = path.split_first() else {
            return self.whole();
        };
        match *self {
            Src::Null => Value::Null,
            Src::Json(j) => {
                let mut j = j;
                for f in path {
                    match j {
                        serde_json::Value::Object(m) => match m.get(f) {
                            Some(x) => j = x,
                            None => return Value::Null,
                        },
                        _ => return Value::Null,
                    }
                }
                Value::from_json(j)
            }
            Src::Profile(p, c) => field_then(super::profile::field(p, c, first), rest),
            Src::Shop(s) => field_then(shop_field(s, first), rest),
            Src::Flow(inst) => match first.as_str() {
                "entry" => Src::Json(&inst.entry).get(rest),
                _ => field_then(flow_field(inst, first), rest),
            },
        }
    }

    /// One field of the root (`Value::Null` when absent).
    pub fn field(&self, name: &str) -> Value {
        self.get(std::slice::from_ref(&name.to_string()))
    }

    /// Does the root have this field (even when null)?
    pub fn has(&self, name: &str) -> bool {
        match *self {
            Src::Null => false,
            Src::Json(j) => j.as_object().is_some_and(|m| m.contains_key(name)),
            _ => self.whole().field_ref(name).is_some(),
        }
    }

    /// The whole root as a value (plugin input, `x == profile`: rare).
    pub fn whole(&self) -> Value {
        match *self {
            Src::Null => Value::Null,
            Src::Json(j) => Value::from_json(j),
            Src::Profile(p, c) => super::profile::to_value(p, c),
            Src::Shop(s) => {
                let mut m: BTreeMap<String, Value> = s
                    .values
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
                    .collect();
                for k in ["name", "zone", "sender", "help_reply", "link_base"] {
                    if let Some(v) = shop_setting(s, k) {
                        m.insert(k.into(), Value::Str(v.to_string()));
                    }
                }
                Value::Record(m)
            }
            Src::Flow(inst) => {
                let mut m = BTreeMap::new();
                for k in FLOW_FIELDS {
                    m.insert(k.to_string(), flow_field(inst, k));
                }
                m.insert("entry".into(), Value::from_json(&inst.entry));
                Value::Record(m)
            }
        }
    }
}

fn walk<'v>(mut v: &'v Value, path: &[String]) -> &'v Value {
    for f in path {
        v = v.field_ref(f).unwrap_or(&NULL);
    }
    v
}

fn field_then(v: Value, rest: &[String]) -> Value {
    if rest.is_empty() {
        v
    } else {
        walk(&v, rest).clone()
    }
}

/// The named `[shop]` settings, which take precedence over `values` of the same name
/// (`link_base` only when set).
fn shop_setting<'s>(s: &'s crate::ir::Shop, name: &str) -> Option<&'s str> {
    match name {
        "name" => Some(&s.name),
        "zone" => Some(&s.zone),
        "sender" => Some(&s.sender),
        "help_reply" => Some(&s.help_reply),
        "link_base" => s.link_base.as_deref(),
        _ => None,
    }
}

fn shop_field(s: &crate::ir::Shop, name: &str) -> Value {
    shop_setting(s, name)
        .or_else(|| s.values.get(name).map(String::as_str))
        .map(|v| Value::Str(v.to_string()))
        .unwrap_or(Value::Null)
}

/// `flow.*` besides `entry`.
const FLOW_FIELDS: [&str; 4] = ["name", "version", "entry_at", "entry_event"];

fn flow_field(inst: &Instance, name: &str) -> Value {
    match name {
        "name" => Value::Str(inst.flow.clone()),
        "version" => Value::Str(inst.flow_version.clone()),
        "entry_at" => Value::Time(inst.entered_at),
        "entry_event" => Value::Str(inst.entry_event.clone()),
        "entry" => Value::from_json(&inst.entry),
        _ => Value::Null,
    }
}

pub struct LinkCtx<'a> {
    pub base: Option<&'a str>,
    pub message_id: &'a str,
    pub out: Vec<Link>,
}

/// A short code that depends only on (message id, url): a re-rendered message has the same links.
pub fn link_code(message_id: &str, url: &str) -> String {
    hash_hex(&[message_id, url], 10)
}

/// sha256 of `parts` joined by newlines.
pub(super) fn hash_parts(parts: &[&str]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update(b"\n");
        }
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// The first `n` (<= 64) hex digits of sha256(`parts` joined by newlines): what
/// `crate::ir::sha256_hex(..)[..n]` gives, without the joined text or all 64 digits formatted
/// one by one (ids are hashed several times per send; formatting was 5% of the simulator).
pub(super) fn hash_hex(parts: &[&str], n: usize) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = hash_parts(parts);
    let mut out = String::with_capacity(n);
    for i in 0..n {
        let b = d[i / 2];
        let nib = if i % 2 == 0 { b >> 4 } else { b & 0xf };
        out.push(HEX[nib as usize] as char);
    }
    out
}

static NULL: Value = Value::Null;

/// A variable bound by a quantifier: a converted value, or an element of a payload list read
/// in place (`any(item in event.line_items: item.sku ...)` then converts only the fields the
/// predicate names; converting every line item into a record, and cloning it once more to
/// bind it, was ~4% of the simulator).
enum Var<'a> {
    Value(Value),
    Json(&'a serde_json::Value),
}

impl<'a> Scope<'a> {
    pub fn eval(&mut self, e: &Expr) -> Value {
        let mut vars = Vec::new();
        self.ev(e, &mut vars)
    }

    pub fn cond(&mut self, e: &Option<Expr>) -> bool {
        e.as_ref().is_none_or(|e| self.eval(e).truthy())
    }

    /// The payload node a path reaches when its root is a payload read in place (`None`
    /// otherwise, or when the path leaves the objects: the converted value is then null).
    fn json_at(&self, root: &Root, path: &[String]) -> Option<&'a serde_json::Value> {
        let (src, path) = match root {
            Root::Event => (self.event, path),
            Root::Entry => (self.entry, path),
            Root::Flow if path.first().map(String::as_str) == Some("entry") => {
                (self.entry, &path[1..])
            }
            _ => return None,
        };
        let Src::Json(mut j) = src else {
            return None;
        };
        for f in path {
            j = j.as_object()?.get(f)?;
        }
        Some(j)
    }

    /// Does `pred` hold with `var` bound to `it`?
    fn holds(
        &mut self,
        var: &str,
        it: Var<'a>,
        pred: &Expr,
        vars: &mut Vec<(String, Var<'a>)>,
    ) -> bool {
        vars.push((var.to_string(), it));
        let ok = self.ev(pred, vars).truthy();
        vars.pop();
        ok
    }

    fn ev(&mut self, e: &Expr, vars: &mut Vec<(String, Var<'a>)>) -> Value {
        match e {
            Expr::Lit(l) => lit(l),
            Expr::Path(root, path) => {
                // Read the root in place and convert only the leaf.
                let src = match root {
                    Root::Event => self.event,
                    Root::Entry => self.entry,
                    Root::Profile => self.profile,
                    Root::Shop => self.shop,
                    // `flow.entry.x` may arrive as a Flow path: same meaning as Root::Entry.
                    Root::Flow if path.first().map(String::as_str) == Some("entry") => {
                        return self.entry.get(&path[1..]);
                    }
                    Root::Flow => self.flow,
                    Root::Var(name) => match vars.iter().rposition(|(n, _)| n == name) {
                        Some(i) => {
                            return match &vars[i].1 {
                                Var::Value(v) => walk(v, path).clone(),
                                Var::Json(j) => Src::Json(j).get(path),
                            }
                        }
                        None => return Value::Null,
                    },
                };
                src.get(path)
            }
            Expr::Now => Value::Time(self.now),
            Expr::Unary(op, x) => {
                let x = self.ev(x, vars);
                match (op, x) {
                    (UnOp::Not, x) => Value::Bool(!x.truthy()),
                    (UnOp::Neg, Value::Int(i)) => Value::Int(-i),
                    (UnOp::Neg, Value::Decimal(d)) => Value::Decimal(-d),
                    (UnOp::Neg, Value::Duration(d)) => Value::Duration(-d),
                    _ => Value::Null,
                }
            }
            Expr::Binary(BinOp::And, a, b) => {
                Value::Bool(self.ev(a, vars).truthy() && self.ev(b, vars).truthy())
            }
            Expr::Binary(BinOp::Or, a, b) => {
                Value::Bool(self.ev(a, vars).truthy() || self.ev(b, vars).truthy())
            }
            Expr::Binary(op, a, b) => {
                let a = self.ev(a, vars);
                let b = self.ev(b, vars);
                binary(*op, a, b)
            }
            Expr::Quant {
                quant,
                var,
                list,
                pred,
            } => {
                // A list in a payload is read in place; it converts to a list exactly when it
                // is a JSON array (anything else converts to a non-list: no items).
                let in_place = match &**list {
                    Expr::Path(root, path) => self.json_at(root, path),
                    _ => None,
                };
                let mut n = 0i64;
                let len = match in_place {
                    Some(j) => {
                        let items = j.as_array().map(Vec::as_slice).unwrap_or_default();
                        for it in items {
                            n += i64::from(self.holds(var, Var::Json(it), pred, vars));
                        }
                        items.len()
                    }
                    None => {
                        let items = match self.ev(list, vars) {
                            Value::List(l) => l,
                            _ => Vec::new(),
                        };
                        let len = items.len();
                        for it in items {
                            n += i64::from(self.holds(var, Var::Value(it), pred, vars));
                        }
                        len
                    }
                };
                match quant {
                    Quant::Any => Value::Bool(n > 0),
                    Quant::All => Value::Bool(n == len as i64),
                    Quant::Count => Value::Int(n),
                }
            }
            Expr::List(xs) => Value::List(xs.iter().map(|x| self.ev(x, vars)).collect()),
            Expr::Call(name, args) => {
                let args: Vec<Value> = args.iter().map(|a| self.ev(a, vars)).collect();
                self.call(name, args)
            }
            Expr::Typed(ty, x) => convert(ty, self.ev(x, vars)),
            Expr::Plugin(name) => {
                // ABI v1 input: the profile, and the event as the order. The call is
                // deterministic (fuel, no clock, no randomness), so replays agree; a failure
                // applies the declared fallback and is recorded for the timeline.
                let Some(decl) = self.plugins.iter().find(|p| &p.name == name) else {
                    return Value::Null;
                };
                let input = crate::plugins::plugin_input(
                    &self.profile.whole().to_json(),
                    Some(&self.event.whole().to_json()),
                );
                Value::Bool(crate::plugins::call_segment(
                    &decl.name,
                    &decl.module_hash,
                    &input,
                    decl.fallback,
                ))
            }
        }
    }

    fn call(&mut self, name: &str, args: Vec<Value>) -> Value {
        let mut args = args.into_iter();
        let first = args.next().unwrap_or(Value::Null);
        let args_second = args.next();
        match name {
            "link" => {
                let url = first.display();
                if url.is_empty() {
                    return Value::Null;
                }
                match &mut self.links {
                    Some(ctx) => {
                        let code = link_code(ctx.message_id, &url);
                        let text = match ctx.base {
                            Some(b) => format!("{}/{code}", b.trim_end_matches('/')),
                            None => url.clone(),
                        };
                        if !ctx.out.iter().any(|l| l.code == code) {
                            ctx.out.push(Link { code, url });
                        }
                        Value::Str(text)
                    }
                    None => Value::Str(url),
                }
            }
            "len" => match first {
                Value::Str(s) => Value::Int(s.chars().count() as i64),
                Value::List(l) => Value::Int(l.len() as i64),
                _ => Value::Null,
            },
            // `recommend()` (built-in) or `recommend(PLUGIN)`: the lowering passes the plugin's
            // name as a string literal.
            "recommend" => {
                let plugin = match &first {
                    Value::Str(s) => Some(s.clone()),
                    _ => None,
                };
                self.recommend(plugin.as_deref())
            }
            "first" => match first {
                Value::List(l) => l.into_iter().next().unwrap_or(Value::Null),
                _ => Value::Null,
            },
            // `first(recommend()).title`: a field of a computed value.
            "field" => {
                let name = args_second.map(|v| v.display()).unwrap_or_default();
                first.field(&name)
            }
            "lower" => map_str(first, |s| s.to_lowercase()),
            "upper" => map_str(first, |s| s.to_uppercase()),
            "days" => match first.as_decimal() {
                Some(d) => Value::Duration(
                    (d * Decimal::from(86_400))
                        .trunc()
                        .to_string()
                        .parse()
                        .unwrap_or(0),
                ),
                None => Value::Null,
            },
            _ => Value::Null,
        }
    }

    /// Products for this person, best first: a declared `kind recommend` plugin's answer (its
    /// fallback when the call fails, recorded for the timeline), else the built-in recommender
    /// over the catalog and order history handed in with the step. Either way only products
    /// the catalog knows and can sell come out, so a message can always name them.
    fn recommend(&mut self, plugin: Option<&str>) -> Value {
        let ids_in = |v: Option<&Value>| -> Vec<String> {
            match v {
                Some(Value::List(l)) => l
                    .iter()
                    .map(Value::display)
                    .filter(|s| !s.is_empty())
                    .collect(),
                _ => Vec::new(),
            }
        };
        let bought = ids_in(Some(&self.profile.field("products_bought")));
        // The order the flow is about: the entry event when it is an order, else the event.
        let order = if self.entry.has("line_items") {
            self.entry
        } else {
            self.event
        };
        let mut current: Vec<String> = Vec::new();
        if let Value::List(items) = order.field("line_items") {
            for it in &items {
                let id = it.field("product_id").display();
                if !id.is_empty() && !current.contains(&id) {
                    current.push(id);
                }
            }
        }
        let data = self.data;
        let builtin = || data.recommend(&bought, &current, crate::catalog::RECOMMEND_COUNT);
        let decl = plugin.and_then(|n| {
            self.plugins
                .iter()
                .find(|p| p.name == n && p.kind == "recommend")
        });
        let ids = match decl {
            None => builtin(),
            Some(decl) => {
                let order = order.whole();
                let order_json = (!matches!(order, Value::Null)).then(|| order.to_json());
                let input = crate::plugins::plugin_input(
                    &self.profile.whole().to_json(),
                    order_json.as_ref(),
                );
                let ids =
                    crate::plugins::call_recommend(&decl.name, &decl.module_hash, &input, builtin);
                data.known_available(&ids)
            }
        };
        Value::List(
            ids.iter()
                .filter_map(|id| data.catalog.get(id))
                .map(product_value)
                .collect(),
        )
    }

    /// Render a template; links are shortened when `self.links` is set.
    pub fn render(&mut self, t: &Template) -> String {
        let mut out = String::new();
        for p in &t.parts {
            match p {
                TemplatePart::Text(s) => out.push_str(s),
                TemplatePart::Interp { expr, filters } => {
                    let mut v = self.eval(expr);
                    for f in filters {
                        if f.name == "link" {
                            // `| link`: a tracked link to the value (a product: its URL).
                            let url = match v {
                                Value::Record(_) => v.field("url"),
                                other => other,
                            };
                            v = self.call("link", vec![url]);
                            continue;
                        }
                        let args: Vec<Value> = f.args.iter().map(|a| self.eval(a)).collect();
                        v = filter(&f.name, v, &args);
                    }
                    out.push_str(&v.display());
                }
            }
        }
        out
    }
}

/// A catalog product as the language sees it (the `product` record of the schema data).
pub fn product_value(p: &crate::catalog::Product) -> Value {
    let mut m = std::collections::BTreeMap::new();
    m.insert("id".to_string(), Value::Str(p.id.clone()));
    m.insert("title".to_string(), Value::Str(p.title.clone()));
    m.insert("price".to_string(), Value::Decimal(p.price));
    m.insert("url".to_string(), Value::Str(p.url.clone()));
    m.insert(
        "image".to_string(),
        p.image.clone().map(Value::Str).unwrap_or(Value::Null),
    );
    m.insert(
        "tags".to_string(),
        Value::List(p.tags.iter().cloned().map(Value::Str).collect()),
    );
    Value::Record(m)
}

fn map_str(v: Value, f: impl Fn(&str) -> String) -> Value {
    match v {
        Value::Str(s) => Value::Str(f(&s)),
        Value::Null => Value::Null,
        other => Value::Str(f(&other.display())),
    }
}

pub fn lit(l: &Lit) -> Value {
    match l {
        Lit::Bool(b) => Value::Bool(*b),
        Lit::Int(i) => Value::Int(*i),
        Lit::Decimal(s) => Decimal::from_str(s)
            .map(Value::Decimal)
            .unwrap_or(Value::Null),
        Lit::Str(s) => Value::Str(s.clone()),
        Lit::Duration(s) => Value::Duration(*s),
        Lit::TimeOfDay { hour, minute } => Value::TimeOfDay(*hour, *minute),
    }
}

/// The checker's proven type, applied at run time (events carry money and times as text).
pub fn convert(ty: &Ty, v: Value) -> Value {
    match (ty, &v) {
        (_, Value::Null) => Value::Null,
        (Ty::Decimal | Ty::Money, _) => v.as_decimal().map(Value::Decimal).unwrap_or(Value::Null),
        (Ty::Int, Value::Str(s)) => s.trim().parse().map(Value::Int).unwrap_or(Value::Null),
        (Ty::Time, _) => v.as_time().map(Value::Time).unwrap_or(Value::Null),
        (Ty::Str | Ty::Link, Value::Int(_) | Value::Decimal(_) | Value::Bool(_)) => {
            Value::Str(v.display())
        }
        (Ty::Bool, Value::Str(s)) => match s.trim() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::Null,
        },
        _ => v,
    }
}

/// Order two values, coercing text to a number or time when the other side is one.
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    use Value::*;
    match (a, b) {
        (Null, _) | (_, Null) => None,
        (Int(x), Int(y)) => Some(x.cmp(y)),
        (Str(x), Str(y)) => Some(x.cmp(y)),
        (Bool(x), Bool(y)) => Some(x.cmp(y)),
        (Duration(x), Duration(y)) => Some(x.cmp(y)),
        (TimeOfDay(h1, m1), TimeOfDay(h2, m2)) => Some((h1, m1).cmp(&(h2, m2))),
        (Time(_), _) | (_, Time(_)) => Some(a.as_time()?.cmp(&b.as_time()?)),
        (Int(_) | Decimal(_) | Str(_), Int(_) | Decimal(_) | Str(_)) => {
            Some(a.as_decimal()?.cmp(&b.as_decimal()?))
        }
        (List(x), List(y)) => (x == y).then_some(Ordering::Equal),
        (Record(x), Record(y)) => (x == y).then_some(Ordering::Equal),
        _ => None,
    }
}

fn contains(hay: &Value, needle: &Value) -> Option<bool> {
    match (hay, needle) {
        (_, Value::Null) | (Value::Null, _) => None,
        (Value::List(l), n) => Some(l.iter().any(|x| compare(x, n) == Some(Ordering::Equal))),
        (Value::Str(s), n) => Some(s.contains(&n.display())),
        _ => None,
    }
}

pub fn binary(op: BinOp, a: Value, b: Value) -> Value {
    use Value::*;
    let cmp = compare(&a, &b);
    match op {
        BinOp::Eq => Bool(cmp == Some(Ordering::Equal)),
        // Null compared with anything is false, `!=` included.
        BinOp::Ne => Bool(cmp.is_some_and(|o| o != Ordering::Equal)),
        BinOp::Lt => Bool(cmp == Some(Ordering::Less)),
        BinOp::Le => Bool(matches!(cmp, Some(Ordering::Less | Ordering::Equal))),
        BinOp::Gt => Bool(cmp == Some(Ordering::Greater)),
        BinOp::Ge => Bool(matches!(cmp, Some(Ordering::Greater | Ordering::Equal))),
        BinOp::In => Bool(contains(&b, &a) == Some(true)),
        BinOp::NotIn => Bool(contains(&b, &a) == Some(false)),
        BinOp::Contains => Bool(contains(&a, &b) == Some(true)),
        BinOp::StartsWith => {
            Bool(matches!((&a, &b), (Str(x), Str(y)) if x.starts_with(y.as_str())))
        }
        BinOp::EndsWith => Bool(matches!((&a, &b), (Str(x), Str(y)) if x.ends_with(y.as_str()))),
        BinOp::And | BinOp::Or => unreachable_bool(op, &a, &b),
        BinOp::Add => match (a, b) {
            (Null, _) | (_, Null) => Null,
            (Int(x), Int(y)) => x.checked_add(y).map(Int).unwrap_or(Null),
            (Duration(x), Duration(y)) => Duration(x.saturating_add(y)),
            (Time(t), Duration(d)) | (Duration(d), Time(t)) => {
                Time(t + chrono::Duration::seconds(d))
            }
            (Str(x), y) => Str(x + &y.display()),
            (x, Str(y)) => Str(x.display() + &y),
            (x, y) => num(x, y, |p, q| p.checked_add(q)),
        },
        BinOp::Sub => match (a, b) {
            (Null, _) | (_, Null) => Null,
            (Int(x), Int(y)) => x.checked_sub(y).map(Int).unwrap_or(Null),
            (Duration(x), Duration(y)) => Duration(x.saturating_sub(y)),
            (Time(t), Duration(d)) => Time(t - chrono::Duration::seconds(d)),
            (Time(x), Time(y)) => Duration((x - y).num_seconds()),
            (x, y) => num(x, y, |p, q| p.checked_sub(q)),
        },
        BinOp::Mul => match (a, b) {
            (Int(x), Int(y)) => x.checked_mul(y).map(Int).unwrap_or(Null),
            (Duration(d), Int(n)) | (Int(n), Duration(d)) => Duration(d.saturating_mul(n)),
            (x, y) => num(x, y, |p, q| p.checked_mul(q)),
        },
        BinOp::Div => num(a, b, |p, q| p.checked_div(q)),
    }
}

fn unreachable_bool(op: BinOp, a: &Value, b: &Value) -> Value {
    // And/Or short-circuit in `ev`; this is only reached from outside callers.
    Value::Bool(match op {
        BinOp::And => a.truthy() && b.truthy(),
        _ => a.truthy() || b.truthy(),
    })
}

fn num(a: Value, b: Value, f: impl Fn(Decimal, Decimal) -> Option<Decimal>) -> Value {
    match (a.as_decimal(), b.as_decimal()) {
        (Some(x), Some(y)) => f(x, y).map(Value::Decimal).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Template filters. Unknown filters leave the value alone (the checker rejects them).
pub fn filter(name: &str, v: Value, args: &[Value]) -> Value {
    let arg = args.first().cloned().unwrap_or(Value::Null);
    match name {
        "default" => {
            if v.is_empty() {
                arg
            } else {
                v
            }
        }
        "money" => match v.as_decimal() {
            Some(d) => Value::Str(money(d, &arg.display())),
            None => Value::Null,
        },
        "first_word" => match v {
            Value::Null => Value::Null,
            v => Value::Str(
                v.display()
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string(),
            ),
        },
        "upper" => map_str(v, |s| s.to_uppercase()),
        "lower" => map_str(v, |s| s.to_lowercase()),
        "truncate" => {
            let n = match arg {
                Value::Int(n) if n >= 0 => n as usize,
                _ => return v,
            };
            match v {
                Value::Null => Value::Null,
                v => Value::Str(truncate(&v.display(), n)),
            }
        }
        "first" => match v {
            Value::List(l) => l.into_iter().next().unwrap_or(Value::Null),
            _ => Value::Null,
        },
        // Products carrying a tag: `recommend() | tagged('hydration') | first`.
        "tagged" => match v {
            Value::List(l) => {
                let tag = arg.display();
                Value::List(
                    l.into_iter()
                        .filter(|p| {
                            matches!(p.field_ref("tags"), Some(Value::List(t))
                                if t.iter().any(|x| x.display().eq_ignore_ascii_case(&tag)))
                        })
                        .collect(),
                )
            }
            _ => Value::Null,
        },
        // Product fields as filters: `recommend() | first | title`.
        "id" | "title" | "price" | "url" | "image" => match v {
            Value::Record(_) => v.field(name),
            _ => Value::Null,
        },
        "first_title" => match v {
            Value::List(l) => l.first().map(|i| i.field("title")).unwrap_or(Value::Null),
            _ => Value::Null,
        },
        _ => v,
    }
}

/// Cut to at most `n` characters, ending in "..." (three GSM-7 dots, not the UCS-2 `…`,
/// which would turn the whole message into UCS-2 and halve a segment).
pub fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        return s.to_string();
    }
    if n <= 3 {
        return s.chars().take(n).collect();
    }
    let mut out: String = s.chars().take(n - 3).collect();
    out = out.trim_end().to_string();
    out.push_str("...");
    out
}

/// Two places, half away from zero; symbol for USD, EUR, GBP, else the code after the number.
pub fn money(d: Decimal, currency: &str) -> String {
    let amount = d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    let text = format!("{amount:.2}");
    match currency.trim().to_ascii_uppercase().as_str() {
        "USD" => format!("${text}"),
        "EUR" => format!("€{text}"),
        "GBP" => format!("£{text}"),
        "" => text,
        code => format!("{text} {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_formats_exactly() {
        assert_eq!(money(Decimal::from_str("29.995").unwrap(), "USD"), "$30.00");
        assert_eq!(money(Decimal::from_str("5").unwrap(), "eur"), "€5.00");
        assert_eq!(
            money(Decimal::from_str("12.5").unwrap(), "CAD"),
            "12.50 CAD"
        );
    }

    #[test]
    fn truncate_keeps_gsm7() {
        assert_eq!(
            truncate("Hydrating Night Cream Deluxe Edition", 15),
            "Hydrating Ni..."
        );
        assert_eq!(truncate("short", 15), "short");
    }

    #[test]
    fn null_comparisons_are_false() {
        assert_eq!(
            binary(BinOp::Eq, Value::Null, Value::Null),
            Value::Bool(false)
        );
        assert_eq!(
            binary(BinOp::Ne, Value::Null, Value::Int(1)),
            Value::Bool(false)
        );
        assert_eq!(
            binary(
                BinOp::Ge,
                Value::Str("500.00".into()),
                Value::Decimal(Decimal::from(500))
            ),
            Value::Bool(true)
        );
    }
}
