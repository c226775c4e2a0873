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
    /// Pub/Sub messages received from Redis (before validation).
    pub published_redis: AtomicU64,
    /// Messages handed to subscribers' streams (one per message per subscriber).
    pub messages_out: AtomicU64,
    /// 1 while the Redis ingest is connected, 0 otherwise (always 0 without Redis).
    pub redis_up: AtomicU64,
    /// Sessions established with Redis (the first, then every reconnection).
    pub redis_connects: AtomicU64,
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

/// `GET /metrics`: the families by what they describe, then the process's own.
pub async fn render(State(state): State<AppState>) -> impl IntoResponse {
    let mut out = Exposition(String::new());
    traffic(&mut out, &state);
    refusals(&mut out, &state.metrics);
    bounds(&mut out, &state.metrics);
    feed(&mut out, &state);
    process(&mut out);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out.0)
}

/// A counter's value now.
fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Subscribers, connections, messages in and out, Redis.
fn traffic(out: &mut Exposition, state: &AppState) {
    let m = &state.metrics;
    out.family(
        "ringback_subscribers",
        "gauge",
        &[("", state.feed.subscriber_count() as u64)],
    );
    let connections = m.connections.load(Ordering::Relaxed) as u64;
    out.family("ringback_connections", "gauge", &[("", connections)]);
    out.family(
        "ringback_messages_in_total",
        "counter",
        &[
            ("source=\"http\"", get(&m.published_http)),
            ("source=\"demo\"", get(&m.published_demo)),
            ("source=\"redis\"", get(&m.published_redis)),
        ],
    );
    out.family(
        "ringback_messages_out_total",
        "counter",
        &[("", get(&m.messages_out))],
    );
    out.family("ringback_redis_up", "gauge", &[("", get(&m.redis_up))]);
    out.family(
        "ringback_redis_connects_total",
        "counter",
        &[("", get(&m.redis_connects))],
    );
}

/// Inputs and subscriptions refused, by reason.
fn refusals(out: &mut Exposition, m: &Metrics) {
    out.family(
        "ringback_rejected_total",
        "counter",
        &[
            ("reason=\"bad_json\"", get(&m.rejected_bad_json)),
            ("reason=\"bad_type\"", get(&m.rejected_bad_type)),
            ("reason=\"too_large\"", get(&m.rejected_too_large)),
            (
                "reason=\"too_many_channels\"",
                get(&m.rejected_too_many_channels),
            ),
            ("reason=\"unauthorized\"", get(&m.rejected_unauthorized)),
            ("reason=\"forbidden\"", get(&m.rejected_forbidden)),
            ("reason=\"rate_limited\"", get(&m.rejected_rate_limited)),
            (
                "reason=\"new_channel_rate\"",
                get(&m.rejected_new_channel_rate),
            ),
        ],
    );
    out.family(
        "ringback_subscriptions_refused_total",
        "counter",
        &[
            ("reason=\"subscribers\"", get(&m.refused_subscribers)),
            (
                "reason=\"subscribers_per_ip\"",
                get(&m.refused_subscribers_per_ip),
            ),
            ("reason=\"unauthorized\"", get(&m.refused_unauthorized)),
            ("reason=\"forbidden\"", get(&m.refused_forbidden)),
            ("reason=\"bad_request\"", get(&m.refused_bad_request)),
        ],
    );
}

/// Connections and requests cut by a bound, malformed requests, stalled writers and laggards.
fn bounds(out: &mut Exposition, m: &Metrics) {
    out.family(
        "ringback_cuts_total",
        "counter",
        &[
            (
                "bound=\"header_read_timeout\"",
                get(&m.cut_header_read_timeout),
            ),
            ("bound=\"body_timeout\"", get(&m.cut_body_timeout)),
            ("bound=\"min_body_rate\"", get(&m.cut_min_body_rate)),
            (
                "bound=\"max_connection_buffer\"",
                get(&m.cut_max_connection_buffer),
            ),
        ],
    );
    out.family(
        "ringback_bad_requests_total",
        "counter",
        &[("reason=\"host\"", get(&m.bad_host))],
    );
    out.family(
        "ringback_write_timeouts_total",
        "counter",
        &[("", get(&m.write_timeouts))],
    );
    let lagged = get(&m.lagged_disconnects);
    out.family(
        "ringback_lagged_disconnects_total",
        "counter",
        &[("", lagged)],
    );
}

/// The feed: channels, resumes, pushes and hints, history.
fn feed(out: &mut Exposition, state: &AppState) {
    let m = &state.metrics;
    let (held, held_bytes) = state.feed.held();
    out.family(
        "ringback_channels",
        "gauge",
        &[("", state.feed.channel_count() as u64)],
    );
    out.family(
        "ringback_channels_forgotten_total",
        "counter",
        &[("", get(&m.channels_forgotten))],
    );
    out.family(
        "ringback_resumes_total",
        "counter",
        &[("", get(&m.resumes))],
    );
    out.family(
        "ringback_resume_gaps_total",
        "counter",
        &[("", get(&m.resume_gaps))],
    );
    out.family("ringback_pushes_total", "counter", &[("", get(&m.pushes))]);
    out.family(
        "ringback_early_hints_total",
        "counter",
        &[("", get(&m.hints))],
    );
    out.family("ringback_history_messages", "gauge", &[("", held as u64)]);
    out.family(
        "ringback_history_bytes",
        "gauge",
        &[("", held_bytes as u64)],
    );
    out.family(
        "ringback_newest_id",
        "gauge",
        &[("", state.feed.newest_id())],
    );
}

/// This process's memory and CPU.
fn process(out: &mut Exposition) {
    if let Some(process) = process_stats() {
        out.value(
            "process_resident_memory_bytes",
            "gauge",
            process.rss_bytes as f64,
        );
        out.value("process_cpu_seconds_total", "counter", process.cpu_seconds);
    }
}

/// This process's resident memory and CPU time, as Prometheus's process collector names them.
#[derive(Clone, Copy, Debug)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// Reads [`ProcessStats`] from Linux's `/proc/self` (`None` elsewhere). CPU ticks are taken at
/// 100 per second, the value on every Linux this runs on.
pub fn process_stats() -> Option<ProcessStats> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcessStats {
        rss_bytes: rss_kib * 1024,
        cpu_seconds: ticks as f64 / 100.0,
    })
}

/// Raises this process's open-file limit to its hard limit (each connection is a file); returns
/// the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

/// Prometheus text format, one metric family at a time.
struct Exposition(String);

impl Exposition {
    /// One unlabelled sample with a fractional value.
    fn value(&mut self, name: &str, kind: &str, value: f64) {
        let _ = writeln!(self.0, "# TYPE {name} {kind}\n{name} {value}");
    }

    /// `# TYPE name kind`, then one sample per `(labels, value)`; empty labels print none.
    fn family(&mut self, name: &str, kind: &str, samples: &[(&str, u64)]) {
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(self.0, "{name} {value}");
            } else {
                let _ = writeln!(self.0, "{name}{{{labels}}} {value}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_read() {
        let p = process_stats().expect("Linux /proc");
        assert!(p.rss_bytes > 1 << 20, "{p:?}");
        assert!(p.cpu_seconds >= 0.0);
    }

    #[test]
    fn exposition_format() {
        let mut out = Exposition(String::new());
        out.family("a_total", "counter", &[("", 3)]);
        out.family(
            "b_total",
            "counter",
            &[("reason=\"x\"", 1), ("reason=\"y\"", 2)],
        );
        assert_eq!(
            out.0,
            "# TYPE a_total counter\na_total 3\n# TYPE b_total counter\nb_total{reason=\"x\"} 1\nb_total{reason=\"y\"} 2\n"
        );
    }
}
