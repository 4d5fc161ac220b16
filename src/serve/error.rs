//! Error responses: a status and OpenAI's `{"error": {...}}` body.

use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::openai::{ErrorBody, ErrorDetail};
use crate::engine::SubmitError;

/// An error response: a status and OpenAI's `{"error": {...}}` body.
#[derive(Debug)]
pub(super) struct ApiError {
    pub(super) status: StatusCode,
    pub(super) detail: ErrorDetail,
    /// seconds for a `Retry-After` header (503s that will pass)
    pub(super) retry_after: Option<u32>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            detail: ErrorDetail {
                message: message.into(),
                kind,
                param: None,
                code: None,
            },
            retry_after: None,
        }
    }

    /// A 503 that clients should retry after `seconds`.
    pub(super) fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        seconds: u32,
    ) -> Self {
        let mut e =
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message).code(code);
        e.retry_after = Some(seconds);
        e
    }

    /// A request that ran past the server's `--request-timeout`.
    pub(super) fn deadline(limit: std::time::Duration) -> Self {
        ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "server_error",
            format!(
                "the request ran past the server's limit of {} s (--request-timeout) and was cancelled",
                limit.as_secs_f64()
            ),
        )
        .code("timeout")
    }

    /// A 400 about the request field `param`.
    pub(super) fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message).param(param)
    }

    /// A 400 about the request as a whole (unreadable body, prompt too long, ...).
    pub(super) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub(super) fn model_not_found(model: &str) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("The model `{model}` does not exist."),
        )
        .param("model")
        .code("model_not_found")
    }

    /// The engine failed after accepting the request.
    pub(super) fn server(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    pub(super) fn param(mut self, param: &'static str) -> Self {
        self.detail.param = Some(param);
        self
    }

    pub(super) fn code(mut self, code: &'static str) -> Self {
        self.detail.code = Some(code);
        self
    }

    pub(super) fn body(self) -> ErrorBody {
        ErrorBody { error: self.detail }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after;
        let mut response = (self.status, Json(self.body())).into_response();
        if let Some(s) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        let message = e.to_string();
        match e {
            SubmitError::Invalid(_) => ApiError::bad_request(message),
            SubmitError::Overloaded(_) => ApiError::unavailable("overloaded", message, 1),
            SubmitError::Stopped(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message)
                    .code("engine_stopped")
            }
        }
    }
}

pub(super) async fn unknown_route(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("Invalid URL ({method} {})", uri.path()),
    )
}

pub(super) async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("Method not allowed ({method} {})", uri.path()),
    )
}
