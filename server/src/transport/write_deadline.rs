//! The per-connection write deadline: a socket whose writes make no progress for
//! `--write-timeout` is closed.
//!
//! Why at the socket, below TLS and HTTP: a client that stops reading stalls every layer above
//! it alike (HTTP/1.1, each HTTP/2 stream, the TLS records), and only here is "no byte has left
//! for this long" one clear fact. The broadcast list already bounds what a slow reader can hold
//! (it is cut off when it falls behind the history); this bounds how long its connection, its
//! buffers and its file descriptor outlive it when the feed is quiet.

use crate::metrics::Metrics;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// An I/O object whose pending writes fail with `TimedOut` after `timeout` without progress.
pub struct WriteDeadline<IO> {
    io: IO,
    timeout: Duration,
    /// Made at the first stall and kept (most connections never stall: they pay for no timer).
    timer: Option<Pin<Box<Sleep>>>,
    /// A write is pending and the timer runs for it.
    armed: bool,
    metrics: Arc<Metrics>,
}

impl<IO> WriteDeadline<IO> {
    /// `timeout` of zero: no deadline.
    pub fn new(io: IO, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        WriteDeadline {
            io,
            timeout,
            timer: None,
            armed: false,
            metrics,
        }
    }

    /// After the inner write returned `Ready`: the clock stops.
    fn progressed<T>(&mut self, r: T) -> Poll<T> {
        self.armed = false;
        Poll::Ready(r)
    }

    /// After the inner write returned `Pending`: start the clock (if not running) and fail
    /// the write once it runs out.
    fn stalled<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        if self.timeout.is_zero() {
            return Poll::Pending;
        }
        let deadline = Instant::now() + self.timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !self.armed {
            timer.as_mut().reset(deadline);
            self.armed = true;
        }
        ready!(timer.as_mut().poll(cx));
        self.metrics.write_timeouts.fetch_add(1, Ordering::Relaxed);
        tracing::debug!("a write made no progress within the write timeout; closing");
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "write timed out: the client is not reading",
        )))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stalled(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stalled(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stalled(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match Pin::new(&mut self.io).poll_shutdown(cx) {
            Poll::Ready(r) => self.progressed(r),
            Poll::Pending => self.stalled(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn a_stalled_write_fails_after_the_timeout_and_a_read_one_does_not() {
        let metrics = Arc::new(Metrics::default());
        // A pipe with a 1 KiB buffer whose far end reads only when told to.
        let (near, mut far) = tokio::io::duplex(1024);
        let mut conn = WriteDeadline::new(near, Duration::from_secs(30), metrics.clone());
        let chunk = [7u8; 4096];

        // Progress keeps the connection alive however long the whole write takes.
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 4096 {
                tokio::time::sleep(Duration::from_secs(20)).await;
                total += far.read(&mut buf).await.unwrap();
            }
            far
        });
        conn.write_all(&chunk).await.unwrap();
        let _far = reader.await.unwrap();
        assert_eq!(metrics.write_timeouts.load(Ordering::Relaxed), 0);

        // Nobody reads: the write fails once 30 s pass without progress.
        let started = Instant::now();
        let err = conn.write_all(&chunk).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(metrics.write_timeouts.load(Ordering::Relaxed), 1);
    }
}
