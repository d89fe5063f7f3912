//! Shopify's mandatory privacy webhooks (<https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance>):
//! `customers/data_request` exports everything held on the customer to
//! `DATA/exports/<request id>.json`, `customers/redact` erases them, `shop/redact` erases every
//! person of the shop. They run on the runtime thread, after it has processed every event
//! received before them (an unprocessed event is not yet attributed to its person) and with its
//! caches dropped afterwards (so nothing erased is written back). The request itself is not
//! kept in the log: it carries the very identifiers being erased.

use crate::runtime::state::{is_index, StoreState};
use crate::runtime::Runtime;
use axum::http::HeaderMap;
use serde_json::{json, Value as Json};
use std::collections::BTreeSet;
use std::path::Path;

/// People erased together: one scan of the store per group (`shop/redact` erases everyone),
/// and the group's names and tags in memory meanwhile.
const ERASE_GROUP: usize = 50_000;

/// Erase `people` in groups of [`ERASE_GROUP`]: each erasure scans the whole store once (there
/// is no index by person, docs/storage.md "Erasure"), so one per person would be quadratic.
/// How many were found.
fn erase<'a>(rt: &mut Runtime, people: impl Iterator<Item = &'a String>) -> Result<usize, String> {
    let names: Vec<&str> = people.map(String::as_str).collect();
    let mut erased = 0;
    for group in names.chunks(ERASE_GROUP) {
        let reports = rt.forget_many(group).map_err(|e| e.to_string())?;
        erased += reports.iter().filter(|r| r.found).count();
    }
    Ok(erased)
}

/// Who a privacy request is about, as the payload names them.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub customer_id: Option<String>,
    pub phone: Option<String>,
    pub order_ids: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Request {
    Export {
        /// File name stem: the payload's `data_request.id` (else the webhook id), sanitised.
        request_id: String,
        shop_domain: Option<String>,
        subject: Subject,
    },
    Redact {
        subject: Subject,
    },
    ShopRedact {
        shop_domain: Option<String>,
    },
}

fn text(v: Option<&Json>) -> Option<String> {
    match v? {
        Json::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Only `[A-Za-z0-9_-]` (it becomes a file name: no path tricks).
fn file_stem(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

impl Request {
    /// Read a privacy webhook's payload. Errors say which field is missing.
    pub fn from_webhook(topic: &str, headers: &HeaderMap, body: &Json) -> Result<Request, String> {
        let shop_domain = text(body.get("shop_domain"));
        let subject = || -> Result<Subject, String> {
            let c = body.get("customer");
            let s = Subject {
                customer_id: text(c.and_then(|c| c.get("id"))),
                phone: text(c.and_then(|c| c.get("phone"))),
                order_ids: body
                    .get(if topic == "customers/redact" {
                        "orders_to_redact"
                    } else {
                        "orders_requested"
                    })
                    .and_then(Json::as_array)
                    .map(|a| a.iter().filter_map(|v| text(Some(v))).collect())
                    .unwrap_or_default(),
            };
            if s.customer_id.is_none() && s.phone.is_none() && s.order_ids.is_empty() {
                return Err(format!(
                    "{topic}: the body names no customer (`customer.id` or `customer.phone`) \
                     and no orders"
                ));
            }
            Ok(s)
        };
        match topic {
            "customers/data_request" => {
                let id = text(body.get("data_request").and_then(|d| d.get("id")))
                    .or_else(|| {
                        headers
                            .get("X-Shopify-Webhook-Id")
                            .or_else(|| headers.get("X-Shopify-Event-Id"))
                            .and_then(|v| v.to_str().ok())
                            .map(String::from)
                    })
                    .ok_or(
                        "customers/data_request: no `data_request.id` and no \
                         X-Shopify-Webhook-Id header to name the export",
                    )?;
                Ok(Request::Export {
                    request_id: file_stem(&id),
                    shop_domain,
                    subject: subject()?,
                })
            }
            "customers/redact" => Ok(Request::Redact {
                subject: subject()?,
            }),
            "shop/redact" => Ok(Request::ShopRedact { shop_domain }),
            other => Err(format!("`{other}` is not a privacy topic")),
        }
    }
}

/// The people a subject is, the way the host routes them: `customer:{id}`; the owner of the
/// phone (the `idx:p` index) and `phone:{e164}`; the owners of the orders (the `idx:o`
/// index). E-mail is not a routing key in aftercart, so it finds nobody by itself.
fn resolve(rt: &Runtime, s: &Subject) -> Result<BTreeSet<String>, String> {
    let store = rt.store().clone();
    let mut st = StoreState::new(store.clone());
    let mut people = BTreeSet::new();
    if let Some(id) = &s.customer_id {
        people.insert(format!("customer:{id}"));
    }
    let mut lookups = Vec::new();
    if let Some(p) = &s.phone {
        // Shopify sends customer phones in E.164, the form the host routes and indexes by.
        people.insert(format!("phone:{p}"));
        lookups.push(("p", p.clone()));
    }
    for o in &s.order_ids {
        lookups.push(("o", o.clone()));
    }
    for (kind, value) in lookups {
        if let Some(subject) = st.index_subject(kind, &value) {
            if let Some(owner) = store.person(&subject).map_err(|e| e.to_string())? {
                people.insert(String::from_utf8_lossy(&owner).into_owned());
            }
        }
    }
    if let Some(e) = st.take_error() {
        return Err(e.to_string());
    }
    Ok(people)
}

fn exports_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("exports")
}

/// Write atomically (temp file, fsync, rename, fsync the directory): an export is either
/// complete or absent.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().expect("exports live in a directory");
    std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    let tmp = path.with_extension("json.tmp");
    let io = |e: std::io::Error| format!("write {}: {e}", path.display());
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// Delete the exports that hold any of `people` (an erased person's export is personal data
/// under the data directory too). Returns how many went.
fn drop_exports(data_dir: &Path, people: &BTreeSet<String>, all: bool) -> Result<usize, String> {
    let dir = exports_dir(data_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("read {}: {e}", dir.display())),
    };
    let mut n = 0;
    for e in entries {
        let path = e
            .map_err(|e| format!("read {}: {e}", dir.display()))?
            .path();
        let holds = all
            || std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<Json>(&b).ok())
                .and_then(|v| v.get("people").and_then(Json::as_array).cloned())
                .is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p.get("person")
                            .and_then(Json::as_str)
                            .is_some_and(|p| people.contains(p))
                    })
                });
        if holds {
            std::fs::remove_file(&path).map_err(|e| format!("remove {}: {e}", path.display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Run a privacy request on the runtime thread. The answer is the webhook's JSON response.
pub fn execute(rt: &mut Runtime, data_dir: &Path, req: Request) -> Result<Json, String> {
    rt.catch_up().map_err(|e| e.to_string())?;
    match req {
        Request::Export {
            request_id,
            shop_domain,
            subject,
        } => {
            let people = resolve(rt, &subject)?;
            let mut found = Vec::new();
            for p in &people {
                let v = crate::runtime::export(&**rt.store(), p).map_err(|e| e.to_string())?;
                if v.get("found").and_then(Json::as_bool) == Some(true) {
                    found.push(v);
                }
            }
            let path = exports_dir(data_dir).join(format!("{request_id}.json"));
            let doc = json!({
                "request_id": request_id,
                "shop_domain": shop_domain,
                "exported_at": chrono::Utc::now().to_rfc3339(),
                "people": found,
            });
            let bytes = serde_json::to_vec_pretty(&doc).expect("JSON");
            write_atomic(&path, &bytes)?;
            Ok(json!({
                "export": path.display().to_string(),
                "people": found.len(),
            }))
        }
        Request::Redact { subject } => {
            let people = resolve(rt, &subject)?;
            let erased = erase(rt, people.iter())?;
            let exports = drop_exports(data_dir, &people, false)?;
            Ok(json!({ "erased": erased, "exports_deleted": exports }))
        }
        Request::ShopRedact { shop_domain } => {
            // One data directory serves one shop: every person goes.
            let people: BTreeSet<String> = rt
                .store()
                .people()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|p| !is_index(p))
                .collect();
            let erased = erase(rt, people.iter())?;
            let exports = drop_exports(data_dir, &people, true)?;
            Ok(json!({
                "shop_domain": shop_domain,
                "erased": erased,
                "exports_deleted": exports,
            }))
        }
    }
}
