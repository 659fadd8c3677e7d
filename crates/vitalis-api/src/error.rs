//! One JSON error shape for every non-OAuth error:
//! `{"error": {"code": "...", "message": "...", "fields": [{"path": "...", "message": "..."}]}}`.
//! Internal causes are logged and never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::{IntoResponses, ToSchema};
use vitalis_core::{FieldError, ValidationErrors};
use vitalis_store::StoreError;

/// The error envelope.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Machine-readable code, stable across releases (see docs/API-DESIGN.md).
    #[schema(example = "validation_failed")]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// For `validation_failed`: every invalid field with its path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldError>,
}

/// Documented answers of every bearer-authenticated route.
#[derive(IntoResponses)]
pub enum BearerErrors {
    /// Missing, malformed, expired or otherwise invalid bearer token.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// The token lacks the route's scope (`insufficient_scope`).
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// Documented answers of every route that reads a JSON body.
#[derive(IntoResponses)]
pub enum JsonBodyErrors {
    /// Malformed JSON, path or query.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// The body is over the size limit.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    /// The body is not JSON.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Invalid field values; `fields` names each.
    #[response(status = 422)]
    Invalid(ErrorBody),
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request cannot be parsed (malformed JSON, bad query string).
    #[error("{message}")]
    BadRequest { code: &'static str, message: String },
    /// 401: no usable bearer token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token lacks a scope the route requires.
    #[error("this request needs the `{0}` scope")]
    InsufficientScope(&'static str),
    /// 403: authenticated but not allowed to reach this resource.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("the request body is larger than the limit")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: well-formed but invalid.
    #[error("{0}")]
    Validation(ValidationErrors),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest { code, .. } => code,
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<ValidationErrors> for ApiError {
    fn from(errors: ValidationErrors) -> Self {
        ApiError::Validation(errors)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => ApiError::Conflict(format!("{what} already exists")),
            other => ApiError::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let message = match &self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "internal error");
                "the server failed to process the request".to_owned()
            }
            ApiError::Validation(_) => "the request is invalid; see `fields`".to_owned(),
            other => other.to_string(),
        };
        let fields = match &self {
            ApiError::Validation(errors) => errors.0.clone(),
            _ => Vec::new(),
        };
        let body = ErrorBody { error: ErrorDetail { code: self.code().to_owned(), message: message.clone(), fields } };
        let mut response = (status, axum::Json(body)).into_response();
        // RFC 6750 section 3: tell bearer clients what went wrong.
        let challenge = match &self {
            ApiError::Unauthorized(_) => {
                Some(format!("Bearer realm=\"vitalis\", error=\"invalid_token\", error_description=\"{}\"", message.replace('"', "'")))
            }
            ApiError::InsufficientScope(scope) => {
                Some(format!("Bearer realm=\"vitalis\", error=\"insufficient_scope\", scope=\"{scope}\""))
            }
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}
