//! One port, three ways in, told apart by the first bytes of the connection:
//!
//! - a TLS ClientHello (first byte `0x16`): TLS with rustls; ALPN `h2` goes to the HTTP/2
//!   driver, anything else to hyper's HTTP/1.1;
//! - the HTTP/2 connection preface (`PRI * HTTP/2.0...`): cleartext HTTP/2 (h2c, prior
//!   knowledge), to the HTTP/2 driver;
//! - anything else: plain HTTP/1.1, so `http://127.0.0.1:3000` works without a certificate.
//!
//! HTTP/1.1 stays on hyper, but for `GET /messages`, framed by `http1.rs` without hyper's
//! per-connection buffers. HTTP/2 goes through our own driver on the `h2` crate, because hyper
//! has no API for server push or `103 Early Hints`. All dispatch to the same axum Router.
//!
//! The TLS and HTTP/2 paths are boxed: a connection's task is as large as the largest path its
//! future could take, and a cleartext HTTP/1.1 subscriber should not carry the others' size.

use crate::config::Http2Driver;
use crate::runtime::connection::ClientAddr;
use crate::transport::rewind::Rewind;
use crate::transport::shared_tcp::SharedTcp;
use crate::transport::write_deadline::WriteDeadline;
use crate::transport::{http1, http2, hyper_conn, Transport};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The HTTP/2 connection preface a client with prior knowledge sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

#[derive(Debug, PartialEq, Eq)]
enum Sniffed {
    Tls,
    H2c,
    Http1,
}

/// Serves one accepted connection to its end (or until shutdown).
///
/// One deadline, `--header-read-timeout` from now, bounds everything before the first request:
/// showing a protocol, the TLS handshake, the HTTP/2 preface, the HTTP/1.1 head. A peer that
/// drips or stalls any of them is closed then, and costs nothing meanwhile (every wait is on
/// the socket's readiness, none on a timer).
pub(crate) async fn serve_tcp(stream: TcpStream, transport: Transport) {
    let deadline = Instant::now() + transport.settings.header_read_timeout;
    let peer = stream.peer_addr().ok().map(ClientAddr);
    let mut stream = stream;
    let (sniffed, first) = match tokio::time::timeout_at(deadline, sniff(&mut stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return, // closed before saying anything
        Err(_) => return header_timeout(&transport, "no protocol shown"),
    };
    // The bytes read go back in front of the stream for TLS and HTTP/2, whose paths are boxed
    // anyway; HTTP/1.1 takes them as the start of its request head, so a fast-path subscriber's
    // task carries no wrapper for the hours it lives.
    match sniffed {
        Sniffed::Tls => {
            // The handshake's future is large (rustls's whole handshake state) and lives only
            // until the handshake is done; the stream it yields is boxed and handed on alone,
            // so the connection's protocol future is not laid out beside it (measured with
            // valgrind's massif: 9.9 KB per TLS connection held for nothing).
            let handshake = Box::pin(tls_handshake(
                Rewind::new(first, with_deadline(stream, &transport)),
                &transport,
                deadline,
            ));
            let Some(stream) = handshake.await else {
                return;
            };
            if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                let scheme = http2::Scheme::Https;
                Box::pin(serve_http2(stream, transport, scheme, peer, deadline)).await;
            } else {
                let first = Bytes::new();
                Box::pin(http1::serve_connection(
                    stream, first, transport, peer, deadline, None,
                ))
                .await;
            }
        }
        Sniffed::H2c => {
            Box::pin(serve_http2(
                Rewind::new(first, with_deadline(stream, &transport)),
                transport,
                http2::Scheme::Http,
                peer,
                deadline,
            ))
            .await;
        }
        Sniffed::Http1 => {
            // Shared, so an event stream's frames can be written to it from outside this task.
            let stream = SharedTcp::new(stream);
            let share = Some(stream.share());
            let stream = with_deadline(stream, &transport);
            http1::serve_connection(stream, first, transport, peer, deadline, share).await
        }
    }
}

/// `io` under the connection's write deadline (`--write-timeout`).
fn with_deadline<IO>(io: IO, transport: &Transport) -> WriteDeadline<IO> {
    WriteDeadline::new(
        io,
        transport.settings.write_timeout,
        transport.metrics.clone(),
    )
}

/// Counts a connection closed for not finishing its request head in time.
fn header_timeout(transport: &Transport, what: &str) {
    transport
        .metrics
        .cut_header_read_timeout
        .fetch_add(1, Ordering::Relaxed);
    tracing::debug!(what, "header read timeout; closing the connection");
}

/// The TLS handshake, by `deadline`; the stream, boxed, or `None` when it failed.
async fn tls_handshake<IO>(
    stream: IO,
    transport: &Transport,
    deadline: Instant,
) -> Option<Box<tokio_rustls::server::TlsStream<IO>>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let Some(tls) = transport.tls.clone() else {
        tracing::debug!("TLS handshake on a server without TLS");
        return None;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            header_timeout(transport, "TLS handshake");
            None
        }
    }
}

async fn serve_http2<IO>(
    io: IO,
    transport: Transport,
    scheme: http2::Scheme,
    peer: Option<ClientAddr>,
    preface_deadline: Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match transport.settings.http2_driver {
        Http2Driver::Ringback => {
            http2::serve_connection(io, transport, scheme, peer, preface_deadline).await;
        }
        Http2Driver::Hyper => hyper_conn::serve_http2_with_hyper(io, transport, peer).await,
    }
}

/// Reads the first bytes, enough to tell the protocols apart; returns them to be put back.
///
/// Each read waits for the socket to be readable, so a peer that sends part of the HTTP/2
/// preface and stops costs no CPU until the deadline closes it.
async fn sniff(stream: &mut TcpStream) -> std::io::Result<(Sniffed, Bytes)> {
    let mut buf = [0u8; H2_PREFACE.len()];
    let mut n = 0;
    loop {
        let read = stream.read(&mut buf[n..]).await?;
        if read == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        n += read;
        let sniffed = if buf[0] == TLS_HANDSHAKE {
            Sniffed::Tls
        } else if buf[..n] != H2_PREFACE[..n] {
            Sniffed::Http1
        } else if n == H2_PREFACE.len() {
            Sniffed::H2c
        } else {
            continue; // a prefix of the preface so far: wait for more
        };
        return Ok((sniffed, Bytes::copy_from_slice(&buf[..n])));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use tokio::io::AsyncWriteExt;

    async fn sniff_bytes(bytes: &'static [u8]) -> Sniffed {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(bytes).await.unwrap();
            s
        });
        let (mut server, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        let (sniffed, read) = sniff(&mut server).await.unwrap();
        assert_eq!(
            &read[..],
            &bytes[..read.len()],
            "what was read is handed on"
        );
        sniffed
    }

    #[tokio::test]
    async fn tells_the_protocols_apart() {
        assert_eq!(sniff_bytes(b"\x16\x03\x01\x02\x00").await, Sniffed::Tls);
        assert_eq!(sniff_bytes(H2_PREFACE).await, Sniffed::H2c);
        assert_eq!(sniff_bytes(b"GET / HTTP/1.1\r\n\r\n").await, Sniffed::Http1);
        assert_eq!(
            sniff_bytes(b"POST /messages HTTP/1.1\r\n").await,
            Sniffed::Http1
        );
        assert_eq!(sniff_bytes(b"PRX").await, Sniffed::Http1);
    }

    /// Counts its wake-ups.
    struct Wakes(std::sync::atomic::AtomicUsize);

    impl futures::task::ArcWake for Wakes {
        fn wake_by_ref(me: &std::sync::Arc<Self>) {
            me.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_preface_waits_on_the_socket_not_on_a_timer() {
        use std::sync::atomic::Ordering::Relaxed;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        client.write_all(&H2_PREFACE[..22]).await.unwrap();
        let wakes = std::sync::Arc::new(Wakes(Default::default()));
        let waker = futures::task::waker(wakes.clone());
        let mut cx = std::task::Context::from_waker(&waker);
        let mut sniffing = Box::pin(sniff(&mut server));
        // Poll until the 22 bytes are read and the sniffer waits for the rest: once it does,
        // a millisecond passes without a wake-up.
        let mut quiet = false;
        for _ in 0..100 {
            assert!(sniffing.as_mut().poll(&mut cx).is_pending());
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            if wakes.0.swap(0, Relaxed) == 0 {
                quiet = true;
                break;
            }
        }
        assert!(quiet, "the sniffer keeps waking with no byte to read");
        // A minute passes with no byte: nothing wakes the sniffer (no timer, no spin).
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
        assert_eq!(wakes.0.load(Relaxed), 0, "woken without a byte to read");
        // The last two bytes wake it, and it tells h2c.
        client.write_all(&H2_PREFACE[22..]).await.unwrap();
        let (sniffed, read) = sniffing.await.unwrap();
        assert_eq!(sniffed, Sniffed::H2c);
        assert_eq!(&read[..], H2_PREFACE);
    }
}
