//! HTTP/1.1 keep-alive, apart from the header deadline.
//!
//! hyper has one timer for both: its header read timeout starts whenever the connection waits
//! for a request head, so a kept-alive connection was closed `--header-read-timeout` (5 s) after
//! its last response. A publisher's connection pool sends on a connection it believes open, and
//! lost those requests ("connection closed") whenever it published less often than that. Here
//! the two are apart, as nginx keeps `keepalive_timeout` apart from `client_header_timeout`:
//!
//! - **Idle** (no request in flight, no byte of the next one): closed after
//!   `--keep-alive-timeout` (75 s), or at once when the server holds `--max-connections` and
//!   needs the room ([`IdleConnections::reclaim`]): an idle connection pins nothing a client
//!   with something to say could use.
//! - **Reading a head** (from its first byte): closed if the head is not whole within
//!   `--header-read-timeout`, however slowly it drips.
//! - **Busy** (a request in flight, until its response is written): no deadline here; the body
//!   and write deadlines bound it (`api/guard.rs`, `write_deadline.rs`).
//!
//! The connection's phase is kept in a `watch` channel: the reads mark a head's first byte, the
//! service marks a request's start and (when its response body is dropped) its end, and the
//! connection's task waits on the earliest deadline of the phase it is in.

use crate::metrics::Metrics;
use http_body::{Body, Frame, SizeHint};
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// Where a kept-alive connection is between requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the next request, since then.
    Idle(Instant),
    /// The next request's head started arriving then.
    Head(Instant),
    /// Requests in flight (HTTP/1.1 has one at a time; pipelining may start the next before the
    /// last response's body is dropped).
    Busy(usize),
}

/// Why a connection is to be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    KeepAlive,
    HeaderRead,
    Reclaimed,
}

/// One connection's phase, shared by its reads, its service and its task.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    phase: Arc<watch::Sender<Phase>>,
}

impl Activity {
    /// A connection whose first request head started arriving at `head_started`.
    pub(crate) fn new(head_started: Instant) -> Self {
        Activity {
            phase: Arc::new(watch::Sender::new(Phase::Head(head_started))),
        }
    }

    /// Bytes arrived: the first of a head, if the connection was idle.
    fn read(&self) {
        self.phase.send_if_modified(|phase| match phase {
            Phase::Idle(_) => {
                *phase = Phase::Head(Instant::now());
                true
            }
            _ => false,
        });
    }

    /// A request's head was parsed; its handler runs.
    pub(crate) fn request_started(&self) {
        self.phase.send_modify(|phase| {
            *phase = match *phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            }
        });
    }

    /// A response was written whole (or abandoned).
    fn request_done(&self) {
        self.phase.send_modify(|phase| {
            *phase = match *phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            }
        });
    }

    /// `io`, with its reads marking a head's first byte.
    pub(crate) fn watch<IO>(&self, io: IO) -> Watched<IO> {
        Watched {
            io,
            activity: self.clone(),
        }
    }

    /// `body`, marking its request done when it is dropped.
    pub(crate) fn until_written<B>(&self, body: B) -> UntilWritten<B> {
        UntilWritten {
            body,
            activity: self.clone(),
        }
    }

    /// Waits until the connection is due to be closed: idle past `keep_alive`, a head not
    /// whole within `header_read` of its first byte, or idle when `idle` asks for room.
    pub(crate) async fn expired(
        &self,
        header_read: Duration,
        keep_alive: Duration,
        idle: &IdleConnections,
    ) -> Expiry {
        let mut phase = self.phase.subscribe();
        let mut reclaim = idle.0.subscribe();
        let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let timer = tokio::time::sleep_until(far);
        tokio::pin!(timer);
        loop {
            let now = *phase.borrow_and_update();
            let (deadline, why) = match now {
                Phase::Idle(since) => (since + keep_alive, Expiry::KeepAlive),
                Phase::Head(since) => (since + header_read, Expiry::HeaderRead),
                Phase::Busy(_) => (far, Expiry::KeepAlive),
            };
            if matches!(now, Phase::Idle(_)) {
                // Only a call for room made while idle counts.
                reclaim.borrow_and_update();
            }
            timer.as_mut().reset(deadline);
            tokio::select! {
                _ = &mut timer => return why,
                changed = phase.changed() => {
                    if changed.is_err() {
                        return why;
                    }
                }
                _ = reclaim.changed(), if matches!(now, Phase::Idle(_)) => {
                    if matches!(*phase.borrow(), Phase::Idle(_)) {
                        return Expiry::Reclaimed;
                    }
                }
            }
        }
    }
}

impl Expiry {
    /// Counts the close where `/metrics` shows it.
    pub(crate) fn count(self, metrics: &Metrics) {
        let counter = match self {
            Expiry::KeepAlive => &metrics.cut_keep_alive_timeout,
            Expiry::HeaderRead => &metrics.cut_header_read_timeout,
            Expiry::Reclaimed => &metrics.idle_reclaimed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The call for room: the accept loop, holding `--max-connections`, asks every connection that
/// is idle now to close.
#[derive(Debug, Clone)]
pub struct IdleConnections(Arc<watch::Sender<()>>);

impl Default for IdleConnections {
    fn default() -> Self {
        IdleConnections(Arc::new(watch::Sender::new(())))
    }
}

impl IdleConnections {
    /// Asks the connections idle now to close.
    pub(crate) fn reclaim(&self) {
        self.0.send_modify(|_| {});
    }
}

/// An IO whose reads mark a head's first byte ([`Activity::watch`]).
pub(crate) struct Watched<IO> {
    io: IO,
    activity: Activity,
}

impl<IO: AsyncRead + Unpin> AsyncRead for Watched<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.read();
        }
        polled
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Watched<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that marks its request done when dropped ([`Activity::until_written`]):
/// hyper drops it once it is written, or when the connection gives up on it.
pub(crate) struct UntilWritten<B> {
    body: B,
    activity: Activity,
}

impl<B> Drop for UntilWritten<B> {
    fn drop(&mut self) {
        self.activity.request_done();
    }
}

impl<B: Body + Unpin> Body for UntilWritten<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(5);
    const IDLE: Duration = Duration::from_secs(75);

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_keep_alive_and_a_head_for_the_header_deadline() {
        let idle = IdleConnections::default();
        let activity = Activity::new(Instant::now());
        activity.request_started();
        let started = Instant::now();
        let watchdog = {
            let (activity, idle) = (activity.clone(), idle.clone());
            tokio::spawn(async move { activity.expired(HEAD, IDLE, &idle).await })
        };
        // Busy for a minute: no deadline.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!watchdog.is_finished());
        drop(activity.until_written(()));
        // Idle for 70 s: still open; a head starts and drips: closed 5 s after its first byte.
        tokio::time::sleep(Duration::from_secs(70)).await;
        assert!(!watchdog.is_finished());
        activity.read();
        assert_eq!(watchdog.await.unwrap(), Expiry::HeaderRead);
        assert_eq!(started.elapsed(), Duration::from_secs(135));
        // Idle with nothing arriving: closed at the keep-alive timeout.
        let activity = Activity::new(Instant::now());
        activity.request_started();
        activity.request_done();
        let at = Instant::now();
        assert_eq!(activity.expired(HEAD, IDLE, &idle).await, Expiry::KeepAlive);
        assert_eq!(at.elapsed(), IDLE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_for_room_closes_only_idle_connections() {
        let idle = IdleConnections::default();
        let (busy, quiet) = (Activity::new(Instant::now()), Activity::new(Instant::now()));
        busy.request_started();
        quiet.request_started();
        quiet.request_done();
        let watch = |a: &Activity| {
            let (a, idle) = (a.clone(), idle.clone());
            tokio::spawn(async move { a.expired(HEAD, IDLE, &idle).await })
        };
        let (busy_watch, quiet_watch) = (watch(&busy), watch(&quiet));
        tokio::time::sleep(Duration::from_secs(1)).await;
        idle.reclaim();
        assert_eq!(quiet_watch.await.unwrap(), Expiry::Reclaimed);
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !busy_watch.is_finished(),
            "a busy connection is not reclaimed"
        );
        // Nor later, for a call made while it was busy.
        busy.request_done();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!busy_watch.is_finished());
    }
}
