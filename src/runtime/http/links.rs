//! `GET /l/{code}`: a tracked short link. Looks the code up in the store's link family (written
//! with the message's outbox entry), records aftercart's `message.clicked` event for the person
//! and message (attribution), and redirects (302) to the target.

use super::{error, App};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Distinguishes clicks within one process (each click is its own event).
static CLICKS: AtomicU64 = AtomicU64::new(0);

pub async fn redirect(State(app): State<Arc<App>>, Path(code): Path<String>) -> Response {
    // Codes are 10 hex digits (`engine::link_code`); anything else is not ours.
    if code.is_empty() || code.len() > 64 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return error(StatusCode::NOT_FOUND, format!("unknown link `{code}`"));
    }
    let store = app.store.clone();
    let c = code.clone();
    let link = match tokio::task::spawn_blocking(move || store.link(&c)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => return super::internal(format!("link lookup: {e}")),
        Err(e) => return super::internal(format!("link lookup: {e}")),
    };
    let Some(link) = link else {
        return error(StatusCode::NOT_FOUND, format!("unknown link `{code}`"));
    };
    let at = chrono::Utc::now();
    let line = json!({
        "source": "aftercart",
        "type": "message.clicked",
        "at": at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "id": format!(
            "click:{code}:{}:{}",
            at.timestamp_nanos_opt().unwrap_or_default(),
            CLICKS.fetch_add(1, Ordering::Relaxed)
        ),
        "data": {
            "person": link.person,
            "message_id": link.message_id,
            "code": code,
            "url": link.url,
        },
    })
    .to_string();
    let mut event = match crate::runtime::event_of_line(&line) {
        Ok((_, e)) => e,
        Err(reason) => return super::internal(reason),
    };
    event.person = Some(link.person.clone());
    if let Err(resp) = app.append(vec![event]).await {
        return resp;
    }
    (
        StatusCode::FOUND,
        [
            ("location", link.url.as_str()),
            ("cache-control", "no-store"),
        ],
    )
        .into_response()
}
