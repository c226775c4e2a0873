//! Counters, and `GET /metrics` in Prometheus text format.
//!
//! Plain atomics: every counter is bumped on a hot path, so none may take a lock.

use crate::server::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages appended, by source.
    pub published_http: AtomicU64,
    pub published_demo: AtomicU64,
    /// Inputs refused, by reason.
    pub rejected_bad_json: AtomicU64,
    pub rejected_bad_type: AtomicU64,
    pub rejected_too_large: AtomicU64,
    pub rejected_too_many_channels: AtomicU64,
    /// Subscribers cut off for falling behind the history.
    pub lagged_disconnects: AtomicU64,
    /// Subscriptions that asked to resume, and those told of a gap.
    pub resumes: AtomicU64,
    pub resume_gaps: AtomicU64,
    /// HTTP/2 push promises sent, and 103 Early Hints sent.
    pub pushes: AtomicU64,
    pub hints: AtomicU64,
    /// Connections open now.
    pub connections: AtomicUsize,
}

impl Metrics {
    /// Counts one refused input under `reason` (the labels of [`crate::broadcast::Rejected`]).
    pub fn reject(&self, reason: &str) {
        let counter = match reason {
            "bad_json" => &self.rejected_bad_json,
            "bad_type" => &self.rejected_bad_type,
            "too_large" => &self.rejected_too_large,
            _ => &self.rejected_too_many_channels,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let m = &state.metrics;
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let (held, held_bytes) = state.feed.held();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# TYPE ringback_subscribers gauge\nringback_subscribers {}",
        state.feed.subscriber_count()
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_connections gauge\nringback_connections {}",
        m.connections.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE ringback_messages_in_total counter");
    let _ = writeln!(
        out,
        "ringback_messages_in_total{{source=\"http\"}} {}",
        get(&m.published_http)
    );
    let _ = writeln!(
        out,
        "ringback_messages_in_total{{source=\"demo\"}} {}",
        get(&m.published_demo)
    );
    let _ = writeln!(out, "# TYPE ringback_rejected_total counter");
    for (reason, c) in [
        ("bad_json", &m.rejected_bad_json),
        ("bad_type", &m.rejected_bad_type),
        ("too_large", &m.rejected_too_large),
        ("too_many_channels", &m.rejected_too_many_channels),
    ] {
        let _ = writeln!(
            out,
            "ringback_rejected_total{{reason=\"{reason}\"}} {}",
            get(c)
        );
    }
    let _ = writeln!(
        out,
        "# TYPE ringback_lagged_disconnects_total counter\nringback_lagged_disconnects_total {}",
        get(&m.lagged_disconnects)
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_resumes_total counter\nringback_resumes_total {}",
        get(&m.resumes)
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_resume_gaps_total counter\nringback_resume_gaps_total {}",
        get(&m.resume_gaps)
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_pushes_total counter\nringback_pushes_total {}",
        get(&m.pushes)
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_early_hints_total counter\nringback_early_hints_total {}",
        get(&m.hints)
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_history_messages gauge\nringback_history_messages {held}"
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_history_bytes gauge\nringback_history_bytes {held_bytes}"
    );
    let _ = writeln!(
        out,
        "# TYPE ringback_newest_id gauge\nringback_newest_id {}",
        state.feed.newest_id()
    );
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}
