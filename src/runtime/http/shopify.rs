//! `POST /webhooks/shopify`: verify the HMAC on the raw body, then turn the webhook into the
//! same log line `aftercart ingest` takes (topic, headers, body, receive time), check that the
//! topic's events can be built from the body, and append it durably before answering 200.
//! Shopify's mandatory privacy topics go to `privacy` instead of the log.

use super::{error, privacy, signature, App};
use crate::store::AppendResult;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use std::sync::Arc;

/// The headers kept in the log line (the envelope reads the event id and trigger time from
/// them; the rest is for audit). Everything else (and the HMAC) is dropped.
const KEPT_HEADERS: &[&str] = &[
    "X-Shopify-Topic",
    "X-Shopify-Event-Id",
    "X-Shopify-Webhook-Id",
    "X-Shopify-Shop-Domain",
    "X-Shopify-API-Version",
    "X-Shopify-Triggered-At",
];

/// Shopify's mandatory compliance topics
/// (<https://shopify.dev/docs/apps/build/compliance/privacy-law-compliance>).
pub const PRIVACY_TOPICS: &[&str] = &["customers/data_request", "customers/redact", "shop/redact"];

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// A body the size limit refused: 413; anything else unreadable: 400.
pub(crate) fn body_refusal(app: &App, source: &'static str, r: BytesRejection) -> Response {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        app.edge.refuse(source, "too_large");
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body too large: {}", r.body_text()),
        )
    } else {
        app.edge.refuse(source, "unreadable");
        error(
            StatusCode::BAD_REQUEST,
            format!("cannot read the request body: {}", r.body_text()),
        )
    }
}

pub async fn handle(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => return body_refusal(&app, "shopify", r),
    };
    // 1. Authenticity first, on the raw bytes (Shopify: verify before parsing); nothing about
    //    an unauthenticated request is parsed or stored.
    let Some(hmac) = header(&headers, "X-Shopify-Hmac-Sha256") else {
        app.edge.refuse("shopify", "signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "missing X-Shopify-Hmac-Sha256 header",
        );
    };
    if !signature::shopify_valid(&app.secrets.shopify_secret, &body, hmac) {
        app.edge.refuse("shopify", "signature");
        return error(
            StatusCode::UNAUTHORIZED,
            "X-Shopify-Hmac-Sha256 does not match the body (HMAC-SHA256 with the app secret)",
        );
    }
    let bad = |msg: String| {
        app.edge.refuse("shopify", "invalid");
        error(StatusCode::BAD_REQUEST, msg)
    };
    let Some(topic) = header(&headers, "X-Shopify-Topic").filter(|t| !t.is_empty()) else {
        return bad("missing X-Shopify-Topic header".into());
    };
    let topic = topic.to_string();
    let parsed: Json = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return bad(format!("body is not valid JSON: {e}")),
    };
    if !parsed.is_object() {
        return bad("body must be a JSON object".into());
    }
    if PRIVACY_TOPICS.contains(&topic.as_str()) {
        return privacy_webhook(&app, &topic, &headers, parsed).await;
    }
    // 2. The same envelope an ingested line is (`host::parse_line` via `event_of_line`).
    let mut kept = serde_json::Map::new();
    for h in KEPT_HEADERS {
        if let Some(v) = header(&headers, h) {
            kept.insert(h.to_string(), Json::String(v.to_string()));
        }
    }
    let line = json!({
        "source": "shopify",
        "topic": topic,
        "received_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "headers": kept,
        "body": parsed,
    })
    .to_string();
    let (env, event) = match crate::runtime::event_of_line(&line) {
        Ok(x) => x,
        Err(reason) => return bad(reason),
    };
    // 3. The body must have what the topic's events need (required fields, valid values), or
    //    the runtime would refuse it later where nobody sees why. Unknown topics build no
    //    events: they are stored as they are (a custom event for the log and export).
    if let crate::host::Payload::Shopify { body, .. } = &env.payload {
        for ev in app.schemas.events_for_topic(&topic, body) {
            if let Err(e) = app.schemas.normalize(&ev.name, body) {
                return bad(format!("{topic}: {e}"));
            }
        }
    }
    // 4. Durable, then 200. A re-delivery (same X-Shopify-Event-Id) is a 200 too: Shopify
    //    retries until it gets one.
    match app.append(vec![event]).await {
        Ok(r) => match r.first() {
            Some(AppendResult::Accepted(seq)) => {
                (StatusCode::OK, format!("accepted as event {seq}\n")).into_response()
            }
            Some(AppendResult::Duplicate(seq)) => (
                StatusCode::OK,
                format!("duplicate of event {seq}: not stored again\n"),
            )
                .into_response(),
            None => super::internal("the store returned no result".into()),
        },
        Err(resp) => resp,
    }
}

async fn privacy_webhook(app: &App, topic: &str, headers: &HeaderMap, body: Json) -> Response {
    let req = match privacy::Request::from_webhook(topic, headers, &body) {
        Ok(r) => r,
        Err(msg) => {
            app.edge.refuse("shopify", "invalid");
            return error(StatusCode::BAD_REQUEST, msg);
        }
    };
    match app.privacy(req).await {
        Ok(v) => (
            StatusCode::OK,
            [("content-type", "application/json")],
            format!("{v}\n"),
        )
            .into_response(),
        Err(e) => super::internal(format!("{topic} failed: {e}")),
    }
}
