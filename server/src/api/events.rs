//! `GET /messages`: a subscriber's event stream.
//!
//! The handler does not re-encode anything: it streams the broadcast list's shared frames
//! (encoded once, by [`crate::feed::frame`]), adds a `retry:` and heartbeats of its own, and
//! stops on shutdown, on a cut-off, or when the client goes away (the driver drops the body,
//! which drops the subscription).
//!
//! **Over days.** Every stream announces a `retry:` drawn between 1× and 2× `--retry`, so the
//! browsers of a crashed server do not all come back in the same instant. A stream the server
//! ends on purpose says why in a last `ringback.end` event with its own `retry:` ([`Ending`]):
//! its subscriber's JWT expired (a stream granted private channels lives no longer than the
//! token that granted them), the server is draining (each stream ends at a random moment within
//! `--drain-window`, not all at once), or it reached `--max-stream-age` (so connections
//! rebalance across servers). A subscription the server cannot take now is shed (see
//! `api::refusal`).

use crate::api::limits::{self, ReplayBudget, SubscriberPermit};
use crate::api::refusal::{Reason, Refusal};
use crate::api::state::ApiState;
use crate::config::ServeArgs;
use crate::feed::broadcast::{Start, Subscription};
use crate::feed::channels::ChannelSet;
use crate::feed::frame::Event;
use crate::metrics::Metrics;
use crate::runtime::cancel::{CancelToken, Cancelled};
use crate::runtime::connection::{ClientAddr, ConnectionCut, DirectWriter, StreamCut};
use crate::runtime::jitter;
use crate::runtime::log_summary::LogSummary;
use app::message::{validate_channel, Gap, EVENT_END};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Version};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// The `retry:` line and, after a lost resume, the `ringback.gap` event: the first frames of a
/// stream. Sent at once so the browser sees the stream open without waiting for a message.
///
/// Behind Redis, the source's state follows.
fn preamble<'a>(retry: Duration, gap: Option<&'a Gap>, online: Option<bool>) -> Vec<Event<'a>> {
    let gap = gap.map(Event::Gap);
    let source = online.map(|online| Event::Source { online });
    [Some(Event::Retry(retry)), gap, source]
        .into_iter()
        .flatten()
        .collect()
}

/// Why the server ends a stream on purpose, and when it asks the client back: each ending's
/// `retry:` is drawn between `min`× and `max`× `--retry`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// The JWT that granted the stream's private channels expired: back soon, with the
    /// refreshed cookie (or without the private channels).
    TokenExpired,
    /// The server is shutting down: back elsewhere, spread out.
    Draining,
    /// `--max-stream-age`: back soon (anywhere: this is how connections rebalance).
    MaxAge,
}

impl Ending {
    /// The `reason` of its `ringback.end` event.
    pub fn label(self) -> &'static str {
        match self {
            Ending::TokenExpired => "token_expired",
            Ending::Draining => "draining",
            Ending::MaxAge => "max_age",
        }
    }

    /// The range its `retry:` is drawn from, in multiples of `--retry`.
    fn retry_range(self) -> (f64, f64) {
        match self {
            Ending::TokenExpired | Ending::MaxAge => (0.25, 1.0),
            Ending::Draining => (1.0, 3.0),
        }
    }

    fn counter(self, metrics: &Metrics) -> &std::sync::atomic::AtomicU64 {
        match self {
            Ending::TokenExpired => &metrics.ends_token_expired,
            Ending::Draining => &metrics.ends_draining,
            Ending::MaxAge => &metrics.ends_max_age,
        }
    }
}

/// What a subscriber asked for, parsed from the query and headers.
#[derive(Debug, Default, PartialEq)]
pub struct SubscribeParams {
    /// `Last-Event-ID`: resume after this id.
    pub start: Option<u64>,
    /// `?since=<Unix ms>`: start at the first message published then or later (a
    /// `Last-Event-ID` takes precedence: it is the browser's own reconnection).
    pub since: Option<u64>,
    pub types: Vec<String>,
    /// A subscriber JWT given as `?token=` (for clients that can send neither a cookie nor a
    /// header).
    pub token: Option<String>,
}

fn bad_request(message: impl Into<std::borrow::Cow<'static, str>>) -> Refusal {
    Refusal::new(Reason::BadRequest, message)
}

impl SubscribeParams {
    /// `Last-Event-ID` (header first, then `lastEventId` in the query) and `type` filters.
    pub fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        max_types: usize,
    ) -> Result<Self, Refusal> {
        let mut params = SubscribeParams::default();
        let mut query_last = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "type" => {
                    validate_channel(&value)
                        .map_err(|e| bad_request(format!("bad `type` filter: {e}")))?;
                    if !params.types.iter().any(|t| *t == value) {
                        params.types.push(value.into_owned());
                    }
                    if params.types.len() > max_types {
                        return Err(bad_request(format!(
                            "at most {max_types} `type` filters per subscription"
                        )));
                    }
                }
                "lastEventId" => query_last = Some(value.into_owned()),
                "since" => {
                    let bad = || bad_request("`since` must be a Unix time in milliseconds");
                    if value.is_empty()
                        || value.len() > 20
                        || !value.bytes().all(|b| b.is_ascii_digit())
                    {
                        return Err(bad());
                    }
                    params.since = Some(value.parse().map_err(|_| bad())?);
                }
                "token" => params.token = Some(value.into_owned()),
                _ => {}
            }
        }
        let header_last = headers
            .get("last-event-id")
            .map(|v| v.to_str().map(str::to_owned).unwrap_or_default());
        if let Some(raw) = header_last.or(query_last) {
            params.start = Some(parse_last_event_id(&raw)?);
        }
        Ok(params)
    }
}

/// A `Last-Event-ID` is a feed id: a decimal number, nothing else.
pub fn parse_last_event_id(raw: &str) -> Result<u64, Refusal> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_request("`Last-Event-ID` must be a decimal message id"));
    }
    raw.parse()
        .map_err(|_| bad_request("`Last-Event-ID` is out of range"))
}

/// `GET /messages`: the event stream.
///
/// Refused for good, each counted by reason: `400` for a malformed query or `Last-Event-ID`,
/// `401` for a bad credential, `403` for a `type` filter naming a private channel the credential
/// does not grant. Shed (`200`, `retry:`, `ringback.refused`, the end; counted too): beyond the
/// subscribers per address or in total, and while the server drains.
pub async fn subscribe(State(state): State<ApiState>, req: Request) -> Response {
    match admit(&state, &req) {
        Ok(admitted) => stream(&state, &req, admitted),
        Err(refusal) => refusal
            .counted(&state.metrics.refused, &state.refusals)
            .into_response(),
    }
}

/// The event stream of an admitted subscriber.
fn stream(state: &ApiState, req: &Request, admitted: Admitted) -> Response {
    let Admitted {
        params,
        grants,
        expires,
        permit,
    } = admitted;
    // An HTTP/1.1 connection's own token, so a cut-off closes the socket even if hyper has
    // stopped polling this body; otherwise a fresh one, handed to the HTTP/2 driver with the
    // response (`StreamCut`) so it resets this stream.
    let cut = req
        .extensions()
        .get::<ConnectionCut>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    let start = match (params.start, params.since) {
        (Some(after), _) => Start::After(after),
        (None, Some(ms)) => Start::Since(ms),
        (None, None) => Start::Live,
    };
    let filter = (!params.types.is_empty()).then_some(params.types);
    let grants = (!grants.is_empty()).then(|| Arc::new(grants));
    let newest = state.feed.newest_id();
    let (mut sub, gap) = state.feed.subscribe(start, filter, grants, cut.clone());
    let compresses = state.feed.compresses();
    let compressed = compresses && accepts_gzip(req.headers());
    if compressed {
        sub.compress();
    }
    let batch = batch(req.version(), &state.config);
    if let Some(DirectWriter(writer)) = req.extensions().get::<DirectWriter>() {
        // A plain HTTP/1.1 stream: its frames go straight to its socket while it waits.
        sub.write_directly(writer.clone(), batch);
    }
    if let Some(gap) = &gap {
        let (after, oldest) = (gap.after, gap.oldest);
        state
            .logs
            .gaps
            .note(|| format!("after {after}, oldest held {oldest:?}"));
    }
    // A resume with messages to replay pays for them from the shared budget until it has
    // caught up with what was the newest when it came.
    let replay = (start != Start::Live && sub.cursor() < newest).then_some(newest);
    let mut source = state.source.watch_online();
    let online = source.as_mut().map(|s| *s.borrow_and_update());
    let events = &state.config.events;
    let settings = StreamSettings {
        heartbeat: events.heartbeat,
        retry: events.retry,
        drain_window: events.drain_window,
        batch,
    };
    // Every stream's `retry:` is its own, so a fleet's reconnections spread out.
    let retry = jitter::between(events.retry, events.retry * 2);
    let mut ends = Ends::never();
    if !events.max_stream_age.is_zero() {
        ends.at(max_age_end(events.max_stream_age), Ending::MaxAge);
    }
    if let Some(expires) = expires {
        ends.at(expires, Ending::TokenExpired);
    }
    let first = sub.send(&preamble(retry, gap.as_ref(), online));
    let stream = EventStream::new(
        sub,
        first,
        settings,
        Tokens {
            cut: cut.clone(),
            shutdown: state.shutdown.clone(),
        },
        source,
        ends,
        Catchup {
            until: replay,
            budget: state.replay.clone(),
            ready: None,
        },
        permit,
        Reporter {
            metrics: state.metrics.clone(),
            expiries: state.logs.expiries.clone(),
        },
    );
    event_stream_response(stream, cut, compresses.then_some(compressed))
}

/// Whether `Accept-Encoding` takes gzip: named with a weight above zero, or not named and `*`
/// with a weight above zero (RFC 9110 §12.5.3: a coding named weighs what its own entry says).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    for coding in headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
    {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let accepted = !parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .is_some_and(|q| q.trim().parse::<f32>().is_ok_and(|q| q <= 0.0))
        });
        if name.eq_ignore_ascii_case("gzip") {
            gzip = Some(accepted);
        } else if name == "*" {
            any = Some(accepted);
        }
    }
    gzip.or(any).unwrap_or(false)
}

/// When a stream opened now reaches its `max_age`: after 80–100% of it, at random, so the
/// streams opened together (after a deploy) do not all end together.
fn max_age_end(max_age: Duration) -> Instant {
    Instant::now() + jitter::between(max_age.mul_f64(0.8), max_age)
}

/// What [`admit`] let through: the request's parameters, the private channels its credential
/// grants and when that credential expires, and its place under the subscriber limits.
struct Admitted {
    params: SubscribeParams,
    grants: ChannelSet,
    expires: Option<Instant>,
    permit: SubscriberPermit,
}

/// The checks before a subscription: the query and `Last-Event-ID`, the credential, the private
/// channels named, then whether the server takes one more now (draining, the subscriber limits:
/// those are shed).
fn admit(state: &ApiState, req: &Request) -> Result<Admitted, Refusal> {
    let params = SubscribeParams::parse(
        req.uri().query(),
        req.headers(),
        state.config.events.max_filter_channels,
    )?;
    let reader = state.auth.reader(params.token.as_deref(), req.headers())?;
    if let Some(channel) = params
        .types
        .iter()
        .find(|t| state.auth.private().contains(t) && !reader.grants.contains(t))
    {
        return Err(Refusal::from(crate::api::auth::AuthError::Forbidden {
            action: "reading",
            channel: channel.clone(),
        }));
    }
    let retry = state.config.events.retry;
    if state.shutdown.is_cancelled() {
        let message = "the server is shutting down; reconnect (elsewhere)";
        return Err(Refusal::shed(Reason::Draining, message, retry));
    }
    let ip = limits::client_ip(
        req.extensions().get::<ClientAddr>(),
        req.headers(),
        state.config.limits.trust_forwarded_for,
    );
    let permit = state.subscribers.admit(ip).map_err(|e| {
        let refusal = Refusal::from(e);
        let reason = refusal.reason;
        Refusal::shed(reason, refusal.to_string(), retry)
    })?;
    // A stream granted private channels lives no longer than the token that granted them.
    let expires = reader
        .expires
        .filter(|_| !reader.grants.is_empty())
        .map(|exp| {
            let left = exp.saturating_sub(app::time::unix_now());
            Instant::now() + Duration::from_millis(left)
        });
    Ok(Admitted {
        params,
        grants: reader.grants,
        expires,
        permit,
    })
}

/// What one step of a stream hands its connection: the frames ready together, copied into one
/// buffer (one write, one chunk or DATA frame, under load) of at most this; a single frame is
/// the list's own shared bytes, never copied. HTTP/1.1 writes a step as one chunk, up to
/// `--max-write-buffer`, which is then all a stalled HTTP/1.1 subscriber holds. HTTP/2 batches
/// at most one DATA frame (16 KiB): many streams share a connection's send budget, and a
/// stalled one should hold the list's frames rather than copies of them, but one frame per
/// message would double what a busy connection sends and its client parses (measured: p99
/// ×1.5 at 10,000 streams × 50/s).
fn batch(version: Version, config: &ServeArgs) -> usize {
    if version == Version::HTTP_2 {
        crate::runtime::connection::MAX_DATA_FRAME
    } else {
        config.transport.max_write_buffer
    }
}

/// The `text/event-stream` response for `stream`, carrying its cut-off switch for the HTTP/2
/// driver. `compressed`: `None` when streams are never compressed; else whether this one is
/// (gzip), and the answer varies by `Accept-Encoding`.
fn event_stream_response(
    stream: EventStream,
    cut: CancelToken,
    compressed: Option<bool>,
) -> Response {
    // Boxed: `unfold` moves its state into each step's future and back out, so the state moved
    // is a pointer, not the stream (~300 bytes, twice per delivery).
    let body = Body::from_stream(futures::stream::unfold(Box::new(stream), EventStream::step));
    let mut response = body.into_response();
    response.extensions_mut().insert(StreamCut(cut));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    if let Some(compressed) = compressed {
        // Marked sensitive: HTTP/2 sends them as literals never indexed, so they take no room in
        // the connection's HPACK table (an event stream is most often its connection's only
        // response, and the table is kept for the connection's life).
        let unindexed = |value: &'static str| {
            let mut value = HeaderValue::from_static(value);
            value.set_sensitive(true);
            value
        };
        headers.insert(header::VARY, unindexed("accept-encoding"));
        if compressed {
            headers.insert(header::CONTENT_ENCODING, unindexed("gzip"));
        }
    }
    response
}

/// A stream's settings, from `--heartbeat`, `--retry`, `--drain-window` and the connection's
/// protocol.
#[derive(Debug, Clone, Copy)]
struct StreamSettings {
    heartbeat: Duration,
    /// `--retry`: the endings' `retry:` are drawn from multiples of it.
    retry: Duration,
    /// On shutdown the stream ends at a random moment within this.
    drain_window: Duration,
    /// The most bytes one step coalesces (a single larger frame still goes whole, shared).
    batch: usize,
}

/// The switches a stream watches: its own cut-off and the server's shutdown.
struct Tokens {
    cut: CancelToken,
    shutdown: CancelToken,
}

/// When and why the stream ends by itself: the earliest of its ends.
///
/// No timer of its own: the stream's one timer (the heartbeat's) fires at the earlier of the
/// next heartbeat and the end, and a step that delivers compares the end with the time it reads
/// anyway. A timer polled at every step cost each delivery ~250 instructions (callgrind).
struct Ends {
    at: Option<Instant>,
    why: Ending,
}

impl Ends {
    fn never() -> Self {
        Ends {
            at: None,
            why: Ending::MaxAge,
        }
    }

    /// Ends at `at` for `why`, unless an earlier end is set.
    fn at(&mut self, at: Instant, why: Ending) {
        if self.at.is_none_or(|end| at < end) {
            self.at = Some(at);
            self.why = why;
        }
    }

    /// Why the stream ends, if its end is at or before `now`.
    fn due(&self, now: Instant) -> Option<Ending> {
        self.at.filter(|end| *end <= now).map(|_| self.why)
    }

    /// `t`, or the end if that is earlier.
    fn before(&self, t: Instant) -> Instant {
        self.at.map_or(t, |end| end.min(t))
    }
}

/// A resume that has messages to replay: until its cursor reaches `until`, each batch it takes
/// is paid for from the shared budget first.
struct Catchup {
    until: Option<u64>,
    budget: Arc<ReplayBudget>,
    /// When the batch reserved from the budget may be taken.
    ready: Option<Instant>,
}

/// Where a stream's ends are counted and logged.
struct Reporter {
    metrics: Arc<Metrics>,
    expiries: Arc<LogSummary>,
}

/// One subscriber's stream: the subscription plus what ends it.
///
/// Why the futures it waits on are kept rather than made per step: a step runs for every
/// delivery to every subscriber, and making them anew would register with the shutdown token,
/// the cut-off token and the timer wheel, and deregister, each time. Kept, they register once;
/// the heartbeat timer is re-armed lazily (a delivery only notes the time), so a busy stream
/// touches the timer once per heartbeat period.
/// Both tokens are `cancel::CancelToken`s, whose kept futures poll without a lock.
struct EventStream {
    sub: Subscription,
    first: Option<Bytes>,
    settings: StreamSettings,
    /// When bytes were last handed to the socket: a heartbeat is due `heartbeat` after.
    last_sent: Instant,
    /// Fires no later than the next heartbeat is due or the stream ends (possibly earlier: then
    /// it re-arms).
    idle: Pin<Box<Sleep>>,
    cut: Cancelled,
    shutdown: Cancelled,
    /// Shutdown has been seen: the stream's end within the drain window is set.
    draining: bool,
    /// The source's online state, behind Redis; each change is sent as a `ringback.source`.
    source: Option<watch::Receiver<bool>>,
    /// When this stream ends by itself, and why.
    ends: Ends,
    /// The parting words have been sent; the next step ends the stream.
    ended: bool,
    /// The end came while frames were ready: the next step sends the parting words.
    end_due: Option<Ending>,
    catchup: Catchup,
    /// This subscriber's place under the subscriber limits, given back when the stream ends.
    _permit: SubscriberPermit,
    reporter: Reporter,
}

/// Waits for the source's next change; never, without a source that can change.
async fn source_changed(source: &mut Option<watch::Receiver<bool>>) -> bool {
    if let Some(rx) = source {
        if rx.changed().await.is_ok() {
            return *rx.borrow_and_update();
        }
    }
    std::future::pending().await
}

impl EventStream {
    #[allow(clippy::too_many_arguments)]
    fn new(
        sub: Subscription,
        first: Bytes,
        settings: StreamSettings,
        tokens: Tokens,
        source: Option<watch::Receiver<bool>>,
        ends: Ends,
        catchup: Catchup,
        permit: SubscriberPermit,
        reporter: Reporter,
    ) -> Self {
        let now = Instant::now();
        EventStream {
            sub,
            first: Some(first),
            settings,
            last_sent: now,
            idle: Box::pin(tokio::time::sleep_until(
                ends.before(now + settings.heartbeat),
            )),
            cut: tokens.cut.cancelled(),
            shutdown: tokens.shutdown.cancelled(),
            draining: false,
            source,
            ends,
            ended: false,
            end_due: None,
            catchup,
            _permit: permit,
            reporter,
        }
    }

    async fn step(mut self: Box<Self>) -> Option<(Result<Bytes, Infallible>, Box<Self>)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        if self.ended {
            return None;
        }
        if let Some(why) = self.end_due.take() {
            let last = self.parting_words(why);
            return Some((Ok(last), self));
        }
        loop {
            let bytes = tokio::select! {
                biased;
                // Shutting down: the stream goes on, and ends at a moment of its own within
                // the drain window, so a server's clients do not all reconnect (elsewhere) in
                // the same instant.
                _ = &mut self.shutdown, if !self.draining => {
                    self.draining = true;
                    let delay = jitter::between(Duration::ZERO, self.settings.drain_window);
                    self.ends.at(Instant::now() + delay, Ending::Draining);
                    let wake = self.ends.before(self.idle.deadline());
                    self.idle.as_mut().reset(wake);
                    continue;
                }
                online = source_changed(&mut self.source) => {
                    self.sub.send(&[Event::Source { online }])
                }
                next = Self::next_frames(
                    &mut self.sub,
                    &mut self.catchup,
                    self.settings.batch,
                    &self.reporter.metrics,
                ) => match next {
                    Some(bytes) => bytes,
                    None => return None,
                },
                // After the subscription: a step that finds frames ready (a delivery) does not
                // touch the cut-off token, a cache line of its own per stream. A stream cut for
                // lagging learns it from the subscription anyway; this is for the others.
                _ = &mut self.cut => return None,
                // The stream's one timer: its next heartbeat, or its end if that is sooner.
                _ = &mut self.idle => {
                    let now = Instant::now();
                    if let Some(why) = self.ends.due(now) {
                        self.parting_words(why)
                    } else {
                        // The writers may have written for it meanwhile (`write_directly`).
                        if let Some(written) = self.sub.take_written() {
                            self.last_sent = self.last_sent.max(written);
                        }
                        let due = self.last_sent + self.settings.heartbeat;
                        if now < due {
                            // Something was sent since the timer was armed: not idle yet.
                            self.idle.as_mut().reset(self.ends.before(due));
                            continue;
                        }
                        let next = self.ends.before(now + self.settings.heartbeat);
                        self.idle.as_mut().reset(next);
                        self.sub.heartbeat()
                    }
                }
            };
            let now = Instant::now();
            self.last_sent = now;
            // A stream with frames ready at every step never waits on its timer: it compares
            // its end with the time it reads anyway, and ends after the frames it has taken.
            if !self.ended {
                self.end_due = self.ends.due(now);
            }
            return Some((Ok(bytes), self));
        }
    }

    /// The next frames of the subscription (`None`: it fell behind the history). While it
    /// catches up on a resume, each batch is paid for from the replay budget first: waiting
    /// for it reads nothing, and the live streams' deliveries never wait for it.
    async fn next_frames(
        sub: &mut Subscription,
        catchup: &mut Catchup,
        batch: usize,
        metrics: &Metrics,
    ) -> Option<Bytes> {
        let Some(until) = catchup.until else {
            return sub.next(batch).await.ok();
        };
        // Reserved once per batch and kept, so a step interrupted while it waits (a heartbeat,
        // a source change) does not pay twice.
        let ready = match catchup.ready {
            Some(at) => at,
            None => {
                let wait = catchup.budget.reserve(batch);
                if !wait.is_zero() {
                    metrics.replay_waits.fetch_add(1, Ordering::Relaxed);
                }
                let at = Instant::now() + wait;
                catchup.ready = Some(at);
                // Waiting on the server, not on its socket: told of a gap, never cut, if the
                // history moves past it meanwhile.
                sub.hold_back(!wait.is_zero());
                at
            }
        };
        tokio::time::sleep_until(ready).await;
        let bytes = sub.next(batch).await.ok()?;
        sub.hold_back(false);
        catchup.ready = None;
        catchup.budget.refund(batch.saturating_sub(bytes.len()));
        metrics
            .replay_bytes
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if sub.cursor() >= until {
            catchup.until = None;
        }
        Some(bytes)
    }

    /// The stream's last event: why it ends, and when to come back (`retry:`).
    fn parting_words(&mut self, why: Ending) -> Bytes {
        self.ended = true;
        why.counter(&self.reporter.metrics)
            .fetch_add(1, Ordering::Relaxed);
        if why == Ending::TokenExpired {
            self.reporter
                .expiries
                .note(|| "a private stream's JWT expired".to_owned());
        }
        let (min, max) = why.retry_range();
        let retry = self.settings.retry;
        let retry = jitter::between(retry.mul_f64(min), retry.mul_f64(max));
        let last = self.sub.send(&[Event::Ending {
            event: EVENT_END,
            reason: why.label(),
            retry,
        }]);
        // A compressed stream ends whole: its trailer follows the last event.
        match self.sub.finish() {
            Some(trailer) => [last, trailer].concat().into(),
            None => last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::frame::{self, object_members, Message};
    use app::message::{EVENT_CHANNEL, EVENT_GAP, EVENT_SOURCE};

    fn encode_message(
        id: u64,
        time: u64,
        channel: &str,
        data_json: &[u8],
        extra_json: &[u8],
        announce: bool,
    ) -> (Bytes, Bytes) {
        let message = Message {
            id,
            time,
            channel,
            data_json,
            extra_json,
            announce,
        };
        message.encode()
    }

    /// A deliberately independent, minimal SSE parser (the WHATWG algorithm's line and field
    /// rules: a line ends at CRLF, CR or LF): returns (id, event, data) per dispatched event.
    fn parse_events(text: &str) -> Vec<(Option<String>, Option<String>, String)> {
        let mut out = Vec::new();
        let (mut id, mut event, mut data) = (None, None, Vec::new());
        for line in text.split("\r\n").flat_map(|l| l.split(['\r', '\n'])) {
            if line.is_empty() {
                if !data.is_empty() {
                    out.push((id.take(), event.take(), data.join("\n")));
                }
                data.clear();
                event = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = Some(value.to_owned()),
                "event" => event = Some(value.to_owned()),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
        out
    }

    proptest::proptest! {
        /// Whatever the data and the publisher's extra fields hold (line breaks of every kind,
        /// NUL, `data:` look-alikes, any Unicode), and whatever channel passes validation, the
        /// frame is exactly the one event it stands for, as an independent parser reads it.
        #[test]
        fn no_input_can_inject_a_line(
            id in proptest::num::u64::ANY,
            time in proptest::num::u64::ANY,
            channel in "[A-Za-z0-9_-]{1,64}",
            data in proptest::string::string_regex("(.|\r|\n|\u{2028}|\u{0}|data: |id: |event: )*").unwrap(),
            extra in proptest::collection::btree_map("[a-z\r\n:]{1,8}", "(.|\r|\n)*", 0..3),
            announce in proptest::bool::ANY,
        ) {
            let value = serde_json::Value::String(data);
            let data_json = serde_json::to_vec(&value).unwrap();
            let extra: serde_json::Map<String, serde_json::Value> = extra
                .into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "type" | "data" | "time"))
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect();
            let extra_json = object_members(&extra);
            let (frame, json) = encode_message(id, time, &channel, &data_json, &extra_json, announce);
            let events = parse_events(std::str::from_utf8(&frame).unwrap());
            proptest::prop_assert_eq!(events.len(), 1 + usize::from(announce));
            let (got_id, event, data) = events.last().unwrap();
            let id_text = id.to_string();
            proptest::prop_assert_eq!(got_id.as_deref(), Some(id_text.as_str()));
            proptest::prop_assert_eq!(event.as_deref(), Some(channel.as_str()));
            proptest::prop_assert_eq!(data.as_bytes(), &json[..]);
            let m: app::message::Message = serde_json::from_str(data).unwrap();
            proptest::prop_assert_eq!(m.id, id);
            proptest::prop_assert_eq!(&m.channel, &channel);
            proptest::prop_assert_eq!(&m.data, &value);
            proptest::prop_assert_eq!(m.time, Some(time));
            proptest::prop_assert_eq!(&m.extra, &extra);
        }

        /// Any text as a channel: refused, or a token no SSE line break or field can hide in.
        #[test]
        fn channel_validation_admits_only_tokens(name in "(.|\r|\n|:){0,70}") {
            if validate_channel(&name).is_ok() {
                proptest::prop_assert!(!name.is_empty() && name.len() <= 64);
                proptest::prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            }
        }

        /// `Last-Event-ID`: accepted exactly when it is a decimal u64, as that number.
        #[test]
        fn last_event_ids_parse_only_as_numbers(raw in "( |[0-9]|[a-z]|\r|-|[+]){0,24}") {
            let trimmed = raw.trim();
            let expected = (!trimmed.is_empty() && trimmed.len() <= 20 && trimmed.bytes().all(|b| b.is_ascii_digit()))
                .then(|| trimmed.parse::<u64>().ok())
                .flatten();
            proptest::prop_assert_eq!(parse_last_event_id(&raw).ok(), expected);
        }
    }

    #[test]
    fn frame_round_trips() {
        let data = serde_json::to_vec(&serde_json::json!("line1\nline2\r\u{0}")).unwrap();
        let (frame, json) = encode_message(42, 1_795_000_000_000, "blue", &data, b"", false);
        let text = std::str::from_utf8(&frame).unwrap();
        let events = parse_events(text);
        assert_eq!(events.len(), 1);
        let (id, event, data) = &events[0];
        assert_eq!(id.as_deref(), Some("42"));
        assert_eq!(event.as_deref(), Some("blue"));
        assert_eq!(data.as_bytes(), &json[..]);
        let m: app::message::Message = serde_json::from_str(data).unwrap();
        assert_eq!(m.id, 42);
        assert_eq!(m.channel, "blue");
        assert_eq!(m.data, serde_json::json!("line1\nline2\r\u{0}"));
    }

    #[test]
    fn announce_precedes_the_message() {
        let (frame, _) = encode_message(7, 0, "green", b"1", b"", true);
        let events = parse_events(std::str::from_utf8(&frame).unwrap());
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].1.as_deref(), Some(EVENT_CHANNEL));
        assert_eq!(
            events[0].0, None,
            "the announcement must not move Last-Event-ID"
        );
        assert_eq!(events[0].2, r#"{"type":"green"}"#);
        assert_eq!(events[1].0.as_deref(), Some("7"));
    }

    /// A stream as `subscribe` makes it (retry 2 s), with its cut-off and shutdown switches.
    fn stream_with(
        feed: &crate::feed::broadcast::BroadcastList,
        heartbeat: Duration,
        drain_window: Duration,
        ends: Ends,
        source: Option<watch::Receiver<bool>>,
    ) -> (Box<EventStream>, CancelToken, CancelToken, Arc<Metrics>) {
        let (sub, _) = feed.subscribe(Start::Live, None, None, CancelToken::new());
        let (cut, shutdown) = (CancelToken::new(), CancelToken::new());
        let online = source.as_ref().map(|s| *s.borrow());
        let metrics = Arc::new(Metrics::default());
        let s = Box::new(EventStream::new(
            sub,
            frame::frames(&preamble(Duration::from_secs(2), None, online)),
            StreamSettings {
                heartbeat,
                retry: Duration::from_secs(2),
                drain_window,
                batch: 64 * 1024,
            },
            Tokens {
                cut: cut.clone(),
                shutdown: shutdown.clone(),
            },
            source,
            ends,
            Catchup {
                until: None,
                budget: Arc::new(ReplayBudget::new(0)),
                ready: None,
            },
            crate::api::limits::SubscriberLimits::new(0, 0)
                .admit([127, 0, 0, 1].into())
                .unwrap(),
            Reporter {
                metrics: metrics.clone(),
                expiries: Arc::new(LogSummary::new("expired", tracing::Level::INFO)),
            },
        ));
        (s, cut, shutdown, metrics)
    }

    fn feed() -> crate::feed::broadcast::BroadcastList {
        let limits = crate::feed::broadcast::Limits {
            history: 8,
            history_bytes: 1 << 20,
            max_message_bytes: 1024,
            max_channels: 8,
            channel_idle: std::time::Duration::ZERO,
        };
        crate::feed::broadcast::BroadcastList::new(limits, 1, &[], Default::default())
    }

    /// An ending frame: `retry:` within `[lo, hi]` ms, then `ringback.end` (or `.refused`)
    /// saying `reason` and repeating the delay.
    fn assert_ending(frame: &Bytes, event: &str, reason: &str, lo: u128, hi: u128) {
        let text = std::str::from_utf8(frame).unwrap();
        let ms: u128 = text
            .strip_prefix("retry: ")
            .and_then(|t| t.lines().next())
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("a retry line first: {text:?}"));
        assert!((lo..=hi).contains(&ms), "retry {ms} not in {lo}..={hi}");
        let events = parse_events(text);
        assert_eq!(events.len(), 1, "{text:?}");
        assert_eq!(events[0].0, None, "no id: it must not move Last-Event-ID");
        assert_eq!(events[0].1.as_deref(), Some(event));
        let body: serde_json::Value = serde_json::from_str(&events[0].2).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"reason": reason, "retry_ms": ms as u64})
        );
    }

    #[tokio::test(start_paused = true)]
    async fn idle_streams_send_heartbeats_and_end_on_shutdown() {
        let feed = feed();
        let (s, _cut, shutdown, metrics) = stream_with(
            &feed,
            Duration::from_secs(15),
            Duration::ZERO,
            Ends::never(),
            None,
        );
        let (first, s) = s.step().await.unwrap();
        assert_eq!(first.unwrap(), Bytes::from_static(b"retry: 2000\n\n"));
        let started = tokio::time::Instant::now();
        let (beat, s) = s.step().await.unwrap();
        assert_eq!(beat.unwrap(), Bytes::from_static(frame::HEARTBEAT));
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        feed.publish("red", &serde_json::json!("x")).unwrap();
        let (message, s) = s.step().await.unwrap();
        assert!(std::str::from_utf8(&message.unwrap())
            .unwrap()
            .contains("event: red\n"));
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(15),
            "a message comes at once"
        );
        // The next heartbeat is due a period after the message, not after the last heartbeat.
        tokio::time::advance(Duration::from_secs(5)).await;
        feed.publish("red", &serde_json::json!("y")).unwrap();
        let (_, s) = s.step().await.unwrap();
        let (beat, s) = s.step().await.unwrap();
        assert_eq!(beat.unwrap(), Bytes::from_static(frame::HEARTBEAT));
        assert_eq!(started.elapsed(), Duration::from_secs(35));
        shutdown.cancel();
        let (last, s) = s.step().await.unwrap();
        assert_ending(&last.unwrap(), EVENT_END, "draining", 2000, 6000);
        assert!(s.step().await.is_none());
        assert_eq!(metrics.ends_draining.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_within_80_to_100_percent_of_its_max_age() {
        let feed = feed();
        let age = Duration::from_secs(100);
        let started = tokio::time::Instant::now();
        let mut ends = Ends::never();
        ends.at(max_age_end(age), Ending::MaxAge);
        let (mut s, _, _, metrics) =
            stream_with(&feed, Duration::from_secs(3600), Duration::ZERO, ends, None);
        s.first = None;
        let (last, s) = s.step().await.unwrap();
        let lived = started.elapsed();
        assert!(lived >= age.mul_f64(0.8) && lived <= age, "{lived:?}");
        assert_ending(&last.unwrap(), EVENT_END, "max_age", 500, 2000);
        assert!(s.step().await.is_none());
        assert_eq!(metrics.ends_max_age.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_at_its_tokens_expiry_whichever_end_is_first() {
        let feed = feed();
        let started = tokio::time::Instant::now();
        let mut ends = Ends::never();
        ends.at(started + Duration::from_secs(600), Ending::MaxAge);
        ends.at(started + Duration::from_secs(90), Ending::TokenExpired);
        ends.at(started + Duration::from_secs(120), Ending::MaxAge);
        let (mut s, _, _, metrics) =
            stream_with(&feed, Duration::from_secs(15), Duration::ZERO, ends, None);
        s.first = None;
        let mut s = s;
        loop {
            let (bytes, next) = s.step().await.unwrap();
            let bytes = bytes.unwrap();
            s = next;
            if bytes.as_ref() != frame::HEARTBEAT {
                assert_ending(&bytes, EVENT_END, "token_expired", 500, 2000);
                break;
            }
        }
        assert_eq!(started.elapsed(), Duration::from_secs(90));
        assert!(s.step().await.is_none());
        assert_eq!(metrics.ends_token_expired.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_with_frames_ready_at_every_step_ends_too() {
        let feed = feed();
        let started = tokio::time::Instant::now();
        let mut ends = Ends::never();
        ends.at(started + Duration::from_secs(10), Ending::TokenExpired);
        let (mut s, _, _, _) =
            stream_with(&feed, Duration::from_secs(15), Duration::ZERO, ends, None);
        s.first = None;
        let mut delivered = 0;
        let last = loop {
            // A message ready before every step: the stream never waits.
            feed.publish("red", &serde_json::json!(delivered)).unwrap();
            let (bytes, next) = s.step().await.unwrap();
            let bytes = bytes.unwrap();
            s = next;
            if std::str::from_utf8(&bytes)
                .unwrap()
                .contains("ringback.end")
            {
                break bytes;
            }
            delivered += 1;
            assert!(
                delivered < 100,
                "a stream with frames always ready never ended"
            );
            tokio::time::advance(Duration::from_millis(500)).await;
        };
        assert_ending(&last, EVENT_END, "token_expired", 500, 2000);
        assert_eq!(
            delivered, 21,
            "every frame taken before the end was delivered"
        );
        assert!(started.elapsed() <= Duration::from_secs(11));
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_spreads_the_ends_over_its_window() {
        let feed = feed();
        let window = Duration::from_secs(10);
        let shutdown = CancelToken::new();
        let started = tokio::time::Instant::now();
        let ends: Vec<_> = (0..200)
            .map(|_| {
                let (mut s, _, own, _) = stream_with(
                    &feed,
                    Duration::from_secs(3600),
                    window,
                    Ends::never(),
                    None,
                );
                s.first = None;
                s.shutdown = shutdown.cancelled();
                drop(own);
                tokio::spawn(async move {
                    let (last, s) = s.step().await.unwrap();
                    assert!(s.step().await.is_none());
                    (started.elapsed(), last.unwrap())
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(1)).await;
        shutdown.cancel();
        let mut at = Vec::new();
        for end in ends {
            let (when, last) = end.await.unwrap();
            assert_ending(&last, EVENT_END, "draining", 2000, 6000);
            at.push(when - Duration::from_secs(1));
        }
        // Every end within the window, and spread over it: no tenth of it holds a quarter.
        assert!(at.iter().all(|d| *d <= window), "{at:?}");
        let mut tenths = [0usize; 10];
        for d in &at {
            tenths[((d.as_secs_f64() / window.as_secs_f64() * 10.0) as usize).min(9)] += 1;
        }
        assert!(tenths.iter().all(|n| *n > 0 && *n < 50), "{tenths:?}");
    }

    /// Takes every write whole, and says when it has.
    #[derive(Default)]
    struct Taker {
        written: tokio::sync::Notify,
    }

    impl crate::runtime::connection::WriteNow for Taker {
        fn write_now(&self, _: &Bytes) -> crate::runtime::connection::Written {
            self.written.notify_one();
            crate::runtime::connection::Written::Whole
        }
    }

    /// A stream whose frames the feed's writers write (a plain HTTP/1.1 one) is not idle while
    /// they do, though its task sleeps: its heartbeat is due a period after their last write.
    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_is_due_a_period_after_the_writers_last_write() {
        let feed = feed();
        let (mut s, ..) = stream_with(
            &feed,
            Duration::from_secs(15),
            Duration::ZERO,
            Ends::never(),
            None,
        );
        let taker = Arc::new(Taker::default());
        s.sub.write_directly(taker.clone(), 64 * 1024);
        let (_, s) = s.step().await.unwrap();
        let started = tokio::time::Instant::now();
        let step = tokio::spawn(s.step());
        // A message every 10 s, written by the writers.
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            feed.publish("red", &serde_json::json!("x")).unwrap();
            // At once, or not at all (the clock is paused: nothing else moves it).
            tokio::time::timeout(Duration::from_secs(1), taker.written.notified())
                .await
                .expect("written by the writers while the stream's task sleeps");
        }
        let (beat, _) = step.await.unwrap().unwrap();
        assert_eq!(beat.unwrap(), Bytes::from_static(frame::HEARTBEAT));
        assert_eq!(started.elapsed(), Duration::from_secs(45));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_ends_the_stream() {
        let feed = feed();
        let (mut s, cut, _, _) = stream_with(
            &feed,
            Duration::from_secs(15),
            Duration::ZERO,
            Ends::never(),
            None,
        );
        s.first = None;
        cut.cancel();
        assert!(s.step().await.is_none());
    }

    #[test]
    fn a_gap_is_announced_after_retry() {
        let gap = Gap {
            after: 3,
            oldest: Some(9),
        };
        let text = String::from_utf8(
            frame::frames(&preamble(Duration::from_millis(1500), Some(&gap), None)).to_vec(),
        )
        .unwrap();
        let events = parse_events(&text);
        assert!(text.starts_with("retry: 1500\n"));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].1.as_deref(), Some(EVENT_GAP));
        assert_eq!(events[0].2, r#"{"after":3,"oldest":9}"#);
    }

    #[tokio::test(start_paused = true)]
    async fn source_changes_are_streamed_without_ids() {
        let feed = feed();
        let (tx, rx) = watch::channel(true);
        let (s, _, _, _) = stream_with(
            &feed,
            Duration::from_secs(15),
            Duration::ZERO,
            Ends::never(),
            Some(rx),
        );
        let (first, s) = s.step().await.unwrap();
        let events = parse_events(std::str::from_utf8(&first.unwrap()).unwrap());
        assert_eq!(
            events,
            vec![(None, Some(EVENT_SOURCE.into()), r#"{"online":true}"#.into())]
        );
        tx.send_replace(false);
        let (next, _s) = s.step().await.unwrap();
        let events = parse_events(std::str::from_utf8(&next.unwrap()).unwrap());
        assert_eq!(
            events,
            vec![(
                None,
                Some(EVENT_SOURCE.into()),
                r#"{"online":false}"#.into()
            )]
        );
    }

    #[test]
    fn gzip_is_taken_when_named_or_by_a_star_and_never_when_refused() {
        let takes = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
            accepts_gzip(&headers)
        };
        assert!(takes("gzip, deflate, br, zstd"));
        assert!(takes("br;q=1.0, GZIP;q=0.5"));
        assert!(takes("*"));
        assert!(!takes("identity"));
        assert!(!takes("gzip;q=0"));
        assert!(!takes("gzip;q=0.000, *"));
        assert!(takes("*;q=0, gzip"));
        assert!(!takes("*;q=0"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn last_event_id_parsing() {
        assert_eq!(parse_last_event_id("17").unwrap(), 17);
        assert_eq!(parse_last_event_id(" 17 ").unwrap(), 17);
        for bad in ["", "-1", "1e3", "abc", "18446744073709551616", "1\n2"] {
            assert!(parse_last_event_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn params_prefer_the_header() {
        let mut headers = HeaderMap::new();
        headers.insert("last-event-id", HeaderValue::from_static("9"));
        let p = SubscribeParams::parse(
            Some("lastEventId=3&type=red&type=blue&type=red&token=a.b.c"),
            &headers,
            8,
        )
        .unwrap();
        assert_eq!(
            p,
            SubscribeParams {
                start: Some(9),
                since: None,
                types: vec!["red".into(), "blue".into()],
                token: Some("a.b.c".into()),
            }
        );
        let p = SubscribeParams::parse(Some("since=1700000000000"), &HeaderMap::new(), 8).unwrap();
        assert_eq!(p.since, Some(1_700_000_000_000));
        for bad in [
            "since=",
            "since=-1",
            "since=1.5",
            "since=18446744073709551616",
        ] {
            assert!(
                SubscribeParams::parse(Some(bad), &HeaderMap::new(), 8).is_err(),
                "{bad}"
            );
        }
        let p = SubscribeParams::parse(Some("lastEventId=3"), &HeaderMap::new(), 8).unwrap();
        assert_eq!(p.start, Some(3));
        assert!(SubscribeParams::parse(Some("type=a%0Ab"), &HeaderMap::new(), 8).is_err());
        assert!(SubscribeParams::parse(Some("type=a&type=b"), &HeaderMap::new(), 1).is_err());
    }
}
