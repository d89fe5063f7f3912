//! `POST /webhooks/twilio/inbound` and `/webhooks/twilio/status`: verify `X-Twilio-Signature`
//! over the public URL and every form parameter, then append aftercart's own event (a reply,
//! a delivery status) durably, de-duplicated on Twilio's ids. Inbound answers are TwiML.

use super::shopify::body_refusal;
use super::{error, signature, App};
use crate::store::AppendResult;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The URL Twilio signed: the configured public base URL plus the path and query as received
/// (the query is part of what Twilio signs).
fn signed_url(app: &App, uri: &Uri) -> String {
    let pq = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{}{pq}", app.secrets.public_url.trim_end_matches('/'))
}

/// Verify the signature and decode the form. Err is the response to send (boxed: a response
/// is large and this is the rare path).
fn verified(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Vec<(String, String)>, Box<Response>> {
    let body = body.map_err(|r| Box::new(body_refusal(app, "twilio", r)))?;
    let forbidden = |msg: &str| {
        app.edge.refuse("twilio", "signature");
        Box::new(error(StatusCode::FORBIDDEN, msg))
    };
    let Some(sig) = headers
        .get("X-Twilio-Signature")
        .and_then(|v| v.to_str().ok())
    else {
        return Err(forbidden("missing X-Twilio-Signature header"));
    };
    // The signature covers the decoded parameters; a body that does not decode cannot be
    // verified, so it is refused as unauthenticated (nothing about it is trusted).
    let params = signature::parse_form(&body).map_err(|e| {
        app.edge.refuse("twilio", "signature");
        Box::new(error(
            StatusCode::FORBIDDEN,
            format!("cannot verify the signature: {e}"),
        ))
    })?;
    if !signature::twilio_valid(
        &app.secrets.twilio_auth_token,
        &signed_url(app, uri),
        &params,
        sig,
    ) {
        return Err(forbidden(
            "X-Twilio-Signature does not match (HMAC-SHA1 with the auth token over the public \
             URL and the sorted parameters; is AFTERCART_PUBLIC_URL the URL Twilio calls?)",
        ));
    }
    Ok(params)
}

/// A decoded form: (name, value) pairs in the order sent.
type Form = Vec<(String, String)>;

/// [`verified`], then the parameters every request of its kind must carry (non-empty).
fn verified_with<const N: usize>(
    app: &App,
    uri: &Uri,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    names: [&str; N],
) -> Result<(Form, [String; N]), Box<Response>> {
    let params = verified(app, uri, headers, body)?;
    let mut values: [String; N] = std::array::from_fn(|_| String::new());
    for (v, name) in values.iter_mut().zip(names) {
        *v = require(app, &params, name)?.to_string();
    }
    Ok((params, values))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn require<'a>(
    app: &App,
    params: &'a [(String, String)],
    name: &str,
) -> Result<&'a str, Box<Response>> {
    param(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            app.edge.refuse("twilio", "invalid");
            Box::new(error(
                StatusCode::BAD_REQUEST,
                format!("the form lacks `{name}`"),
            ))
        })
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// XML text escaping for TwiML.
fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

fn twiml(body: String) -> Response {
    (
        StatusCode::OK,
        [("content-type", "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// The TwiML answer to an inbound message: empty, or the shop's help text for HELP/INFO.
pub fn twiml_for(body: &str, help_reply: &str) -> String {
    // CTIA Messaging Principles and Best Practices (2023) §5: a HELP (or INFO) message must get
    // the program's help information in reply. The same keyword table as the engine's.
    if crate::engine::classify_keyword(body, false) == Some(crate::engine::Keyword::Help) {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
            xml_escape(help_reply)
        )
    } else {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_string()
    }
}

/// An inbound SMS becomes aftercart's `sms.replied` event. STOP/START are not handled here:
/// the engine applies them when it processes the event (opt-out ends marketing instances and
/// records the revocation: TCPA, 47 CFR 64.1200(a)(10); CTIA opt-out keywords), so the
/// simulator, ingest and the server share one implementation.
pub async fn inbound(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (params, [sid, from]) =
        match verified_with(&app, &uri, &headers, body, ["MessageSid", "From"]) {
            Ok(v) => v,
            Err(r) => return *r,
        };
    let (sid, from) = (sid.as_str(), from.as_str());
    let text = param(&params, "Body").unwrap_or("");
    let line = json!({
        "source": "aftercart",
        "type": "sms.replied",
        "at": now(),
        "id": format!("twilio:sms:{sid}"),
        "data": {
            "from": from,
            "body": text,
            "to": param(&params, "To"),
            "message_sid": sid,
        },
    })
    .to_string();
    let event = match crate::runtime::event_of_line(&line) {
        Ok((_, e)) => e,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    match app.append(vec![event]).await {
        // A re-delivery already got its answer: do not send the help text twice.
        Ok(r) if matches!(r.first(), Some(AppendResult::Duplicate(_))) => twiml(twiml_for("", "")),
        Ok(_) => twiml(twiml_for(text, &app.help_reply)),
        Err(resp) => resp,
    }
}

/// A status callback becomes aftercart's delivery event: `message.delivered` (delivered,
/// read), `message.failed` (failed, undelivered) or `message.status` (queued, sent, ...). The
/// aftercart message id comes from the callback URL's `message_id` query parameter (signed by
/// Twilio as part of the URL; the provider sets it in `StatusCallback`); the person is the
/// outbox entry's. De-duplicated on (MessageSid, MessageStatus).
pub async fn status(
    State(app): State<Arc<App>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let (params, [sid, status]) =
        match verified_with(&app, &uri, &headers, body, ["MessageSid", "MessageStatus"]) {
            Ok(v) => v,
            Err(r) => return *r,
        };
    let (sid, status) = (sid.as_str(), status.as_str());
    let message_id = uri.query().and_then(|q| {
        signature::parse_form(q.as_bytes())
            .ok()?
            .into_iter()
            .find(|(k, _)| k == "message_id")
            .map(|(_, v)| v)
    });
    let person = match &message_id {
        Some(m) => {
            let (store, m) = (app.store.clone(), m.clone());
            match tokio::task::spawn_blocking(move || store.outbox(&m)).await {
                Ok(Ok(o)) => o.map(|o| o.person),
                Ok(Err(e)) => return super::internal(format!("outbox lookup: {e}")),
                Err(e) => return super::internal(format!("outbox lookup: {e}")),
            }
        }
        None => None,
    };
    let kind = match status {
        "delivered" | "read" => "message.delivered",
        "failed" | "undelivered" => "message.failed",
        _ => "message.status",
    };
    let line = json!({
        "source": "aftercart",
        "type": kind,
        "at": now(),
        "id": format!("twilio:status:{sid}:{status}"),
        "data": {
            "message_id": message_id,
            "person": person,
            "status": status,
            "error_code": param(&params, "ErrorCode").filter(|c| !c.is_empty()),
            "message_sid": sid,
        },
    })
    .to_string();
    let mut event = match crate::runtime::event_of_line(&line) {
        Ok((_, e)) => e,
        Err(reason) => return error(StatusCode::BAD_REQUEST, reason),
    };
    // Known person: sealed under their key from the start (erasure finds it at once).
    event.person = person;
    match app.append(vec![event]).await {
        Ok(r) => match r.first() {
            Some(AppendResult::Duplicate(seq)) => {
                (StatusCode::OK, format!("duplicate of event {seq}\n")).into_response()
            }
            _ => (StatusCode::OK, "recorded\n").into_response(),
        },
        Err(resp) => resp,
    }
}
