//! Persistent read models over HTTP: their state, queries, and rebuilds.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::commands::json_body;
use super::events::parse_position;
use super::{ApiError, SharedState};
use crate::codec::{json_to_msgpack, msgpack_to_json};
use crate::readmodels::{ReadModelError, ReadModelId, DEFAULT_WAIT};

impl From<ReadModelError> for ApiError {
    fn from(err: ReadModelError) -> Self {
        match err {
            ReadModelError::Invoke(err) => err.into(),
            ReadModelError::Store(err) => err.into(),
            ReadModelError::Unknown { .. } => ApiError::not_found(err.to_string()),
            ReadModelError::NotCaughtUp { .. } => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_caught_up", err.to_string()),
            ReadModelError::Moved(_) => ApiError::new(StatusCode::CONFLICT, "conflict", err.to_string()),
            ReadModelError::Stopped => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", err.to_string()),
        }
    }
}

#[derive(Deserialize)]
pub struct QueryOptions {
    /// Wait until the read model includes every event of its source up to this position.
    at_least: Option<String>,
    /// How long to wait for that, in milliseconds (default 5,000, at most 60,000).
    wait_ms: Option<u64>,
}

#[utoipa::path(get, path = "/v1/t/{tenant}/readmodels", params(("tenant" = String, Path)),
    responses((status = 200, description = "Every read model: checkpoint, head (positions, as decimal strings), lag, keys, failures, last error")))]
/// `GET /v1/t/{tenant}/readmodels`
pub async fn list(State(state): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let read_models = state.read_models.status(&caller.tenant).await?;
    Ok(Json(json!({ "read_models": read_models })))
}

#[utoipa::path(post, path = "/v1/t/{tenant}/slices/{slice}/readmodels/{name}",
    params(("tenant" = String, Path), ("slice" = String, Path), ("name" = String, Path),
        ("at_least" = Option<String>, Query, pattern = "^[0-9]+$", description = super::schema::POSITION_AT_LEAST),
        ("wait_ms" = Option<u64>, Query, description = "How long to wait for `at_least` (default 5000)")),
    request_body(content = Object, description = "The query's parameters"),
    responses((status = 200, body = super::schema::ProjectionResponse), (status = 404, body = super::schema::ErrorBody),
        (status = 503, description = "not_caught_up", body = super::schema::ErrorBody)))]
/// `POST /v1/t/{tenant}/slices/{slice}/readmodels/{name}`: the parameters as JSON; returns
/// `{result}` from the kept state, without replaying the log.
pub async fn query(
    State(state): State<SharedState>,
    Path((tenant, slice, name)): Path<(String, String, String)>,
    options: Result<Query<QueryOptions>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let Query(options) = options.map_err(|e| ApiError::invalid_input(e.body_text()))?;
    let params = json_body(body)?;
    let at_least = options.at_least.as_deref().map(parse_position).transpose()?;
    let wait = options.wait_ms.map_or(DEFAULT_WAIT, |ms| Duration::from_millis(ms.min(60_000)));
    let _slot = caller.slot().await?;
    let id = ReadModelId { tenant: caller.tenant.clone(), slice, name };
    let out = state.read_models.query(&id, &json_to_msgpack(&params), at_least, wait).await?;
    Ok(Json(json!({ "result": msgpack_to_json(&out) })))
}

#[utoipa::path(post, path = "/v1/t/{tenant}/readmodels/{slice}/{name}/rebuild",
    params(("tenant" = String, Path), ("slice" = String, Path), ("name" = String, Path)),
    responses((status = 202, description = "Rebuilding from the start of the log; the list shows its progress"), (status = 404, body = super::schema::ErrorBody)))]
/// `POST /v1/t/{tenant}/readmodels/{slice}/{name}/rebuild`: drops the state and replays the log
/// into it in the background.
pub async fn rebuild(
    State(state): State<SharedState>,
    Path((tenant, slice, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let id = ReadModelId { tenant: caller.tenant.clone(), slice, name };
    state.read_models.rebuild_in_background(&id)?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "rebuilding": id }))))
}
