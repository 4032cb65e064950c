//! Deploying, listing and removing a tenant's slices.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::{json, Value};

use super::{ApiError, Caller, SharedState};
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

#[utoipa::path(get, path = "/v1/t/{tenant}/slices", params(("tenant" = String, Path)), responses((status = 200, body = super::schema::SliceList), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
/// `GET /v1/t/{tenant}/slices`
pub async fn list(State(state): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let slices: Vec<Value> = state.registry.list(&caller.tenant).iter().map(|d| describe_deployed(d)).collect();
    // What the catalog holds but could not load (damaged): deploying the slice again heals it.
    let unavailable: Vec<Value> =
        state.registry.unavailable(&caller.tenant).into_iter().map(|(name, error)| json!({"name": name, "error": error})).collect();
    Ok(Json(json!({ "slices": slices, "unavailable": unavailable })))
}

#[utoipa::path(get, path = "/v1/t/{tenant}/slices/{slice}", params(("tenant" = String, Path), ("slice" = String, Path)),
    responses((status = 200, body = super::schema::SliceDoc), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
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
    responses((status = 200, body = super::schema::SliceDoc), (status = 422, description = "invalid_component or incompatible_contract", body = super::schema::ErrorBody), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 413, description = "payload_too_large: over the tenant's max_component_bytes", body = super::schema::ErrorBody), (status = 429, description = "rate_limited, or upload_rate_limited: over the tenant's uploads_per_minute", body = super::schema::ErrorBody), (status = 503, description = "compile_timeout", body = super::schema::ErrorBody)))]
/// `PUT /v1/t/{tenant}/slices/{slice}`: the component's bytes. Compiled and validated off the
/// request path, then swapped in; the slice it describes must be `{slice}`. Counted against the
/// tenant's `uploads_per_minute` (unless the admin uploads); read no further than its
/// `max_component_bytes`. A refused upload is answered once the rest of its body is read, or at
/// once if its client waits for `100 Continue` ([`super::unread_body`]).
pub async fn deploy(
    State(state): State<SharedState>,
    Path((tenant, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Refused from its head, the body is not asked for: a client waiting for `100 Continue`
    // sends none of it.
    let caller = admit(&state, &tenant, &headers)?;
    let component = read_component(&caller, body).await?;
    let deployed = state.registry.deploy(&caller.tenant, Vec::from(component), Some(&name)).await?;
    state.metrics.deploys.inc();
    Ok((StatusCode::OK, Json(describe_deployed(&deployed))))
}

/// What an upload's head decides: who sends it, whether the tenant may upload now, and whether
/// the length it declares is within the tenant's `max_component_bytes`.
fn admit(state: &SharedState, tenant: &str, headers: &HeaderMap) -> Result<Caller, ApiError> {
    let caller = state.authorize(headers, tenant)?;
    // The operator's own deploys (the admin token) are not a tenant's to ration.
    if !caller.admin {
        state.registry.admit_upload(&caller.tenant)?;
    }
    if declared_length(headers).is_some_and(|n| n > caller.state.limits.max_component_bytes as u64) {
        return Err(too_large(&caller));
    }
    Ok(caller)
}

/// The body, read no further than the tenant's `max_component_bytes`.
async fn read_component(caller: &Caller, body: Body) -> Result<Bytes, ApiError> {
    let component = match Limited::new(body, caller.state.limits.max_component_bytes).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => return Err(too_large(caller)),
        Err(err) => return Err(ApiError::invalid_input(format!("reading the component: {err}"))),
    };
    if component.is_empty() {
        return Err(ApiError::invalid_input("send the component's bytes as the body"));
    }
    Ok(component)
}

fn too_large(caller: &Caller) -> ApiError {
    let limit = caller.state.limits.max_component_bytes;
    ApiError::payload_too_large(format!("tenant {} may upload components of at most {limit} bytes", caller.tenant))
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

#[utoipa::path(delete, path = "/v1/t/{tenant}/slices/{slice}", params(("tenant" = String, Path), ("slice" = String, Path)),
    responses((status = 204, description = "Removed"), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody), (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
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
