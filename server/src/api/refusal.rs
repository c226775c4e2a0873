//! Every refusal the API answers, typed once.
//!
//! As axum's `extract/rejection.rs` declares each rejection's status and body beside its
//! name, [`Reason`]s are declared in one table below: each with its answer, the label it is
//! counted under in `/metrics`, the level it is logged at, and the requests it is counted for.
//! Handlers return a [`Refusal`] (a reason and what the client is told); nothing else decides
//! a status, a label or a log line, and no counter has a catch-all.
//!
//! **Two kinds of answer.** A permanent refusal (a malformed request, a bad credential, a
//! forbidden channel, a body over the limit) is its `4xx`/`5xx` with a JSON `{"error": …}`:
//! there, stopping is right. A *transient* refusal of an event stream (a full server, an
//! address at its share, a server draining) is **shed**: `200 text/event-stream` with a
//! jittered `retry:` and one `ringback.refused` event (`{"reason":…,"retry_ms":…}`), then the
//! end of the stream. A plain `EventSource` fails for good on any other status or type (the
//! WHATWG algorithm), but reconnects after an ended `200` stream by itself, after `retry:`, with
//! its `Last-Event-ID`: so a shed browser comes back, at a moment of its own. A shed answer
//! holds no subscriber slot and reads no history.

use crate::api::auth::AuthError;
use crate::api::limits::LimitError;
use crate::feed::broadcast::Rejected;
use crate::feed::frame::Event;
use crate::feed::redis::PublishError;
use crate::metrics::ByReason;
use crate::runtime::jitter;
use crate::runtime::log_summary::LogSummary;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use tracing::Level;

/// How a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// This status, with a JSON error.
    Status(StatusCode),
    /// An event stream shed: `200`, `retry:` drawn between `min`× and `max`× `--retry`, a
    /// `ringback.refused` event, the end.
    Shed { min: u32, max: u32 },
}

/// Which requests a reason is counted for: `ringback_rejected_total` (publishing),
/// `ringback_subscriptions_refused_total` (event streams), or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Publish,
    Subscribe,
    Both,
    /// Neither: counted by a metric of its own where it happens (a request's `Host`, the
    /// body's deadlines, a source that is not ready).
    Elsewhere,
}

/// Everything declared about one reason.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub answer: Answer,
    /// The `reason` label in `/metrics`, and in a shed answer's event.
    pub label: &'static str,
    /// How its log line (one per interval, [`LogSummary`]) is written.
    pub level: Level,
    pub counted: Counted,
}

/// Declares the reasons: the enum, the list of all of them, and each one's [`Spec`].
macro_rules! reasons {
    ($( $(#[doc = $doc:literal])* $name:ident => $answer:expr, $label:literal, $level:ident, $counted:ident; )*) => {
        /// Why a request was refused; see the module docs.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Reason { $( $(#[doc = $doc])* $name, )* }

        impl Reason {
            /// Every reason, in declaration order (their counters' order).
            pub const ALL: &'static [Reason] = &[$(Reason::$name),*];

            pub const fn spec(self) -> Spec {
                use Answer::*;
                match self {
                    $(Reason::$name => Spec {
                        answer: $answer,
                        label: $label,
                        level: Level::$level,
                        counted: Counted::$counted,
                    },)*
                }
            }
        }
    };
}

reasons! {
    /// A malformed query, `Last-Event-ID` or `type` filter, or too many filters.
    BadRequest => Status(StatusCode::BAD_REQUEST), "bad_request", DEBUG, Subscribe;
    /// An HTTP/1.1 request without exactly one `Host` (`ringback_bad_requests_total`).
    BadHost => Status(StatusCode::BAD_REQUEST), "host", DEBUG, Elsewhere;
    /// A body that is not `{"type": …, "data": …}` JSON, or that could not be read.
    BadJson => Status(StatusCode::BAD_REQUEST), "bad_json", DEBUG, Publish;
    /// A channel that is not a short token.
    BadType => Status(StatusCode::BAD_REQUEST), "bad_type", DEBUG, Publish;
    /// An `Idempotency-Key` that is empty, too long, or not visible ASCII.
    BadIdempotencyKey => Status(StatusCode::BAD_REQUEST), "bad_idempotency_key", DEBUG, Publish;
    /// An `Idempotency-Key` used within its window for another message.
    IdempotencyKeyReused => Status(StatusCode::UNPROCESSABLE_ENTITY), "idempotency_key_reused", INFO, Publish;
    /// A publish whose `Content-Type` is not `application/json` (so no page on another site
    /// can send one without a CORS preflight).
    UnsupportedMediaType => Status(StatusCode::UNSUPPORTED_MEDIA_TYPE), "unsupported_media_type", DEBUG, Publish;
    /// A body over `--max-message-bytes`.
    TooLarge => Status(StatusCode::PAYLOAD_TOO_LARGE), "too_large", DEBUG, Publish;
    /// No credential, a wrong one, or an expired JWT.
    Unauthorized => Status(StatusCode::UNAUTHORIZED), "unauthorized", DEBUG, Both;
    /// A credential without the right to the channel.
    Forbidden => Status(StatusCode::FORBIDDEN), "forbidden", DEBUG, Both;
    /// A new channel beyond `--max-channels`.
    TooManyChannels => Status(StatusCode::TOO_MANY_REQUESTS), "too_many_channels", INFO, Publish;
    /// Beyond the credential's (or address's) publish rate.
    RateLimited => Status(StatusCode::TOO_MANY_REQUESTS), "rate_limited", INFO, Publish;
    /// Beyond the credential's (or address's) new-channel rate.
    NewChannelRate => Status(StatusCode::TOO_MANY_REQUESTS), "new_channel_rate", INFO, Publish;
    /// A body not whole within `--body-timeout` (`ringback_cuts_total`).
    BodyTimeout => Status(StatusCode::REQUEST_TIMEOUT), "body_timeout", DEBUG, Elsewhere;
    /// A body slower than `--min-body-rate` (`ringback_cuts_total`).
    MinBodyRate => Status(StatusCode::REQUEST_TIMEOUT), "min_body_rate", DEBUG, Elsewhere;
    /// Redis configured but unreachable: nothing was published.
    Unavailable => Status(StatusCode::SERVICE_UNAVAILABLE), "unavailable", WARN, Publish;
    /// `/readyz` while the source (Redis) is unreachable (`ringback_redis_up`).
    NotReady => Status(StatusCode::SERVICE_UNAVAILABLE), "not_ready", DEBUG, Elsewhere;
    /// `/readyz` while the server drains (it was told to stop).
    Stopping => Status(StatusCode::SERVICE_UNAVAILABLE), "stopping", DEBUG, Elsewhere;
    /// The client's address holds `--max-subscribers-per-ip` streams.
    SubscribersPerIp => Shed { min: 1, max: 4 }, "subscribers_per_ip", INFO, Subscribe;
    /// The server holds `--max-subscribers` streams.
    Subscribers => Shed { min: 1, max: 4 }, "subscribers", WARN, Subscribe;
    /// The server is shutting down: the client comes back elsewhere.
    Draining => Shed { min: 1, max: 3 }, "draining", INFO, Subscribe;
}

impl Reason {
    /// Its position among [`Reason::ALL`]: its counters' index.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether an event stream refused for this is shed (see the module docs).
    pub fn is_shed(self) -> bool {
        matches!(self.spec().answer, Answer::Shed { .. })
    }
}

const _: () = assert!(Reason::ALL.len() <= crate::metrics::REASONS);

/// A refusal: why, and what the client is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    /// The JSON error's text.
    message: Cow<'static, str>,
    /// `Retry-After` for a status answer (rounded up to whole seconds); the `retry:` of a shed
    /// one.
    retry: Option<Duration>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<Cow<'static, str>>) -> Self {
        Refusal {
            reason,
            message: message.into(),
            retry: None,
        }
    }

    /// The same, answered with `Retry-After`.
    pub fn retry_after(mut self, after: Duration) -> Self {
        self.retry = Some(after);
        self
    }

    /// A shed event stream's refusal: its `retry:` drawn from the reason's range of `retry`
    /// (so the shed clients of one moment do not all come back in the next).
    pub fn shed(reason: Reason, message: impl Into<Cow<'static, str>>, retry: Duration) -> Self {
        let (min, max) = match reason.spec().answer {
            Answer::Shed { min, max } => (min, max),
            Answer::Status(_) => (1, 1),
        };
        Refusal::new(reason, message).retry_after(jitter::between(retry * min, retry * max))
    }

    /// Counts this refusal under `family` (unless its reason is counted elsewhere: a body's
    /// deadline, a request's `Host`), and logs it (one line and a count per interval per reason).
    pub fn counted(self, family: &ByReason, log: &Refusals) -> Self {
        if self.reason.spec().counted != Counted::Elsewhere {
            family.add(self.reason.index());
        }
        log.note(&self);
        self
    }

    /// The `retry:` a shed answer announces.
    pub fn retry(&self) -> Option<Duration> {
        self.retry
    }
}

/// The log of refusals: one summary per reason, so a thousand clients shed at once are one
/// line and a count.
#[derive(Debug)]
pub struct Refusals {
    summaries: Vec<Arc<LogSummary>>,
}

impl Default for Refusals {
    fn default() -> Self {
        Refusals {
            summaries: Reason::ALL
                .iter()
                .map(|r| {
                    let spec = r.spec();
                    Arc::new(LogSummary::new(label_line(*r), spec.level))
                })
                .collect(),
        }
    }
}

/// The log line of each reason.
fn label_line(reason: Reason) -> &'static str {
    match reason.spec().answer {
        Answer::Shed { .. } => "event stream shed",
        Answer::Status(_) => "request refused",
    }
}

impl Refusals {
    fn note(&self, refusal: &Refusal) {
        if let Some(summary) = self.summaries.get(refusal.reason.index()) {
            let reason = refusal.reason.spec().label;
            summary.note(|| format!("{reason}: {}", refusal.message));
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let spec = self.reason.spec();
        match spec.answer {
            Answer::Shed { .. } => {
                let retry = self.retry.unwrap_or(Duration::from_secs(1));
                shed_response(
                    Event::Ending {
                        event: app::message::EVENT_REFUSED,
                        reason: spec.label,
                        retry,
                    }
                    .to_bytes(),
                )
            }
            Answer::Status(status) => {
                let body = Json(serde_json::json!({ "error": self.message }));
                let mut response = (status, body).into_response();
                let headers = response.headers_mut();
                if self.reason == Reason::Unauthorized {
                    headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                if let Some(after) = self.retry {
                    let seconds = after.as_secs_f64().ceil().max(1.0) as u64;
                    headers.insert(header::RETRY_AFTER, seconds.into());
                }
                response
            }
        }
    }
}

/// A shed event stream: the frame, whole, as a `text/event-stream` that ends (its length is
/// known, so every driver sends it in one piece and closes the stream).
fn shed_response(frame: bytes::Bytes) -> Response {
    let mut response = axum::body::Body::from(frame).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

impl From<AuthError> for Refusal {
    fn from(e: AuthError) -> Self {
        let reason = match e {
            AuthError::Forbidden { .. } => Reason::Forbidden,
            AuthError::Missing | AuthError::Invalid(_) => Reason::Unauthorized,
        };
        Refusal::new(reason, e.to_string())
    }
}

impl From<LimitError> for Refusal {
    /// As the limit refused: the subscriber limits shed (with the `retry:` a caller sets,
    /// [`Refusal::shed`]); the publish rate answers `429` with `Retry-After`.
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Subscribers(_) => Refusal::new(Reason::Subscribers, e.to_string()),
            LimitError::SubscribersPerIp(_) => {
                Refusal::new(Reason::SubscribersPerIp, e.to_string())
            }
            LimitError::PublishRate(wait) => {
                Refusal::new(Reason::RateLimited, e.to_string()).retry_after(wait)
            }
        }
    }
}

impl Refusal {
    /// `self` under another reason (the same limit, met elsewhere: the new-channel rate is a
    /// publish rate of its own).
    pub fn because(mut self, reason: Reason) -> Self {
        self.reason = reason;
        self
    }
}

impl From<Rejected> for Refusal {
    fn from(e: Rejected) -> Self {
        let reason = match e {
            Rejected::Channel(_) => Reason::BadType,
            Rejected::TooLarge { .. } => Reason::TooLarge,
            Rejected::TooManyChannels(_) => Reason::TooManyChannels,
            Rejected::BadJson => Reason::BadJson,
        };
        Refusal::new(reason, e.to_string())
    }
}

impl From<PublishError> for Refusal {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::Rejected(r) => r.into(),
            PublishError::Unavailable(_) => Refusal::new(Reason::Unavailable, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn labels_are_unique_and_every_counted_reason_has_one() {
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.spec().label), "{:?} repeats a label", r);
            assert_eq!(Reason::ALL[r.index()], *r);
        }
    }

    #[tokio::test]
    async fn a_shed_stream_is_a_200_event_stream_that_says_why_and_ends() {
        let refusal = Refusal::shed(Reason::Subscribers, "full", Duration::from_millis(2000));
        let retry = refusal.retry().unwrap();
        assert!(retry >= Duration::from_millis(2000) && retry <= Duration::from_millis(8000));
        let response = refusal.into_response();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "text/event-stream"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let ms = retry.as_millis();
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            format!(
                "retry: {ms}\nevent: ringback.refused\ndata: {{\"reason\":\"subscribers\",\"retry_ms\":{ms}}}\n\n"
            )
        );
    }

    #[tokio::test]
    async fn a_permanent_refusal_keeps_its_status() {
        let response = Refusal::from(AuthError::Missing).into_response();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
        let response =
            Refusal::from(LimitError::PublishRate(Duration::from_millis(1500))).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_are_counted_each_and_logged_as_one_line_and_a_count() {
        let (log, _guard) = crate::runtime::log_summary::tests::Captured::start();
        let (family, refusals) = (ByReason::default(), Refusals::default());
        for _ in 0..500 {
            let shed = Refusal::shed(Reason::Subscribers, "full", Duration::from_secs(2));
            let _ = shed.counted(&family, &refusals);
        }
        // Counted elsewhere (a body's deadline): logged, not counted in the handler's family.
        let cut = Refusal::new(Reason::BodyTimeout, "slow");
        let _ = cut.counted(&family, &refusals);
        assert_eq!(family.get(Reason::Subscribers.index()), 500);
        assert_eq!(family.get(Reason::BodyTimeout.index()), 0);
        tokio::time::sleep(crate::runtime::log_summary::INTERVAL).await;
        tokio::task::yield_now().await;
        let lines = log.lines();
        let shed: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("event stream shed"))
            .collect();
        assert_eq!(shed.len(), 2, "{lines:?}");
        assert!(shed[0].contains("subscribers: full"), "{}", shed[0]);
        assert!(shed[1].contains("499 more"), "{}", shed[1]);
    }

    #[test]
    fn shed_retries_spread_over_their_range() {
        let draws: std::collections::HashSet<u128> = (0..100)
            .map(|_| {
                Refusal::shed(Reason::Draining, "", Duration::from_secs(1))
                    .retry()
                    .unwrap()
                    .as_millis()
            })
            .collect();
        assert!(draws.iter().all(|ms| (1000..=3000).contains(ms)));
        assert!(draws.len() > 50, "{} distinct of 100", draws.len());
    }
}
