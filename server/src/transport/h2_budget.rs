//! What an HTTP/2 connection may hold unsent: one budget for all its streams together.
//!
//! h2 buffers each stream's data up to its own send buffer (`--h2-max-send-buffer`) while the
//! peer's window is open, whether or not the socket drains. A peer that opens many streams with
//! open windows and then stops reading its socket would make the server hold a send buffer per
//! stream: per connection, that is the stream limit times the buffer (hundreds of MiB). Here the
//! connection's streams share one budget (`--max-connection-buffer`): the bytes handed to h2
//! minus the DATA bytes h2 has written to the socket. A connection over it is closed; its
//! subscribers resume elsewhere with `Last-Event-ID`, and everything it held is freed at once.
//!
//! What reached the socket is read off the outgoing bytes themselves ([`Metered`] follows the
//! frame headers h2 writes and counts DATA frames and their payloads), so the figure is exact
//! whatever h2 does with its queues.
//!
//! Each queued DATA frame also costs h2 bookkeeping of its own, whatever its payload: measured
//! at ~400 bytes a frame (819,496 frames queued by 3,000 stalled streams held 326 MB of heap
//! while their payloads, shared with the history, were 2 MB). So a frame is charged
//! [`FRAME_COST`] on top of its payload, and credited the same when it is written. The charge
//! and the credit meet frame for frame because the driver hands h2 at most
//! [`MAX_DATA_FRAME`] bytes at a time, within the capacity h2 granted, so h2 never splits
//! them. Frames a reset stream had queued are dropped by h2 unwritten and stay charged until
//! the connection ends: a connection whose streams are often reset while data waits for them
//! reaches its budget sooner (its clients then resume with `Last-Event-ID`), never later.
//! What TLS holds below (rustls's buffer of records, 64 KiB) counts as written.

use crate::runtime::cancel::CancelToken;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What one queued DATA frame costs beyond its payload (h2's bookkeeping, measured).
pub(crate) const FRAME_COST: u64 = 384;

pub(crate) use crate::runtime::connection::MAX_DATA_FRAME;

/// One connection's budget of unsent bytes.
pub(crate) struct SendBudget {
    limit: u64,
    /// DATA frames handed to h2 by every stream of the connection: their payloads plus
    /// [`FRAME_COST`] each.
    handed: AtomicU64,
    /// The same for the DATA frames h2 has written to the socket (counted by [`Metered`]).
    written: Arc<AtomicU64>,
    /// Cancelled when the connection goes over its budget; the connection's task closes it.
    over: CancelToken,
}

impl SendBudget {
    /// A budget of `limit` bytes (0: none), and the counter its connection's [`Metered`] I/O
    /// feeds.
    pub(crate) fn new(limit: usize) -> (Self, Arc<AtomicU64>) {
        let written = Arc::new(AtomicU64::new(0));
        let budget = SendBudget {
            limit: if limit == 0 { u64::MAX } else { limit as u64 },
            handed: AtomicU64::new(0),
            written: written.clone(),
            over: CancelToken::new(),
        };
        (budget, written)
    }

    /// Records a DATA frame of `n` bytes (at most [`MAX_DATA_FRAME`]) about to be handed to
    /// h2; `false` (and the connection marked over budget) when that would leave more than the
    /// limit unsent.
    pub(crate) fn take(&self, n: usize) -> bool {
        let charge = n as u64 + FRAME_COST;
        let handed = self.handed.fetch_add(charge, Ordering::Relaxed) + charge;
        let unsent = handed.saturating_sub(self.written.load(Ordering::Relaxed));
        if unsent > self.limit {
            self.over.cancel();
            return false;
        }
        true
    }

    /// Bytes (payloads and frame costs) handed to h2 and not yet written to the socket.
    pub(crate) fn unsent(&self) -> u64 {
        let handed = self.handed.load(Ordering::Relaxed);
        handed.saturating_sub(self.written.load(Ordering::Relaxed))
    }

    /// Cancelled once the connection has gone over its budget.
    pub(crate) fn exceeded(&self) -> &CancelToken {
        &self.over
    }
}

/// An I/O object that counts the DATA frames written through it, as [`SendBudget`] charges
/// them: payload plus [`FRAME_COST`] each.
pub(crate) struct Metered<IO> {
    io: IO,
    frames: FrameScan,
    written: Arc<AtomicU64>,
}

impl<IO> Metered<IO> {
    pub(crate) fn new(io: IO, written: Arc<AtomicU64>) -> Self {
        Metered {
            io,
            frames: FrameScan::default(),
            written,
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        let data = self.frames.scan(bytes);
        if data > 0 {
            self.written.fetch_add(data, Ordering::Relaxed);
        }
    }
}

/// Follows a server's outgoing HTTP/2 byte stream (frames from the first byte: a server sends
/// no preface string) frame header by frame header.
#[derive(Default)]
struct FrameScan {
    header: [u8; 9],
    /// Bytes of the current frame header seen so far.
    have: usize,
    /// Payload bytes of the current frame still to come.
    payload_left: usize,
    /// The current frame is a DATA frame (type 0). The server never pads them, so its whole
    /// payload is data.
    data: bool,
}

impl FrameScan {
    /// Follows `bytes`, written out; returns the charge of the DATA frames in them: each byte
    /// of payload, and [`FRAME_COST`] for each frame header.
    fn scan(&mut self, mut bytes: &[u8]) -> u64 {
        let mut data = 0;
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                if self.data {
                    data += n as u64;
                }
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (self.header.len() - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == self.header.len() {
                let h = self.header;
                self.have = 0;
                self.payload_left = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
                self.data = h[3] == 0;
                if self.data {
                    data += FRAME_COST;
                }
            }
        }
        data
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Metered<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Metered<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write(cx, buf))?;
        self.wrote(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let n = ready!(Pin::new(&mut self.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(buf.len());
            self.wrote(&buf[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, 0, 0, 0, 0, 1];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn counts_data_payloads_across_any_split() {
        // SETTINGS (empty), HEADERS, DATA 5, DATA 0, PING, DATA 3.
        let mut wire = frame(4, b"");
        wire.extend(frame(1, b"\x88"));
        wire.extend(frame(0, b"hello"));
        wire.extend(frame(0, b""));
        wire.extend(frame(6, b"12345678"));
        wire.extend(frame(0, b"abc"));
        for step in 1..wire.len() {
            let mut scan = FrameScan::default();
            let counted: u64 = wire.chunks(step).map(|c| scan.scan(c)).sum();
            assert_eq!(
                counted,
                8 + 3 * FRAME_COST,
                "written {step} bytes at a time"
            );
        }
    }

    #[test]
    fn the_budget_trips_when_unsent_bytes_pass_the_limit() {
        let limit = 100 + FRAME_COST as usize;
        let (budget, written) = SendBudget::new(limit);
        assert!(budget.take(60));
        written.fetch_add(50 + FRAME_COST, Ordering::Relaxed);
        assert!(
            budget.take(90),
            "10 + 90 bytes and a frame unsent: at the limit, not over"
        );
        assert_eq!(budget.unsent(), limit as u64);
        assert!(!budget.exceeded().is_cancelled());
        assert!(!budget.take(1));
        assert!(budget.exceeded().is_cancelled());
    }
}
