//! Automations over HTTP: their state, and their dead letters (list, retry, skip).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, SharedState};
use crate::automations::AutomationId;
use crate::store::{Position, Tenant};

fn automation(tenant: &Tenant, slice: String, name: String) -> AutomationId {
    AutomationId { tenant: tenant.clone(), slice, name }
}

fn position(text: &str) -> Result<Position, ApiError> {
    text.parse::<Position>().map_err(|e| ApiError::invalid_input(format!("not a dead letter id: {e}")))
}

#[utoipa::path(get, path = "/v1/t/{tenant}/automations", params(("tenant" = String, Path)),
    responses((status = 200, description = "Every automation: checkpoint, head (positions, as decimal strings), lag, failures, open dead letters")))]
/// `GET /v1/t/{tenant}/automations`
pub async fn list(State(state): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let automations = state.automations.status(&caller.tenant).await?;
    Ok(Json(json!({ "automations": automations })))
}

#[utoipa::path(get, path = "/v1/t/{tenant}/automations/{slice}/{automation}/dead-letters",
    params(("tenant" = String, Path), ("slice" = String, Path), ("automation" = String, Path)),
    responses((status = 200, description = "Open dead letters, oldest first: id, position of the event (both positions, as decimal strings), error, attempts")))]
/// `GET /v1/t/{tenant}/automations/{slice}/{automation}/dead-letters`
pub async fn dead_letters(
    State(state): State<SharedState>,
    Path((tenant, slice, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let letters = state.automations.dead_letters(&automation(&caller.tenant, slice, name)).await?;
    Ok(Json(json!({ "dead_letters": letters })))
}

#[utoipa::path(post, path = "/v1/t/{tenant}/automations/{slice}/{automation}/dead-letters/{id}/{action}",
    params(("tenant" = String, Path), ("slice" = String, Path), ("automation" = String, Path), ("id" = String, Path, pattern = "^[0-9]+$", description = "The dead letter's id (a position)"),
        ("action" = String, Path, description = "`retry` (run the reaction again now) or `skip`")),
    responses((status = 204, description = "Resolved"), (status = 404, body = super::schema::ErrorBody)))]
/// `POST /v1/t/{tenant}/automations/{slice}/{automation}/dead-letters/{id}/retry|skip`
pub async fn resolve(
    State(state): State<SharedState>,
    Path((tenant, slice, name, id, action)): Path<(String, String, String, String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    let id_position = position(&id)?;
    let automation = automation(&caller.tenant, slice, name);
    match action.as_str() {
        "retry" => state.automations.retry(&automation, id_position).await?,
        "skip" => state.automations.skip(&automation, id_position).await?,
        other => return Err(ApiError::not_found(format!("no action {other:?}; use retry or skip"))),
    }
    Ok(StatusCode::NO_CONTENT)
}
