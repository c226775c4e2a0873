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

use crate::cancel::CancelToken;
use crate::config::Http2Driver;
use crate::limits::ClientAddr;
use crate::server::{AppState, ConnectionCut};
use crate::write_deadline::WriteDeadline;
use crate::{http1, http2};
use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tower::ServiceExt;

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
pub(crate) async fn serve(stream: TcpStream, router: Router, state: AppState) {
    let timeout = state.config.tls_handshake_timeout;
    let sniffed = match tokio::time::timeout(timeout, sniff(&stream)).await {
        Ok(Ok(s)) => s,
        _ => return, // closed or silent: nothing to serve
    };
    let peer = stream.peer_addr().ok().map(ClientAddr);
    let stream = WriteDeadline::new(stream, state.config.write_timeout, state.metrics.clone());
    match sniffed {
        Sniffed::Tls => Box::pin(serve_tls(stream, router, state, peer)).await,
        Sniffed::H2c => {
            Box::pin(serve_http2(
                stream,
                router,
                state,
                http2::Scheme::Http,
                peer,
            ))
            .await;
        }
        Sniffed::Http1 => http1::serve(stream, router, state, peer).await,
    }
}

/// The TLS handshake, then HTTP/2 (ALPN `h2`) or HTTP/1.1.
async fn serve_tls(
    stream: WriteDeadline<TcpStream>,
    router: Router,
    state: AppState,
    peer: Option<ClientAddr>,
) {
    let Some(tls) = state.tls.clone() else {
        tracing::debug!("TLS handshake on a server without TLS");
        return;
    };
    let timeout = state.config.tls_handshake_timeout;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!("TLS handshake timed out");
            return;
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        Box::pin(serve_http2(
            stream,
            router,
            state,
            http2::Scheme::Https,
            peer,
        ))
        .await;
    } else {
        http1::serve(stream, router, state, peer).await;
    }
}

/// HTTP/1.1 on hyper: every HTTP/1.1 request but the fast path's (see `http1.rs`).
pub(crate) async fn serve_hyper_http1<IO>(
    io: IO,
    router: Router,
    state: AppState,
    peer: Option<ClientAddr>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_hyper(io, router, state, Proto::Http1, peer).await;
}

async fn serve_http2<IO>(
    io: IO,
    router: Router,
    state: AppState,
    scheme: http2::Scheme,
    peer: Option<ClientAddr>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match state.config.http2_driver {
        Http2Driver::Ringback => http2::serve(io, router, state, scheme, peer).await,
        Http2Driver::Hyper => serve_hyper(io, router, state, Proto::Http2, peer).await,
    }
}

#[derive(Clone, Copy)]
enum Proto {
    Http1,
    Http2,
}

/// Looks at the first bytes without consuming them.
async fn sniff(stream: &TcpStream) -> std::io::Result<Sniffed> {
    let mut buf = [0u8; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if buf[0] == TLS_HANDSHAKE {
            return Ok(Sniffed::Tls);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Sniffed::Http1);
        }
        if n == H2_PREFACE.len() {
            return Ok(Sniffed::H2c);
        }
        // A prefix of the preface so far: wait briefly for the rest (peek does not consume,
        // so it would return the same bytes at once).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// HTTP/1.1 on hyper (and, with `--http2-driver hyper`, HTTP/2 on hyper, without push), with
/// the connection's cut-off switch and peer address in every request.
async fn serve_hyper<IO>(
    io: IO,
    router: Router,
    state: AppState,
    proto: Proto,
    peer: Option<ClientAddr>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cut = CancelToken::new();
    let service = hyper::service::service_fn({
        let cut = cut.clone();
        move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectionCut(cut.clone()));
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            router.clone().oneshot(req.map(Body::new))
        }
    });
    let cfg = &state.config;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.idle_timeout)
        // hyper's default (~400 KiB) would let each client that stops reading pin that much.
        .max_buf_size(cfg.max_write_buffer.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.h2_max_concurrent_streams)
        .max_header_list_size(cfg.h2_max_header_list_size)
        .initial_stream_window_size(cfg.h2_stream_window)
        .initial_connection_window_size(cfg.h2_connection_window)
        .max_send_buf_size(cfg.h2_max_send_buffer)
        .max_pending_accept_reset_streams(cfg.h2_max_pending_accept_resets)
        .max_local_error_reset_streams(cfg.h2_max_local_error_resets);
    let builder = match proto {
        Proto::Http1 => builder.http1_only(),
        Proto::Http2 => builder.http2_only(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        _ = state.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
        _ = cut.cancelled() => {
            tracing::debug!("closed the connection of a subscriber that fell behind");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    async fn sniff_bytes(bytes: &'static [u8]) -> Sniffed {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(bytes).await.unwrap();
            s
        });
        let (server, _) = listener.accept().await.unwrap();
        let _client = client.await.unwrap();
        sniff(&server).await.unwrap()
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
}
