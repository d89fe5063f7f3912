//! The webhook server (`aftercart serve`): Shopify and Twilio webhooks, tracked-link redirects,
//! Prometheus metrics and a health check over HTTP (axum on tokio), with the durable runtime loop
//! (wall clock) in a background thread over the same store. Handlers only append to the log —
//! verified, de-duplicated, durable (append + flush) before they answer 200 — and the runtime
//! thread processes it, so a webhook is exactly an `aftercart ingest` line. Privacy requests go
//! to the runtime thread, which owns the caches that erasure must also clear. Routes, status
//! codes and secrets: docs/server.md.

mod group;
mod links;
mod metrics;
mod privacy;
mod shopify;
pub mod signature;
mod twilio;

use super::{Clock, Options, Runtime};
use crate::ir::Program;
use crate::schema::Schemas;
use crate::store::{AppendResult, NewEvent, Store};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

/// Request bodies larger than this are refused with 413 (Shopify's largest order payloads are
/// a few hundred KiB; Twilio's forms are small).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The secrets the server verifies requests with. From the environment or the `[server]` table
/// of `aftercart.toml` (see [`Secrets::from_env_and_project`]), never from flags (flags show up
/// in `ps` and shell history).
#[derive(Clone, Default)]
pub struct Secrets {
    /// The Shopify app's client secret (HMAC-SHA256 key of `X-Shopify-Hmac-Sha256`).
    pub shopify_secret: String,
    /// The Twilio auth token (HMAC-SHA1 key of `X-Twilio-Signature`).
    pub twilio_auth_token: String,
    /// The base URL Twilio calls (`https://hooks.example.com`): Twilio signs the full URL, so
    /// the server must know it as the outside world sees it (a proxy changes host and scheme).
    pub public_url: String,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret (logs, panics).
        f.debug_struct("Secrets")
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

pub const ENV_SHOPIFY_SECRET: &str = "AFTERCART_SHOPIFY_SECRET";
pub const ENV_TWILIO_AUTH_TOKEN: &str = "AFTERCART_TWILIO_AUTH_TOKEN";
pub const ENV_PUBLIC_URL: &str = "AFTERCART_PUBLIC_URL";

impl Secrets {
    /// Each secret from its environment variable, else from the project's `[server]` table.
    /// A missing one is an error naming both places.
    pub fn from_env_and_project(
        project: &crate::project::ServerSettings,
    ) -> Result<Secrets, String> {
        let pick = |env: &str, file: &Option<String>, key: &str| -> Result<String, String> {
            match std::env::var(env).ok().filter(|v| !v.is_empty()) {
                Some(v) => Ok(v),
                None => file.clone().filter(|v| !v.is_empty()).ok_or(format!(
                    "no {key}: set the environment variable {env} or `{key}` in the [server] \
                     table of {}",
                    crate::project::FILE_NAME
                )),
            }
        };
        let s = Secrets {
            shopify_secret: pick(
                ENV_SHOPIFY_SECRET,
                &project.shopify_secret,
                "shopify_secret",
            )?,
            twilio_auth_token: pick(
                ENV_TWILIO_AUTH_TOKEN,
                &project.twilio_auth_token,
                "twilio_auth_token",
            )?,
            public_url: pick(ENV_PUBLIC_URL, &project.public_url, "public_url")?,
        };
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), String> {
        if !(self.public_url.starts_with("https://") || self.public_url.starts_with("http://")) {
            return Err(format!(
                "public_url `{}` is not an http(s) URL (it is the base URL Twilio signs, e.g. \
                 https://hooks.example.com)",
                self.public_url
            ));
        }
        Ok(())
    }
}

/// How to run the server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    /// The data directory (the store's); privacy exports go to `DATA/exports/`.
    pub data_dir: PathBuf,
    pub secrets: Secrets,
    /// The provider spec, as `aftercart run --provider` takes it.
    pub provider: String,
    pub max_body: usize,
    /// How long the runtime loop sleeps when idle (a webhook wakes it at once).
    pub idle_sleep: std::time::Duration,
}

impl ServeConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf, secrets: Secrets) -> ServeConfig {
        ServeConfig {
            listen,
            data_dir,
            secrets,
            provider: "stdout".into(),
            max_body: DEFAULT_MAX_BODY,
            idle_sleep: std::time::Duration::from_millis(200),
        }
    }
}

/// What handlers ask of the runtime thread.
pub(crate) enum Control {
    /// New events are in the log: process them now rather than after the idle sleep.
    Wake,
    /// A privacy request; the answer goes back on the channel.
    Privacy(
        privacy::Request,
        tokio::sync::oneshot::Sender<Result<serde_json::Value, String>>,
    ),
}

/// State shared by the handlers.
pub(crate) struct App {
    pub store: Arc<dyn Store>,
    pub schemas: Schemas,
    /// The shop's HELP answer (CTIA: a HELP keyword gets the program's help text).
    pub help_reply: String,
    pub secrets: Secrets,
    pub control: Mutex<mpsc::Sender<Control>>,
    /// Appends and flushes concurrent requests' events together (`group.rs`).
    pub commits: group::GroupCommit,
    pub edge: metrics::Edge,
    /// The runtime loop's fatal error, if it stopped on one (health turns 503).
    pub runtime_error: Mutex<Option<String>>,
}

impl App {
    pub fn wake(&self) {
        let _ = self.control.lock().unwrap().send(Control::Wake);
    }

    /// Append events durably (append + flush), grouped with other requests' events on the
    /// commit thread (a flush is an fsync: never on the async workers).
    pub async fn append(&self, events: Vec<NewEvent>) -> Result<Vec<AppendResult>, Response> {
        let out = self
            .commits
            .append(events)
            .await
            .map_err(|e| internal(format!("the event was not stored: {e}")))?;
        self.wake();
        Ok(out)
    }

    pub async fn privacy(&self, req: privacy::Request) -> Result<serde_json::Value, String> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.control
            .lock()
            .unwrap()
            .send(Control::Privacy(req, tx))
            .map_err(|_| "the runtime loop is not running".to_string())?;
        rx.await
            .map_err(|_| "the runtime loop stopped before answering".to_string())?
    }
}

/// A plain-text error answer: what is wrong and where.
pub(crate) fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    m.push('\n');
    (status, [("content-type", "text/plain; charset=utf-8")], m).into_response()
}

/// 500: the store failed; nothing was acknowledged, so the sender retries.
pub(crate) fn internal(msg: String) -> Response {
    error(StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// A running server: its address, and `shutdown` to stop it cleanly.
pub struct Server {
    addr: SocketAddr,
    tokio: Option<tokio::runtime::Runtime>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    serve: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    worker: Option<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    app: Arc<App>,
}

impl Server {
    /// The address it listens on (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The runtime loop's fatal error, if it stopped on one.
    pub fn runtime_error(&self) -> Option<String> {
        self.app.runtime_error.lock().unwrap().clone()
    }

    /// Stop accepting connections, let requests in flight finish, then stop the runtime loop
    /// after its current batch (committed and flushed) and flush the store.
    pub fn shutdown(mut self) -> Result<(), String> {
        self.stop_all()
    }

    fn stop_all(&mut self) -> Result<(), String> {
        let mut errors = Vec::new();
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let (Some(rt), Some(serve)) = (self.tokio.as_ref(), self.serve.take()) {
            match rt.block_on(serve) {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(format!("server: {e}")),
                Err(e) => errors.push(format!("server task: {e}")),
            }
        }
        self.stop.store(true, Ordering::SeqCst);
        self.app.wake();
        if let Some(w) = self.worker.take() {
            if w.join().is_err() {
                errors.push("the runtime thread panicked".into());
            }
        }
        if let Some(rt) = self.tokio.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
        if let Err(e) = self.app.store.flush() {
            errors.push(format!("final flush: {e}"));
        }
        if let Some(e) = self.runtime_error() {
            errors.push(format!("runtime: {e}"));
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.worker.is_some() {
            let _ = self.stop_all();
        }
    }
}

/// Bind `cfg.listen`, start the runtime loop over `store` (wall clock, `program` deployed as
/// `aftercart run` does) in a background thread and serve the routes. Returns once the socket
/// is bound and the runtime started; errors say what failed (bind, provider, deploy).
pub fn serve(
    store: Arc<dyn Store>,
    program: Program,
    schemas: Schemas,
    cfg: ServeConfig,
) -> Result<Server, String> {
    cfg.secrets.validate()?;
    let help_reply = program.shop.help_reply.clone();
    let (ctl_tx, ctl_rx) = mpsc::channel::<Control>();
    let stop = Arc::new(AtomicBool::new(false));
    let app = Arc::new(App {
        store: store.clone(),
        schemas: schemas.clone(),
        help_reply,
        secrets: cfg.secrets.clone(),
        control: Mutex::new(ctl_tx),
        commits: group::GroupCommit::new(store.clone()),
        edge: metrics::Edge::default(),
        runtime_error: Mutex::new(None),
    });

    // The runtime thread builds its provider and runtime itself (they need not be Send) and
    // says whether that worked before we bind.
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
    let worker = {
        let (app, stop, provider, data_dir, idle) = (
            app.clone(),
            stop.clone(),
            cfg.provider.clone(),
            cfg.data_dir.clone(),
            cfg.idle_sleep,
        );
        std::thread::Builder::new()
            .name("aftercart-runtime".into())
            .spawn(move || {
                let setup = (|| {
                    let provider = super::provider::from_spec(&provider)?;
                    let opts = Options {
                        clock: Clock::Wall,
                        ..Options::default()
                    };
                    let rt =
                        Runtime::new(store, program, schemas, opts).map_err(|e| e.to_string())?;
                    Ok((provider, rt))
                })();
                let (provider, mut rt) = match setup {
                    Ok(x) => {
                        let _ = ready_tx.send(Ok(()));
                        x
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                if let Err(e) = run_loop(&mut rt, &*provider, &ctl_rx, &stop, &data_dir, idle) {
                    *app.runtime_error.lock().unwrap() = Some(e);
                }
            })
            .map_err(|e| format!("cannot start the runtime thread: {e}"))?
    };
    match ready_rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            let _ = worker.join();
            return Err(e);
        }
        Err(_) => {
            let _ = worker.join();
            return Err("the runtime thread stopped while starting".into());
        }
    }

    let mut server = Server {
        addr: cfg.listen,
        tokio: None,
        shutdown: None,
        serve: None,
        worker: Some(worker),
        stop,
        app: app.clone(),
    };
    let listener = std::net::TcpListener::bind(cfg.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("listener: {e}"))?;
    server.addr = listener
        .local_addr()
        .map_err(|e| format!("listener: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aftercart-http")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the HTTP runtime: {e}"))?;
    let router = router(app, cfg.max_body);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serve = rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    server.tokio = Some(rt);
    server.shutdown = Some(tx);
    server.serve = Some(serve);
    Ok(server)
}

fn router(app: Arc<App>, max_body: usize) -> Router {
    Router::new()
        .route("/webhooks/shopify", post(shopify::handle))
        .route("/webhooks/twilio/inbound", post(twilio::inbound))
        .route("/webhooks/twilio/status", post(twilio::status))
        .route("/l/{code}", get(links::redirect))
        .route("/metrics", get(metrics_route))
        .route("/healthz", get(healthz))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .with_state(app)
}

async fn metrics_route(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    let app2 = app.clone();
    let text = tokio::task::spawn_blocking(move || {
        let err = app2.runtime_error.lock().unwrap().clone();
        metrics::render(&*app2.store, &app2.edge, err.as_deref())
    })
    .await;
    match text {
        Ok(t) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
            t,
        )
            .into_response(),
        Err(e) => internal(format!("metrics: {e}")),
    }
}

async fn healthz(axum::extract::State(app): axum::extract::State<Arc<App>>) -> Response {
    match app.runtime_error.lock().unwrap().clone() {
        None => error(StatusCode::OK, "ok"),
        Some(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("runtime stopped: {e}"),
        ),
    }
}

/// The runtime loop: privacy requests first, then one step (process, fire, dispatch); when
/// idle, wait for a wake-up or the idle sleep. Returns on `stop` after a committed batch.
fn run_loop(
    rt: &mut Runtime,
    provider: &dyn super::Provider,
    ctl: &mpsc::Receiver<Control>,
    stop: &AtomicBool,
    data_dir: &std::path::Path,
    idle: std::time::Duration,
) -> Result<(), String> {
    let handle = |rt: &mut Runtime, c: Control| {
        if let Control::Privacy(req, reply) = c {
            let _ = reply.send(privacy::execute(rt, data_dir, req));
        }
    };
    while !stop.load(Ordering::SeqCst) {
        while let Ok(c) = ctl.try_recv() {
            handle(rt, c);
        }
        let p = rt.step(provider).map_err(|e| e.to_string())?;
        if p.idle() {
            match ctl.recv_timeout(idle) {
                Ok(c) => handle(rt, c),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    }
    // Answer privacy requests that raced the stop, so no caller waits forever.
    while let Ok(c) = ctl.try_recv() {
        handle(rt, c);
    }
    rt.flush().map_err(|e| e.to_string())
}
