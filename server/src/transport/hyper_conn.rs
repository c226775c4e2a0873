//! Connections served by hyper: HTTP/1.1 but for the event-stream fast path (`http1.rs`), and
//! HTTP/2 with `--http2-driver hyper`.

use crate::runtime::cancel::CancelToken;
use crate::runtime::connection::{ClientAddr, ConnectionCut};
use crate::transport::Transport;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tower::ServiceExt;

/// HTTP/1.1 on hyper: every HTTP/1.1 request but the fast path's (see `http1.rs`).
pub(crate) async fn serve_http1<IO>(io: IO, transport: Transport, peer: Option<ClientAddr>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve(io, transport, Proto::Http1, peer).await;
}

/// HTTP/2 on hyper (`--http2-driver hyper`: no push, no hints; kept to benchmark the driver
/// against).
pub(crate) async fn serve_http2<IO>(io: IO, transport: Transport, peer: Option<ClientAddr>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve(io, transport, Proto::Http2, peer).await;
}

#[derive(Clone, Copy)]
enum Proto {
    Http1,
    Http2,
}

/// HTTP/1.1 on hyper (and, with `--http2-driver hyper`, HTTP/2 on hyper, without push), with
/// the connection's cut-off switch and peer address in every request.
async fn serve<IO>(io: IO, transport: Transport, proto: Proto, peer: Option<ClientAddr>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cut = CancelToken::new();
    let service = hyper::service::service_fn({
        let cut = cut.clone();
        let router = transport.router.clone();
        move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectionCut(cut.clone()));
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            router.clone().oneshot(req.map(Body::new))
        }
    });
    let cfg = &transport.settings;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Later heads on a kept-alive connection (the first was read by `http1.rs`).
        .header_read_timeout(cfg.header_read_timeout)
        // hyper's default (~400 KiB) would let each client that stops reading pin that much.
        .max_buf_size(cfg.max_write_buffer.max(8192));
    cfg.http2.apply_to_hyper(&mut builder.http2());
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
        _ = transport.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.as_mut().await;
        }
        _ = cut.cancelled() => {
            tracing::debug!("closed the connection of a subscriber that fell behind");
        }
    }
}
