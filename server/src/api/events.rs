//! `GET /messages`: a subscriber's event stream.
//!
//! The handler does not re-encode anything: it streams the broadcast list's shared frames
//! (encoded once, by [`crate::feed::frame`]), adds a `retry:` and heartbeats of its own, and
//! stops on shutdown, on a cut-off, or when the client goes away (the driver drops the body,
//! which drops the subscription).

use crate::api::auth::AuthError;
use crate::api::error::AppError;
use crate::api::limits::{self, SubscriberPermit};
use crate::api::state::ApiState;
use crate::config::ServeArgs;
use crate::feed::broadcast::{Start, Subscription};
use crate::feed::channels::ChannelSet;
use crate::runtime::cancel::{CancelToken, Cancelled};
use crate::runtime::connection::{ClientAddr, ConnectionCut, StreamCut};
use crate::runtime::jitter;
use app::message::{validate_channel, Gap, EVENT_GAP, EVENT_SOURCE};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Version};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// A comment line: ignored by EventSource, keeps proxies and NATs from closing an idle stream.
const HEARTBEAT: &[u8] = b":\n\n";

/// The `retry:` line and, after a lost resume, the `ringback.gap` event: the first bytes of a
/// stream. Sent at once so the browser sees the stream open without waiting for a message.
///
/// Behind Redis, the source's state follows (see [`source_event`]).
fn preamble(retry: Duration, gap: Option<&Gap>, online: Option<bool>) -> Bytes {
    let mut out = format!("retry: {}\n\n", retry.as_millis());
    if let Some(gap) = gap {
        let json = serde_json::to_string(gap).unwrap_or_else(|_| "{}".to_owned());
        out.push_str(&format!("event: {EVENT_GAP}\ndata: {json}\n\n"));
    }
    if let Some(online) = online {
        out.push_str(&source_event(online));
    }
    Bytes::from(out)
}

/// The `ringback.source` event: whether this server reaches its source (Redis) now. It carries
/// no `id:`, so it never moves the client's `Last-Event-ID`.
fn source_event(online: bool) -> String {
    format!("event: {EVENT_SOURCE}\ndata: {{\"online\":{online}}}\n\n")
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

impl SubscribeParams {
    /// `Last-Event-ID` (header first, then `lastEventId` in the query) and `type` filters.
    pub fn parse(
        query: Option<&str>,
        headers: &HeaderMap,
        max_types: usize,
    ) -> Result<Self, AppError> {
        let mut params = SubscribeParams::default();
        let mut query_last = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "type" => {
                    validate_channel(&value)
                        .map_err(|e| AppError::BadRequest(format!("bad `type` filter: {e}")))?;
                    if !params.types.iter().any(|t| *t == value) {
                        params.types.push(value.into_owned());
                    }
                    if params.types.len() > max_types {
                        return Err(AppError::BadRequest(format!(
                            "at most {max_types} `type` filters per subscription"
                        )));
                    }
                }
                "lastEventId" => query_last = Some(value.into_owned()),
                "since" => {
                    let bad = || {
                        AppError::BadRequest("`since` must be a Unix time in milliseconds".into())
                    };
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
pub fn parse_last_event_id(raw: &str) -> Result<u64, AppError> {
    let raw = raw.trim();
    if raw.is_empty() || raw.len() > 20 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AppError::BadRequest(
            "`Last-Event-ID` must be a decimal message id".into(),
        ));
    }
    raw.parse()
        .map_err(|_| AppError::BadRequest("`Last-Event-ID` is out of range".into()))
}

/// `GET /messages`: the event stream.
///
/// Refusals, each counted by reason: `400` for a malformed query or `Last-Event-ID`, `401` for
/// a bad credential, `403` for a `type` filter naming a private channel the credential does not
/// grant, `429` beyond the subscribers per address, `503` beyond the subscribers in total.
pub async fn subscribe(State(state): State<ApiState>, req: Request) -> Result<Response, AppError> {
    let Admitted {
        params,
        grants,
        permit,
    } = admit(&state, &req)?;
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
    let (sub, gap) = state.feed.subscribe(start, filter, grants, cut.clone());
    if let Some(gap) = &gap {
        tracing::info!(after = gap.after, oldest = ?gap.oldest, "resume beyond history; client told of the gap");
    }
    let mut source = state.source.watch_online();
    let online = source.as_mut().map(|s| *s.borrow_and_update());
    let stream = EventStream::new(
        sub,
        preamble(state.config.events.retry, gap.as_ref(), online),
        state.config.events.heartbeat,
        cut.clone(),
        &state.shutdown,
        source,
        state.config.events.retry,
        ends_at(state.config.events.max_stream_age),
        permit,
        batch(req.version(), &state.config),
    );
    Ok(event_stream_response(stream, cut))
}

/// What [`admit`] let through: the request's parameters, the private channels its credential
/// grants, and its place under the subscriber limits.
struct Admitted {
    params: SubscribeParams,
    grants: ChannelSet,
    permit: SubscriberPermit,
}

/// The checks before a subscription, each refusal counted by reason: the query and
/// `Last-Event-ID`, the credential, the private channels named, the subscriber limits.
fn admit(state: &ApiState, req: &Request) -> Result<Admitted, AppError> {
    let refused = |reason: &'static str| {
        let metrics = state.metrics.clone();
        move |e| {
            metrics.refuse(reason);
            e
        }
    };
    let params = SubscribeParams::parse(
        req.uri().query(),
        req.headers(),
        state.config.events.max_filter_channels,
    )
    .map_err(refused("bad_request"))?;
    let grants = state
        .auth
        .reader(params.token.as_deref(), req.headers())
        .map_err(AppError::from)
        .map_err(refused("unauthorized"))?;
    if let Some(channel) = params
        .types
        .iter()
        .find(|t| state.auth.private().contains(t) && !grants.contains(t))
    {
        let e = AuthError::Forbidden {
            action: "reading",
            channel: channel.clone(),
        };
        return Err(refused("forbidden")(AppError::from(e)));
    }
    let ip = limits::client_ip(
        req.extensions().get::<ClientAddr>(),
        req.headers(),
        state.config.limits.trust_forwarded_for,
    );
    let permit = state
        .subscribers
        .admit(ip)
        .map_err(|e| refused(e.reason())(AppError::from(e)))?;
    Ok(Admitted {
        params,
        grants,
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
/// driver.
fn event_stream_response(stream: EventStream, cut: CancelToken) -> Response {
    let body = Body::from_stream(futures::stream::unfold(stream, EventStream::step));
    let mut response = body.into_response();
    response.extensions_mut().insert(StreamCut(cut));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
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
    heartbeat: Duration,
    /// When bytes were last handed to the socket: a heartbeat is due `heartbeat` after.
    last_sent: Instant,
    /// Fires no later than the next heartbeat is due (possibly earlier: then it re-arms).
    idle: Pin<Box<Sleep>>,
    cut: Cancelled,
    shutdown: Cancelled,
    /// The source's online state, behind Redis; each change is sent as a `ringback.source`.
    source: Option<watch::Receiver<bool>>,
    /// The `retry:` announced at the start; the last words of a stream scale it.
    retry: Duration,
    /// When this stream ends by itself (`--max-stream-age`, with jitter).
    ends: Option<Pin<Box<Sleep>>>,
    /// The parting `retry:` has been sent; the next step ends the stream.
    ended: bool,
    /// This subscriber's place under the subscriber limits, given back when the stream ends.
    _permit: SubscriberPermit,
    /// The most bytes one step coalesces (a single larger frame still goes whole, shared).
    batch: usize,
}

/// When a stream opened now ends by itself: after 80–100% of `max_age`, or never for zero.
fn ends_at(max_age: Duration) -> Option<Instant> {
    (!max_age.is_zero()).then(|| Instant::now() + jitter::between(max_age.mul_f64(0.8), max_age))
}

/// Waits for `timer`; never, without one.
async fn until(timer: &mut Option<Pin<Box<Sleep>>>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
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
        heartbeat: Duration,
        cut: CancelToken,
        shutdown: &CancelToken,
        source: Option<watch::Receiver<bool>>,
        retry: Duration,
        ends_at: Option<Instant>,
        permit: SubscriberPermit,
        batch: usize,
    ) -> Self {
        let now = Instant::now();
        EventStream {
            sub,
            first: Some(first),
            heartbeat,
            last_sent: now,
            idle: Box::pin(tokio::time::sleep_until(now + heartbeat)),
            cut: cut.cancelled(),
            shutdown: shutdown.cancelled(),
            source,
            retry,
            ends: ends_at.map(|at| Box::pin(tokio::time::sleep_until(at))),
            ended: false,
            _permit: permit,
            batch,
        }
    }

    async fn step(mut self) -> Option<(Result<Bytes, Infallible>, Self)> {
        if let Some(first) = self.first.take() {
            return Some((Ok(first), self));
        }
        if self.ended {
            return None;
        }
        loop {
            let bytes = tokio::select! {
                biased;
                // Shutting down, or at the end of its age: the stream's last words are a
                // `retry:` drawn between 1× and 3× the usual one, so the clients of a whole
                // server do not all reconnect (elsewhere) in the same instant.
                _ = &mut self.shutdown => self.parting_words(),
                _ = until(&mut self.ends) => self.parting_words(),
                online = source_changed(&mut self.source) => Bytes::from(source_event(online)),
                next = self.sub.next(self.batch) => match next {
                    Ok(bytes) => bytes,
                    Err(_lagged) => return None,
                },
                // After the subscription: a step that finds frames ready (a delivery) does not
                // touch the cut-off token, a cache line of its own per stream. A stream cut for
                // lagging learns it from the subscription anyway; this is for the others.
                _ = &mut self.cut => return None,
                _ = &mut self.idle => {
                    let due = self.last_sent + self.heartbeat;
                    if Instant::now() < due {
                        // Something was sent since the timer was armed: not idle yet.
                        self.idle.as_mut().reset(due);
                        continue;
                    }
                    self.idle.as_mut().reset(Instant::now() + self.heartbeat);
                    Bytes::from_static(HEARTBEAT)
                }
            };
            self.last_sent = Instant::now();
            return Some((Ok(bytes), self));
        }
    }

    fn parting_words(&mut self) -> Bytes {
        self.ended = true;
        let retry = jitter::between(self.retry, self.retry * 3);
        Bytes::from(format!("retry: {}\n\n", retry.as_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::frame::{encode_message, object_members};
    use app::message::EVENT_CHANNEL;

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

    /// A stream as `subscribe` makes it (heartbeat 15 s, retry 2 s), and its cut-off and
    /// shutdown switches.
    fn stream_with(
        feed: &crate::feed::broadcast::BroadcastList,
        heartbeat: Duration,
        ends_at: Option<Instant>,
        source: Option<watch::Receiver<bool>>,
    ) -> (EventStream, CancelToken, CancelToken) {
        let (sub, _) = feed.subscribe(Start::Live, None, None, CancelToken::new());
        let (cut, shutdown) = (CancelToken::new(), CancelToken::new());
        let online = source.as_ref().map(|s| *s.borrow());
        let s = EventStream::new(
            sub,
            preamble(Duration::from_secs(2), None, online),
            heartbeat,
            cut.clone(),
            &shutdown,
            source,
            Duration::from_secs(2),
            ends_at,
            crate::api::limits::SubscriberLimits::new(0, 0)
                .admit([127, 0, 0, 1].into())
                .unwrap(),
            64 * 1024,
        );
        (s, cut, shutdown)
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

    #[tokio::test(start_paused = true)]
    async fn idle_streams_send_heartbeats_and_end_on_shutdown() {
        let feed = feed();
        let (s, _cut, shutdown) = stream_with(&feed, Duration::from_secs(15), None, None);
        let (first, s) = s.step().await.unwrap();
        assert_eq!(first.unwrap(), Bytes::from_static(b"retry: 2000\n\n"));
        let started = tokio::time::Instant::now();
        let (beat, s) = s.step().await.unwrap();
        assert_eq!(beat.unwrap(), Bytes::from_static(HEARTBEAT));
        assert_eq!(started.elapsed(), Duration::from_secs(15));
        feed.publish("red", &serde_json::json!("x")).unwrap();
        let (frame, s) = s.step().await.unwrap();
        assert!(std::str::from_utf8(&frame.unwrap())
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
        assert_eq!(beat.unwrap(), Bytes::from_static(HEARTBEAT));
        assert_eq!(started.elapsed(), Duration::from_secs(35));
        shutdown.cancel();
        let (last, s) = s.step().await.unwrap();
        assert_retry_between(&last.unwrap(), 2000, 6000);
        assert!(s.step().await.is_none());
    }

    fn assert_retry_between(frame: &Bytes, lo: u128, hi: u128) {
        let text = std::str::from_utf8(frame).unwrap();
        let ms: u128 = text
            .strip_prefix("retry: ")
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or_else(|| panic!("a retry frame: {text:?}"));
        assert!((lo..=hi).contains(&ms), "{ms}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_stream_ends_within_80_to_100_percent_of_its_max_age() {
        let feed = feed();
        let age = Duration::from_secs(100);
        let started = tokio::time::Instant::now();
        let (mut s, _, _) = stream_with(&feed, Duration::from_secs(3600), ends_at(age), None);
        s.first = None;
        let (last, s) = s.step().await.unwrap();
        let lived = started.elapsed();
        assert!(lived >= age.mul_f64(0.8) && lived <= age, "{lived:?}");
        assert_retry_between(&last.unwrap(), 2000, 6000);
        assert!(s.step().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_cut_ends_the_stream() {
        let feed = feed();
        let (mut s, cut, _) = stream_with(&feed, Duration::from_secs(15), None, None);
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
        let text =
            String::from_utf8(preamble(Duration::from_millis(1500), Some(&gap), None).to_vec())
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
        let (s, _, _) = stream_with(&feed, Duration::from_secs(15), None, Some(rx));
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
