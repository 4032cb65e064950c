//! Traces: the host's `tracing` spans — HTTP requests, commands and their attempts, slice
//! invocations, store reads and appends, automation reactions, read-model batches — exported
//! over OTLP (HTTP/protobuf) when `[telemetry] otlp_endpoint` names a collector.
//!
//! Off (no endpoint), there is no exporter, and the spans are at a level the log filter does not
//! take (`warn` unless `RUST_LOG` says otherwise): each costs one check of its callsite. A
//! request's W3C `traceparent` becomes its span's parent ([`continue_trace`]); a slice's outbound
//! HTTP effects carry the trace on ([`propagate`]).

mod transport;

use std::time::Duration;

use anyhow::Context as _;
use axum::http::HeaderMap;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;
use tracing::field::Empty;
use tracing::{Instrument as _, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::runtime::InvokeError;
use crate::store::{StoreError, Tenant};

/// How long one export may take before the batch is dropped (the server never waits on it).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[telemetry]` in the configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP address (`http://collector:4318`): spans are sent to
    /// `/v1/traces` under it, as protobuf. None: no traces.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` the spans are reported under.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// The fraction of traces started here that are kept (0 to 1). A request that comes with a
    /// `traceparent` follows its caller's decision instead.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig { otlp_endpoint: None, service_name: default_service_name(), sample_ratio: default_sample_ratio() }
    }
}

fn default_service_name() -> String {
    "counterpoint".into()
}
fn default_sample_ratio() -> f64 {
    1.0
}

impl TelemetryConfig {
    /// Checks the section; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(endpoint) = &self.otlp_endpoint {
            let uri: axum::http::Uri = endpoint.parse().map_err(|e| format!("otlp_endpoint {endpoint:?}: {e}"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(format!("otlp_endpoint {endpoint:?} is not an http:// or https:// URL"));
            }
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(format!("sample_ratio {} is not between 0 and 1", self.sample_ratio));
        }
        if self.service_name.is_empty() {
            return Err("service_name must not be empty".into());
        }
        Ok(())
    }

    /// Where the spans go: the endpoint's `/v1/traces` (kept if the endpoint names it already).
    fn traces_url(&self) -> Option<String> {
        let endpoint = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(if endpoint.ends_with("/v1/traces") { endpoint.to_string() } else { format!("{endpoint}/v1/traces") })
    }
}

/// The process's tracing set up: log lines on stderr and, when configured, the span exporter.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Log lines only, as `RUST_LOG` says (`warn` by default), on stderr: every subcommand but
    /// `serve` with a `[telemetry]` endpoint.
    pub fn logs_only() -> anyhow::Result<Telemetry> {
        tracing_subscriber::registry().with(log_lines()).try_init().context("installing the log subscriber")?;
        Ok(Telemetry { provider: None })
    }

    /// Installs the process's subscriber: log lines, plus every span of the host exported when
    /// `config` names an endpoint. Call it on the tokio runtime that serves: the exporter sends
    /// on it.
    pub fn install(config: &TelemetryConfig) -> anyhow::Result<Telemetry> {
        let Some(url) = config.traces_url() else { return Self::logs_only() };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(url)
            .with_timeout(EXPORT_TIMEOUT)
            .with_http_client(transport::Transport::new(tokio::runtime::Handle::current(), EXPORT_TIMEOUT))
            .build()
            .context("the OTLP exporter")?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio))))
            .with_resource(opentelemetry_sdk::Resource::builder().with_service_name(config.service_name.clone()).build())
            .build();
        let spans = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("counterpoint"))
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            // The host's own spans and events, not its dependencies'.
            .with_filter(tracing_subscriber::filter::Targets::new().with_target("counterpoint", tracing::Level::INFO));
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        tracing_subscriber::registry().with(log_lines()).with(spans).try_init().context("installing the trace subscriber")?;
        Ok(Telemetry { provider: Some(provider) })
    }

    /// Sends the spans still buffered and stops the exporter: once the server has stopped.
    pub async fn shutdown(self) {
        let Some(provider) = self.provider else { return };
        // A blocking call: it waits for the batch thread, whose exports run on this runtime.
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!("flushing the traces: {err}"),
            Err(err) => tracing::warn!("flushing the traces: {err}"),
        }
    }
}

fn log_lines<S>() -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter)
}

/// Makes the caller's trace (W3C `traceparent`, `tracestate` in `headers`) the parent of `span`.
pub fn continue_trace(span: &Span, headers: &HeaderMap) {
    if span.is_disabled() || !headers.contains_key("traceparent") {
        return;
    }
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)));
    // Fails only when the span is not recorded by the exporter's layer: nothing to continue.
    let _ = span.set_parent(parent);
}

/// Puts `span`'s trace in outgoing `headers` (`traceparent`), replacing any already there.
pub fn propagate(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut HeaderInjector(headers)));
}

/// A span's `outcome`: `ok`, or the error's kind (`conflict`, `rejected`, `store`, `timeout`, ...).
pub fn outcome<T>(result: &Result<T, InvokeError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(err) => err.kind(),
    }
}

/// Records `outcome` on `span`, and marks the span failed for an error (not for a slice's
/// refusal, `rejected`, `invalid-input` and `not-found`, which are answers, nor for an attempt
/// that runs again: `queued` on a hot boundary, or `condition_failed`).
pub fn record_outcome(span: &Span, outcome: &str) {
    span.record("outcome", outcome);
    if !matches!(outcome, "ok" | "rejected" | "invalid-input" | "not-found" | "queued" | "condition_failed") {
        span.record("otel.status_code", "ERROR");
    }
}

/// A store call's `outcome`: `ok`, `condition_failed` (the append's guard did not hold), or `store`.
pub fn store_outcome<T>(result: &Result<T, StoreError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(StoreError::ConditionFailed { .. }) => "condition_failed",
        Err(_) => "store",
    }
}

/// The span of one read of `tenant`'s log; its `events` and `outcome` are recorded on it.
pub fn store_read(tenant: &Tenant) -> Span {
    tracing::info_span!("store.read", tenant = %tenant, events = Empty, outcome = Empty, otel.status_code = Empty)
}

/// The span of one append of `events` events to `tenant`'s log (until the store accepts it).
pub fn store_append(tenant: &Tenant, events: usize) -> Span {
    tracing::info_span!("store.append", tenant = %tenant, events, outcome = Empty, otel.status_code = Empty)
}

/// Times `call` (a store read or append) in `span` and records its outcome.
pub async fn store_call<T>(span: Span, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let result = call.instrument(span.clone()).await;
    record_outcome(&span, store_outcome(&result));
    result
}

/// Runs `call` (a slice invocation, a reaction, a batch) in `span` and records its outcome.
pub async fn invoke<T>(span: Span, call: impl Future<Output = Result<T, InvokeError>>) -> Result<T, InvokeError> {
    let result = call.instrument(span.clone()).await;
    record_outcome(&span, outcome(&result));
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(endpoint: Option<&str>) -> TelemetryConfig {
        TelemetryConfig { otlp_endpoint: endpoint.map(str::to_string), ..Default::default() }
    }

    #[test]
    fn the_traces_path_is_added_once() {
        assert_eq!(config(Some("http://c:4318")).traces_url().unwrap(), "http://c:4318/v1/traces");
        assert_eq!(config(Some("http://c:4318/")).traces_url().unwrap(), "http://c:4318/v1/traces");
        assert_eq!(config(Some("https://c/otlp/v1/traces")).traces_url().unwrap(), "https://c/otlp/v1/traces");
        assert!(config(None).traces_url().is_none());
    }

    #[test]
    fn bad_sections_are_refused() {
        assert!(config(Some("http://c:4318")).validate().is_ok());
        assert!(config(Some("c:4318")).validate().unwrap_err().contains("otlp_endpoint"));
        assert!(config(Some("grpc://c:4317")).validate().unwrap_err().contains("otlp_endpoint"));
        let ratio = TelemetryConfig { sample_ratio: 2.0, ..config(None) };
        assert!(ratio.validate().unwrap_err().contains("sample_ratio"));
    }
}
