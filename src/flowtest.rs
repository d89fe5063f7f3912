//! Flow tests: users test flows like code. A test file (`flows/tests/*.toml`) holds cases; each
//! case gives a start time, events and replies at given times (inline, or a Shopify fixture
//! payload with a JSON merge patch), and expectations about the timeline: messages sent (flow,
//! step, time, text), messages not sent, exits, holds, drops, conversions. The runner drives the
//! same host as the simulator on a virtual clock and reports failures with the actual timeline.

use crate::engine::Effect;
use crate::host::{Envelope, Host, Payload, Record};
use crate::ir::Program;
use crate::schema::Schemas;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::path::{Path, PathBuf};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(rename = "case", default)]
    cases: Vec<Case>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    start: Option<String>,
    phone: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    start: Option<String>,
    /// How long after `start` the clock runs (default: until no timer is left).
    until: Option<String>,
    /// The phone replies come from when a reply gives no `from`.
    phone: Option<String>,
    #[serde(default)]
    events: Vec<Step>,
    #[serde(default)]
    expect: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    /// An offset from the start (`3d2h`, `0m`) or an RFC 3339 instant.
    at: String,
    /// A normalised or custom event by name, with its fields in `data`.
    event: Option<String>,
    /// A Shopify webhook topic; the body is `body`, or `fixture` (a path relative to the test
    /// file) with `patch` merged into it (RFC 7386).
    shopify: Option<String>,
    fixture: Option<String>,
    #[serde(default)]
    patch: Option<toml::Value>,
    body: Option<toml::Value>,
    data: Option<toml::Value>,
    /// An inbound SMS.
    reply: Option<String>,
    from: Option<String>,
    /// A source event id (to test de-duplication); default: unique per step.
    id: Option<String>,
}

#[derive(Debug, Deserialize, Serialize, Clone)]
#[serde(deny_unknown_fields)]
struct Expect {
    send: Option<String>,
    no_send: Option<String>,
    exit: Option<String>,
    held: Option<String>,
    dropped: Option<String>,
    conversion: Option<String>,
    not_entered: Option<String>,
    /// A failed plugin call (by plugin name; `reason` matches its reason, e.g. `out_of_fuel`).
    plugin_failed: Option<String>,
    step: Option<u32>,
    /// Exactly at this offset (or instant).
    at: Option<String>,
    /// Between these two offsets, inclusive.
    within: Option<(String, String)>,
    contains: Option<String>,
    /// For sends: one of the message's tracked links leads to this URL.
    link: Option<String>,
    /// For exits, holds and drops: the reason contains this.
    reason: Option<String>,
    variant: Option<String>,
    /// How many matching records (default: at least one; `no_send` means zero).
    count: Option<usize>,
}

/// One case's result.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub file: String,
    pub case: String,
    pub passed: bool,
    pub failures: Vec<String>,
    /// The actual timeline (sends, holds, drops, exits, conversions), for the report.
    pub timeline: Vec<String>,
}

/// Find test files: `*.toml` under `tests/` folders of the given paths (or the files given).
pub fn collect(paths: &[PathBuf]) -> Vec<PathBuf> {
    fn walk(dir: &Path, in_tests: bool, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                let t = in_tests || p.file_name().is_some_and(|n| n == "tests");
                walk(&p, t, out);
            } else if in_tests && p.extension().is_some_and(|e| e == "toml") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_file() {
            out.push(p.clone());
        } else {
            walk(p, p.file_name().is_some_and(|n| n == "tests"), &mut out);
        }
    }
    out
}

fn parse_offset(s: &str, start: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // `3d2h30m`: a sum of parts.
    let mut total = 0i64;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i64 = num
            .parse()
            .map_err(|_| format!("`{s}` is not an offset like `3d2h` or an RFC 3339 time"))?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(format!("`{s}`: unknown unit `{c}` (use s, m, h, d, w)")),
        };
    }
    if !num.is_empty() {
        return Err(format!("`{s}`: a number needs a unit (s, m, h, d, w)"));
    }
    Ok(start + Duration::seconds(total))
}

fn to_json(v: &toml::Value) -> Json {
    serde_json::to_value(v).unwrap_or(Json::Null)
}

/// RFC 7386 JSON merge patch.
fn merge(target: &mut Json, patch: &Json) {
    match (target, patch) {
        (Json::Object(t), Json::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Json::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Run every case of every file against the program compiled from the flows folder.
pub fn run_files(
    program: &Program,
    schemas: &Schemas,
    files: &[PathBuf],
) -> Result<Vec<CaseResult>, String> {
    let mut results = Vec::new();
    for f in files {
        let text =
            std::fs::read_to_string(f).map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let tf: TestFile = toml::from_str(&text).map_err(|e| {
            let at = e.span().map(|s| {
                let line = text[..s.start].matches('\n').count() + 1;
                format!(" (line {line})")
            });
            format!("{}{}: {}", f.display(), at.unwrap_or_default(), e.message())
        })?;
        let base = f.parent().unwrap_or(Path::new("."));
        for case in &tf.cases {
            results.push(run_case(program, schemas, f, base, &tf.defaults, case));
        }
    }
    Ok(results)
}

fn run_case(
    program: &Program,
    schemas: &Schemas,
    file: &Path,
    base: &Path,
    defaults: &Defaults,
    case: &Case,
) -> CaseResult {
    let mut result = CaseResult {
        file: file.display().to_string(),
        case: case.name.clone(),
        passed: false,
        failures: vec![],
        timeline: vec![],
    };
    let start_s = case
        .start
        .clone()
        .or(defaults.start.clone())
        .unwrap_or_else(|| "2026-03-02T14:00:00Z".into());
    let start = match DateTime::parse_from_rfc3339(&start_s) {
        Ok(t) => t.with_timezone(&Utc),
        Err(e) => {
            result
                .failures
                .push(format!("start `{start_s}` is not RFC 3339: {e}"));
            return result;
        }
    };
    let phone = case.phone.clone().or(defaults.phone.clone());
    let mut envs = Vec::new();
    for (i, s) in case.events.iter().enumerate() {
        match build_envelope(s, i, start, base, phone.as_deref(), &case.name) {
            Ok(e) => envs.push(e),
            Err(e) => {
                result.failures.push(format!("event {}: {e}", i + 1));
                return result;
            }
        }
    }
    envs.sort_by_key(|e| e.at);
    let mut host = Host::new(program.clone(), schemas.clone());
    let mut records: Vec<Record> = Vec::new();
    for env in &envs {
        records.extend(host.fire_until(env.at));
        match host.ingest(env, env.at) {
            Ok(r) => records.extend(r),
            Err(e) => result
                .failures
                .push(format!("input at {} refused: {e}", env.at.to_rfc3339())),
        }
    }
    let end = match &case.until {
        Some(u) => match parse_offset(u, start) {
            Ok(t) => t,
            Err(e) => {
                result.failures.push(format!("until: {e}"));
                return result;
            }
        },
        None => envs.last().map(|e| e.at).unwrap_or(start) + Duration::days(800),
    };
    records.extend(host.fire_until(end));

    result.timeline = records
        .iter()
        .filter_map(|r| timeline_line(r, start))
        .collect();
    for (i, ex) in case.expect.iter().enumerate() {
        if let Err(msg) = check_expect(ex, &records, start) {
            result
                .failures
                .push(format!("expectation {}: {msg}", i + 1));
        }
    }
    result.passed = result.failures.is_empty();
    result
}

fn build_envelope(
    s: &Step,
    i: usize,
    start: DateTime<Utc>,
    base: &Path,
    phone: Option<&str>,
    case: &str,
) -> Result<Envelope, String> {
    let at = parse_offset(&s.at, start)?;
    let id = s.id.clone().unwrap_or_else(|| format!("test:{case}:{i}"));
    if let Some(topic) = &s.shopify {
        let mut body = match (&s.fixture, &s.body) {
            (Some(path), _) => {
                let p = base.join(path);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| format!("fixture {}: {e}", p.display()))?;
                serde_json::from_str(&text).map_err(|e| format!("fixture {}: {e}", p.display()))?
            }
            (None, Some(b)) => to_json(b),
            (None, None) => return Err("a `shopify` step needs `fixture` or `body`".into()),
        };
        if let Some(p) = &s.patch {
            merge(&mut body, &to_json(p));
        }
        return Ok(Envelope {
            at,
            payload: Payload::Shopify {
                topic: topic.clone(),
                event_id: id,
                body,
            },
        });
    }
    if let Some(text) = &s.reply {
        let from = s
            .from
            .clone()
            .or(phone.map(String::from))
            .ok_or("a reply needs `from` (or a case `phone`)")?;
        let data = serde_json::json!({ "from": from, "body": text });
        return Ok(Envelope {
            at,
            payload: Payload::Aftercart {
                kind: "sms.replied".into(),
                id,
                data,
            },
        });
    }
    if let Some(name) = &s.event {
        let data = s
            .data
            .as_ref()
            .map(to_json)
            .unwrap_or(Json::Object(Default::default()));
        return Ok(Envelope {
            at,
            payload: Payload::Aftercart {
                kind: name.clone(),
                id,
                data,
            },
        });
    }
    Err("a step needs one of `event`, `shopify` or `reply`".into())
}

fn offset(t: DateTime<Utc>, start: DateTime<Utc>) -> String {
    let s = (t - start).num_seconds();
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    let mut out = String::from("+");
    if d > 0 {
        out.push_str(&format!("{d}d"));
    }
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 || out == "+" {
        out.push_str(&format!("{m}m"));
    }
    out
}

fn timeline_line(r: &Record, start: DateTime<Utc>) -> Option<String> {
    let at = format!(
        "{:>9} {}",
        offset(r.at, start),
        r.at.format("%Y-%m-%d %H:%MZ")
    );
    Some(match &r.effect {
        Effect::Send(m) => format!("{at}  send {} step {}: {:?}", m.flow, m.step, m.body),
        Effect::Held {
            flow, step, reason, ..
        } => format!("{at}  held {flow} step {step}: {reason}"),
        Effect::Dropped {
            flow, step, reason, ..
        } => format!("{at}  dropped {flow} step {step}: {reason}"),
        Effect::Exited { flow, reason, .. } => format!("{at}  exit {flow}: {reason}"),
        Effect::Conversion { flow, step, .. } => format!("{at}  conversion {flow} (step {step})"),
        Effect::Entered { flow, .. } => format!("{at}  entered {flow}"),
        Effect::NotEntered { flow, reason } => format!("{at}  not entered {flow}: {reason}"),
        Effect::ReplyRecorded { body, .. } => format!("{at}  reply {body:?}"),
        Effect::ConsentChanged { to, .. } => format!("{at}  consent {}", to.as_str()),
        Effect::PluginFailed { plugin, reason } => {
            format!("{at}  plugin {plugin} failed ({reason}); fallback used")
        }
        _ => return None,
    })
}

fn check_expect(ex: &Expect, records: &[Record], start: DateTime<Utc>) -> Result<(), String> {
    let (kind, flow) = [
        ("send", &ex.send),
        ("no_send", &ex.no_send),
        ("exit", &ex.exit),
        ("held", &ex.held),
        ("dropped", &ex.dropped),
        ("conversion", &ex.conversion),
        ("not_entered", &ex.not_entered),
        ("plugin_failed", &ex.plugin_failed),
    ]
    .into_iter()
    .find_map(|(k, f)| f.as_ref().map(|f| (k, f.clone())))
    .ok_or(
        "give one of send, no_send, exit, held, dropped, conversion, not_entered, plugin_failed",
    )?;
    let at = ex.at.as_ref().map(|a| parse_offset(a, start)).transpose()?;
    let within = match &ex.within {
        Some((a, b)) => Some((parse_offset(a, start)?, parse_offset(b, start)?)),
        None => None,
    };
    let time_ok = |t: DateTime<Utc>| {
        at.is_none_or(|a| a == t) && within.is_none_or(|(a, b)| a <= t && t <= b)
    };
    let text_ok = |s: &str| ex.contains.as_ref().is_none_or(|c| s.contains(c.as_str()));
    let reason_ok = |s: &str| ex.reason.as_ref().is_none_or(|c| s.contains(c.as_str()));
    let step_ok = |s: u32| ex.step.is_none_or(|x| x == s);
    let matches: Vec<&Record> = records
        .iter()
        .filter(|r| match (&r.effect, kind) {
            (Effect::Send(m), "send" | "no_send") => {
                m.flow == flow
                    && step_ok(m.step)
                    && time_ok(r.at)
                    && text_ok(&m.body)
                    && ex
                        .link
                        .as_ref()
                        .is_none_or(|u| m.links.iter().any(|l| &l.url == u))
                    && ex
                        .variant
                        .as_ref()
                        .is_none_or(|v| m.variant.as_ref() == Some(v))
            }
            (
                Effect::Exited {
                    flow: f, reason, ..
                },
                "exit",
            ) => *f == flow && time_ok(r.at) && reason_ok(reason),
            (
                Effect::Held {
                    flow: f,
                    reason,
                    step,
                    ..
                },
                "held",
            ) => *f == flow && step_ok(*step) && time_ok(r.at) && reason_ok(reason),
            (
                Effect::Dropped {
                    flow: f,
                    reason,
                    step,
                    ..
                },
                "dropped",
            ) => *f == flow && step_ok(*step) && time_ok(r.at) && reason_ok(reason),
            (
                Effect::Conversion {
                    flow: f, variant, ..
                },
                "conversion",
            ) => {
                *f == flow
                    && time_ok(r.at)
                    && ex
                        .variant
                        .as_ref()
                        .is_none_or(|v| variant.as_ref() == Some(v))
            }
            (Effect::NotEntered { flow: f, reason }, "not_entered") => {
                *f == flow && time_ok(r.at) && reason_ok(reason)
            }
            (Effect::PluginFailed { plugin, reason }, "plugin_failed") => {
                *plugin == flow && time_ok(r.at) && reason_ok(reason)
            }
            _ => false,
        })
        .collect();
    let describe = || {
        let mut d = format!("{kind} {flow}");
        if let Some(s) = ex.step {
            d.push_str(&format!(" step {s}"));
        }
        if let Some(a) = &ex.at {
            d.push_str(&format!(" at {a}"));
        }
        if let Some((a, b)) = &ex.within {
            d.push_str(&format!(" within {a}..{b}"));
        }
        if let Some(c) = &ex.contains {
            d.push_str(&format!(" containing {c:?}"));
        }
        if let Some(u) = &ex.link {
            d.push_str(&format!(" linking to {u}"));
        }
        if let Some(c) = &ex.reason {
            d.push_str(&format!(" because {c:?}"));
        }
        d
    };
    let n = matches.len();
    match (kind, ex.count) {
        ("no_send", _) if n > 0 => Err(format!(
            "expected no {}, found {n}",
            describe().trim_start_matches("no_send ")
        )),
        ("no_send", _) => Ok(()),
        (_, Some(c)) if c != n => Err(format!("expected {c} × {}, found {n}", describe())),
        (_, None) if n == 0 => Err(format!("expected {}, found none", describe())),
        _ => Ok(()),
    }
}

/// A readable report: failures with the actual timeline of the failing case.
pub fn render_text(results: &[CaseResult]) -> String {
    let mut s = String::new();
    for r in results {
        if r.passed {
            s.push_str(&format!("ok    {} :: {}\n", r.file, r.case));
            continue;
        }
        s.push_str(&format!("FAIL  {} :: {}\n", r.file, r.case));
        for f in &r.failures {
            s.push_str(&format!("  - {f}\n"));
        }
        s.push_str("  actual timeline:\n");
        for l in &r.timeline {
            s.push_str(&format!("    {l}\n"));
        }
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    s.push_str(&format!(
        "{} cases, {} passed, {failed} failed\n",
        results.len(),
        results.len() - failed
    ));
    s
}
