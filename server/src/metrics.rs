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
    /// `POST /messages` refused, by `api::refusal::Reason` (its index).
    pub rejected: ByReason,
    /// `GET /messages` refused or shed, by `api::refusal::Reason`.
    pub refused: ByReason,
    /// Redis Pub/Sub payloads dropped, by `feed::broadcast::Rejected` (its index).
    pub redis_rejected: ByReason,
    /// Connections and requests cut by a bound on what a peer may cost, by bound: no whole
    /// request head within `--header-read-timeout`, no whole body within `--body-timeout` or a
    /// body slower than `--min-body-rate`, an HTTP/2 connection over `--max-connection-buffer`.
    pub cut_header_read_timeout: AtomicU64,
    pub cut_body_timeout: AtomicU64,
    pub cut_min_body_rate: AtomicU64,
    pub cut_max_connection_buffer: AtomicU64,
    /// Kept-alive HTTP/1.1 connections closed after `--keep-alive-timeout` without a request,
    /// and idle ones closed early to make room when the server held `--max-connections`.
    pub cut_keep_alive_timeout: AtomicU64,
    pub idle_reclaimed: AtomicU64,
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
    /// Event streams the server ended on purpose, by why: its subscriber's JWT expired, the
    /// server drained, the stream reached `--max-stream-age`.
    pub ends_token_expired: AtomicU64,
    pub ends_draining: AtomicU64,
    pub ends_max_age: AtomicU64,
    /// Publishes answered from an earlier one with the same `Idempotency-Key` (not delivered
    /// again), and keys forgotten before their window because the table was full.
    pub idempotent_replays: AtomicU64,
    pub idempotency_evictions: AtomicU64,
    /// Resumes that waited for the replay budget (`--replay-rate`), and the bytes replayed.
    pub replay_waits: AtomicU64,
    pub replay_bytes: AtomicU64,
}

/// Most reasons a family of refusals counts (`api::refusal::Reason`, `feed::broadcast::Rejected`).
pub const REASONS: usize = 32;

/// One counter per reason of a family, indexed by the reason's position in its declaration.
#[derive(Debug)]
pub struct ByReason([AtomicU64; REASONS]);

impl Default for ByReason {
    fn default() -> Self {
        ByReason(std::array::from_fn(|_| AtomicU64::new(0)))
    }
}

impl ByReason {
    /// Counts one under the reason at `index` (beyond the table: nothing, and a test fails).
    pub fn add(&self, index: usize) {
        if let Some(counter) = self.0.get(index) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The count of the reason at `index`.
    pub fn get(&self, index: usize) -> u64 {
        self.0.get(index).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}
