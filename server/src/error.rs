//! The errors a client can cause, each with its status and a JSON body.
//!
//! Handlers return `Result<_, AppError>`; nothing a client sends can panic the server.

use crate::auth::AuthError;
use crate::broadcast::Rejected;
use crate::redis_ingest::PublishError;
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
    /// Missing or wrong publish credentials.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
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
            AppError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = (self.status(), body).into_response();
        if matches!(self, AppError::Unauthorized(_)) {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
