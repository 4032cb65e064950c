//! `counterpoint serve`: the HTTP/JSON API (axum).
//!
//! Every tenant route is `/v1/t/{tenant}/...` and needs `Authorization: Bearer <token>` of that
//! tenant (or the admin's). Requests pass the tenant's rate limit; commands and projections
//! also take one of its invocation slots. Errors are `{"error": {"code", "message"}}`.

mod admin;
mod automations;
mod backup;
mod commands;
mod error;
mod events;
mod hot_boundaries;
pub mod metrics;
mod openapi;
mod read_formats;
mod readmodels;
mod schema;
mod slices;
mod trace;
mod unread_body;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::OwnedSemaphorePermit;

pub use self::error::ApiError;
pub use self::read_formats::{event_json, write_json_with, write_msgpack};
use self::metrics::Metrics;
use crate::automations::{Automations, RetryPolicy};
use crate::deploy::Registry;
use crate::readmodels::{EmbeddedState, ReadModels};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{EmbeddedStore, SharedStore, Tenant};
use crate::tenants::{Config, Principal, TenantState, Tenants};

/// Bodies of commands, queries and appends; component uploads may be larger.
const BODY_LIMIT: usize = 24 << 20;
const COMPONENT_LIMIT: usize = 64 << 20;
/// How long a request waits for one of its tenant's invocation slots.
const SLOT_WAIT: Duration = Duration::from_secs(2);

pub struct AppState {
    pub store: SharedStore,
    pub runtime: Runtime,
    pub registry: Arc<Registry>,
    pub automations: Arc<Automations>,
    pub read_models: Arc<ReadModels>,
    pub tenants: Arc<Tenants>,
    pub metrics: Metrics,
    /// Who may read `/metrics`.
    pub metrics_access: metrics::MetricsAccess,
    pub idempotency_retention: Duration,
    pub ready: std::sync::atomic::AtomicBool,
    /// Flips to true when the server starts shutting down: live streams end.
    pub shutdown: tokio::sync::watch::Sender<bool>,
    /// What `POST /v1/admin/backup` copies; `None` on FoundationDB.
    pub backup: Option<Arc<crate::backup::Source>>,
}

pub type SharedState = Arc<AppState>;

/// The tenant a request acts for, once authorized.
pub struct Caller {
    pub tenant: Tenant,
    pub state: Arc<TenantState>,
    /// Whether the admin token was sent (the operator acting for the tenant).
    pub admin: bool,
}

impl AppState {
    /// Checks the bearer token against `tenant` and takes one request from its rate limit.
    pub fn authorize(&self, headers: &HeaderMap, tenant: &str) -> Result<Caller, ApiError> {
        let token = bearer(headers)?;
        let principal = self.tenants.authenticate(token).ok_or_else(|| ApiError::unauthorized("unknown token"))?;
        let tenant = Tenant::new(tenant).map_err(|e| ApiError::not_found(e.to_string()))?;
        let admin = match principal {
            Principal::Admin => true,
            Principal::Tenant(own) if own == tenant => false,
            Principal::Tenant(_) => return Err(ApiError::forbidden(format!("this token is not tenant {tenant}'s"))),
        };
        let state = self.tenants.get(&tenant).ok_or_else(|| ApiError::not_found(format!("no tenant named {tenant}")))?;
        if !state.admit() {
            return Err(ApiError::rate_limited(format!(
                "tenant {tenant} is over its {} requests per second",
                state.limits.requests_per_second
            )));
        }
        Ok(Caller { tenant, state, admin })
    }
}

/// The request's bearer token.
pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::unauthorized("send `Authorization: Bearer <token>`"))
}

impl Caller {
    /// One of the tenant's invocation slots, waiting a little for one to free up.
    pub async fn slot(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        let acquire = self.state.invocations.clone().acquire_owned();
        match tokio::time::timeout(SLOT_WAIT, acquire).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ApiError::rate_limited(format!(
                "tenant {} has all its {} invocations running",
                self.tenant, self.state.limits.concurrent_invocations
            ))),
        }
    }

    /// Refuses writes once the tenant's log holds its maximum number of events.
    pub async fn check_log_size(&self, store: &SharedStore) -> Result<(), ApiError> {
        if store.event_count(&self.tenant).await? >= self.state.limits.max_log_events {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "quota_exceeded",
                format!("tenant {}'s log holds its maximum of {} events", self.tenant, self.state.limits.max_log_events),
            ));
        }
        Ok(())
    }
}

pub fn router(state: SharedState) -> Router {
    let tenant_routes = Router::new()
        .route("/slices", get(slices::list))
        .route(
            "/slices/{slice}",
            get(slices::describe)
                .put(slices::deploy)
                .delete(slices::remove)
                .layer(DefaultBodyLimit::max(COMPONENT_LIMIT)),
        )
        .route("/slices/{slice}/commands/{command}", post(commands::run))
        .route("/slices/{slice}/projections/{projection}", post(commands::query))
        .route("/hot-boundaries", get(hot_boundaries::list))
        .route("/events/read", post(events::read))
        .route("/events/append", post(events::append))
        .route("/events/stream", get(events::stream))
        .route("/automations", get(automations::list))
        .route("/automations/{slice}/{automation}/dead-letters", get(automations::dead_letters))
        .route("/automations/{slice}/{automation}/dead-letters/{id}/{action}", post(automations::resolve))
        .route("/slices/{slice}/readmodels/{name}", post(readmodels::query))
        .route("/readmodels", get(readmodels::list))
        .route("/readmodels/{slice}/{name}/rebuild", post(readmodels::rebuild));
    Router::new()
        .nest("/v1/t/{tenant}", tenant_routes)
        .route("/v1/admin/tenants", get(admin::list).post(admin::create))
        .route("/v1/admin/tenants/{tenant}", axum::routing::delete(admin::remove))
        .route("/v1/admin/tenants/{tenant}/token", post(admin::replace_token))
        .route("/v1/admin/backup", post(backup::backup))
        .route("/v1/openapi.json", get(openapi::document))
        .route("/console", get(|| async { axum::response::Html(include_str!("console.html")) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::not_found("no such route; see /v1/openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this route takes another method")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn(unread_body::answer_after_the_body))
        .layer(axum::middleware::map_response_with_state(state.clone(), count_errors))
        .layer(axum::middleware::from_fn(trace::request_span))
        .with_state(state)
}

async fn count_errors(State(state): State<SharedState>, response: axum::response::Response) -> axum::response::Response {
    if !response.status().is_success() {
        let code = response.status().as_u16().to_string();
        state.metrics.errors.get_or_create(&metrics::RequestLabels { code }).inc();
    }
    response
}

/// Ready while the server is not shutting down and its store takes writes: a load balancer
/// sends requests elsewhere when every write here would fail.
async fn ready(State(state): State<SharedState>) -> impl IntoResponse {
    if !state.ready.load(std::sync::atomic::Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down".to_string());
    }
    match state.store.health() {
        Ok(()) => (StatusCode::OK, "ready".to_string()),
        Err(err) => (StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

async fn metrics(State(state): State<SharedState>, headers: HeaderMap) -> Result<impl IntoResponse, ApiError> {
    state.metrics_access.check(&headers, &state.tenants)?;
    state.metrics.live_instances.set(state.runtime.live_instances());
    state.metrics.instance_slot_waiters.set(state.runtime.slot_waiters());
    let (hot, turns) = crate::runner::hot_totals();
    state.metrics.hot_boundaries.set(hot as i64);
    state.metrics.hot_boundary_turns.set(turns as i64);
    state.metrics.deployed_slices.set(state.registry.total() as i64);
    let workers = state.automations.workers().into_iter().map(|(id, p)| ("automation", id.tenant, id.slice, id.name, p.active, p.failures));
    let read_models = state.read_models.workers().into_iter().map(|(id, p)| ("read_model", id.tenant, id.slice, id.name, p.active, p.failures));
    for (kind, tenant, slice, name, active, failures) in workers.chain(read_models) {
        let labels = metrics::WorkerLabels { kind: kind.into(), tenant: tenant.to_string(), slice, name };
        state.metrics.worker_active.get_or_create(&labels).set(i64::from(active));
        state.metrics.worker_failures.get_or_create(&labels).set(failures as i64);
    }
    Ok(([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.render()))
}

/// What a server keeps its data in: the embedded store and the data directory, or a cluster.
struct Backends {
    store: SharedStore,
    state: crate::readmodels::SharedState,
    catalog: Arc<dyn crate::deploy::Catalog>,
    leases: Option<crate::leases::Leases>,
    backup: Option<Arc<crate::backup::Source>>,
}

fn backends(config: &Config) -> anyhow::Result<Backends> {
    match config.store.kind.as_str() {
        "fdb" => fdb_backends(config),
        _ => {
            let store = EmbeddedStore::open_with(config.data_dir.join("events"), config.store.embedded_options())?;
            let state = Arc::new(EmbeddedState::open(config.data_dir.join("readmodels.redb"))?);
            Ok(Backends {
                backup: Some(Arc::new(crate::backup::Source::new(store.clone(), state.clone(), &config.data_dir))),
                store: Arc::new(store),
                state,
                catalog: Arc::new(crate::deploy::FileCatalog::new(&config.data_dir)),
                leases: None,
            })
        }
    }
}

/// On a FoundationDB cluster: the logs, read models, slice catalog and leases all live in it,
/// under the deployment prefix; the data directory keeps only the compile cache and drop zones.
#[cfg(feature = "fdb")]
fn fdb_backends(config: &Config) -> anyhow::Result<Backends> {
    use crate::store::{FdbOptions, FdbStore};
    let mut options = FdbOptions::new(config.store.prefix.clone());
    options.cluster_file = config.store.cluster_file.clone();
    let store = FdbStore::open(options)?;
    let db = store.database();
    let state = crate::readmodels::FdbState::new(db.clone(), &config.store.prefix)?;
    let leases = crate::leases::Leases::new(
        Arc::new(crate::leases::FdbLeases::new(db.clone(), &config.store.prefix)),
        crate::leases::Leases::holder_id(),
        Duration::from_millis(config.store.lease_ttl_ms),
    );
    Ok(Backends {
        store: Arc::new(store),
        state: Arc::new(state),
        catalog: Arc::new(crate::deploy::FdbCatalog::new(db, &config.store.prefix)),
        leases: Some(leases),
        backup: None,
    })
}

#[cfg(not(feature = "fdb"))]
fn fdb_backends(_config: &Config) -> anyhow::Result<Backends> {
    anyhow::bail!("store.kind = \"fdb\" needs a build with FoundationDB support: cargo build --release --features fdb (and libfdb_c 7.3)")
}

/// Opens the store, restores the deployed slices, starts the drop-zone watcher and the workers.
pub async fn build_state(config: &Config) -> anyhow::Result<SharedState> {
    let Backends { store, state, catalog, leases, backup } = backends(config)?;
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(config.data_dir.join("cache")),
        max_instances: config.max_instances,
        slot_wait: Duration::from_millis(config.instance_slot_wait_ms),
        compile_concurrency: config.compile_concurrency,
        compile_timeout: Duration::from_millis(config.compile_timeout_ms),
        ..Default::default()
    })?;
    let tenants = Arc::new(Tenants::from_config(config).with_created(&config.data_dir)?);
    let registry = Arc::new(Registry::open_with(runtime.clone(), &config.data_dir, tenants.clone(), catalog).await?);
    registry.follow_catalog();
    registry.scan_drop_zones().await;
    registry.watch()?;
    let automations = Automations::new(store.clone(), registry.clone(), crate::runner::CommandRunner::default(), RetryPolicy::default());
    let read_models = ReadModels::new(store.clone(), state, registry.clone());
    if let Some(leases) = leases {
        automations.use_leases(leases.clone());
        read_models.use_leases(leases);
    }
    automations.start();
    read_models.start();
    Ok(Arc::new(AppState {
        store,
        runtime,
        registry,
        automations,
        read_models,
        tenants,
        metrics: Metrics::new(),
        metrics_access: metrics::MetricsAccess::from_config(config),
        idempotency_retention: Duration::from_secs(config.idempotency_retention_s),
        ready: std::sync::atomic::AtomicBool::new(true),
        shutdown: tokio::sync::watch::Sender::new(false),
        backup,
    }))
}

/// Serves until SIGTERM or SIGINT, then stops accepting, finishes what is in flight, lets the
/// store flush, and returns.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let state = build_state(&config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let address: SocketAddr = listener.local_addr()?;
    tracing::info!(%address, data_dir = %config.data_dir.display(), tenants = state.tenants.names().len(), "serving");
    eprintln!("counterpoint serving on http://{address}");
    serve_until(listener, state, shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves on `listener` until `stop` completes, then shuts down gracefully: not ready, live
/// streams end, requests in flight finish. Returns once the last handle to the store is gone.
async fn serve_until(
    listener: tokio::net::TcpListener,
    state: SharedState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shutdown_state = state.clone();
    axum::serve(listener, router(state.clone()))
        .with_graceful_shutdown(async move {
            stop.await;
            shutdown_state.ready.store(false, std::sync::atomic::Ordering::Relaxed);
            shutdown_state.shutdown.send_replace(true);
            tracing::info!("shutting down: finishing requests in flight");
        })
        .await?;
    // The workers hold the store: stop them (their checkpoints stay).
    state.automations.stop().await;
    state.read_models.stop().await;
    // Connection tasks (and the live streams they carry) let go of the state a moment after
    // `serve` returns. Wait for them, then drop the last handle here: the store's writer drains
    // its queue and stops, and the data directory is unlocked, before this returns.
    for _ in 0..3000 {
        if Arc::strong_count(&state) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if Arc::strong_count(&state) > 1 {
        tracing::warn!("the server state is still in use 30 s after shutdown; stopping anyway");
    }
    drop(state);
    Ok(())
}

/// A server running in this process (for tests and benchmarks): `serve` on `config.listen`
/// (port 0 picks one) until [`Running::shutdown`].
pub struct Running {
    pub address: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub async fn spawn_server(config: &Config) -> anyhow::Result<Running> {
    let state = build_state(config).await?;
    let listener = tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("listening on {}", config.listen))?;
    let address = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve_until(listener, state, async move {
        let _ = stopped.await;
    }));
    Ok(Running { address, stop, task })
}

impl Running {
    /// Shuts down as on SIGTERM and waits until the server has stopped and closed its store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the server task")??;
        Ok(())
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
