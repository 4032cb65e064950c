//! Where a tenant's commands decide one after another now: its hot boundaries.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde_json::{json, Value};

use super::{ApiError, SharedState};

#[utoipa::path(get, path = "/v1/t/{tenant}/hot-boundaries", params(("tenant" = String, Path)),
    responses((status = 200, body = super::schema::HotBoundariesDoc), (status = 400, body = super::schema::ErrorBody), (status = 401, body = super::schema::ErrorBody),
        (status = 403, body = super::schema::ErrorBody), (status = 404, body = super::schema::ErrorBody), (status = 429, body = super::schema::ErrorBody)))]
/// `GET /v1/t/{tenant}/hot-boundaries`: the query items this host's commands queue on now, the
/// longest queue first (the README's "Hot boundaries").
pub async fn list(State(state): State<SharedState>, Path(tenant): Path<String>, headers: HeaderMap) -> Result<Json<Value>, ApiError> {
    let caller = state.authorize(&headers, &tenant)?;
    Ok(Json(json!({ "hot_boundaries": crate::runner::hot_boundaries(&state.store, &caller.tenant) })))
}
