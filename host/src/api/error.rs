//! Every error the API returns: `{"error": {"code": "...", "message": "..."}}` with a stable
//! code and the status that fits. Bad input is never a panic and never a 500.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::deploy::DeployError;
use crate::runtime::{InvokeError, LoadError};
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_input", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A file of the slice catalog is damaged (the message names it and says what to do).
    pub fn catalog_damaged(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "catalog_damaged", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn rate_limited(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
    }

    /// The tenant has all its live streams open.
    pub fn too_many_streams(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_streams", message)
    }

    /// No format the client accepts can answer the request.
    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, "not_acceptable", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": { "code": self.code, "message": self.message } });
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        let message = err.to_string();
        match err {
            StoreError::ConditionFailed { .. } => Self::new(StatusCode::CONFLICT, "condition_failed", message),
            StoreError::InvalidInput(_) => Self::invalid_input(message),
            StoreError::LimitExceeded { .. } => Self::payload_too_large(message),
            StoreError::Locked { .. }
            | StoreError::UnsupportedFormat { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Unavailable(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message),
        }
    }
}

impl From<InvokeError> for ApiError {
    fn from(err: InvokeError) -> Self {
        let message = err.to_string();
        match err {
            InvokeError::Rejected(m) => Self::new(StatusCode::UNPROCESSABLE_ENTITY, "rejected", m),
            InvokeError::InvalidInput(m) => Self::invalid_input(m),
            InvokeError::Conflict(m) => Self::new(StatusCode::CONFLICT, "conflict", m),
            InvokeError::NotFound(m) => Self::not_found(m),
            InvokeError::Store(m) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", m),
            InvokeError::StoreFailed(e) => e.into(),
            InvokeError::Trapped { .. } => Self::new(StatusCode::BAD_GATEWAY, "slice_trapped", message),
            InvokeError::OutOfMemory { .. } => Self::new(StatusCode::BAD_GATEWAY, "slice_out_of_memory", message),
            InvokeError::Timeout { .. } => Self::new(StatusCode::GATEWAY_TIMEOUT, "slice_timeout", message),
            InvokeError::Busy { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, "slice_busy", message),
        }
    }
}

impl From<DeployError> for ApiError {
    fn from(err: DeployError) -> Self {
        let message = err.to_string();
        match err {
            DeployError::Load(LoadError::IncompatibleContract { .. }) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "incompatible_contract", message)
            }
            DeployError::Load(LoadError::Io(_)) | DeployError::Io(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", message)
            }
            DeployError::Load(LoadError::CompileTimeout { .. }) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "compile_timeout", message),
            DeployError::UploadRate { .. } => Self::new(StatusCode::TOO_MANY_REQUESTS, "upload_rate_limited", message),
            DeployError::Load(_) | DeployError::WrongName { .. } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_component", message)
            }
            DeployError::TooManySlices { .. } => Self::new(StatusCode::FORBIDDEN, "quota_exceeded", message),
            DeployError::NotGranted { .. } => Self::forbidden(message),
            DeployError::UnknownTenant(_) | DeployError::UnknownSlice { .. } => Self::not_found(message),
            DeployError::Damaged { .. } => Self::catalog_damaged(message),
        }
    }
}

/// A request body that could not be read: too large, or cut short.
impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::BytesRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::payload_too_large(rejection.body_text())
        } else {
            Self::invalid_input(rejection.body_text())
        }
    }
}
