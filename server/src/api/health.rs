//! `GET /healthz` and `GET /readyz`.

use crate::api::refusal::{Reason, Refusal};
use crate::api::state::ApiState;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

/// `GET /healthz`: `200` as long as the process serves at all (a supervisor restarts on it).
pub async fn health() -> &'static str {
    "ok"
}

/// `GET /readyz`: `200` while the server can serve the whole feed; `503` while its source
/// (Redis) is unreachable, and from the moment it is told to stop (its streams are draining). A
/// load balancer should route by readiness.
pub async fn ready(State(state): State<ApiState>) -> Response {
    if state.shutdown.is_cancelled() {
        Refusal::new(Reason::Stopping, "the server is shutting down").into_response()
    } else if state.source.is_ready() {
        "ready".into_response()
    } else {
        Refusal::new(
            Reason::NotReady,
            "the message source (Redis) is unreachable",
        )
        .into_response()
    }
}
