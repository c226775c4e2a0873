//! The errors a client can cause, each with its status and a JSON body.
//!
//! Handlers return `Result<_, AppError>`; nothing a client sends can panic the server.

use crate::api::auth::AuthError;
use crate::api::limits::LimitError;
use crate::feed::broadcast::Rejected;
use crate::feed::redis_ingest::PublishError;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed input: bad JSON, a missing field, a bad channel, a bad `Last-Event-ID`.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over the configured size limit.
    #[error("message is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// The request is well formed but the feed refused it.
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// Missing or wrong credentials (`401`), or a credential without the right (`403`).
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// A limit on subscribers or on the publish rate (`429`, or `503` when the server is full).
    #[error(transparent)]
    Limit(#[from] LimitError),
    /// The request body did not arrive in time (`--body-timeout`, `--min-body-rate`).
    #[error("{0}")]
    Timeout(String),
    /// The feed's source (Redis) cannot take the message now; nothing was published.
    #[error("{0}")]
    Unavailable(String),
}

impl From<PublishError> for AppError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Rejected(r) => AppError::Rejected(r),
            PublishError::Unavailable(_) => AppError::Unavailable(e.to_string()),
        }
    }
}

impl AppError {
    pub fn status(&self) -> StatusCode {
        match self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::TooLarge { .. } | AppError::Rejected(Rejected::TooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            AppError::Rejected(Rejected::Channel(_)) => StatusCode::BAD_REQUEST,
            AppError::Rejected(Rejected::TooManyChannels(_)) => StatusCode::TOO_MANY_REQUESTS,
            AppError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Timeout(_) => StatusCode::REQUEST_TIMEOUT,
            AppError::Unauthorized(AuthError::Forbidden { .. }) => StatusCode::FORBIDDEN,
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            AppError::Limit(e) => e.status(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        match &self {
            AppError::Unauthorized(AuthError::Forbidden { .. }) => {}
            AppError::Unauthorized(_) => {
                headers.insert(
                    axum::http::header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Bearer"),
                );
            }
            AppError::Limit(limit) => {
                headers.insert(axum::http::header::RETRY_AFTER, limit.retry_after().into());
            }
            _ => {}
        }
        response
    }
}
