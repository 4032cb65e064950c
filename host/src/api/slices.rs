//! Deploying, listing and removing a tenant's slices.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, SharedState};
use crate::deploy::Deployed;
use crate::runtime::CONTRACT_VERSION;

fn describe_deployed(deployed: &Deployed) -> Value {
    let slice = &deployed.slice;
    json!({
        "name": slice.name(),
        "version": slice.description().version,
        "hash": slice.hash(),
        "size": slice.size(),
        "contract": format!("counterpoint:slice@{CONTRACT_VERSION}"),
        "deployed_at": deployed.deployed_at,
        "description": slice.description(),
    })
}

#[utoipa::path(get, path = "/v1/t/{tenant}/slices", params(("tenant" = String, Path)), responses((status = 200, body = super::openapi::SliceList), (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody), (status = 429, body = super::openapi::ErrorBody)))]
/// `GET /v1/t/{tenant}/slices`
pub async fn list(State(state): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let slices: Vec<Value> = state.registry.list(&caller.tenant).iter().map(|d| describe_deployed(d)).collect();
    Ok(Json(json!({ "slices": slices })))
}

#[utoipa::path(get, path = "/v1/t/{tenant}/slices/{slice}", params(("tenant" = String, Path), ("slice" = String, Path)),
    responses((status = 200, body = super::openapi::SliceDoc), (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody), (status = 429, body = super::openapi::ErrorBody)))]
/// `GET /v1/t/{tenant}/slices/{slice}`
pub async fn describe(
    State(state): State<SharedState>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let deployed = state.registry.list(&caller.tenant).into_iter().find(|d| d.slice.name() == name);
    let deployed = deployed.ok_or_else(|| ApiError::not_found(format!("tenant {} has no slice named {name}", caller.tenant)))?;
    Ok(Json(describe_deployed(&deployed)))
}

#[utoipa::path(put, path = "/v1/t/{tenant}/slices/{slice}", params(("tenant" = String, Path), ("slice" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses((status = 200, body = super::openapi::SliceDoc), (status = 422, description = "invalid_component or incompatible_contract", body = super::openapi::ErrorBody), (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody), (status = 429, body = super::openapi::ErrorBody)))]
/// `PUT /v1/t/{tenant}/slices/{slice}`: the component's bytes. Compiled and validated off the
/// request path, then swapped in; the slice it describes must be `{slice}`.
pub async fn deploy(
    State(state): State<SharedState>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let body = body?;
    if body.is_empty() {
        return Err(ApiError::invalid_input("send the component's bytes as the body"));
    }
    let deployed = state.registry.deploy(&caller.tenant, body.to_vec(), Some(&name)).await?;
    state.metrics.deploys.inc();
    Ok((StatusCode::OK, Json(describe_deployed(&deployed))))
}

#[utoipa::path(delete, path = "/v1/t/{tenant}/slices/{slice}", params(("tenant" = String, Path), ("slice" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = super::openapi::ErrorBody), (status = 401, body = super::openapi::ErrorBody), (status = 403, body = super::openapi::ErrorBody), (status = 404, body = super::openapi::ErrorBody), (status = 429, body = super::openapi::ErrorBody)))]
/// `DELETE /v1/t/{tenant}/slices/{slice}`
pub async fn remove(
    State(state): State<SharedState>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    state.registry.remove(&caller.tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
