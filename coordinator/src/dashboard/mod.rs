//! The live dashboard: a web page served by the coordinator (`--dashboard ADDR` on a sweep; on by
//! default on a loopback port with `--local`) or by `coordinator dashboard --state-dir DIR` for a
//! state dir that runs elsewhere or has finished.
//!
//! Everything is read-only and comes from the store, read beside the coordinator (never through
//! its commit thread): [`model`] follows the state dir by cursors, [`api`] answers the page's
//! questions with the report's own functions ([`table`]: the trial table), [`events`] pushes what is new to each open tab
//! (server-sent events, resumable), [`metrics`] is Prometheus' `/metrics`. The page itself
//! ([`assets`]) is embedded in the binary: no build step, no external URL, so that it works on an
//! air-gapped cluster. [`auth`] asks for the token off loopback; the sweep's TLS certificate, when
//! it has one, serves the dashboard too ([`serve`]).

mod api;
mod assets;
mod auth;
mod events;
pub mod metrics;
pub mod model;
mod serve;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::store::{Store, StoreError};
use crate::tls::ServerTlsFiles;
use model::Model;

/// How the dashboard is served.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    pub state_dir: PathBuf,
    /// The sweep to show when the state dir holds several.
    pub sweep: Option<String>,
    pub listen: SocketAddr,
    /// Required off loopback.
    pub token: Option<String>,
    /// The sweep's certificate: the dashboard is served over HTTPS with it.
    pub tls: ServerTlsFiles,
    /// How long the coordinator's gRPC calls take (observed by its server), for `/metrics`.
    pub rpc: metrics::RpcTimes,
}

#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    #[error("dashboard: {0}")]
    Store(#[from] StoreError),
    #[error("dashboard: {0}")]
    Config(String),
    #[error("dashboard: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// How often the model reads the store again while someone looks.
const FRESH_FOR: Duration = Duration::from_millis(500);

/// What every request shares.
pub struct Shared {
    model: Mutex<Model>,
    refreshed: Mutex<Instant>,
    auth: auth::Auth,
    /// The running coordinator's store (workers, leases, a full state dir); `None` for a state
    /// dir read from outside.
    live: Option<Store>,
    state_dir: PathBuf,
    metrics: metrics::Metrics,
}

impl Shared {
    /// The model, read again from the store when older than [`FRESH_FOR`]. Blocking (SQLite):
    /// call it from a blocking task.
    fn fresh(&self) -> Result<MutexGuard<'_, Model>, StoreError> {
        let mut model = self.model.lock().unwrap_or_else(|p| p.into_inner());
        let mut refreshed = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
        if refreshed.elapsed() >= FRESH_FOR {
            let started = Instant::now();
            let changed = model.refresh()?;
            *refreshed = Instant::now();
            tracing::debug!(changed, took_ms = started.elapsed().as_secs_f64() * 1e3, "dashboard model read");
        }
        Ok(model)
    }
}

/// Runs `f` on the fresh model on a blocking thread (SQLite); errors become 500s in one line.
async fn with_model<T: Send + 'static>(
    shared: &Arc<Shared>,
    f: impl FnOnce(&Model) -> Result<T, String> + Send + 'static,
) -> Result<T, Response> {
    let shared = shared.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let model = shared.fresh().map_err(|e| e.to_string())?;
        f(&model)
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r);
    outcome.map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({ "error": e }))).into_response())
}

/// A dashboard being served.
pub struct Dashboard {
    pub addr: SocketAddr,
    /// What to open in a browser.
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Loads the state dir and starts serving; `live`: the running coordinator's store.
pub async fn start(options: DashboardOptions, live: Option<Store>) -> Result<Dashboard, DashboardError> {
    let tls = options.tls.rustls().map_err(|e| DashboardError::Config(e.to_string()))?;
    let auth = auth::Auth::new(options.token.clone(), options.listen.ip().is_loopback(), tls.is_some())
        .map_err(DashboardError::Config)?;
    let (state_dir, sweep) = (options.state_dir.clone(), options.sweep.clone());
    let model = tokio::task::spawn_blocking(move || Model::load(&state_dir, sweep.as_deref()))
        .await
        .map_err(|e| DashboardError::Config(format!("loading the state dir: {e}")))??;
    let shared = Arc::new(Shared {
        model: Mutex::new(model),
        refreshed: Mutex::new(Instant::now()),
        auth,
        live,
        state_dir: options.state_dir.clone(),
        metrics: metrics::Metrics { rpc: options.rpc.clone() },
    });
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| DashboardError::Bind { addr: options.listen, source })?;
    let addr =
        listener.local_addr().map_err(|source| DashboardError::Bind { addr: options.listen, source })?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{addr}/");
    let task = tokio::spawn(serve::serve(listener, router(shared), tls));
    Ok(Dashboard { addr, url, task })
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(assets::index))
        .route("/assets/{file}", get(assets::file))
        .route("/login", get(auth::login_form).post(auth::login))
        .route("/api/summary", get(api::summary))
        .route("/api/trials", get(table::trials))
        .route("/api/trials/{id}", get(api::trial))
        .route("/api/trials/{id}/series", get(api::series))
        .route("/api/cell", get(api::cell))
        .route("/api/grid", get(api::grid))
        .route("/api/report", get(api::report))
        .route("/api/events", get(events::stream))
        .route("/metrics", get(metrics::scrape))
        .layer(axum::middleware::from_fn_with_state(shared.clone(), auth::require))
        .layer(axum::middleware::map_response(assets::security_headers))
        .with_state(shared)
}
