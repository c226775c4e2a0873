//! Request ids: every request runs in a `tracing` span carrying one, and the response says which
//! (`x-request-id`), so a user's report and the server's log lines meet.
//!
//! A proxy's own `x-request-id` is kept when it is a short token (letters, digits, `-`, `_`,
//! `.`; at most 64 bytes); anything else is replaced, so a client cannot forge log lines with it.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::{AtomicU64, Ordering};
use tracing::Instrument;

pub const REQUEST_ID: &str = "x-request-id";

/// A process-unique id: a per-process random prefix and a counter.
fn new_id() -> HeaderValue {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static PREFIX: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    let prefix =
        *PREFIX.get_or_init(|| (crate::runtime::jitter::fraction() * f64::from(u32::MAX)) as u32);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("{prefix:08x}-{n}"))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

fn acceptable(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Middleware: the span and the header.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get(REQUEST_ID)
        .filter(|v| acceptable(v))
        .cloned()
        .unwrap_or_else(new_id);
    let span = tracing::info_span!(
        "request",
        id = id.to_str().unwrap_or(""),
        method = %req.method(),
        path = req.uri().path(),
    );
    let mut response = next.run(req).instrument(span.clone()).await;
    // The access log, at debug level: one line per request with its id, method, path (never
    // the query string, which may carry a subscriber's token) and status.
    span.in_scope(|| tracing::debug!(status = response.status().as_u16(), "answered"));
    response.headers_mut().insert(REQUEST_ID, id);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_foreign_ones_checked() {
        assert_ne!(new_id(), new_id());
        assert!(acceptable(&HeaderValue::from_static("abc-123_x.y")));
        assert!(!acceptable(&HeaderValue::from_static("")));
        assert!(!acceptable(&HeaderValue::from_static("a b")));
        assert!(!acceptable(&HeaderValue::from_static("a\"b")));
        assert!(!acceptable(
            &HeaderValue::from_str(&"x".repeat(65)).unwrap()
        ));
    }
}
