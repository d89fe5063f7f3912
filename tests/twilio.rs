//! The Twilio provider against a fake Twilio API (axum on 127.0.0.1:0): Basic auth and the
//! form exactly as Twilio documents it, retries on 429 (Retry-After) and 5xx, none on other
//! 4xx, error 21610 turning into an opt-out through the log, the per-sender rate limit (counted
//! from the fake's request times), and in-doubt recovery after a crash between Twilio's answer
//! and the outbox commit (found by lookup and not re-sent; not found -> sent once).

mod common;

use aftercart::engine::{Consent, Message};
use aftercart::ir::{FlowKind, Program};
use aftercart::runtime::{
    self, Clock, Options, Provider, ProviderError, ProviderReceipt, Runtime, Sender, TwilioConfig,
    TwilioProvider,
};
use aftercart::schema::Schemas;
use aftercart::store::{OutboxStatus, SledStore, Store};
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const WEEK: &str = "examples/events/week.jsonl";
const SID: &str = "ACfa4e0000000000000000000000000001";
const TOKEN: &str = "fake-auth-token";
const FROM: &str = "+15005550006";

/// What the fake answers to a POST.
#[derive(Clone, Debug)]
enum Reply {
    Created,
    TooMany {
        retry_after: u64,
    },
    ServerError,
    /// 400 with this Twilio error code.
    Refused(u32),
}

#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    auth: Option<String>,
    fields: Vec<(String, String)>,
    at: Instant,
    status: u16,
}

#[derive(Default)]
struct FakeState {
    requests: Vec<Req>,
    /// Answers for the next POSTs, in turn; then `Created`.
    script: VecDeque<Reply>,
    /// Numbers that replied STOP to our sender: every POST to them is refused with 21610.
    stopped: Vec<String>,
    /// Accepted messages, as Twilio lists them.
    messages: Vec<serde_json::Value>,
}

type Fake = Arc<Mutex<FakeState>>;

fn twilio_error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = serde_json::json!({
        "code": code, "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status.as_u16(),
    });
    (status, body.to_string()).into_response()
}

async fn create(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let mut f = fake.lock().unwrap();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let to = get("To").unwrap_or_default();
    let reply = if f.stopped.contains(&to) {
        Reply::Refused(21610)
    } else {
        f.script.pop_front().unwrap_or(Reply::Created)
    };
    let (resp, status) = match reply {
        Reply::Created => {
            let sid = format!("SM{:032x}", f.messages.len() + 1);
            let m = serde_json::json!({
                "sid": sid, "to": to, "from": get("From"), "body": get("Body"),
                "messaging_service_sid": get("MessagingServiceSid"), "status": "queued",
                "date_created": chrono::Utc::now().to_rfc2822(),
            });
            f.messages.push(m.clone());
            ((StatusCode::CREATED, m.to_string()).into_response(), 201)
        }
        Reply::TooMany { retry_after } => (
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", retry_after.to_string())],
                r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
            )
                .into_response(),
            429,
        ),
        Reply::ServerError => (
            twilio_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "Internal Server Error",
            ),
            500,
        ),
        Reply::Refused(code) => (twilio_error(StatusCode::BAD_REQUEST, code, "refused"), 400),
    };
    f.requests.push(Req {
        method: "POST",
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        fields: form,
        at: Instant::now(),
        status,
    });
    resp
}

async fn list(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let mut f = fake.lock().unwrap();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let to = get("To");
    let messages: Vec<_> = f
        .messages
        .iter()
        .filter(|m| to.is_none() || m["to"].as_str() == to.as_deref())
        .cloned()
        .collect();
    f.requests.push(Req {
        method: "GET",
        auth: headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(String::from),
        fields: q,
        at: Instant::now(),
        status: 200,
    });
    let body = serde_json::json!({"messages": messages, "next_page_uri": null, "page": 0});
    (StatusCode::OK, body.to_string()).into_response()
}

/// Start the fake; returns its state and base URL. The server thread lives as long as the test
/// process.
fn fake() -> (Fake, String) {
    let state: Fake = Arc::new(Mutex::new(FakeState::default()));
    let s = state.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new()
                .route(
                    "/2010-04-01/Accounts/{sid}/Messages.json",
                    axum::routing::post(create).get(list),
                )
                .with_state(s);
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    let addr = rx.recv().unwrap();
    (state, format!("http://{addr}"))
}

fn config(base: &str, rate: f64) -> TwilioConfig {
    let mut c = TwilioConfig::new(SID, TOKEN, Sender::From(FROM.into()));
    c.api_base = base.to_string();
    c.rate = rate;
    c.status_callback = Some("https://shop.example/webhooks/twilio/status".into());
    c.backoff_base = Duration::from_millis(10);
    c.backoff_max = Duration::from_secs(2);
    c.backoff_total = Duration::from_secs(10);
    c.max_attempts = 4;
    c
}

fn message(id: &str, to: &str, body: &str) -> Message {
    Message {
        message_id: id.into(),
        instance: "i".into(),
        flow: "f".into(),
        flow_version: "v".into(),
        step: 1,
        person: format!("phone:{to}"),
        to: to.into(),
        body: body.into(),
        encoding: "GSM-7".into(),
        segments: 1,
        variant: None,
        at: chrono::Utc::now(),
        local_time: String::new(),
        kind: FlowKind::Marketing,
        links: vec![],
    }
}

fn posts(f: &Fake) -> Vec<Req> {
    f.lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.method == "POST")
        .cloned()
        .collect()
}

#[test]
fn form_and_basic_auth_are_what_twilio_expects() {
    let (f, base) = fake();
    let p = TwilioProvider::new(config(&base, 100.0));
    let r = p
        .send(&message("m1", "+15551230001", "Hi & thanks: 10% off?"))
        .unwrap();
    assert!(r.provider_id.unwrap().starts_with("SM"));
    let reqs = posts(&f);
    assert_eq!(reqs.len(), 1);
    // RFC 7617: base64("AccountSid:AuthToken").
    use base64::Engine as _;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{TOKEN}"))
    );
    assert_eq!(reqs[0].auth.as_deref(), Some(want.as_str()));
    let fields: Vec<(&str, &str)> = reqs[0]
        .fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("To", "+15551230001"),
            ("From", FROM),
            ("Body", "Hi & thanks: 10% off?"),
            (
                "StatusCallback",
                "https://shop.example/webhooks/twilio/status?message_id=m1"
            ),
        ]
    );
    // An id already accepted is never posted again.
    p.send(&message("m1", "+15551230001", "Hi & thanks: 10% off?"))
        .unwrap();
    assert_eq!(posts(&f).len(), 1);

    // A Messaging Service sends MessagingServiceSid instead of From.
    let mut c = config(&base, 100.0);
    c.sender = Sender::MessagingService("MG00000000000000000000000000000001".into());
    TwilioProvider::new(c)
        .send(&message("m2", "+15551230002", "x"))
        .unwrap();
    let last = posts(&f).pop().unwrap();
    assert_eq!(
        last.fields[1],
        (
            "MessagingServiceSid".into(),
            "MG00000000000000000000000000000001".into()
        )
    );
}

#[test]
fn retries_429_and_5xx_with_retry_after_but_not_other_4xx() {
    let (f, base) = fake();
    let p = TwilioProvider::new(config(&base, 100.0));
    f.lock().unwrap().script = VecDeque::from([
        Reply::TooMany { retry_after: 1 },
        Reply::ServerError,
        Reply::Created,
        Reply::Refused(21211),
        Reply::Refused(21610),
    ]);
    // 429 then 500 then 201: one send, three requests.
    let r = p.send(&message("a", "+15551230010", "one")).unwrap();
    assert!(r.provider_id.is_some());
    let reqs = posts(&f);
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![429, 500, 201]
    );
    // Retry-After: 1 was honoured (a lower bound: the client slept at least that long).
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(1));

    // 400 (21211 invalid To): no retry, not retryable.
    let e = p.send(&message("b", "+15551230011", "two")).unwrap_err();
    assert!(!e.retryable && !e.opted_out);
    assert_eq!(e.code.as_deref(), Some("21211"));
    assert_eq!(posts(&f).len(), 4);

    // 21610: not retried, reported as an opt-out.
    let e = p.send(&message("c", "+15551230012", "three")).unwrap_err();
    assert!(e.opted_out && !e.retryable);
    assert_eq!(e.code.as_deref(), Some("21610"));
    assert_eq!(posts(&f).len(), 5);

    // Always 5xx: gives up after max_attempts (4), retryable for a later round.
    f.lock().unwrap().script = VecDeque::from(vec![Reply::ServerError; 10]);
    let e = p.send(&message("d", "+15551230013", "four")).unwrap_err();
    assert!(e.retryable);
    assert_eq!(posts(&f).len(), 9);
}

// ------------------------------------------------------------------ through the runtime

fn tmp(name: &str) -> common::TmpDir {
    common::TmpDir::new(&format!("twilio-{name}"), false)
}

fn load() -> (Program, Schemas) {
    let checked = aftercart::check::check_paths(&[PathBuf::from("flows")]).unwrap();
    assert!(!checked.has_errors());
    let schemas = Schemas::builtin()
        .with_custom(&checked.project.custom_events)
        .unwrap();
    (checked.program.unwrap(), schemas)
}

fn opts() -> Options {
    Options {
        clock: Clock::Virtual,
        ..Options::default()
    }
}

/// Records what the runtime handed to the provider, then delegates.
struct Spy<'a> {
    inner: &'a dyn Provider,
    seen: Mutex<Vec<Message>>,
}

impl Provider for Spy<'_> {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        self.seen.lock().unwrap().push(msg.clone());
        self.inner.send(msg)
    }
    fn find_sent(&self) -> Option<&dyn runtime::FindSent> {
        self.inner.find_sent()
    }
}

fn run_week(store: Arc<dyn Store>, provider: &dyn Provider) {
    let text = std::fs::read_to_string(WEEK).unwrap();
    runtime::ingest_text(&*store, &text, &|_, _| {}).unwrap();
    let (program, schemas) = load();
    let mut rt = Runtime::new(store, program, schemas, opts()).unwrap();
    rt.run_until_idle(provider, &AtomicBool::new(false))
        .unwrap();
}

#[test]
fn opt_out_21610_reaches_consent_and_rate_limit_holds() {
    // First run: everything accepted, at 20 messages/s. Find who gets the most marketing.
    let (f, base) = fake();
    let twilio = TwilioProvider::new(config(&base, 20.0));
    let spy = Spy {
        inner: &twilio,
        seen: Mutex::new(vec![]),
    };
    let dir = tmp("rate");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    run_week(store.clone(), &spy);
    let seen = spy.seen.lock().unwrap().clone();
    assert!(seen.len() > 20, "the week sends messages");
    // Rate limit: in any one-second window of the fake's arrival times, at most 20 requests
    // (+1 for arrival jitter). Unpaced, a local fake takes them all within a second.
    let times: Vec<Instant> = f.lock().unwrap().requests.iter().map(|r| r.at).collect();
    for (i, t) in times.iter().enumerate() {
        let n = times[i..]
            .iter()
            .take_while(|u| **u - *t < Duration::from_secs(1))
            .count();
        assert!(n <= 21, "{n} requests within one second from request {i}");
    }
    let mut marketing: BTreeMap<String, usize> = BTreeMap::new();
    for m in &seen {
        if m.kind == FlowKind::Marketing {
            *marketing.entry(m.to.clone()).or_default() += 1;
        }
    }
    let (stopped, _) = marketing.iter().max_by_key(|(_, n)| **n).unwrap();
    let first = seen
        .iter()
        .find(|m| &m.to == stopped && m.kind == FlowKind::Marketing)
        .unwrap();

    // Second run: that number replied STOP to our sender at Twilio (21610).
    let (f, base) = fake();
    f.lock().unwrap().stopped.push(stopped.clone());
    let twilio = TwilioProvider::new(config(&base, 1000.0));
    let dir = tmp("stop");
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let spy = Spy {
        inner: &twilio,
        seen: Mutex::new(vec![]),
    };
    run_week(store.clone(), &spy);
    // Exactly one request to them: the refused one; no retry, nothing after it.
    let to_them: Vec<Req> = posts(&f)
        .into_iter()
        .filter(|r| r.fields.iter().any(|(k, v)| k == "To" && v == stopped))
        .collect();
    assert_eq!(to_them.len(), 1, "one refused request, then nothing");
    assert_eq!(to_them[0].status, 400);
    // The opt-out went through the log and the engine: their consent is unsubscribed.
    let person = &first.person;
    let rec = store.person(person).unwrap().unwrap();
    let rec = runtime::decode_record(person, &rec).unwrap();
    assert_eq!(rec.state.consent, Consent::Unsubscribed);
    let counters = store.counters().unwrap();
    assert_eq!(counters.get("runtime.provider_opt_outs"), Some(&1));
    // The refused message is failed with Twilio's code.
    let o = store
        .outbox(&to_them_message(&spy, stopped))
        .unwrap()
        .unwrap();
    assert_eq!(o.status, OutboxStatus::Failed);
    assert_eq!(o.error_code.as_deref(), Some("21610"));
}

/// The id of the first message the runtime handed over for `to`.
fn to_them_message(spy: &Spy, to: &str) -> String {
    spy.seen
        .lock()
        .unwrap()
        .iter()
        .find(|m| m.to == to)
        .unwrap()
        .message_id
        .clone()
}

/// Panics on the `n`th send (a crash), after the inner provider took it when `after`.
struct CrashOn<'a> {
    inner: &'a dyn Provider,
    n: usize,
    after: bool,
    count: Mutex<usize>,
    victim: Mutex<Option<Message>>,
}

impl Provider for CrashOn<'_> {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        let mut c = self.count.lock().unwrap();
        *c += 1;
        if *c == self.n {
            *self.victim.lock().unwrap() = Some(msg.clone());
            if self.after {
                let _ = self.inner.send(msg);
            }
            panic!("simulated crash while sending {}", msg.message_id);
        }
        self.inner.send(msg)
    }
    fn find_sent(&self) -> Option<&dyn runtime::FindSent> {
        self.inner.find_sent()
    }
}

/// Returns the store's directory too: it is removed when the caller drops it.
fn crash_and_recover(after: bool) -> (Fake, Message, Arc<dyn Store>, common::TmpDir) {
    let dir = tmp(if after { "doubt-after" } else { "doubt-before" });
    let (f, base) = fake();
    let victim = {
        // A fresh provider per "process": nothing in memory survives the crash.
        let twilio = TwilioProvider::new(config(&base, 1000.0));
        let crash = CrashOn {
            inner: &twilio,
            n: 5,
            after,
            count: Mutex::new(0),
            victim: Mutex::new(None),
        };
        let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_week(store.clone(), &crash)
        }));
        assert!(r.is_err(), "the provider crashed");
        let v = crash.victim.lock().unwrap().clone().unwrap();
        // The outbox holds it as in flight: the mark was flushed before the call.
        assert_eq!(
            store.outbox(&v.message_id).unwrap().unwrap().status,
            OutboxStatus::Sending
        );
        v
    };
    // Restart: reopen the store, a new provider, run to the end.
    let store: Arc<dyn Store> = Arc::new(SledStore::open(&dir).unwrap());
    let twilio = TwilioProvider::new(config(&base, 1000.0));
    let (program, schemas) = load();
    let mut rt = Runtime::new(store.clone(), program, schemas, opts()).unwrap();
    rt.run_until_idle(&twilio, &AtomicBool::new(false)).unwrap();
    assert!(store.pending(10).unwrap().is_empty());
    (f, victim, store, dir)
}

fn posts_of(f: &Fake, m: &Message) -> usize {
    posts(f)
        .iter()
        .filter(|r| r.status == 201)
        .filter(|r| {
            r.fields.contains(&("To".into(), m.to.clone()))
                && r.fields.contains(&("Body".into(), m.body.clone()))
        })
        .count()
}

#[test]
fn in_doubt_message_accepted_before_the_crash_is_found_and_not_resent() {
    let (f, victim, store, _dir) = crash_and_recover(true);
    assert_eq!(
        posts_of(&f, &victim),
        1,
        "Twilio got it once, before the crash"
    );
    let o = store.outbox(&victim.message_id).unwrap().unwrap();
    assert_eq!(o.status, OutboxStatus::Sent);
    // The SID is the one Twilio gave the pre-crash request.
    let sid = f
        .lock()
        .unwrap()
        .messages
        .iter()
        .find(|m| m["body"] == victim.body.as_str() && m["to"] == victim.to.as_str())
        .unwrap()["sid"]
        .clone();
    assert_eq!(o.provider_id.as_deref(), sid.as_str());
    assert!(store.counters().unwrap()["runtime.in_doubt_found"] >= 1);
    // And nothing at all was posted twice: Twilio accepted exactly as many requests as the
    // engine made messages (the week has messages with the same text to the same number, so
    // the count is what proves it, not distinct texts).
    let made: u64 = store
        .counters()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("sends."))
        .map(|(_, v)| v)
        .sum();
    let accepted = posts(&f).iter().filter(|r| r.status == 201).count() as u64;
    assert_eq!(accepted, made, "a message was posted twice (or never)");
}

#[test]
fn in_doubt_message_never_accepted_is_looked_up_then_sent_once() {
    let (f, victim, store, _dir) = crash_and_recover(false);
    assert_eq!(posts_of(&f, &victim), 1, "sent once, after the restart");
    let looked = f
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|r| r.method == "GET")
        .any(|r| {
            r.fields.contains(&("To".into(), victim.to.clone()))
                && r.fields.iter().any(|(k, _)| k == "DateSent>")
        });
    assert!(looked, "the restart asked Twilio before sending");
    assert_eq!(
        store.outbox(&victim.message_id).unwrap().unwrap().status,
        OutboxStatus::Sent
    );
    assert!(store.counters().unwrap()["runtime.in_doubt_not_found"] >= 1);
}
