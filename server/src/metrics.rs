//! The counters: plain atomics, bumped on hot paths, so none may take a lock. `GET /metrics`
//! (`api/metrics_endpoint.rs`) renders them.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct Metrics {
    /// Messages appended, by source.
    pub published_http: AtomicU64,
    pub published_demo: AtomicU64,
    /// Pub/Sub messages received from Redis (before validation).
    pub published_redis: AtomicU64,
    /// Messages handed to subscribers' streams (one per message per subscriber).
    pub messages_out: AtomicU64,
    /// 1 while the Redis ingest is connected, 0 otherwise (always 0 without Redis).
    pub redis_up: AtomicU64,
    /// Sessions established with Redis (the first, then every reconnection).
    pub redis_connects: AtomicU64,
    /// Reconnections that found the Redis log behind what this server had read (a failover to
    /// a replica that had not received the newest entries, or a Redis that lost data).
    pub redis_log_rewinds: AtomicU64,
    /// Log entries this server wrote that did not reach `--redis-min-replicas` replicas in time
    /// (their publishes answered 503).
    pub redis_unreplicated: AtomicU64,
    /// Inputs refused, by reason.
    pub rejected_bad_json: AtomicU64,
    pub rejected_bad_type: AtomicU64,
    pub rejected_too_large: AtomicU64,
    pub rejected_too_many_channels: AtomicU64,
    pub rejected_unauthorized: AtomicU64,
    pub rejected_forbidden: AtomicU64,
    pub rejected_rate_limited: AtomicU64,
    pub rejected_new_channel_rate: AtomicU64,
    /// Subscriptions refused, by reason.
    pub refused_subscribers: AtomicU64,
    pub refused_subscribers_per_ip: AtomicU64,
    pub refused_unauthorized: AtomicU64,
    pub refused_forbidden: AtomicU64,
    pub refused_bad_request: AtomicU64,
    /// Connections and requests cut by a bound on what a peer may cost, by bound: no whole
    /// request head within `--header-read-timeout`, no whole body within `--body-timeout` or a
    /// body slower than `--min-body-rate`, an HTTP/2 connection over `--max-connection-buffer`.
    pub cut_header_read_timeout: AtomicU64,
    pub cut_body_timeout: AtomicU64,
    pub cut_min_body_rate: AtomicU64,
    pub cut_max_connection_buffer: AtomicU64,
    /// HTTP/1.1 requests refused (`400`) for having no `Host` header, or several.
    pub bad_host: AtomicU64,
    /// Idle channels forgotten (see `--channel-idle`).
    pub channels_forgotten: AtomicU64,
    /// Connections closed because a write made no progress within `--write-timeout`.
    pub write_timeouts: AtomicU64,
    /// Subscribers cut off for falling behind the history.
    pub lagged_disconnects: AtomicU64,
    /// Subscriptions that asked to resume, and those told of a gap.
    pub resumes: AtomicU64,
    pub resume_gaps: AtomicU64,
    /// HTTP/2 push promises sent, and 103 Early Hints sent.
    pub pushes: AtomicU64,
    pub hints: AtomicU64,
    /// Changes of the subscriber counts sent to every stream (`ringback.presence`), and the
    /// presence reports to Redis that failed (the counts were then this server's only).
    pub presence_updates: AtomicU64,
    pub presence_report_failures: AtomicU64,
    /// Connections open now.
    pub connections: AtomicUsize,
}

impl Metrics {
    /// Counts one refused input under `reason` (the labels of `feed::broadcast::Rejected`).
    pub fn reject(&self, reason: &str) {
        let counter = match reason {
            "bad_json" => &self.rejected_bad_json,
            "bad_type" => &self.rejected_bad_type,
            "too_large" => &self.rejected_too_large,
            "unauthorized" => &self.rejected_unauthorized,
            "forbidden" => &self.rejected_forbidden,
            "rate_limited" => &self.rejected_rate_limited,
            "new_channel_rate" => &self.rejected_new_channel_rate,
            _ => &self.rejected_too_many_channels,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one refused subscription under `reason`.
    pub fn refuse(&self, reason: &str) {
        let counter = match reason {
            "subscribers" => &self.refused_subscribers,
            "subscribers_per_ip" => &self.refused_subscribers_per_ip,
            "unauthorized" => &self.refused_unauthorized,
            "forbidden" => &self.refused_forbidden,
            _ => &self.refused_bad_request,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
