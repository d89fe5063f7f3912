//! The webhook server over real HTTP on loopback: Shopify HMACs computed here independently
//! (and checked against the published vectors), Twilio signatures made by Twilio's own Python
//! `RequestValidator` (tests/twilio_sign.py, tests/requirements.txt), the fixtures as bodies,
//! de-duplication, 400/401/403/413 answers with nothing stored, a tracked-link click, Shopify's
//! privacy webhooks followed by a byte scan of the data directory, and /metrics parsed.

mod common;

use aftercart::runtime;
use aftercart::runtime::http::{self, signature, Secrets, ServeConfig, Server};
use aftercart::store::Store;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const SHOPIFY_SECRET: &str = "test-shopify-secret";
const TWILIO_TOKEN: &str = "test-twilio-auth-token";
const PUBLIC_URL: &str = "https://hooks.example.com";

fn tmp(name: &str) -> common::TmpDir {
    common::TmpDir::new(&format!("srv-{name}"), true)
}

struct Running {
    server: Server,
    store: Arc<dyn Store>,
    data: PathBuf,
    sink: PathBuf,
    base: String,
    /// Last: removed after the server and the store are dropped.
    _root: common::TmpDir,
}

fn start(name: &str, max_body: usize) -> Running {
    let root = tmp(name);
    let data = root.join("data");
    let sink = root.join("sent.jsonl");
    let checked = aftercart::check::check_paths(&[PathBuf::from("flows")]).unwrap();
    assert!(!checked.has_errors(), "the example flows must check clean");
    let schemas = aftercart::schema::Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    let store: Arc<dyn Store> = Arc::new(aftercart::store::open(&data).unwrap());
    let secrets = Secrets {
        shopify_secret: SHOPIFY_SECRET.into(),
        twilio_auth_token: TWILIO_TOKEN.into(),
        public_url: PUBLIC_URL.into(),
    };
    let mut cfg = ServeConfig::new("127.0.0.1:0".parse().unwrap(), data.clone(), secrets);
    cfg.provider = format!("file:{}", sink.display());
    cfg.max_body = max_body;
    cfg.idle_sleep = std::time::Duration::from_millis(20);
    let server = http::serve(store.clone(), checked.program.unwrap(), schemas, cfg).unwrap();
    let base = format!("http://{}", server.addr());
    Running {
        server,
        store,
        data,
        sink,
        base,
        _root: root,
    }
}

struct Reply {
    status: u16,
    body: String,
    location: Option<String>,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new().redirects(0).build()
}

fn reply(r: Result<ureq::Response, ureq::Error>) -> Reply {
    let resp = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("HTTP transport error: {e}"),
    };
    let status = resp.status();
    let location = resp.header("location").map(String::from);
    Reply {
        status,
        body: resp.into_string().unwrap(),
        location,
    }
}

/// HMAC-SHA256 computed here, independently of the server's code.
fn shopify_hmac(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn post_shopify(base: &str, topic: &str, event_id: &str, body: &[u8], hmac: Option<&str>) -> Reply {
    reply(shopify_request(base, topic, event_id, body, hmac).send_bytes(body))
}

/// A signed Shopify webhook request for `body`, not yet sent.
fn shopify_request(
    base: &str,
    topic: &str,
    event_id: &str,
    body: &[u8],
    hmac: Option<&str>,
) -> ureq::Request {
    let mut req = agent()
        .post(&format!("{base}/webhooks/shopify"))
        .set("Content-Type", "application/json")
        .set("X-Shopify-Topic", topic)
        .set("X-Shopify-Shop-Domain", "juniper.myshopify.com")
        .set("X-Shopify-API-Version", "2026-07");
    if !event_id.is_empty() {
        req = req.set("X-Shopify-Event-Id", event_id);
    }
    let own = shopify_hmac(SHOPIFY_SECRET, body);
    req.set("X-Shopify-Hmac-Sha256", hmac.unwrap_or(&own))
}

/// Signatures from Twilio's own helper library (one python run for many requests).
fn twilio_signatures(reqs: &[(String, Vec<(String, String)>)]) -> Vec<String> {
    use std::io::Write;
    let mut child = std::process::Command::new("python3")
        .arg("tests/twilio_sign.py")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3 is needed to sign Twilio requests with Twilio's RequestValidator");
    {
        let stdin = child.stdin.as_mut().unwrap();
        for (url, params) in reqs {
            let line = json!({"token": TWILIO_TOKEN, "url": url, "params": params});
            writeln!(stdin, "{line}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "signing with the `twilio` Python package failed (install it: python3 -m pip install \
         -r tests/requirements.txt): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sigs: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(sigs.len(), reqs.len());
    sigs
}

fn form(params: &[(String, String)]) -> String {
    fn enc(s: &str) -> String {
        let mut o = String::new();
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    o.push(b as char)
                }
                b' ' => o.push('+'),
                _ => o.push_str(&format!("%{b:02X}")),
            }
        }
        o
    }
    params
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn post_twilio(base: &str, path_query: &str, params: &[(String, String)], sig: &str) -> Reply {
    reply(
        agent()
            .post(&format!("{base}{path_query}"))
            .set("Content-Type", "application/x-www-form-urlencoded")
            .set("X-Twilio-Signature", sig)
            .send_bytes(form(params).as_bytes()),
    )
}

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(Path::new("tests/fixtures").join(path)).unwrap()
}

/// Wait until the runtime has processed everything appended (an eventual condition, not a
/// timing assertion: the deadline only turns a hang into a clear failure).
fn processed(store: &dyn Store) {
    let target = store.last_seq().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while store.cursor().unwrap() < target {
        assert!(
            std::time::Instant::now() < deadline,
            "the runtime did not process the log"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn metrics(base: &str) -> BTreeMap<String, f64> {
    let r = reply(agent().get(&format!("{base}/metrics")).call());
    assert_eq!(r.status, 200);
    let mut out = BTreeMap::new();
    for line in r.body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad exposition line {line:?}"));
        out.insert(
            name.to_string(),
            value
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        );
    }
    out
}

#[test]
fn shopify_hmac_matches_the_published_vectors() {
    let v: Value = serde_json::from_slice(&fixture("shopify/hmac_vectors.json")).unwrap();
    let vectors = v["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for t in vectors {
        let secret = t["secret"].as_str().unwrap();
        let body = t["raw_body"].as_str().unwrap().as_bytes();
        let header = t["expected_header_x_shopify_hmac_sha256"].as_str().unwrap();
        let valid = t["expected_valid"].as_bool().unwrap();
        assert_eq!(shopify_hmac(secret, body) == header, valid, "{}", t["id"]);
        assert_eq!(signature::shopify_signature(secret, body) == header, valid);
        assert_eq!(signature::shopify_valid(secret, body, header), valid);
        let mut tampered = body.to_vec();
        tampered.push(b' ');
        assert!(!signature::shopify_valid(secret, &tampered, header));
    }
}

#[test]
fn twilio_signatures_match_the_vectors_and_the_python_library() {
    let v: Value = serde_json::from_slice(&fixture("twilio/signature_vectors.json")).unwrap();
    let mut checked = 0;
    for t in v["vectors"].as_array().unwrap() {
        let Some(params) = t["params"].as_object() else {
            continue;
        };
        // A repeated parameter comes as an array of its values.
        let params: Vec<(String, String)> = params
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Array(vs) => vs
                    .iter()
                    .map(|v| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect(),
                v => vec![(k.clone(), v.as_str().unwrap().to_string())],
            })
            .collect();
        let url = t["request_url"].as_str().unwrap();
        let sig = t["expected_signature"].as_str().unwrap();
        assert_eq!(
            signature::twilio_valid("12345", url, &params, sig),
            t["expected_valid"].as_bool().unwrap(),
            "{}",
            t["id"]
        );
        checked += 1;
    }
    assert!(checked >= 5);
    let params = vec![
        ("From".to_string(), "+14158675309".to_string()),
        ("Body".to_string(), "It's amazing & new".to_string()),
    ];
    let url = format!("{PUBLIC_URL}/webhooks/twilio/inbound");
    let sig = twilio_signatures(&[(url.clone(), params.clone())]).remove(0);
    assert_eq!(
        signature::twilio_signature(TWILIO_TOKEN, &url, &params),
        sig
    );
}

#[test]
fn shopify_webhooks_verified_validated_deduplicated() {
    let rt = start("shopify", 64 * 1024);
    let base = &rt.base;
    let order = fixture("shopify/orders__create.json");

    // Valid: stored once; the re-delivery (same event id) is acknowledged, not stored again.
    let r = post_shopify(base, "orders/create", "ev-1", &order, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("accepted"), "{}", r.body);
    assert_eq!(rt.store.last_seq().unwrap(), 1);
    let r = post_shopify(base, "orders/create", "ev-1", &order, None);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("duplicate"), "{}", r.body);
    assert_eq!(rt.store.last_seq().unwrap(), 1);

    // Tampered body, wrong secret, missing header: 401, nothing stored.
    let good = shopify_hmac(SHOPIFY_SECRET, &order);
    let mut tampered = order.clone();
    tampered[10] ^= 1;
    let r = post_shopify(base, "orders/create", "ev-2", &tampered, Some(&good));
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.body.contains("X-Shopify-Hmac-Sha256"), "{}", r.body);
    let other = shopify_hmac("another-secret", &order);
    assert_eq!(
        post_shopify(base, "orders/create", "ev-3", &order, Some(&other)).status,
        401
    );
    assert_eq!(
        post_shopify(base, "orders/create", "ev-4", &order, Some("")).status,
        401
    );
    assert_eq!(rt.store.last_seq().unwrap(), 1);

    // Authentic but bad: 400 with a reason, nothing stored.
    let r = post_shopify(base, "orders/create", "ev-5", b"{\"id\": 1,", None);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("not valid JSON"), "{}", r.body);
    let mut checkout: Value =
        serde_json::from_slice(&fixture("shopify/checkouts__create.json")).unwrap();
    checkout.as_object_mut().unwrap().remove("token");
    let r = post_shopify(
        base,
        "checkouts/create",
        "ev-6",
        checkout.to_string().as_bytes(),
        None,
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("checkouts/create"), "{}", r.body);
    let r = post_shopify(base, "orders/create", "", &order, None);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("X-Shopify-Event-Id"), "{}", r.body);
    assert_eq!(rt.store.last_seq().unwrap(), 1);

    // Too large: 413. The server answers once the limit is passed and closes the connection,
    // so a client still writing the rest of the body may see the connection broken instead of
    // the answer (any HTTP client can, from a server that refuses early): either is a refusal.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(100 * 1024));
    match shopify_request(base, "orders/create", "ev-7", big.as_bytes(), None)
        .send_bytes(big.as_bytes())
    {
        Ok(r) => panic!("a body over the limit was accepted: {}", r.status()),
        Err(ureq::Error::Status(status, r)) => {
            assert_eq!(status, 413, "{}", r.into_string().unwrap())
        }
        Err(ureq::Error::Transport(t)) => {
            assert_eq!(t.kind(), ureq::ErrorKind::Io, "{t}")
        }
    }
    assert_eq!(rt.store.last_seq().unwrap(), 1);

    // Every fixture as a body, its topic from the file name; unknown topics are stored too.
    let mut accepted = 1;
    let mut names: Vec<String> = std::fs::read_dir("tests/fixtures/shopify")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json") && n.contains("__"))
        .collect();
    names.sort();
    for name in &names {
        let topic = name.split('.').next().unwrap().replace("__", "/");
        let r = post_shopify(
            base,
            &topic,
            &format!("fx-{name}"),
            &fixture(&format!("shopify/{name}")),
            None,
        );
        assert_eq!(r.status, 200, "{name}: {}", r.body);
        accepted += 1;
    }
    assert_eq!(rt.store.last_seq().unwrap(), accepted);
    processed(&*rt.store);

    let m = metrics(base);
    assert_eq!(
        m["aftercart_events_accepted_total{source=\"shopify\"}"],
        accepted as f64
    );
    assert_eq!(
        m["aftercart_events_duplicate_total{source=\"shopify\"}"],
        1.0
    );
    assert_eq!(
        m["aftercart_events_refused_total{source=\"shopify\",reason=\"signature\"}"],
        3.0
    );
    assert_eq!(
        m["aftercart_events_refused_total{source=\"shopify\",reason=\"invalid\"}"],
        3.0
    );
    assert_eq!(
        m["aftercart_events_refused_total{source=\"shopify\",reason=\"too_large\"}"],
        1.0
    );
    assert_eq!(m["aftercart_log_lag"], 0.0);
    assert_eq!(m["aftercart_up"], 1.0);
    assert_eq!(
        m["aftercart_events_processed_total"]
            + m["aftercart_events_refused_total{source=\"runtime\",reason=\"unusable\"}"],
        accepted as f64
    );
    let health = reply(agent().get(&format!("{base}/healthz")).call());
    assert_eq!(health.status, 200);
    rt.server.shutdown().unwrap();
}

#[test]
fn twilio_webhooks_signed_by_twilio_library() {
    let rt = start("twilio", 64 * 1024);
    let base = &rt.base;
    let inbound: Value =
        serde_json::from_slice(&fixture("twilio/inbound_sms.twilio_cli_default.json")).unwrap();
    let params: Vec<(String, String)> = inbound["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let mut help = params.clone();
    for (k, v) in help.iter_mut() {
        match k.as_str() {
            "Body" => *v = " Help ".into(),
            "MessageSid" => *v = "SMhelp000000000000000000000000000".into(),
            _ => {}
        }
    }
    let statuses: Value = serde_json::from_slice(&fixture("twilio/status_callbacks.json")).unwrap();
    let status_params: Vec<Vec<(String, String)>> = statuses["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["params"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .collect();
    let inbound_url = format!("{PUBLIC_URL}/webhooks/twilio/inbound");
    let status_pq = "/webhooks/twilio/status?message_id=m-unknown";
    let status_url = format!("{PUBLIC_URL}{status_pq}");
    let mut reqs = vec![
        (inbound_url.clone(), params.clone()),
        (inbound_url.clone(), help.clone()),
    ];
    reqs.extend(
        status_params
            .iter()
            .map(|p| (status_url.clone(), p.clone())),
    );
    let sigs = twilio_signatures(&reqs);

    // Inbound: valid -> empty TwiML, stored once; the re-delivery is not stored again.
    let r = post_twilio(base, "/webhooks/twilio/inbound", &params, &sigs[0]);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.starts_with("<?xml"), "{}", r.body);
    assert!(r.body.ends_with("<Response/>"), "{}", r.body);
    assert_eq!(rt.store.last_seq().unwrap(), 1);
    let r = post_twilio(base, "/webhooks/twilio/inbound", &params, &sigs[0]);
    assert_eq!(r.status, 200);
    assert_eq!(rt.store.last_seq().unwrap(), 1);

    // Tampered parameter, signature for another URL, missing signature: 403, nothing stored.
    let mut tampered = params.clone();
    tampered.iter_mut().find(|(k, _)| k == "Body").unwrap().1 = "Ahoy!".into();
    let r = post_twilio(base, "/webhooks/twilio/inbound", &tampered, &sigs[0]);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("X-Twilio-Signature"), "{}", r.body);
    assert_eq!(
        post_twilio(base, "/webhooks/twilio/status", &params, &sigs[0]).status,
        403
    );
    assert_eq!(
        post_twilio(base, "/webhooks/twilio/inbound", &params, "").status,
        403
    );
    assert_eq!(rt.store.last_seq().unwrap(), 1);

    // HELP gets the shop's help text (flows/aftercart.toml), XML-escaped.
    let r = post_twilio(base, "/webhooks/twilio/inbound", &help, &sigs[1]);
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(
            "<Message>Juniper &amp; Co: reply STOP to unsubscribe. Help: \
             support@juniper.example</Message>"
        ),
        "{}",
        r.body
    );
    assert_eq!(rt.store.last_seq().unwrap(), 2);

    // Status callbacks: each stored once, de-duplicated on (MessageSid, MessageStatus).
    for (p, sig) in status_params.iter().zip(&sigs[2..]) {
        let r = post_twilio(base, status_pq, p, sig);
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // The fixtures repeat (MessageSid, MessageStatus) pairs (Twilio retries): stored once each.
    let distinct: std::collections::BTreeSet<(String, String)> = status_params
        .iter()
        .map(|p| {
            let get = |n: &str| p.iter().find(|(k, _)| k == n).unwrap().1.clone();
            (get("MessageSid"), get("MessageStatus"))
        })
        .collect();
    assert!(distinct.len() < status_params.len());
    let after = rt.store.last_seq().unwrap();
    assert_eq!(after, 2 + distinct.len() as u64);
    let r = post_twilio(base, status_pq, &status_params[0], &sigs[2]);
    assert_eq!(r.status, 200);
    assert!(r.body.contains("duplicate"), "{}", r.body);
    assert_eq!(rt.store.last_seq().unwrap(), after);
    let log = rt.store.read_log(1, 100).unwrap();
    let kinds: Vec<String> = log
        .iter()
        .map(|e| {
            let v: Value = serde_json::from_slice(e.payload.as_ref().unwrap()).unwrap();
            v["type"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(kinds[0], "sms.replied");
    assert!(kinds[2..]
        .iter()
        .all(|k| k.starts_with("message.") && k != "message.clicked"));

    processed(&*rt.store);
    let m = metrics(base);
    assert_eq!(
        m["aftercart_events_refused_total{source=\"twilio\",reason=\"signature\"}"],
        3.0
    );
    rt.server.shutdown().unwrap();
}

/// Every file under `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn holds(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn click_redirects_and_privacy_webhooks_erase_everything() {
    let rt = start("privacy", 1 << 20);
    let base = &rt.base;
    const PHONE: &str = "+16135550147";
    const EMAIL: &str = "zebulon.quixote@example.org";
    const FIRST: &str = "Zebulon";
    const LAST: &str = "Quixotesque";
    const STREET: &str = "742 Evergreen Terrace";
    let mut order: Value = serde_json::from_slice(&fixture("shopify/orders__create.json")).unwrap();
    order["id"] = json!(990001);
    order["email"] = json!(EMAIL);
    order["contact_email"] = json!(EMAIL);
    order["phone"] = json!(PHONE);
    order["cancelled_at"] = Value::Null;
    order["cancel_reason"] = Value::Null;
    order["customer"]["id"] = json!(770001);
    order["customer"]["email"] = json!(EMAIL);
    order["customer"]["phone"] = json!(PHONE);
    order["customer"]["first_name"] = json!(FIRST);
    order["customer"]["last_name"] = json!(LAST);
    for a in ["shipping_address", "billing_address"] {
        order[a]["first_name"] = json!(FIRST);
        order[a]["last_name"] = json!(LAST);
        order[a]["name"] = json!(format!("{FIRST} {LAST}"));
        order[a]["address1"] = json!(STREET);
        order[a]["phone"] = json!(PHONE);
    }
    order["customer"]["default_address"]["address1"] = json!(STREET);
    let body = order.to_string();
    let r = post_shopify(base, "orders/create", "ord-990001", body.as_bytes(), None);
    assert_eq!(r.status, 200, "{}", r.body);
    processed(&*rt.store);

    // The confirmation went out with a tracked link; its code redirects and records a click.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let sent: Value = loop {
        let text = std::fs::read_to_string(&rt.sink).unwrap_or_default();
        if let Some(l) = text.lines().find(|l| l.contains(FIRST)) {
            break serde_json::from_str(l).unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no message was dispatched"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // The body carries `{link_base}/{code}` (flows/aftercart.toml), the code made from the
    // message id and the order's status URL.
    let text = sent["body"].as_str().unwrap();
    let at = text
        .find("https://jnpr.co/l/")
        .expect("a tracked link in the body")
        + 18;
    let code = &text[at..at + 10];
    let url = order["order_status_url"].as_str().unwrap();
    assert_eq!(
        aftercart::engine::link_code(sent["message_id"].as_str().unwrap(), url),
        code
    );
    let before = rt.store.last_seq().unwrap();
    let r = reply(agent().get(&format!("{base}/l/{code}")).call());
    assert_eq!(r.status, 302, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some(url));
    assert_eq!(rt.store.last_seq().unwrap(), before + 1);
    let click = rt.store.read_log(before + 1, 1).unwrap().remove(0);
    assert_eq!(click.person.as_deref(), Some("customer:770001"));
    let v: Value = serde_json::from_slice(click.payload.as_ref().unwrap()).unwrap();
    assert_eq!(v["type"], "message.clicked");
    assert_eq!(v["data"]["message_id"], sent["message_id"]);
    assert_eq!(
        reply(agent().get(&format!("{base}/l/nosuchcode")).call()).status,
        404
    );
    processed(&*rt.store);
    let rec = runtime::decode_record(
        "customer:770001",
        &rt.store.person("customer:770001").unwrap().unwrap(),
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&rec).unwrap()["state"]["clicks"][0],
        sent["message_id"]
    );

    // data_request: everything held on the customer, written to DATA/exports/<id>.json.
    let req = json!({
        "shop_id": 954889, "shop_domain": "juniper.myshopify.com",
        "orders_requested": [990001],
        "customer": {"id": 770001, "email": EMAIL, "phone": PHONE},
        "data_request": {"id": 9999}
    })
    .to_string();
    let r = post_shopify(base, "customers/data_request", "dr-1", req.as_bytes(), None);
    assert_eq!(r.status, 200, "{}", r.body);
    let export = std::fs::read(rt.data.join("exports/9999.json")).unwrap();
    assert!(holds(&export, EMAIL) && holds(&export, STREET));
    let tampered = req.replace("9999", "9998");
    let r = post_shopify(
        base,
        "customers/data_request",
        "dr-2",
        tampered.as_bytes(),
        Some(&shopify_hmac(SHOPIFY_SECRET, req.as_bytes())),
    );
    assert_eq!(r.status, 401);
    assert!(!rt.data.join("exports/9998.json").exists());

    // A reply from the phone, so the phone index and a reply event exist too.
    let reply_params = vec![
        (
            "MessageSid".to_string(),
            "SMzebulon0000000000000000000000000".to_string(),
        ),
        ("From".to_string(), PHONE.to_string()),
        ("To".to_string(), "+18005550199".to_string()),
        ("Body".to_string(), format!("thanks, {FIRST} here")),
    ];
    let sig = twilio_signatures(&[(
        format!("{PUBLIC_URL}/webhooks/twilio/inbound"),
        reply_params.clone(),
    )])
    .remove(0);
    assert_eq!(
        post_twilio(base, "/webhooks/twilio/inbound", &reply_params, &sig).status,
        200
    );

    let counters_before = rt.store.counters().unwrap();
    assert!(counters_before["sends.order_confirmation"] >= 1);

    // customers/redact: the person, their links, timers, messages and export are gone.
    let redact = json!({
        "shop_id": 954889, "shop_domain": "juniper.myshopify.com",
        "customer": {"id": 770001, "email": EMAIL, "phone": PHONE},
        "orders_to_redact": [990001]
    })
    .to_string();
    let r = post_shopify(base, "customers/redact", "rd-1", redact.as_bytes(), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(rt.store.person("customer:770001").unwrap().is_none());
    assert!(rt.store.timers_of("customer:770001").unwrap().is_empty());
    assert!(rt
        .store
        .outbox(sent["message_id"].as_str().unwrap())
        .unwrap()
        .is_none());
    assert!(rt.store.link(code).unwrap().is_none());
    assert!(!rt.data.join("exports/9999.json").exists());
    assert_eq!(
        reply(agent().get(&format!("{base}/l/{code}")).call()).status,
        404
    );
    // Aggregates stay.
    let counters_after = rt.store.counters().unwrap();
    assert_eq!(
        counters_after["sends.order_confirmation"],
        counters_before["sends.order_confirmation"]
    );
    let m = metrics(base);
    assert!(m["aftercart_events_accepted_total{source=\"aftercart\"}"] >= 2.0);

    let data = rt.data.clone();
    let store = rt.store;
    rt.server.shutdown().unwrap();
    drop(store);
    let all = files(&data);
    assert!(all.iter().any(|p| p.ends_with("keys.bin")));
    for f in all {
        let bytes = std::fs::read(&f).unwrap();
        for needle in [PHONE, &PHONE[2..], EMAIL, FIRST, LAST, STREET] {
            assert!(
                !holds(&bytes, needle),
                "{} still holds {needle:?} after customers/redact",
                f.display()
            );
        }
    }
}

#[test]
fn shop_redact_erases_every_person() {
    let rt = start("shop-redact", 1 << 20);
    let base = &rt.base;
    for (i, name) in ["customers__create.json", "orders__create.json"]
        .iter()
        .enumerate()
    {
        let topic = name.split('.').next().unwrap().replace("__", "/");
        let r = post_shopify(
            base,
            &topic,
            &format!("e{i}"),
            &fixture(&format!("shopify/{name}")),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.body);
    }
    processed(&*rt.store);
    let people = |s: &dyn Store| {
        s.people()
            .unwrap()
            .into_iter()
            .filter(|p| !p.starts_with("idx:"))
            .count()
    };
    assert!(people(&*rt.store) >= 1);
    let body = json!({"shop_id": 954889, "shop_domain": "juniper.myshopify.com"}).to_string();
    let r = post_shopify(base, "shop/redact", "sr-1", body.as_bytes(), None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(people(&*rt.store), 0);
    let r = post_shopify(base, "customers/redact", "rd-x", b"{\"shop_id\": 1}", None);
    assert_eq!(r.status, 400);
    assert!(r.body.contains("names no customer"), "{}", r.body);
    rt.server.shutdown().unwrap();
}
