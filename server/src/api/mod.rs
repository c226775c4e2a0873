//! The API: the Router's handlers for `/messages` (subscribe and publish), `/api/channels`,
//! `/metrics`, `/healthz` and `/readyz`, with what they check on the way (credentials, limits,
//! the request guard) and the errors they answer. Handlers see requests, never connections:
//! imports `runtime`, `encoding`, `config`, `metrics` and `feed`, never `transport` or the composition root.

pub mod auth;
pub mod channels;
pub mod events;
pub mod guard;
pub mod health;
pub mod limits;
pub mod metrics_endpoint;
pub mod publish;
pub mod refusal;
pub mod state;
pub mod trace;

use axum::extract::FromRef;
use axum::routing::get;
use axum::Router;
pub use state::ApiState;

/// The event stream (`GET`) and publishing (`POST`).
pub const EVENTS_PATH: &str = "/messages";

/// The API's routes, for a Router whose state holds an [`ApiState`].
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ApiState: FromRef<S>,
{
    Router::new()
        .route(
            EVENTS_PATH,
            // The publish handler reads its body within `--max-message-bytes` itself.
            get(events::subscribe).post(publish::publish),
        )
        .route("/api/channels", get(channels::list))
        .route("/healthz", get(health::health))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(metrics_endpoint::render))
}
