//! `GET /metrics`: the counters in Prometheus text format.

use crate::api::refusal::{Counted, Reason};
use crate::api::state::ApiState;
use crate::feed::broadcast::Rejected;
use crate::metrics::{ByReason, Metrics};
use crate::runtime::process::process_stats;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// `GET /metrics`: the families by what they describe, then the process's own.
pub async fn render(State(state): State<ApiState>) -> impl IntoResponse {
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
fn traffic(out: &mut Exposition, state: &ApiState) {
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
    out.family(
        "ringback_redis_log_rewinds_total",
        "counter",
        &[("", get(&m.redis_log_rewinds))],
    );
    out.family(
        "ringback_redis_unreplicated_total",
        "counter",
        &[("", get(&m.redis_unreplicated))],
    );
}

/// Inputs and subscriptions refused, by reason: every reason counted for each family, as
/// `api::refusal` declares it; Redis input dropped, by the feed's reasons.
fn refusals(out: &mut Exposition, m: &Metrics) {
    let family = |counted: &[Counted], by: &ByReason| -> Vec<(String, u64)> {
        Reason::ALL
            .iter()
            .filter(|r| counted.contains(&r.spec().counted))
            .map(|r| (format!("reason=\"{}\"", r.spec().label), by.get(r.index())))
            .collect()
    };
    out.labelled(
        "ringback_rejected_total",
        "counter",
        &family(&[Counted::Publish, Counted::Both], &m.rejected),
    );
    out.labelled(
        "ringback_subscriptions_refused_total",
        "counter",
        &family(&[Counted::Subscribe, Counted::Both], &m.refused),
    );
    let redis: Vec<(String, u64)> = Rejected::LABELS
        .iter()
        .enumerate()
        .map(|(i, label)| (format!("reason=\"{label}\""), m.redis_rejected.get(i)))
        .collect();
    out.labelled("ringback_redis_rejected_total", "counter", &redis);
    out.family(
        "ringback_idempotent_replays_total",
        "counter",
        &[("", get(&m.idempotent_replays))],
    );
    out.family(
        "ringback_idempotency_evictions_total",
        "counter",
        &[("", get(&m.idempotency_evictions))],
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
            (
                "bound=\"keep_alive_timeout\"",
                get(&m.cut_keep_alive_timeout),
            ),
        ],
    );
    out.family(
        "ringback_idle_connections_reclaimed_total",
        "counter",
        &[("", get(&m.idle_reclaimed))],
    );
    out.family(
        "ringback_stream_ends_total",
        "counter",
        &[
            ("reason=\"token_expired\"", get(&m.ends_token_expired)),
            ("reason=\"draining\"", get(&m.ends_draining)),
            ("reason=\"max_age\"", get(&m.ends_max_age)),
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
fn feed(out: &mut Exposition, state: &ApiState) {
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
        "ringback_presence_updates_total",
        "counter",
        &[("", get(&m.presence_updates))],
    );
    out.family(
        "ringback_presence_report_failures_total",
        "counter",
        &[("", get(&m.presence_report_failures))],
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
    out.family(
        "ringback_replay_bytes_total",
        "counter",
        &[("", get(&m.replay_bytes))],
    );
    out.family(
        "ringback_replay_waits_total",
        "counter",
        &[("", get(&m.replay_waits))],
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

/// Prometheus text format, one metric family at a time.
struct Exposition(String);

impl Exposition {
    /// One unlabelled sample with a fractional value.
    fn value(&mut self, name: &str, kind: &str, value: f64) {
        let _ = writeln!(self.0, "# TYPE {name} {kind}\n{name} {value}");
    }

    /// [`Exposition::family`] with labels made at run time.
    fn labelled(&mut self, name: &str, kind: &str, samples: &[(String, u64)]) {
        let samples: Vec<(&str, u64)> = samples.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        self.family(name, kind, &samples);
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
