//! Reading schema files (TOML) into [`Schemas`], and merging a project's custom events.
//!
//! The TOML is walked by hand rather than through serde derives so every error names its place
//! (`events."order.created".fields.phone: unknown key `form``): the file is edited by people.

use super::{EventSchema, Field, RecordSchema, Removed, Schemas};
use crate::ir::Ty;
use std::collections::BTreeMap;
use toml::{Table, Value};

type Fields = BTreeMap<String, Field>;

struct Template {
    key: Option<String>,
    fields: Fields,
}

pub(super) fn from_toml(text: &str) -> Result<Schemas, String> {
    let root: Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    allow_keys(
        &root,
        "",
        &[
            "api_version",
            "records",
            "templates",
            "events",
            "families",
            "removed",
            "profile",
            "flow",
        ],
    )?;
    let api_version = match root.get("api_version") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err("`api_version` (a string such as \"2026-07\") is required".into()),
    };
    let mut s = Schemas {
        api_version,
        events: BTreeMap::new(),
        records: BTreeMap::new(),
        removed: BTreeMap::new(),
        profile: BTreeMap::new(),
        flow: BTreeMap::new(),
        dispatch: BTreeMap::new(),
    };

    for (name, v) in tables(&root, "records")? {
        check_ident(name, &format!("records.{name}"))?;
        let fields = parse_fields(
            table(v, &format!("records.{name}"))?,
            &format!("records.{name}"),
            true,
        )?;
        s.records.insert(
            name.clone(),
            RecordSchema {
                name: name.clone(),
                fields,
            },
        );
    }

    let mut templates = BTreeMap::new();
    for (name, v) in tables(&root, "templates")? {
        let ctx = format!("templates.{name}");
        let t = table(v, &ctx)?;
        allow_keys(t, &ctx, &["key", "fields"])?;
        let fields = match t.get("fields") {
            Some(f) => parse_fields(
                table(f, &format!("{ctx}.fields"))?,
                &format!("{ctx}.fields"),
                true,
            )?,
            None => Fields::new(),
        };
        templates.insert(
            name.clone(),
            Template {
                key: opt_str(t, "key", &ctx)?,
                fields,
            },
        );
    }

    for (name, v) in tables(&root, "events")? {
        let ctx = format!("events.\"{name}\"");
        let t = table(v, &ctx)?;
        allow_keys(t, &ctx, &["topic", "doc", "key", "template", "fields"])?;
        let mut ev = event_body(name, t, &ctx, &templates)?;
        ev.topic = opt_str(t, "topic", &ctx)?;
        add_event(&mut s, ev)?;
    }

    // A family: one event per value of a payload field, plus a catch-all for the open set.
    for (family, v) in tables(&root, "families")? {
        let ctx = format!("families.{family}");
        let t = table(v, &ctx)?;
        allow_keys(
            t,
            &ctx,
            &[
                "topic",
                "on",
                "template",
                "key",
                "fields",
                "values",
                "doc",
                "catch_all",
                "catch_all_doc",
            ],
        )?;
        let topic = req_str(t, "topic", &ctx)?;
        let on = req_str(t, "on", &ctx)?;
        let catch_all = format!("{family}.{}", req_str(t, "catch_all", &ctx)?);
        let doc = opt_str(t, "doc", &ctx)?.unwrap_or_default();
        let values = match t.get("values") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or(format!("{ctx}.values: expected a list of strings"))?,
            _ => return Err(format!("{ctx}.values: expected a list of strings")),
        };
        let base = event_body(&catch_all, t, &ctx, &templates)?;
        if !base.fields.contains_key(&on) {
            return Err(format!(
                "{ctx}: `on = \"{on}\"` must also be a field of the events"
            ));
        }
        for value in &values {
            let name = format!("{family}.{value}");
            let ev = EventSchema {
                name: name.clone(),
                topic: Some(topic.clone()),
                status: Some(value.clone()),
                doc: doc.replace("{value}", value),
                ..base.clone()
            };
            add_event(&mut s, ev)?;
        }
        let ev = EventSchema {
            topic: Some(topic.clone()),
            status: None,
            doc: opt_str(t, "catch_all_doc", &ctx)?
                .unwrap_or_else(|| doc.replace("{value}", "any")),
            ..base
        };
        add_event(&mut s, ev)?;
        s.dispatch.insert(topic, (on, catch_all));
    }

    for (pattern, v) in tables(&root, "removed")? {
        let ctx = format!("removed.\"{pattern}\"");
        let mut paths = BTreeMap::new();
        for (path, r) in table(v, &ctx)? {
            let rctx = format!("{ctx}.\"{path}\"");
            let rt = table(r, &rctx)?;
            allow_keys(rt, &rctx, &["since", "help"])?;
            let removed = Removed {
                since: req_str(rt, "since", &rctx)?,
                help: req_str(rt, "help", &rctx)?,
            };
            paths.insert(path.clone(), removed);
        }
        s.removed.insert(pattern.clone(), paths);
    }

    if let Some(v) = root.get("profile") {
        s.profile = parse_fields(table(v, "profile")?, "profile", false)?;
    }
    if let Some(v) = root.get("flow") {
        s.flow = parse_fields(table(v, "flow")?, "flow", false)?;
    }

    validate(&s)?;
    Ok(s)
}

pub(super) fn with_custom(base: &Schemas, custom: &Table) -> Result<Schemas, String> {
    // Accept the project file's `[events]` table itself, or a table that holds it (an event
    // named `events` would have a `fields` key, a wrapper does not).
    let events = match custom.get("events") {
        Some(Value::Table(t)) if !t.contains_key("fields") => t,
        _ => custom,
    };
    let mut s = base.clone();
    for (name, v) in events {
        let ctx = format!("events.{name}");
        if base.events.contains_key(name) {
            return Err(format!(
                "{ctx}: `{name}` is a builtin event; give the custom event another name"
            ));
        }
        // A family's namespace is reserved: Shopify adds values (shipment statuses) over time.
        if let Some((_, catch_all)) = base
            .dispatch
            .values()
            .find(|(_, c)| name.split('.').next() == c.split('.').next())
        {
            let ns = catch_all.split('.').next().unwrap_or_default();
            return Err(format!(
                "{ctx}: `{ns}.*` is reserved for the builtin `{ns}` events (new values appear across API versions)"
            ));
        }
        let t = table(v, &ctx)?;
        allow_keys(t, &ctx, &["doc", "key", "fields"])?;
        if !t.contains_key("fields") {
            return Err(format!(
                "{ctx}: `fields` is required, e.g. fields = {{ rating = \"int\" }}"
            ));
        }
        let ev = event_body(name, t, &ctx, &BTreeMap::new())?;
        add_event(&mut s, ev)?;
    }
    validate(&s)?;
    Ok(s)
}

/// Name, doc, key and fields (the template's, then the event's own) of an event declaration.
fn event_body(
    name: &str,
    t: &Table,
    ctx: &str,
    templates: &BTreeMap<String, Template>,
) -> Result<EventSchema, String> {
    check_event_name(name, ctx)?;
    let (mut key, mut fields) = (None, Fields::new());
    if let Some(tn) = opt_str(t, "template", ctx)? {
        let tpl = templates
            .get(&tn)
            .ok_or(format!("{ctx}.template: no template `{tn}`"))?;
        key = tpl.key.clone();
        fields = tpl.fields.clone();
    }
    if let Some(f) = t.get("fields") {
        fields.extend(parse_fields(
            table(f, &format!("{ctx}.fields"))?,
            &format!("{ctx}.fields"),
            true,
        )?);
    }
    if let Some(k) = opt_str(t, "key", ctx)? {
        key = Some(k);
    }
    Ok(EventSchema {
        name: name.to_string(),
        topic: None,
        status: None,
        doc: opt_str(t, "doc", ctx)?.unwrap_or_default(),
        key,
        fields,
    })
}

fn add_event(s: &mut Schemas, ev: EventSchema) -> Result<(), String> {
    if s.events.contains_key(&ev.name) {
        return Err(format!("event `{}` is declared twice", ev.name));
    }
    s.events.insert(ev.name.clone(), ev);
    Ok(())
}

fn parse_fields(t: &Table, ctx: &str, default_from: bool) -> Result<Fields, String> {
    let mut out = Fields::new();
    for (name, v) in t {
        check_ident(name, &format!("{ctx}.{name}"))?;
        out.insert(
            name.clone(),
            parse_field(name, v, &format!("{ctx}.{name}"), default_from)?,
        );
    }
    Ok(out)
}

/// `name = "type"` or `name = { type, from, doc, split, required }`.
fn parse_field(name: &str, v: &Value, ctx: &str, default_from: bool) -> Result<Field, String> {
    let default = || {
        if default_from {
            vec![name.to_string()]
        } else {
            Vec::new()
        }
    };
    match v {
        Value::String(ty) => Ok(Field {
            ty: parse_ty(ty, ctx)?,
            from: default(),
            doc: String::new(),
            split: None,
            required: false,
        }),
        Value::Table(t) => {
            allow_keys(t, ctx, &["type", "from", "doc", "split", "required"])?;
            let ty = parse_ty(&req_str(t, "type", ctx)?, ctx)?;
            let from = match t.get("from") {
                None => default(),
                Some(Value::String(p)) => vec![p.clone()],
                Some(Value::Array(a)) if !a.is_empty() => a
                    .iter()
                    .map(|p| p.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or(format!("{ctx}.from: expected a path or a list of paths"))?,
                Some(_) => {
                    return Err(format!(
                        "{ctx}.from: expected a path or a non-empty list of paths"
                    ))
                }
            };
            let required = match t.get("required") {
                None => false,
                Some(Value::Boolean(b)) => *b,
                Some(_) => return Err(format!("{ctx}.required: expected true or false")),
            };
            Ok(Field {
                ty,
                from,
                doc: opt_str(t, "doc", ctx)?.unwrap_or_default(),
                split: opt_str(t, "split", ctx)?,
                required,
            })
        }
        _ => Err(format!(
            "{ctx}: expected a type such as \"str\" or {{ type = \"str\", from = \"...\" }}"
        )),
    }
}

fn parse_ty(s: &str, ctx: &str) -> Result<Ty, String> {
    Ty::parse(s).ok_or(format!(
        "{ctx}: `{s}` is not a type (str, int, money, decimal, bool, time, list<T>, a record)"
    ))
}

/// Cross-references: record types exist, keys are fields, `split` is on a list of scalars,
/// removed patterns match events, one event per topic outside families.
fn validate(s: &Schemas) -> Result<(), String> {
    let check_fields = |fields: &Fields, ctx: &str| -> Result<(), String> {
        for (name, f) in fields {
            let mut t = &f.ty;
            while let Ty::List(inner) = t {
                t = inner;
            }
            if let Ty::Record(r) = t {
                if !s.records.contains_key(r) {
                    return Err(format!("{ctx}.{name}: no record type `{r}`"));
                }
            }
            if f.split.is_some()
                && !matches!(&f.ty, Ty::List(inner) if !matches!(**inner, Ty::Record(_) | Ty::List(_)))
            {
                return Err(format!(
                    "{ctx}.{name}: `split` applies only to a list of scalars"
                ));
            }
        }
        Ok(())
    };
    for r in s.records.values() {
        check_fields(&r.fields, &format!("records.{}", r.name))?;
    }
    let mut topics: BTreeMap<&str, &str> = BTreeMap::new();
    for e in s.events.values() {
        let ctx = format!("events.\"{}\"", e.name);
        check_fields(&e.fields, &ctx)?;
        if let Some(k) = &e.key {
            if !e.fields.contains_key(k) {
                return Err(format!("{ctx}.key: `{k}` is not a field of the event"));
            }
        }
        if let Some(topic) = &e.topic {
            if !s.dispatch.contains_key(topic) {
                if let Some(other) = topics.insert(topic, &e.name) {
                    return Err(format!(
                        "topic `{topic}` is given to both `{other}` and `{}`",
                        e.name
                    ));
                }
            }
        }
    }
    check_fields(&s.profile, "profile")?;
    check_fields(&s.flow, "flow")?;
    for pattern in s.removed.keys() {
        if !s.events.keys().any(|e| super::pattern_matches(pattern, e)) {
            return Err(format!("removed.\"{pattern}\": matches no event"));
        }
    }
    Ok(())
}

fn allow_keys(t: &Table, ctx: &str, allowed: &[&str]) -> Result<(), String> {
    match t.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => {
            let at = if ctx.is_empty() {
                String::new()
            } else {
                format!("{ctx}: ")
            };
            Err(format!(
                "{at}unknown key `{k}` (expected one of {})",
                allowed.join(", ")
            ))
        }
        None => Ok(()),
    }
}

fn table<'a>(v: &'a Value, ctx: &str) -> Result<&'a Table, String> {
    v.as_table().ok_or(format!("{ctx}: expected a table"))
}

fn tables<'a>(
    root: &'a Table,
    key: &str,
) -> Result<impl Iterator<Item = (&'a String, &'a Value)>, String> {
    let t = match root.get(key) {
        Some(v) => Some(table(v, key)?),
        None => None,
    };
    Ok(t.into_iter().flatten())
}

fn opt_str(t: &Table, key: &str, ctx: &str) -> Result<Option<String>, String> {
    match t.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{ctx}.{key}: expected a string")),
    }
}

fn req_str(t: &Table, key: &str, ctx: &str) -> Result<String, String> {
    opt_str(t, key, ctx)?.ok_or(format!("{ctx}: `{key}` is required"))
}

/// Field and record names: what the flow language can write after a dot.
fn check_ident(name: &str, ctx: &str) -> Result<(), String> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{ctx}: `{name}` is not a valid name (lowercase letters, digits, _)"
        ))
    }
}

/// Event names: identifiers joined by dots (`order.created`, `review_submitted`).
fn check_event_name(name: &str, ctx: &str) -> Result<(), String> {
    name.split('.').try_for_each(|part| check_ident(part, ctx))
}
