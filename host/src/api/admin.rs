//! Managing tenants with the admin token: create (a first token comes back, once), list, remove.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::commands::json_body;
use super::{ApiError, SharedState};
use crate::store::Tenant;
use crate::tenants::{LimitOverrides, Principal, TenantError};

impl From<TenantError> for ApiError {
    fn from(err: TenantError) -> Self {
        let message = err.to_string();
        match err {
            TenantError::Exists(_) | TenantError::Configured(_) => Self::new(StatusCode::CONFLICT, "conflict", message),
            TenantError::Unknown(_) => Self::not_found(message),
            TenantError::Io(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message),
        }
    }
}

pub(super) fn admin(state: &SharedState, headers: &HeaderMap) -> Result<(), ApiError> {
    match state.tenants.authenticate(super::bearer(headers)?) {
        Some(Principal::Admin) => Ok(()),
        Some(Principal::Tenant(_)) => Err(ApiError::forbidden("only the admin token manages tenants")),
        None => Err(ApiError::unauthorized("unknown token")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTenant {
    name: String,
    #[serde(default)]
    limits: LimitOverrides,
}

#[utoipa::path(post, path = "/v1/admin/tenants",
    request_body(content = Object, description = "`{name, limits?}` (limits as in the configuration file)"),
    responses((status = 201, description = "`{tenant, token}`: the token is shown once"), (status = 409, body = super::schema::ErrorBody)))]
/// `POST /v1/admin/tenants`: creates a tenant and returns its first token.
pub async fn create(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    admin(&state, &headers)?;
    let request: NewTenant =
        serde_json::from_value(json_body(body)?).map_err(|e| ApiError::invalid_input(format!("new tenant: {e}")))?;
    let tenant = Tenant::new(request.name).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    request.limits.validate().map_err(|e| ApiError::invalid_input(format!("limits.{e}")))?;
    let token = state.tenants.create(&tenant, request.limits)?;
    state.registry.prepare(&tenant)?;
    Ok((StatusCode::CREATED, Json(json!({ "tenant": tenant, "token": token }))))
}

#[utoipa::path(get, path = "/v1/admin/tenants", responses((status = 200, description = "`{tenants: [{name, limits}]}`")))]
/// `GET /v1/admin/tenants`
pub async fn list(State(state): State<SharedState>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers)?;
    let tenants: Vec<Value> = state
        .tenants
        .names()
        .into_iter()
        .filter_map(|tenant| {
            let limits = state.tenants.get(&tenant)?.limits.clone();
            Some(json!({
                "name": tenant,
                "limits": {
                    "requests_per_second": limits.requests_per_second,
                    "burst": limits.burst,
                    "concurrent_invocations": limits.concurrent_invocations,
                    "memory_bytes": limits.memory_bytes,
                    "max_log_events": limits.max_log_events,
                    "max_slices": limits.max_slices,
                    "deadline_ms": limits.deadline_ms,
                    "command_deadline_ms": limits.command_deadline_ms,
                    "max_streams": limits.max_streams,
                },
                "slices": state.registry.list(&tenant).len(),
            }))
        })
        .collect();
    Ok(Json(json!({ "tenants": tenants })))
}

#[utoipa::path(delete, path = "/v1/admin/tenants/{tenant}", params(("tenant" = String, Path)),
    responses((status = 204, description = "Its tokens stop working; its data stays"), (status = 409, body = super::schema::ErrorBody)))]
/// `DELETE /v1/admin/tenants/{tenant}`: removes a tenant created through this API.
pub async fn remove(State(state): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<StatusCode, ApiError> {
    admin(&state, &headers)?;
    let tenant = Tenant::new(tenant).map_err(|e| ApiError::not_found(e.to_string()))?;
    state.tenants.remove(&tenant)?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/admin/tenants/{tenant}/token", params(("tenant" = String, Path)),
    responses((status = 200, description = "`{tenant, token}`: the new token, shown once"), (status = 404, body = super::schema::ErrorBody), (status = 409, body = super::schema::ErrorBody)))]
/// `POST /v1/admin/tenants/{tenant}/token`: replaces the tokens of a tenant created through this
/// API with a new one. The old ones stop working at once and the streams they opened end.
pub async fn replace_token(State(state): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers)?;
    let tenant = Tenant::new(tenant).map_err(|e| ApiError::not_found(e.to_string()))?;
    let token = state.tenants.replace_tokens(&tenant)?;
    Ok(Json(json!({ "tenant": tenant, "token": token })))
}
