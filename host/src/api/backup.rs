//! `POST /v1/admin/backup`: an online backup of the server's data directory, with the admin
//! token, while it goes on serving.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;

use super::commands::json_body;
use super::{ApiError, SharedState};
use crate::backup::{BackupError, BackupReport};

impl From<BackupError> for ApiError {
    fn from(err: BackupError) -> Self {
        let message = err.to_string();
        match err {
            BackupError::Busy(_) | BackupError::OtherStore(_) | BackupError::Damaged { .. } | BackupError::NotABackup(_) => {
                Self::new(StatusCode::CONFLICT, "conflict", message)
            }
            BackupError::InvalidInput(_) | BackupError::NotEmpty(_) => Self::invalid_input(message),
            BackupError::Io { .. } | BackupError::State(_) | BackupError::Store(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message)
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupRequest {
    dest: String,
}

#[utoipa::path(post, path = "/v1/admin/backup",
    request_body(content = Object, description = "`{dest}`: an absolute directory on the server's machine; empty, missing, or holding an earlier backup of this server (then only what is new is copied)"),
    responses(
        (status = 200, body = BackupReport, description = "The backup is complete and its manifest written"),
        (status = 400, body = super::schema::ErrorBody, description = "`invalid_input`: no `dest`, a relative path, or a server on FoundationDB"),
        (status = 409, body = super::schema::ErrorBody, description = "`conflict`: a backup is already running, or `dest` holds a damaged backup or one of another log"),
        (status = 503, body = super::schema::ErrorBody)))]
/// `POST /v1/admin/backup`: copies every tenant's log up to one head, the read-model state at or
/// before it, the deployed slices and tenant files into `dest`; appends go on meanwhile.
pub async fn backup(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<BackupReport>, ApiError> {
    super::admin::admin(&state, &headers)?;
    let request: BackupRequest =
        serde_json::from_value(json_body(body)?).map_err(|e| ApiError::invalid_input(format!("backup request: {e}")))?;
    let dest = std::path::PathBuf::from(request.dest);
    if !dest.is_absolute() {
        return Err(ApiError::invalid_input(format!("dest {} is not an absolute path", dest.display())));
    }
    let source = state.backup.clone().ok_or_else(|| {
        ApiError::invalid_input("this server keeps its data in FoundationDB: back it up with FoundationDB's own tools (fdbbackup)")
    })?;
    let report = tokio::task::spawn_blocking(move || source.backup(&dest))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", format!("the backup task failed: {e}")))??;
    tracing::info!(dest = %report.dest, generation = report.generation, log_bytes_copied = report.log_bytes_copied, "backup written");
    Ok(Json(report))
}
