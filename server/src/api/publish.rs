//! `POST /messages`: publishing over HTTP.
//!
//! The body is read up to the size limit and no further, parsed, and handed to the feed, which
//! validates and appends it. Every refusal is counted and answered with a JSON error; nothing a
//! publisher sends affects other publishers or subscribers.
//!
//! Only `Content-Type: application/json` is taken (`415` otherwise): a page on another site can
//! send `text/plain`, a form or no type at all without asking (no CORS preflight), so accepting
//! them would let any site a user visits publish into a feed their browser reaches. JSON is a
//! type a browser sends cross-site only after a preflight the server answers (`--cors-origins`).
//!
//! With an `Idempotency-Key` header, the publish happens at most once per key within
//! `--idempotency-window` (on every server of one Redis): a repeat is answered as the first was,
//! with `Idempotent-Replayed: true`, and not delivered again (`feed/idempotency.rs`).

use crate::api::guard::BodyCut;
use crate::api::limits::client_ip;
use crate::api::refusal::{Reason, Refusal};
use crate::api::state::ApiState;
use crate::feed::idempotency::{Idempotent, Outcome};
use crate::runtime::connection::ClientAddr;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use std::sync::atomic::Ordering;

/// The header that makes a publish idempotent.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The header on an answer repeated for an idempotency key.
pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";

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
/// for a new channel beyond the credential's new-channel rate; `415` for a body that is not
/// `application/json`; `413` for a body over the message limit (at once when its
/// `Content-Length` says so, before any of it is read); `408` for a body that does not arrive in
/// time (`--body-timeout`, `--min-body-rate`); `400` for a bad `Idempotency-Key`, `422` for
/// one used for another message; `503` while Redis (when configured) is unreachable.
pub async fn publish(
    State(state): State<ApiState>,
    peer: Option<Extension<ClientAddr>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match publish_checked(&state, peer.as_deref(), &headers, body).await {
        Ok(response) => response,
        Err(refusal) => refusal
            .counted(&state.metrics.rejected, &state.refusals)
            .into_response(),
    }
}

async fn publish_checked(
    state: &ApiState,
    peer: Option<&ClientAddr>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let ip = client_ip(peer, headers, state.config.limits.trust_forwarded_for);
    // Failed credentials spend the address's allowance at the publish rate, and an address
    // that has spent it is refused before its credential is even looked at: guessing tokens
    // is then no faster than publishing, and a guess cannot be told right while throttled.
    // Open publishing has no credential to fail, so it skips this lock and lookup.
    let failures = (!state.auth.is_open()).then(|| format!("failed:{ip}"));
    if let Some(failures) = &failures {
        state.publish_rate.peek(failures)?;
    }
    // Credentials first: a stranger learns nothing about the body rules.
    let publisher = state.auth.publisher(headers).map_err(|e| {
        if let Some(failures) = &failures {
            let _ = state.publish_rate.check(failures);
        }
        Refusal::from(e)
    })?;
    // Then the rate, before any work on the body; open publishing is limited per address.
    let key = publisher
        .credential
        .clone()
        .unwrap_or_else(|| format!("ip:{ip}"));
    state.publish_rate.check(&key)?;
    if !is_json(headers) {
        return Err(Refusal::new(
            Reason::UnsupportedMediaType,
            "the body must be `Content-Type: application/json`",
        ));
    }
    let idempotency_key = idempotency_key(state, headers)?;
    let body = read_body(state, headers, body).await?;
    let request: PublishRequest = serde_json::from_slice(&body).map_err(|e| {
        Refusal::new(
            Reason::BadJson,
            format!("expected {{\"type\": \"...\", \"data\": ...}}: {e}"),
        )
    })?;
    publisher.check(&request.channel)?;
    // A channel the feed does not carry yet spends the credential's new-channel allowance, so
    // one address cannot take every channel the feed may carry (`--max-channels`).
    if !state.feed.knows_channel(&request.channel) {
        state
            .new_channel_rate
            .check(&key)
            .map_err(|e| Refusal::from(e).because(Reason::NewChannelRate))?;
    }
    let outcome = match idempotency_key {
        None => {
            let id = state
                .source
                .publish("http", &request.channel, &request.data)
                .await?;
            Outcome::Published(id)
        }
        Some(k) => {
            let once = Idempotent::new(
                publisher.credential.as_deref(),
                k,
                &request.channel,
                &request.data,
            );
            state
                .source
                .publish_once("http", &request.channel, &request.data, &once)
                .await?
        }
    };
    match outcome {
        Outcome::Published(id) => {
            state.metrics.published_http.fetch_add(1, Ordering::Relaxed);
            Ok(accepted(id, false))
        }
        Outcome::Replayed(id) => Ok(accepted(id, true)),
        Outcome::KeyReused(_) => Err(Refusal::new(
            Reason::IdempotencyKeyReused,
            "this Idempotency-Key was used for another message",
        )),
    }
}

/// `202 {"id": N}`, marked when it repeats an earlier answer.
fn accepted(id: u64, replayed: bool) -> Response {
    let mut response =
        (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response();
    if replayed {
        response
            .headers_mut()
            .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

/// Whether the body is declared `application/json` (parameters such as a charset allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The request's `Idempotency-Key`, if any: 1 to `--max-idempotency-key-bytes` visible ASCII
/// characters (quotes around it, as the IETF draft writes it, are taken off).
fn idempotency_key<'h>(
    state: &ApiState,
    headers: &'h HeaderMap,
) -> Result<Option<&'h str>, Refusal> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let max = state.config.idempotency.max_idempotency_key_bytes;
    let bad = || {
        Refusal::new(
            Reason::BadIdempotencyKey,
            format!("an Idempotency-Key is one value of 1 to {max} visible ASCII characters"),
        )
    };
    if values.next().is_some() {
        return Err(bad());
    }
    let raw = value.to_str().map_err(|_| bad())?;
    let key = raw
        .strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(raw);
    if key.is_empty() || key.len() > max || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(key))
}

/// The body, whole, within the message limit: refused at once when its declared length is
/// over it, cut when more than that arrives, and `408` when the body's deadline cut it (see
/// `guard.rs`).
async fn read_body(state: &ApiState, headers: &HeaderMap, body: Body) -> Result<Bytes, Refusal> {
    let limit = state.config.feed.max_message_bytes;
    let too_large = || {
        Refusal::new(
            Reason::TooLarge,
            format!("message is larger than the limit of {limit} bytes"),
        )
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
            Some(cut) => Err(cut.into()),
            None => Err(Refusal::new(
                Reason::BadJson,
                format!("could not read the body: {e}"),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_json_is_json() {
        let with = |t: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "application/json-seq",
            "",
        ] {
            assert!(!with(other), "{other}");
        }
        assert!(!is_json(&HeaderMap::new()));
    }
}
