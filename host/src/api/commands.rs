//! Running commands and querying projections.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::metrics::{slice_labels, CommandLabels};
use super::{ApiError, SharedState};
use crate::codec::{json_to_msgpack, msgpack_to_json};
use crate::runner::{CommandRunner, IdempotencyKey};
use crate::runtime::Slice;

/// A JSON body (an empty body is `{}`), as MessagePack for the slice.
pub(super) fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Value, ApiError> {
    let body = body?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(&body).map_err(|e| ApiError::invalid_input(format!("the body is not valid JSON: {e}")))
}

fn slice_of(state: &SharedState, tenant: &crate::store::Tenant, name: &str) -> Result<std::sync::Arc<Slice>, ApiError> {
    state.registry.get(tenant, name).ok_or_else(|| {
        // A slice (or the tenant's manifest) left out as damaged says so, not "no such slice".
        let damaged = state.registry.unavailable(tenant).into_iter().find(|(slice, _)| slice.as_deref().is_none_or(|s| s == name));
        match damaged {
            Some((_, why)) => ApiError::catalog_damaged(why),
            None => ApiError::not_found(format!("tenant {tenant} has no slice named {name}")),
        }
    })
}

#[utoipa::path(post, path = "/v1/t/{tenant}/slices/{slice}/commands/{command}",
    params(("tenant" = String, Path), ("slice" = String, Path), ("command" = String, Path),
        ("Idempotency-Key" = Option<String>, Header, description = "Repeat the request safely: the first result comes back")),
    request_body(content = Object, description = "The command's input"),
    responses((status = 200, body = super::schema::CommandResponse), (status = 409, description = "conflict", body = super::schema::ErrorBody),
        (status = 422, description = "rejected", body = super::schema::ErrorBody), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
/// `POST /v1/t/{tenant}/slices/{slice}/commands/{command}`: the command's input as JSON;
/// returns `{result, positions, attempts}`. With `Idempotency-Key`, a repeated request within
/// the retention window returns the first result without running the command again.
pub async fn run(
    State(state): State<SharedState>,
    Path((tenant, slice_name, command)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let input = json_body(body)?;
    let slice = slice_of(&state, &caller.tenant, &slice_name)?;
    caller.check_log_size(&state.store).await?;
    let _slot = caller.slot().await?;
    let payload = json_to_msgpack(&input);
    let started = Instant::now();
    let key = headers.get("idempotency-key").map(|v| v.to_str().map(str::to_string));
    let runner = CommandRunner { deadline: Duration::from_millis(caller.state.limits.command_deadline_ms) };
    let (result, attempts) = match key {
        Some(Ok(key)) => {
            let key = IdempotencyKey { key, retention: state.idempotency_retention };
            let result = runner.run_once(&slice, &state.store, &caller.tenant, &command, &payload, &key).await;
            let attempts = result.as_ref().map_or(1, |out| out.attempts);
            (result, attempts)
        }
        Some(Err(_)) => return Err(ApiError::invalid_input("the Idempotency-Key header is not visible ASCII")),
        None => runner.run_counted(&slice, &state.store, &caller.tenant, &command, &payload).await,
    };
    let labels = slice_labels(caller.tenant.as_str(), slice.name());
    state.metrics.command_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    state.metrics.command_attempts.get_or_create(&labels).inc_by(u64::from(attempts));
    let outcome = crate::telemetry::outcome(&result);
    let command_labels =
        CommandLabels { tenant: caller.tenant.to_string(), slice: slice.name().to_string(), outcome: outcome.to_string() };
    state.metrics.commands.get_or_create(&command_labels).inc();
    let out = result?;
    if !out.positions.is_empty() {
        let tenant = super::metrics::TenantLabels { tenant: caller.tenant.to_string() };
        state.metrics.appended_events.get_or_create(&tenant).inc_by(out.positions.len() as u64);
    }
    Ok(Json(json!({
        "result": msgpack_to_json(&out.output),
        "positions": out.positions,
        "attempts": out.attempts,
    })))
}

#[utoipa::path(post, path = "/v1/t/{tenant}/slices/{slice}/projections/{projection}",
    params(("tenant" = String, Path), ("slice" = String, Path), ("projection" = String, Path)),
    request_body(content = Object, description = "The projection's parameters"),
    responses((status = 200, body = super::schema::ProjectionResponse), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
/// `POST /v1/t/{tenant}/slices/{slice}/projections/{projection}`: the parameters as JSON;
/// returns `{result}`.
pub async fn query(
    State(state): State<SharedState>,
    Path((tenant, slice_name, projection)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let params = json_body(body)?;
    let slice = slice_of(&state, &caller.tenant, &slice_name)?;
    let _slot = caller.slot().await?;
    let started = Instant::now();
    let out = crate::projections::run(&slice, &state.store, &caller.tenant, &projection, &json_to_msgpack(&params)).await?;
    let labels = slice_labels(caller.tenant.as_str(), slice.name());
    state.metrics.projection_seconds.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    Ok(Json(json!({ "result": msgpack_to_json(&out) })))
}
