//! The project file `aftercart.toml`: shop defaults (zone, sender, link base, help text), the
//! sending policy (quiet-hours handling, frequency cap, segment budget, zone sources), quiet-hours
//! overrides and custom events. Problems are AC0003 diagnostics with the span of the bad value.

use crate::diagnostic::{Diagnostic, FileId, Span};
use crate::ir::{FrequencyCap, HeldPolicy, Policy, Shop, ZoneSource};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "aftercart.toml";

#[derive(Clone, Debug, Default)]
pub struct Project {
    /// Where the file was found (None: built-in defaults).
    pub path: Option<PathBuf>,
    pub shop: Shop,
    pub policy: Policy,
    /// `[events.*]`: custom events, in the schema module's format.
    pub custom_events: toml::Table,
    /// `[quiet_hours.*]`: rows replacing the built-in quiet-hours table's.
    pub quiet_hours_overrides: toml::Table,
    /// `catalog = "path"`: a product export (JSON or Shopify CSV), relative to this file, and
    /// where the setting is (the checker reads the file and points here when it cannot).
    pub catalog: Option<(String, Span)>,
    /// The products read from `catalog` (by the checker, which may do I/O; parsing may not).
    pub products: crate::catalog::Catalog,
    /// Where `frequency_cap` is set, for diagnostics about the cap.
    pub frequency_cap_span: Option<Span>,
    /// `[server]`: the webhook server's secrets when not in the environment.
    pub server: ServerSettings,
}

/// `[server]` of `aftercart.toml` (`aftercart serve`; the environment variables
/// `AFTERCART_SHOPIFY_SECRET`, `AFTERCART_TWILIO_AUTH_TOKEN`, `AFTERCART_PUBLIC_URL` win).
/// Secrets in a file are for local setups: keep such a file out of version control.
#[derive(Clone, Debug, Default)]
pub struct ServerSettings {
    pub shopify_secret: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub public_url: Option<String>,
}

/// Find `aftercart.toml` in `start` (a file's folder or a folder) or any ancestor.
pub fn find(start: &Path) -> Option<PathBuf> {
    let start = if start.is_file() {
        start.parent()?
    } else {
        start
    };
    let abs = std::fs::canonicalize(start).ok()?;
    abs.ancestors()
        .map(|d| d.join(FILE_NAME))
        .find(|p| p.is_file())
}

impl Project {
    pub fn defaults() -> Project {
        Project {
            shop: Shop {
                name: "Shop".into(),
                zone: "America/New_York".into(),
                help_reply: "Reply STOP to unsubscribe.".into(),
                ..Shop::default()
            },
            ..Project::default()
        }
    }

    /// Parse the project file's text. Every problem is reported; defaults fill the gaps.
    pub fn parse(file: FileId, text: &str, diags: &mut Vec<Diagnostic>) -> Project {
        let mut p = Project::defaults();
        let doc: toml::Spanned<toml::Table> = match toml::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                diags.push(
                    Diagnostic::new(
                        "AC0003",
                        format!("{FILE_NAME} is not valid TOML: {}", e.message()),
                    )
                    .primary(Span::new(file, span.start, span.end), "here"),
                );
                return p;
            }
        };
        let table = doc.into_inner();
        if let Some(i) = text.find("frequency_cap") {
            p.frequency_cap_span = Some(Span::new(file, i, i + "frequency_cap".len()));
        }
        // toml::Table loses spans; find a key's span by searching the text (good enough to point
        // at the line, and exact for the simple `key = value` layout the file uses).
        let locate = |key: &str| -> Span {
            let pat = format!("{key} =");
            let pat2 = format!("{key}=");
            let at = text
                .find(&pat)
                .or_else(|| text.find(&pat2))
                .or_else(|| text.find(&format!("[{key}")));
            match at {
                Some(i) => Span::new(file, i, i + key.len()),
                None => Span::new(file, 0, 0),
            }
        };
        let mut bad = |key: &str, msg: String, help: &str| {
            let mut d = Diagnostic::new("AC0003", msg).primary(locate(key), "in this value");
            if !help.is_empty() {
                d = d.help(help.to_string());
            }
            diags.push(d);
        };
        if let Some(v) = table.get("catalog") {
            match v.as_str() {
                Some(path) if !path.trim().is_empty() => {
                    p.catalog = Some((path.to_string(), locate("catalog")));
                }
                _ => bad(
                    "catalog",
                    "`catalog` must be the path of a product file (.json or .csv)".into(),
                    "e.g. catalog = \"catalog.json\" (docs/plugins.md)",
                ),
            }
        }
        for (k, _) in table.iter() {
            if ![
                "shop",
                "policy",
                "events",
                "quiet_hours",
                "plugins",
                "server",
                "catalog",
            ]
            .contains(&k.as_str())
            {
                bad(
                    k,
                    format!("unknown section `{k}`"),
                    "known sections: [shop], [policy], [events.NAME], [quiet_hours.STATE], \
                     [server]",
                );
            }
        }
        if let Some(server) = table.get("server").and_then(|v| v.as_table()) {
            for (k, v) in server {
                let slot = match k.as_str() {
                    "shopify_secret" => &mut p.server.shopify_secret,
                    "twilio_auth_token" => &mut p.server.twilio_auth_token,
                    "public_url" => &mut p.server.public_url,
                    _ => {
                        bad(
                            k,
                            format!("unknown server setting `{k}`"),
                            "known: shopify_secret, twilio_auth_token, public_url",
                        );
                        continue;
                    }
                };
                match v.as_str() {
                    Some(s) => *slot = Some(s.to_string()),
                    None => bad(k, format!("`{k}` must be a string"), ""),
                }
            }
        }
        if let Some(shop) = table.get("shop").and_then(|v| v.as_table()) {
            for (k, v) in shop {
                let s = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                match k.as_str() {
                    "name" => p.shop.name = s.clone(),
                    "zone" => {
                        if s.parse::<chrono_tz::Tz>().is_err() {
                            bad(
                                "zone",
                                format!("unknown time zone `{s}`"),
                                "use an IANA zone name such as `America/New_York`",
                            );
                        }
                        p.shop.zone = s.clone();
                    }
                    "sender" => p.shop.sender = s.clone(),
                    "link_base" => {
                        if !(s.starts_with("https://") || s.starts_with("http://")) {
                            bad(
                                "link_base",
                                format!("link base `{s}` is not an http(s) URL"),
                                "",
                            );
                        }
                        p.shop.link_base = Some(s.trim_end_matches('/').to_string());
                    }
                    "help_reply" => p.shop.help_reply = s.clone(),
                    _ => {}
                }
                p.shop.values.insert(k.clone(), s);
            }
        }
        if let Some(policy) = table.get("policy").and_then(|v| v.as_table()) {
            for (k, v) in policy {
                match (k.as_str(), v) {
                    ("quiet_hours", toml::Value::String(s)) => match s.as_str() {
                        "defer" => p.policy.held = HeldPolicy::Defer,
                        "drop" => p.policy.held = HeldPolicy::Drop,
                        _ => bad(
                            "quiet_hours",
                            format!("quiet_hours must be \"defer\" or \"drop\", not \"{s}\""),
                            "",
                        ),
                    },
                    ("frequency_cap", toml::Value::Table(t)) => {
                        let max = t.get("max").and_then(|v| v.as_integer());
                        let per = t
                            .get("per")
                            .and_then(|v| v.as_str())
                            .and_then(parse_duration);
                        match (max, per) {
                            (Some(max), Some(per)) if max > 0 && per > 0 => {
                                p.policy.frequency_cap = FrequencyCap {
                                    max: max as u32,
                                    per_secs: per,
                                }
                            }
                            _ => bad(
                                "frequency_cap",
                                "frequency_cap needs a positive `max` and a duration `per`".into(),
                                "for example: frequency_cap = { max = 3, per = \"24h\" }",
                            ),
                        }
                    }
                    ("max_segments", toml::Value::Integer(n)) if *n >= 1 && *n <= 10 => {
                        p.policy.max_segments = *n as u32
                    }
                    ("max_segments", _) => bad(
                        "max_segments",
                        "max_segments must be an integer from 1 to 10".into(),
                        "",
                    ),
                    ("zone_from", toml::Value::Array(a)) => {
                        let mut out = vec![];
                        for v in a {
                            match v.as_str() {
                                Some("profile") => out.push(ZoneSource::Profile),
                                Some("shipping_address") => out.push(ZoneSource::ShippingAddress),
                                Some("area_code") => out.push(ZoneSource::AreaCode),
                                Some("shop") => out.push(ZoneSource::Shop),
                                _ => bad(
                                    "zone_from",
                                    format!("unknown zone source {v}"),
                                    "use \"profile\", \"shipping_address\", \"area_code\" or \"shop\"",
                                ),
                            }
                        }
                        p.policy.zone_from = out;
                    }
                    _ => bad(
                        k,
                        format!("unknown or mistyped policy setting `{k}`"),
                        "known: quiet_hours, frequency_cap, max_segments, zone_from",
                    ),
                }
            }
        }
        if let Some(ev) = table.get("events").and_then(|v| v.as_table()) {
            p.custom_events = ev.clone();
        }
        if let Some(q) = table.get("quiet_hours").and_then(|v| v.as_table()) {
            p.quiet_hours_overrides = q.clone();
            for (k, v) in q {
                if let Ok(j) = serde_json::to_value(v) {
                    p.policy.quiet_hours_overrides.insert(k.clone(), j);
                }
            }
        }
        p
    }
}

/// `30m`, `2h`, `3d`, `2w`, `45s` -> seconds.
pub fn parse_duration(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits: String = s.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: i64 = digits.parse().ok()?;
    let mult = match &s[digits.len()..] {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    n.checked_mul(mult)
}
