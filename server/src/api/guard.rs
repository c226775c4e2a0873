//! What every request must be before a handler sees it, for every protocol alike (one Router
//! layer): an HTTP/1.1 request names exactly one `Host` (RFC 9112 §3.2: `400` otherwise), and a
//! request body arrives whole within `--body-timeout`, never slower than `--min-body-rate`
//! after its first second.
//!
//! Why bodies need a clock of their own: the connection's header deadline ends with the head,
//! and the idle timeout only counts time with no request in flight. A publisher that declares a
//! large `Content-Length` and sends a byte now and then would otherwise hold its connection,
//! its handler and its buffer for as long as it likes. A body cut here fails the handler's read
//! with [`BodyCut`] (the publish API answers `408`: `api::refusal`), and the connection is closed with it.

use crate::api::refusal::{Reason, Refusal};
use crate::metrics::Metrics;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Version};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// How long a body may take before its rate is held to `--min-body-rate`: a client's first
/// bytes may wait on a slow start or a TLS record.
pub(crate) const BODY_RATE_GRACE: Duration = Duration::from_secs(1);

/// The bounds on request bodies, and where their cuts are counted.
#[derive(Clone)]
pub(crate) struct BodyLimits {
    /// `--body-timeout`; zero: none.
    pub(crate) timeout: Duration,
    /// `--min-body-rate`, bytes per second; zero: none.
    pub(crate) min_rate: u64,
    pub(crate) metrics: Arc<Metrics>,
}

/// Why a request body was cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyCut {
    #[error("the request body did not arrive within {} s", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("the request body arrived slower than {0} bytes per second")]
    TooSlow(u64),
}

impl From<BodyCut> for Refusal {
    fn from(cut: BodyCut) -> Self {
        let reason = match cut {
            BodyCut::TimedOut(_) => Reason::BodyTimeout,
            BodyCut::TooSlow(_) => Reason::MinBodyRate,
        };
        Refusal::new(reason, cut.to_string())
    }
}

impl BodyCut {
    /// The cut behind a body's read error, if it was one (wrapped in any number of errors
    /// that name their source, as axum's do).
    pub(crate) fn of(error: &(dyn std::error::Error + 'static)) -> Option<BodyCut> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(cut) = e.downcast_ref::<BodyCut>() {
                return Some(*cut);
            }
            next = e.source();
        }
        None
    }
}

/// The Router's outermost layer: the guard, then the request id and its span
/// ([`crate::api::trace::request_id`]).
///
/// One `from_fn` layer for both, because each layer costs on every request: a second
/// `from_fn` layer measured ~6,300 instructions per request under callgrind, a tower layer
/// through `Router::layer` ~2,900 (it boxes each route once more), the guard inside the one
/// layer the Router already had ~870 (`bench/h2-instructions.sh`: 62,317 against 61,445).
pub(crate) async fn front(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    match admit(&limits, req) {
        Ok(req) => crate::api::trace::request_id(req, next).await,
        Err(refusal) => refusal.into_response(),
    }
}

/// Refuses an HTTP/1.1 request without exactly one `Host`, and puts every request body that is
/// not empty on the clock.
fn admit(limits: &BodyLimits, req: Request) -> Result<Request, Refusal> {
    if req.version() == Version::HTTP_11 && req.headers().get_all(header::HOST).iter().count() != 1
    {
        limits.metrics.bad_host.fetch_add(1, Ordering::Relaxed);
        return Err(Refusal::new(
            Reason::BadHost,
            "an HTTP/1.1 request names exactly one Host",
        ));
    }
    let timed = !limits.timeout.is_zero() || limits.min_rate > 0;
    if timed && !req.body().is_end_stream() {
        let limits = limits.clone();
        return Ok(req.map(|body| Body::new(Deadline::new(body, limits))));
    }
    Ok(req)
}

/// A request body on the clock (see the module docs).
struct Deadline {
    inner: Body,
    limits: BodyLimits,
    started: Instant,
    received: u64,
    /// Fires when the body is due to have more (made at the first wait).
    timer: Option<Pin<Box<Sleep>>>,
}

impl Deadline {
    fn new(inner: Body, limits: BodyLimits) -> Self {
        Deadline {
            inner,
            limits,
            started: Instant::now(),
            received: 0,
            timer: None,
        }
    }

    /// When the body is out of time: its whole deadline, or the moment its rate would fall
    /// under the minimum with nothing more arriving, whichever is first.
    fn due(&self) -> (Instant, BodyCut) {
        let far = self.started + Duration::from_secs(365 * 24 * 3600);
        let whole = if self.limits.timeout.is_zero() {
            far
        } else {
            self.started + self.limits.timeout
        };
        let rate = match self.limits.min_rate {
            0 => far,
            r => {
                let earned = Duration::from_secs_f64(self.received as f64 / r as f64);
                self.started + BODY_RATE_GRACE + earned
            }
        };
        if whole <= rate {
            (whole, BodyCut::TimedOut(self.limits.timeout))
        } else {
            (rate, BodyCut::TooSlow(self.limits.min_rate))
        }
    }
}

impl http_body::Body for Deadline {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let (due, cut) = this.due();
        if Instant::now() < due {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        this.received += data.len() as u64;
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Poll::Ready(other) => return Poll::Ready(other),
                Poll::Pending => {}
            }
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            if timer.deadline() != due {
                timer.as_mut().reset(due);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        let counter = match cut {
            BodyCut::TimedOut(_) => &this.limits.metrics.cut_body_timeout,
            BodyCut::TooSlow(_) => &this.limits.metrics.cut_min_body_rate,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(received = this.received, %cut, "request body cut off");
        Poll::Ready(Some(Err(axum::Error::new(cut))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn limits(timeout: u64, min_rate: u64) -> BodyLimits {
        BodyLimits {
            timeout: Duration::from_secs(timeout),
            min_rate,
            metrics: Arc::default(),
        }
    }

    /// A body that sends `chunks`, each after `gap`, through a channel.
    fn dripping(chunks: usize, size: usize, gap: Duration) -> Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
        tokio::spawn(async move {
            for _ in 0..chunks {
                tokio::time::sleep(gap).await;
                if tx.send(Ok(Bytes::from(vec![b'x'; size]))).await.is_err() {
                    return;
                }
            }
        });
        Body::from_stream(tokio_stream_of(rx))
    }

    fn tokio_stream_of(
        mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    ) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    async fn read(body: Body, limits: BodyLimits) -> Result<usize, Option<BodyCut>> {
        Deadline::new(body, limits)
            .collect()
            .await
            .map(|c| c.to_bytes().len())
            .map_err(|e| BodyCut::of(&e))
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_in_time_passes() {
        let body = dripping(10, 1000, Duration::from_millis(100));
        assert_eq!(read(body, limits(10, 4096)).await, Ok(10_000));
    }

    #[tokio::test(start_paused = true)]
    async fn a_dripping_body_is_cut_at_its_rate() {
        // A byte every 5 s: under 4096 B/s as soon as the grace is over.
        let started = Instant::now();
        let body = dripping(100, 1, Duration::from_secs(5));
        let l = limits(10, 4096);
        let metrics = l.metrics.clone();
        assert_eq!(read(body, l).await, Err(Some(BodyCut::TooSlow(4096))));
        assert!(started.elapsed() <= BODY_RATE_GRACE + Duration::from_millis(1));
        assert_eq!(metrics.cut_min_body_rate.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_but_endless_body_is_cut_at_the_deadline() {
        // 8 KiB/s keeps the rate, but the body never ends.
        let started = Instant::now();
        let body = dripping(1000, 800, Duration::from_millis(100));
        let l = limits(10, 4096);
        let metrics = l.metrics.clone();
        let cut = read(body, l).await;
        assert_eq!(cut, Err(Some(BodyCut::TimedOut(Duration::from_secs(10)))));
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert_eq!(metrics.cut_body_timeout.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_body_is_cut() {
        let body = dripping(1, 1, Duration::from_secs(3600));
        assert_eq!(
            read(body, limits(10, 0)).await,
            Err(Some(BodyCut::TimedOut(Duration::from_secs(10))))
        );
    }
}
