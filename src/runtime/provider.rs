//! SMS providers behind one trait. The message id is the idempotency key: dispatch is
//! at-least-once (a crash between the provider call and marking the message sent leaves it
//! "sending", in doubt), so before sending an in-doubt message again the runtime asks the
//! provider whether it already has it ([`Provider::find_sent`]); a provider that cannot be
//! asked must drop an id it has already taken (and then gets a batch's new messages before the
//! batch's commit). The embedded default appends JSON lines to a file and
//! de-duplicates by id; `stdout` prints; `twilio` calls Twilio's REST API (`super::twilio`).

use crate::engine::Message;
use serde_json::json;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderReceipt {
    /// The provider's own id for the message (Twilio's SID), if any.
    pub provider_id: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProviderError {
    pub message: String,
    /// Worth trying again later (network, rate limit) rather than failing the message.
    pub retryable: bool,
    /// The provider's error code (Twilio's `code`, e.g. `21610`), kept on the outbox entry.
    pub code: Option<String>,
    /// The request may have reached the provider (a timeout after sending it): the message
    /// stays in doubt and is looked up before it is sent again.
    pub in_doubt: bool,
    /// The provider says the recipient has opted out of this sender (Twilio 21610): the
    /// runtime records an opt-out for the person through the log.
    pub opted_out: bool,
}

impl ProviderError {
    /// A definite failure: do not try again.
    pub fn fatal(message: impl Into<String>) -> ProviderError {
        ProviderError {
            message: message.into(),
            ..ProviderError::default()
        }
    }
    /// A failure worth trying again later.
    pub fn retryable(message: impl Into<String>) -> ProviderError {
        ProviderError {
            message: message.into(),
            retryable: true,
            ..ProviderError::default()
        }
    }
}

/// What a provider knows about a message that may or may not have reached it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The provider has it: it was accepted (with the provider's id).
    Found(ProviderReceipt),
    /// The provider has no such message: sending it is safe.
    NotFound,
}

impl std::fmt::Display for ProviderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub trait Provider {
    /// Send one message. `msg.message_id` is the idempotency key: sending an id twice must
    /// deliver it once.
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError>;

    /// How to ask this provider whether an earlier `send` of a message reached it, if it can be
    /// asked. Only then does the runtime mark messages `sending` (one commit and flush per
    /// dispatch round) before calling `send`: the mark exists so that a restart asks the
    /// provider before resending. A provider that cannot be asked (the default: the file sink
    /// drops an id it already took) is sent an in-doubt message again either way. One method
    /// for both questions, so "can be asked" and "how" cannot disagree.
    fn find_sent(&self) -> Option<&dyn FindSent> {
        None
    }
}

/// Asking a provider about a message that may have reached it (see [`Provider::find_sent`]).
pub trait FindSent {
    /// Did an earlier `send` of this message reach the provider? Asked before an in-doubt
    /// message (marked sending, answer never recorded) is sent again.
    fn find(&self, msg: &Message) -> Result<Lookup, ProviderError>;
}

/// The JSON line the file sink writes for a message.
pub fn message_line(msg: &Message) -> serde_json::Value {
    json!({
        "message_id": msg.message_id,
        "to": msg.to,
        "body": msg.body,
        "flow": msg.flow,
        "step": msg.step,
        "sent_at": msg.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "person": msg.person,
        "segments": msg.segments,
        "encoding": msg.encoding,
        "variant": msg.variant,
        "local_time": msg.local_time,
    })
}

/// `file:PATH`: one JSON object per line, fsync'ed before `send` returns, each id once.
pub struct FileProvider {
    path: PathBuf,
    inner: Mutex<(File, HashSet<String>)>,
}

fn io(path: &Path, e: std::io::Error) -> ProviderError {
    ProviderError::retryable(format!("{}: {e}", path.display()))
}

impl FileProvider {
    /// Open (or create) the sink and read the ids it already holds. A last line cut by a crash
    /// (no newline) is dropped: its message was not marked sent, so it is sent again.
    pub fn open(path: &Path) -> Result<FileProvider, ProviderError> {
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        let mut text = String::new();
        f.read_to_string(&mut text).map_err(|e| io(path, e))?;
        let complete = match text.rfind('\n') {
            Some(i) => i + 1,
            None => 0,
        };
        if complete < text.len() {
            f.set_len(complete as u64).map_err(|e| io(path, e))?;
            f.sync_all().map_err(|e| io(path, e))?;
        }
        f.seek(SeekFrom::End(0)).map_err(|e| io(path, e))?;
        let mut ids = HashSet::new();
        for line in text[..complete].lines() {
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                if let Some(id) = v.get("message_id").and_then(|v| v.as_str()) {
                    ids.insert(id.to_string());
                }
            }
        }
        Ok(FileProvider {
            path: path.to_path_buf(),
            inner: Mutex::new((f, ids)),
        })
    }
}

impl Provider for FileProvider {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (f, ids) = &mut *g;
        if !ids.contains(&msg.message_id) {
            let mut line = message_line(msg).to_string();
            line.push('\n');
            // One write call per line: a kill lands before or after it, and `open` drops a
            // torn tail anyway.
            f.write_all(line.as_bytes())
                .map_err(|e| io(&self.path, e))?;
            f.sync_data().map_err(|e| io(&self.path, e))?;
            ids.insert(msg.message_id.clone());
        }
        Ok(ProviderReceipt {
            provider_id: Some(format!("file:{}", msg.message_id)),
        })
    }
}

/// `stdout`: prints each message (no de-duplication across restarts: a development aid).
pub struct StdoutProvider;

impl Provider for StdoutProvider {
    fn send(&self, msg: &Message) -> Result<ProviderReceipt, ProviderError> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", message_line(msg))
            .map_err(|e| ProviderError::fatal(format!("stdout: {e}")))?;
        Ok(ProviderReceipt { provider_id: None })
    }
}

/// Parse `--provider`: `file:PATH`, `stdout` or `twilio` (configured from the environment,
/// never from flags, so the auth token stays out of `ps` and shell history; docs/providers.md).
pub fn from_spec(spec: &str) -> Result<Box<dyn Provider>, String> {
    if spec == "stdout" {
        return Ok(Box::new(StdoutProvider));
    }
    if spec == "twilio" {
        let cfg = super::twilio::TwilioConfig::from_env()?;
        return Ok(Box::new(super::twilio::TwilioProvider::new(cfg)));
    }
    if let Some(path) = spec.strip_prefix("file:") {
        return FileProvider::open(Path::new(path))
            .map(|p| Box::new(p) as Box<dyn Provider>)
            .map_err(|e| e.message);
    }
    Err(format!(
        "unknown provider `{spec}`: use `file:PATH`, `stdout` or `twilio`"
    ))
}
