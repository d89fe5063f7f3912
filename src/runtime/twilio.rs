//! The Twilio provider: sends each outbox message with Twilio's Programmable Messaging REST API
//! (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP Basic auth),
//! retries what Twilio says is retryable, paces requests per sender with a token bucket, and
//! answers the runtime's in-doubt question by listing the recipient's messages. Configuration
//! comes from the environment only (docs/providers.md).

use super::provider::{FindSent, Lookup, Provider, ProviderError, ProviderReceipt};
use crate::engine::Message;
use base64::Engine as _;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Twilio's list price for one outbound SMS segment to a US number (USD), used by the report
/// as the default cost per segment. Source: <https://www.twilio.com/en-us/sms/pricing/us>
/// ("Send and receive SMS: $0.0083 per segment", retrieved 2026; carrier fees are extra).
pub const US_PRICE_PER_SEGMENT: &str = "0.0083";

/// Who the message is sent from: a phone number (`From`) or a Messaging Service
/// (`MessagingServiceSid`, Twilio picks the number from the service's pool).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sender {
    From(String),
    MessagingService(String),
}

impl Sender {
    fn key(&self) -> &str {
        match self {
            Sender::From(s) | Sender::MessagingService(s) => s,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: String,
    pub sender: Sender,
    /// `https://api.twilio.com` unless overridden (tests point it at a fake).
    pub api_base: String,
    /// `$AFTERCART_PUBLIC_URL/webhooks/twilio/status`, when a public URL is configured.
    pub status_callback: Option<String>,
    /// Requests per second per sender. Twilio queues what a sender cannot send at once, but
    /// a US long code sends about 1 segment/s; going faster only grows Twilio's queue (and
    /// its 10-hour queue limit, error 30001), so the default is 1.
    pub rate: f64,
    /// HTTP attempts per `send` (the first included).
    pub max_attempts: u32,
    /// First backoff; doubled per retry, with jitter.
    pub backoff_base: Duration,
    /// No single wait is longer (Retry-After included).
    pub backoff_max: Duration,
    /// All waits of one `send` together stay under this; then the message goes back to the
    /// outbox as retryable.
    pub backoff_total: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Pages of the message list read by `lookup` at most.
    pub lookup_pages: usize,
}

impl TwilioConfig {
    /// A configuration with the defaults for everything but the credentials and the sender.
    pub fn new(account_sid: &str, auth_token: &str, sender: Sender) -> TwilioConfig {
        TwilioConfig {
            account_sid: account_sid.to_string(),
            auth_token: auth_token.to_string(),
            sender,
            api_base: "https://api.twilio.com".to_string(),
            status_callback: None,
            rate: 1.0,
            max_attempts: 5,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            backoff_total: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            lookup_pages: 20,
        }
    }

    /// Read `AFTERCART_TWILIO_*` and `AFTERCART_PUBLIC_URL` from the environment.
    pub fn from_env() -> Result<TwilioConfig, String> {
        TwilioConfig::from_vars(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
    }

    /// As [`TwilioConfig::from_env`], with the variables from `get` (tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<TwilioConfig, String> {
        let need = |k: &str| {
            get(k).ok_or_else(|| format!("--provider twilio needs the environment variable {k}"))
        };
        let sid = need("AFTERCART_TWILIO_ACCOUNT_SID")?;
        if !sid.starts_with("AC") {
            return Err(format!(
                "AFTERCART_TWILIO_ACCOUNT_SID: `{sid}` is not an Account SID (they start with `AC`)"
            ));
        }
        let token = need("AFTERCART_TWILIO_AUTH_TOKEN")?;
        let sender = match (
            get("AFTERCART_TWILIO_FROM"),
            get("AFTERCART_TWILIO_MESSAGING_SERVICE_SID"),
        ) {
            (Some(_), Some(_)) => {
                return Err("set only one of AFTERCART_TWILIO_FROM and \
                            AFTERCART_TWILIO_MESSAGING_SERVICE_SID"
                    .into())
            }
            (Some(f), None) => Sender::From(f),
            (None, Some(m)) if m.starts_with("MG") => Sender::MessagingService(m),
            (None, Some(m)) => {
                return Err(format!(
                    "AFTERCART_TWILIO_MESSAGING_SERVICE_SID: `{m}` is not a Messaging Service SID \
                     (they start with `MG`)"
                ))
            }
            (None, None) => {
                return Err(
                    "--provider twilio needs AFTERCART_TWILIO_FROM (a number) or \
                            AFTERCART_TWILIO_MESSAGING_SERVICE_SID"
                        .into(),
                )
            }
        };
        let mut cfg = TwilioConfig::new(&sid, &token, sender);
        if let Some(b) = get("AFTERCART_TWILIO_API_BASE") {
            if !(b.starts_with("https://") || b.starts_with("http://")) {
                return Err(format!(
                    "AFTERCART_TWILIO_API_BASE: `{b}` is not an http(s) URL"
                ));
            }
            cfg.api_base = b.trim_end_matches('/').to_string();
        }
        if let Some(r) = get("AFTERCART_TWILIO_RATE") {
            cfg.rate = r
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| {
                    format!(
                        "AFTERCART_TWILIO_RATE: `{r}` is not a positive number of messages per \
                         second"
                    )
                })?;
        }
        if let Some(u) = get("AFTERCART_PUBLIC_URL") {
            cfg.status_callback = Some(format!(
                "{}/webhooks/twilio/status",
                u.trim_end_matches('/')
            ));
        }
        Ok(cfg)
    }
}

/// Per-sender pacing: one request every `1/rate` seconds, no burst (a sender that was idle
/// does not get to send a burst that Twilio would only queue).
struct Buckets {
    next: HashMap<String, Instant>,
}

impl Buckets {
    /// Reserve the next slot for `sender` and return how long to wait for it.
    fn reserve(&mut self, sender: &str, rate: f64, now: Instant) -> Duration {
        let interval = Duration::from_secs_f64(1.0 / rate);
        let slot = self.next.get(sender).copied().unwrap_or(now).max(now);
        self.next.insert(sender.to_string(), slot + interval);
        slot - now
    }
}

pub struct TwilioProvider {
    cfg: TwilioConfig,
    agent: ureq::Agent,
    buckets: Mutex<Buckets>,
    /// Message ids Twilio accepted in this process, with their SID: a second `send` of one
    /// answers from here and never reaches Twilio (across restarts the outbox status and
    /// `lookup` do this job).
    accepted: Mutex<HashMap<String, String>>,
    rng: Mutex<u64>,
}

/// What one HTTP exchange gave.
enum Answer {
    Ok(serde_json::Value),
    /// Retry after a wait (429, 5xx, network error before the request was sent).
    Retry {
        message: String,
        retry_after: Option<Duration>,
        in_doubt: bool,
    },
    Fail(ProviderError),
}

impl TwilioProvider {
    pub fn new(cfg: TwilioConfig) -> TwilioProvider {
        let agent = ureq::AgentBuilder::new().timeout(cfg.timeout).build();
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        TwilioProvider {
            cfg,
            agent,
            buckets: Mutex::new(Buckets {
                next: HashMap::new(),
            }),
            accepted: Mutex::new(HashMap::new()),
            rng: Mutex::new(u64::from_le_bytes(seed) | 1),
        }
    }

    pub fn config(&self) -> &TwilioConfig {
        &self.cfg
    }

    fn messages_url(&self) -> String {
        format!(
            "{}/2010-04-01/Accounts/{}/Messages.json",
            self.cfg.api_base, self.cfg.account_sid
        )
    }

    fn auth(&self) -> String {
        let raw = format!("{}:{}", self.cfg.account_sid, self.cfg.auth_token);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }

    /// Wait for this sender's next slot: every request (retries and lookups too) counts.
    fn pace(&self) {
        let wait = self
            .buckets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .reserve(self.cfg.sender.key(), self.cfg.rate, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Exponential backoff with "equal jitter": half the doubled delay fixed, half random, so
    /// many dispatchers retrying at once spread out.
    fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .cfg
            .backoff_base
            .saturating_mul(1u32 << retry.min(16))
            .min(self.cfg.backoff_max);
        let mut r = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        // xorshift64: jitter needs spread, not cryptographic quality.
        *r ^= *r << 13;
        *r ^= *r >> 7;
        *r ^= *r << 17;
        let frac = (*r % 1000) as f64 / 1000.0;
        exp / 2 + exp.mul_f64(frac / 2.0)
    }

    /// Classify a response or transport error (Twilio: 429 and 5xx are retryable, other 4xx
    /// are not; the JSON error body carries `code` and `message`).
    fn answer(result: Result<ureq::Response, ureq::Error>) -> Answer {
        match result {
            Ok(resp) => match resp.into_string() {
                Ok(text) => match serde_json::from_str(&text) {
                    Ok(v) => Answer::Ok(v),
                    Err(e) => Answer::Fail(ProviderError {
                        message: format!("twilio: the answer is not JSON: {e}"),
                        // Twilio answered 2xx: it took the message even if we cannot read it.
                        in_doubt: true,
                        retryable: true,
                        ..ProviderError::default()
                    }),
                },
                Err(e) => Answer::Retry {
                    message: format!("twilio: reading the answer: {e}"),
                    retry_after: None,
                    in_doubt: true,
                },
            },
            Err(ureq::Error::Status(status, resp)) => {
                let retry_after = resp
                    .header("Retry-After")
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .map(Duration::from_secs);
                let body: serde_json::Value = resp
                    .into_string()
                    .ok()
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default();
                let code = match body.get("code") {
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    _ => None,
                };
                let what = body.get("message").and_then(|m| m.as_str()).unwrap_or("");
                let message = match &code {
                    Some(c) => format!("twilio: HTTP {status}, error {c}: {what}"),
                    None => format!("twilio: HTTP {status} {what}"),
                };
                if status == 429 || status >= 500 {
                    Answer::Retry {
                        message,
                        retry_after,
                        in_doubt: false,
                    }
                } else {
                    // Twilio error 21610: "Attempt to send to unsubscribed recipient" (the
                    // recipient replied STOP to this sender). Not retryable; an opt-out.
                    let opted_out = code.as_deref() == Some("21610");
                    Answer::Fail(ProviderError {
                        message,
                        retryable: false,
                        code,
                        in_doubt: false,
                        opted_out,
                    })
                }
            }
            Err(ureq::Error::Transport(t)) => {
                // A connection that failed before the request left cannot have reached Twilio;
                // anything later (a read timeout) might have.
                let in_doubt = !matches!(
                    t.kind(),
                    ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed
                );
                Answer::Retry {
                    message: format!("twilio: {t}"),
                    retry_after: None,
                    in_doubt,
                }
            }
        }
    }

    /// Run one request with retries on retryable answers, pacing every attempt.
    fn with_retries(
        &self,
        mut request: impl FnMut() -> Answer,
    ) -> Result<serde_json::Value, ProviderError> {
        let mut waited = Duration::ZERO;
        let mut in_doubt = false;
        let mut attempt = 0;
        loop {
            self.pace();
            attempt += 1;
            match request() {
                Answer::Ok(v) => return Ok(v),
                Answer::Fail(mut e) => {
                    e.in_doubt |= in_doubt;
                    return Err(e);
                }
                Answer::Retry {
                    message,
                    retry_after,
                    in_doubt: d,
                } => {
                    in_doubt |= d;
                    // Honour Retry-After when Twilio gives one (never wait less than it says).
                    let wait = retry_after
                        .unwrap_or_default()
                        .max(self.backoff(attempt - 1))
                        .min(self.cfg.backoff_max.max(retry_after.unwrap_or_default()));
                    if attempt >= self.cfg.max_attempts || waited + wait > self.cfg.backoff_total {
                        return Err(ProviderError {
                            message: format!("{message} (gave up after {attempt} attempts)"),
                            retryable: true,
                            code: None,
                            in_doubt,
                            opted_out: false,
                        });
                    }
                    waited += wait;
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// The form Twilio expects for one message.
    pub fn form(&self, msg: &Message) -> Vec<(&'static str, String)> {
        let mut form = vec![("To", msg.to.clone())];
        match &self.cfg.sender {
            Sender::From(f) => form.push(("From", f.clone())),
            Sender::MessagingService(m) => form.push(("MessagingServiceSid", m.clone())),
        }
        form.push(("Body", msg.body.clone()));
        if let Some(cb) = &self.cfg.status_callback {
            // Twilio's callback names only its own MessageSid; the server routes the status to
            // aftercart's message by this query parameter (Twilio signs the full URL with it).
            // Message ids are hashes (URL-safe, no personal data).
            form.push((
                "StatusCallback",
                format!("{cb}?message_id={}", msg.message_id),
            ));
        }
        form
    }

    /// Is this listed message ours: same recipient, body and sender?
    fn matches(&self, m: &serde_json::Value, msg: &Message) -> bool {
        let s = |k: &str| m.get(k).and_then(|v| v.as_str());
        let sender_ok = match &self.cfg.sender {
            Sender::From(f) => s("from") == Some(f.as_str()),
            Sender::MessagingService(sid) => s("messaging_service_sid") == Some(sid.as_str()),
        };
        // A message created well before the engine made this one is an earlier message with
        // the same text (a repeated reminder), not this one. Twilio dates are RFC 2822.
        let recent = match s("date_created").map(chrono::DateTime::parse_from_rfc2822) {
            Some(Ok(t)) => t >= msg.at - chrono::Duration::minutes(5),
            _ => true,
        };
        sender_ok
            && recent
            && s("to") == Some(msg.to.as_str())
            && s("body") == Some(msg.body.as_str())
    }
}

impl Provider for TwilioProvider {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        if let Some(sid) = self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&msg.message_id)
        {
            return Ok(ProviderReceipt {
                provider_id: Some(sid.clone()),
            });
        }
        // Twilio refuses bodies over 1600 characters (error 21617): fail without a request.
        if msg.body.chars().count() > 1600 {
            return Err(ProviderError {
                code: Some("21617".into()),
                ..ProviderError::fatal(format!(
                    "twilio: the body is {} characters; Twilio takes at most 1600",
                    msg.body.chars().count()
                ))
            });
        }
        let url = self.messages_url();
        let auth = self.auth();
        let form = self.form(msg);
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let v = self.with_retries(|| {
            Self::answer(
                self.agent
                    .post(&url)
                    .set("Authorization", &auth)
                    .send_form(&pairs),
            )
        })?;
        let sid = v
            .get("sid")
            .and_then(|s| s.as_str())
            .map(String::from)
            .ok_or_else(|| ProviderError {
                message: "twilio: the answer has no `sid`".into(),
                retryable: true,
                in_doubt: true,
                ..ProviderError::default()
            })?;
        self.accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(msg.message_id.clone(), sid.clone());
        Ok(ProviderReceipt {
            provider_id: Some(sid),
        })
    }

    fn find_sent(&self) -> Option<&dyn FindSent> {
        Some(self)
    }
}

impl FindSent for TwilioProvider {
    /// Twilio has no idempotency key, so an in-doubt message is looked for in the account's
    /// message list: `GET Messages.json?To=...&DateSent>=YYYY-MM-DD` (the day before the
    /// engine's send time, so a send just after midnight UTC is covered), matched on sender
    /// and body, following `next_page_uri` for at most `lookup_pages` pages.
    fn find(&self, msg: &Message) -> Result<Lookup, ProviderError> {
        if let Some(sid) = self
            .accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&msg.message_id)
        {
            return Ok(Lookup::Found(ProviderReceipt {
                provider_id: Some(sid.clone()),
            }));
        }
        let auth = self.auth();
        let since = (msg.at - chrono::Duration::days(1))
            .format("%Y-%m-%d")
            .to_string();
        let mut next: Option<String> = None;
        for page in 0..self.cfg.lookup_pages {
            let v = self.with_retries(|| {
                let req = match &next {
                    Some(uri) => self.agent.get(&format!("{}{uri}", self.cfg.api_base)),
                    None => self
                        .agent
                        .get(&self.messages_url())
                        .query("To", &msg.to)
                        .query("DateSent>", &since)
                        .query("PageSize", "100"),
                };
                Self::answer(req.set("Authorization", &auth).call())
            })?;
            let found = v
                .get("messages")
                .and_then(|m| m.as_array())
                .into_iter()
                .flatten()
                .find(|m| self.matches(m, msg))
                .and_then(|m| m.get("sid").and_then(|s| s.as_str()).map(String::from));
            if let Some(sid) = found {
                return Ok(Lookup::Found(ProviderReceipt {
                    provider_id: Some(sid),
                }));
            }
            match v.get("next_page_uri").and_then(|u| u.as_str()) {
                Some(u) if !u.is_empty() => next = Some(u.to_string()),
                _ => return Ok(Lookup::NotFound),
            }
            if page + 1 == self.cfg.lookup_pages {
                break;
            }
        }
        // Too many messages to this number to read them all: better to leave it in doubt
        // than to send twice.
        Err(ProviderError::retryable(format!(
            "twilio: lookup of message {} read {} pages without an answer",
            msg.message_id, self.cfg.lookup_pages
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn config_from_env_checks_what_it_reads() {
        let ok = TwilioConfig::from_vars(vars(&[
            ("AFTERCART_TWILIO_ACCOUNT_SID", "AC123"),
            ("AFTERCART_TWILIO_AUTH_TOKEN", "tok"),
            ("AFTERCART_TWILIO_MESSAGING_SERVICE_SID", "MG9"),
            ("AFTERCART_TWILIO_RATE", "3"),
            ("AFTERCART_PUBLIC_URL", "https://shop.example/"),
        ]))
        .unwrap();
        assert_eq!(ok.sender, Sender::MessagingService("MG9".into()));
        assert_eq!(ok.rate, 3.0);
        assert_eq!(
            ok.status_callback.as_deref(),
            Some("https://shop.example/webhooks/twilio/status")
        );
        assert_eq!(ok.api_base, "https://api.twilio.com");
        let err = TwilioConfig::from_vars(vars(&[
            ("AFTERCART_TWILIO_ACCOUNT_SID", "AC123"),
            ("AFTERCART_TWILIO_AUTH_TOKEN", "tok"),
        ]))
        .unwrap_err();
        assert!(err.contains("AFTERCART_TWILIO_FROM"), "{err}");
        let err = TwilioConfig::from_vars(vars(&[
            ("AFTERCART_TWILIO_ACCOUNT_SID", "AC123"),
            ("AFTERCART_TWILIO_AUTH_TOKEN", "tok"),
            ("AFTERCART_TWILIO_FROM", "+15550001111"),
            ("AFTERCART_TWILIO_RATE", "fast"),
        ]))
        .unwrap_err();
        assert!(err.contains("AFTERCART_TWILIO_RATE: `fast`"), "{err}");
        let err =
            TwilioConfig::from_vars(vars(&[("AFTERCART_TWILIO_ACCOUNT_SID", "XX1")])).unwrap_err();
        assert!(err.contains("start with `AC`"), "{err}");
    }

    #[test]
    fn bucket_spaces_requests_per_sender() {
        let mut b = Buckets {
            next: HashMap::new(),
        };
        let t0 = Instant::now();
        assert_eq!(b.reserve("a", 4.0, t0), Duration::ZERO);
        assert_eq!(b.reserve("a", 4.0, t0), Duration::from_millis(250));
        assert_eq!(b.reserve("a", 4.0, t0), Duration::from_millis(500));
        // Another sender has its own bucket.
        assert_eq!(b.reserve("b", 4.0, t0), Duration::ZERO);
        // After idling, no burst is saved up.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.reserve("a", 4.0, later), Duration::ZERO);
        assert_eq!(b.reserve("a", 4.0, later), Duration::from_millis(250));
    }

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let mut cfg = TwilioConfig::new("AC1", "t", Sender::From("+1".into()));
        cfg.backoff_base = Duration::from_millis(100);
        cfg.backoff_max = Duration::from_millis(1000);
        let p = TwilioProvider::new(cfg);
        for retry in 0..8 {
            let exp = Duration::from_millis(100 * (1 << retry)).min(Duration::from_millis(1000));
            let d = p.backoff(retry);
            assert!(d >= exp / 2 && d <= exp, "retry {retry}: {d:?} vs {exp:?}");
        }
    }
}
