//! A cleartext TCP connection shared by its task and the feed's writers.
//!
//! An HTTP/1.1 event stream's frames are written by the feed's writers straight to its socket
//! while its task waits for them (`feed::broadcast`'s direct writes; [`WriteNow`]): one
//! non-blocking write of one chunk per delivery, the task not woken. Whatever the socket does
//! not take at once goes back to the task: a chunk written in part leaves its rest here, for the
//! task to write before anything else ([`TcpShare::take_rest`]), under the write deadline and
//! the cuts, as every write of its own.
//!
//! Everything else on the connection (its request head, hyper for any other request) reads and
//! writes through [`SharedTcp`] as through the `TcpStream` itself.

use crate::runtime::connection::{WriteNow, Written};
use crate::runtime::lock::MutexExt;
use crate::transport::chunked::Chunk;
use bytes::Bytes;
use std::cell::RefCell;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The connection as its task reads and writes it.
pub struct SharedTcp(Arc<TcpShare>);

/// The connection as it is shared: its socket, and the rest of a chunk written in part.
pub struct TcpShare {
    tcp: TcpStream,
    /// The rest of a chunk a writer wrote in part, until the task takes it.
    rest: Mutex<Option<Bytes>>,
    /// The task owes the socket that rest: no writer writes until it has written it whole.
    owed: AtomicBool,
}

impl SharedTcp {
    pub fn new(tcp: TcpStream) -> Self {
        SharedTcp(Arc::new(TcpShare {
            tcp,
            rest: Mutex::new(None),
            owed: AtomicBool::new(false),
        }))
    }

    /// The connection as the feed's writers take it.
    pub fn share(&self) -> Arc<TcpShare> {
        self.0.clone()
    }
}

impl TcpShare {
    /// The rest of a chunk a writer wrote in part, which must go before anything else; once
    /// it is written whole, the task says so ([`TcpShare::paid`]).
    pub fn take_rest(&self) -> Option<Bytes> {
        self.rest.lock_or_recover().take()
    }

    /// The rest taken is written whole: writers may write again.
    pub fn paid(&self) {
        self.owed.store(false, Ordering::Release);
    }
}

impl WriteNow for TcpShare {
    /// `frames` as one chunk (size line, frames, CRLF), in one non-blocking `send` (framed once
    /// per worker thread for the many connections that take the same frames in a row).
    fn write_now(&self, frames: &Bytes) -> Written {
        if self.owed.load(Ordering::Acquire) {
            return Written::Nothing;
        }
        let chunk = chunk_of(frames);
        // Past tokio's readiness: a `WouldBlock` here leaves it set, and the task's own next
        // write meets the same and clears it.
        match socket2::SockRef::from(&self.tcp).send(&chunk) {
            Ok(n) if n == chunk.len() => Written::Whole,
            Ok(n) if n > 0 => {
                *self.rest.lock_or_recover() = Some(chunk.slice(n..));
                self.owed.store(true, Ordering::Release);
                Written::Part
            }
            // Full, or failed: the task's own write meets the same and acts on it.
            _ => Written::Nothing,
        }
    }
}

/// `frames` as one chunk, made once on this thread for the same frames (the cache holds the
/// frames too, so their address stands for them while it is kept). Two are kept: a pass
/// writes one piece to plain streams and another to compressed ones, in any order.
fn chunk_of(frames: &Bytes) -> Bytes {
    thread_local! {
        static LAST: RefCell<[(Bytes, Bytes); 2]> = const {
            RefCell::new([(Bytes::new(), Bytes::new()), (Bytes::new(), Bytes::new())])
        };
    }
    LAST.with_borrow_mut(|kept| {
        let same = |(last, chunk): &(Bytes, Bytes)| {
            last.as_ptr() == frames.as_ptr() && last.len() == frames.len() && !chunk.is_empty()
        };
        if !same(&kept[0]) {
            // The other one, or a new one in place of the older.
            kept.swap(0, 1);
            if !same(&kept[0]) {
                kept[0] = (frames.clone(), Chunk::data(frames.clone()).into_bytes());
            }
        }
        kept[0].1.clone()
    })
}

impl AsyncRead for SharedTcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            match tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                // Readiness was stale; polling it again registers for the next.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl SharedTcp {
    /// `write` once the socket is writable, again while readiness turns out stale.
    fn poll_write_with(
        &self,
        cx: &mut Context<'_>,
        write: impl Fn(&TcpStream) -> io::Result<usize>,
    ) -> Poll<io::Result<usize>> {
        let tcp = &self.0.tcp;
        loop {
            ready!(tcp.poll_write_ready(cx))?;
            match write(tcp) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                written => return Poll::Ready(written),
            }
        }
    }
}

impl AsyncWrite for SharedTcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |tcp| tcp.try_write(buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_with(cx, |tcp| tcp.try_write_vectored(bufs))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        let socket = socket2::SockRef::from(&self.0.tcp);
        Poll::Ready(socket.shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (SharedTcp, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, (server, _)) =
            tokio::join!(client, async { listener.accept().await.unwrap() });
        (SharedTcp::new(server), client.unwrap())
    }

    /// A chunk written now is one chunk on the wire; once the socket is full, what it did not
    /// take is left whole for the task, and the stream stays one valid sequence of chunks.
    #[tokio::test]
    async fn chunks_written_now_stay_whole_on_the_wire() {
        let (mut shared, mut client) = pair().await;
        let share = shared.share();
        assert_eq!(
            share.write_now(&Bytes::from_static(b"data: 1\n\n")),
            Written::Whole
        );
        let mut buf = vec![0; 64];
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"9\r\ndata: 1\n\n\r\n");

        // Nobody reads: fill the socket until a write does not go whole.
        let frame = Bytes::from(vec![b'x'; 4000]);
        let mut sent = 0;
        let last = loop {
            match share.write_now(&frame) {
                Written::Whole => sent += 1,
                other => break other,
            }
        };
        let rest = share.take_rest();
        assert_eq!(rest.is_some(), last == Written::Part);
        if rest.is_some() {
            // Owed to the socket: nothing more is written over it until the task has paid.
            assert_eq!(
                share.write_now(&Bytes::from_static(b"data: 2\n\n")),
                Written::Nothing
            );
        }
        let mut expected = Vec::new();
        for _ in 0..sent + usize::from(last == Written::Part) {
            expected.extend_from_slice(b"fa0\r\n");
            expected.extend_from_slice(&frame);
            expected.extend_from_slice(b"\r\n");
        }
        let writer = tokio::spawn(async move {
            if let Some(rest) = rest {
                shared.write_all(&rest).await.unwrap();
                shared.0.paid();
            }
            shared.shutdown().await.unwrap();
            shared
        });
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        assert!(
            out == expected,
            "{} bytes against {}",
            out.len(),
            expected.len()
        );
    }
}
