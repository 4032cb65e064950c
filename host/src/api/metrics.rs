//! Prometheus metrics: commands by slice and outcome, attempts, latencies, appends, store
//! latency, live instances, hot boundaries, deploys, and the background workers (automations, read models).

use axum::http::HeaderMap;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use super::ApiError;
use crate::tenants::{hash_token, Config, Principal, Tenants};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    pub tenant: String,
    pub slice: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SliceLabels {
    pub tenant: String,
    pub slice: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

/// An automation or read-model worker.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// `automation` or `read_model`.
    pub kind: String,
    pub tenant: String,
    pub slice: String,
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub code: String,
}

fn latency() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

pub struct Metrics {
    registry: Registry,
    pub commands: Family<CommandLabels, Counter>,
    pub command_attempts: Family<SliceLabels, Counter>,
    pub command_seconds: Family<SliceLabels, Histogram, fn() -> Histogram>,
    pub projection_seconds: Family<SliceLabels, Histogram, fn() -> Histogram>,
    pub appended_events: Family<TenantLabels, Counter>,
    pub store_append_seconds: Histogram,
    pub errors: Family<RequestLabels, Counter>,
    pub live_instances: Gauge,
    pub instance_slot_waiters: Gauge,
    pub hot_boundaries: Gauge,
    pub hot_boundary_turns: Gauge,
    pub deployed_slices: Gauge,
    pub deploys: Counter,
    pub worker_active: Family<WorkerLabels, Gauge>,
    pub worker_failures: Family<WorkerLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("counterpoint");
        let commands = Family::<CommandLabels, Counter>::default();
        registry.register("commands", "Commands run, by tenant, slice and outcome", commands.clone());
        let command_attempts = Family::<SliceLabels, Counter>::default();
        registry.register("command_attempts", "Times commands ran, retries after conflicts included", command_attempts.clone());
        let command_seconds = Family::<SliceLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register("command_seconds", "Command latency, attempts and append included", command_seconds.clone());
        let projection_seconds = Family::<SliceLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        registry.register("projection_seconds", "Projection latency", projection_seconds.clone());
        let appended_events = Family::<TenantLabels, Counter>::default();
        registry.register("appended_events", "Events appended", appended_events.clone());
        let store_append_seconds = latency();
        registry.register("store_append_seconds", "Latency of appends through the raw API", store_append_seconds.clone());
        let errors = Family::<RequestLabels, Counter>::default();
        registry.register("http_errors", "Error responses by code", errors.clone());
        let live_instances = Gauge::default();
        registry.register("live_instances", "Slice instances alive now", live_instances.clone());
        let instance_slot_waiters = Gauge::default();
        registry.register("instance_slot_waiters", "Calls waiting for an instance slot now (every slot in use)", instance_slot_waiters.clone());
        let hot_boundaries = Gauge::default();
        registry.register("hot_boundaries", "Consistency boundaries that commands queue on now, all tenants (GET /v1/t/{tenant}/hot-boundaries names them)", hot_boundaries.clone());
        let hot_boundary_turns = Gauge::default();
        registry.register("hot_boundary_turns", "Turns held or waited for on hot boundaries now, all tenants (a command queued on several counts on each)", hot_boundary_turns.clone());
        let deployed_slices = Gauge::default();
        registry.register("deployed_slices", "Slices deployed across tenants", deployed_slices.clone());
        let deploys = Counter::default();
        registry.register("deploys", "Slices deployed since start", deploys.clone());
        let worker_active = Family::<WorkerLabels, Gauge>::default();
        registry.register("worker_active", "1 while this host's worker follows the log (on a cluster: holds the lease)", worker_active.clone());
        let worker_failures = Family::<WorkerLabels, Gauge>::default();
        registry.register("worker_failures", "Failed reactions or read-model batches since the worker started", worker_failures.clone());
        Metrics {
            registry,
            commands,
            command_attempts,
            command_seconds,
            projection_seconds,
            appended_events,
            store_append_seconds,
            errors,
            live_instances,
            instance_slot_waiters,
            hot_boundaries,
            hot_boundary_turns,
            deployed_slices,
            deploys,
            worker_active,
            worker_failures,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

pub fn slice_labels(tenant: &str, slice: &str) -> SliceLabels {
    SliceLabels { tenant: tenant.into(), slice: slice.into() }
}

/// Who may read `/metrics`. The metrics name every tenant and slice, so they are not public by
/// default: the metrics token or the admin token reads them, a tenant's token does not, and
/// `metrics_public = true` opens them to anyone.
#[derive(Clone, Debug)]
pub struct MetricsAccess {
    token_sha256: Option<String>,
    admin_configured: bool,
    public: bool,
}

impl MetricsAccess {
    pub fn from_config(config: &Config) -> MetricsAccess {
        MetricsAccess {
            token_sha256: config.metrics_token_sha256.as_ref().map(|h| h.to_ascii_lowercase()),
            admin_configured: config.admin_token_sha256.is_some(),
            public: config.metrics_public,
        }
    }

    /// `Ok` when the request's bearer token may read the metrics; otherwise `401 unauthorized`
    /// (no token, or an unknown one) or `403 forbidden` (a tenant's token).
    pub fn check(&self, headers: &HeaderMap, tenants: &Tenants) -> Result<(), ApiError> {
        if self.public {
            return Ok(());
        }
        if self.token_sha256.is_none() && !self.admin_configured {
            return Err(ApiError::unauthorized(
                "no token can read /metrics: configure metrics_token_sha256 (or an admin token), or metrics_public = true",
            ));
        }
        let presented = headers.get(axum::http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = presented.map(str::trim) else {
            return Err(ApiError::unauthorized("/metrics needs `Authorization: Bearer <token>`: the metrics token or the admin token"));
        };
        if self.token_sha256.as_deref() == Some(hash_token(token).as_str()) {
            return Ok(());
        }
        match tenants.authenticate(token) {
            Some(Principal::Admin) => Ok(()),
            Some(Principal::Tenant(_)) => {
                Err(ApiError::forbidden("a tenant's token cannot read /metrics, which names every tenant: use the metrics or the admin token"))
            }
            None => Err(ApiError::unauthorized("unknown token: /metrics takes the metrics token or the admin token")),
        }
    }
}
