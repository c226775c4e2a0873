//! `POST /messages`: publishing over HTTP.
//!
//! The body is read up to the size limit and no further, parsed, and handed to the feed, which
//! validates and appends it. Every refusal is counted and answered with a JSON error; nothing a
//! publisher sends affects other publishers or subscribers.

use crate::api::error::AppError;
use crate::api::guard::BodyCut;
use crate::api::limits::client_ip;
use crate::api::state::ApiState;
use crate::feed::redis_ingest::PublishError;
use crate::runtime::connection::ClientAddr;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use std::sync::atomic::Ordering;

/// The body of `POST /messages`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    #[serde(rename = "type")]
    pub channel: String,
    pub data: serde_json::Value,
}

/// `POST /messages` → `202 {"id": N}`; `401` without a valid credential when credentials are
/// configured, `403` when the credential does not cover the channel; `429` beyond the
/// credential's publish rate, or from an address whose failed credentials went beyond it, or
/// for a new channel beyond the credential's new-channel rate; `413` for a body over the
/// message limit (at once when its `Content-Length` says so, before any of it is read); `408`
/// for a body that does not arrive in time (`--body-timeout`, `--min-body-rate`); `503` while
/// Redis (when configured) is unreachable.
pub async fn publish(
    State(state): State<ApiState>,
    peer: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<serde_json::Value>), AppError> {
    let ip = client_ip(
        peer.as_deref(),
        &headers,
        state.config.limits.trust_forwarded_for,
    );
    // Failed credentials spend the address's allowance at the publish rate, and an address
    // that has spent it is refused before its credential is even looked at: guessing tokens
    // is then no faster than publishing, and a guess cannot be told right while throttled.
    // Open publishing has no credential to fail, so it skips this lock and lookup.
    let failures = (!state.auth.is_open()).then(|| format!("failed:{ip}"));
    if let Some(failures) = &failures {
        state.publish_rate.peek(failures).map_err(|e| {
            state.metrics.reject(e.reason());
            AppError::from(e)
        })?;
    }
    // Credentials first: a stranger learns nothing about the body rules.
    let publisher = state.auth.publisher(&headers).map_err(|e| {
        state.metrics.reject("unauthorized");
        if let Some(failures) = &failures {
            let _ = state.publish_rate.check(failures);
        }
        AppError::from(e)
    })?;
    // Then the rate, before any work on the body; open publishing is limited per address.
    let key = publisher
        .credential
        .clone()
        .unwrap_or_else(|| format!("ip:{ip}"));
    state.publish_rate.check(&key).map_err(|e| {
        state.metrics.reject(e.reason());
        AppError::from(e)
    })?;
    let body = read_body(&state, &headers, body).await?;
    let request: PublishRequest = serde_json::from_slice(&body).map_err(|e| {
        state.metrics.reject("bad_json");
        AppError::BadRequest(format!(
            "expected {{\"type\": \"...\", \"data\": ...}}: {e}"
        ))
    })?;
    publisher.check(&request.channel).map_err(|e| {
        state.metrics.reject("forbidden");
        AppError::from(e)
    })?;
    // A channel the feed does not carry yet spends the credential's new-channel allowance, so
    // one address cannot take every channel the feed may carry (`--max-channels`).
    if !state.feed.knows_channel(&request.channel) {
        state.new_channel_rate.check(&key).map_err(|e| {
            state.metrics.reject("new_channel_rate");
            AppError::from(e)
        })?;
    }
    let id = state
        .source
        .publish("http", &request.channel, &request.data)
        .await
        .map_err(|e| {
            if let PublishError::Rejected(r) = &e {
                state.metrics.reject(r.reason());
            }
            AppError::from(e)
        })?;
    state.metrics.published_http.fetch_add(1, Ordering::Relaxed);
    Ok((StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))))
}

/// The body, whole, within the message limit: refused at once when its declared length is
/// over it, cut when more than that arrives, and `408` when the body's deadline cut it (see
/// `guard.rs`).
async fn read_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Bytes, AppError> {
    let limit = state.config.feed.max_message_bytes;
    let too_large = || {
        state.metrics.reject("too_large");
        AppError::TooLarge { limit }
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => match BodyCut::of(&*e) {
            Some(cut) => Err(AppError::Timeout(cut.to_string())),
            None => {
                state.metrics.reject("bad_json");
                Err(AppError::BadRequest(format!(
                    "could not read the body: {e}"
                )))
            }
        },
    }
}
