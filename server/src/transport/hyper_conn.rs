//! Connections served by hyper: HTTP/1.1 but for the event-stream fast path (`http1.rs`), and
//! HTTP/2 with `--http2-driver hyper`.

use crate::runtime::cancel::CancelToken;
use crate::runtime::connection::{ClientAddr, ConnectionCut};
use crate::transport::keep_alive::{Activity, Expiry};
use crate::transport::Transport;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tower::ServiceExt;

/// HTTP/1.1 on hyper: every HTTP/1.1 request but the fast path's (see `http1.rs`), kept alive
/// between requests for `--keep-alive-timeout` (see `keep_alive.rs`). The first request's head
/// started arriving at `head_started`.
pub(crate) async fn serve_http1_with_hyper<IO>(
    io: IO,
    transport: Transport,
    peer: Option<ClientAddr>,
    head_started: Instant,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Activity::new(head_started);
    let io = activity.watch(io);
    serve_with_hyper(io, transport, Proto::Http1(activity), peer).await;
}

/// HTTP/2 on hyper (`--http2-driver hyper`: no push, no hints; kept to benchmark the driver
/// against).
pub(crate) async fn serve_http2_with_hyper<IO>(
    io: IO,
    transport: Transport,
    peer: Option<ClientAddr>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    serve_with_hyper(io, transport, Proto::Http2, peer).await;
}

#[derive(Clone)]
enum Proto {
    /// With the connection's phase between requests.
    Http1(Activity),
    Http2,
}

/// HTTP/1.1 on hyper (and, with `--http2-driver hyper`, HTTP/2 on hyper, without push), with
/// the connection's cut-off switch and peer address in every request.
async fn serve_with_hyper<IO>(io: IO, transport: Transport, proto: Proto, peer: Option<ClientAddr>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let cut = CancelToken::new();
    let activity = match &proto {
        Proto::Http1(activity) => Some(activity.clone()),
        Proto::Http2 => None,
    };
    let service = hyper::service::service_fn({
        let cut = cut.clone();
        let router = transport.router.clone();
        let activity = activity.clone();
        move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectionCut(cut.clone()));
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            let response = router.clone().oneshot(req.map(Body::new));
            let activity = activity.clone();
            if let Some(activity) = &activity {
                activity.request_started();
            }
            async move {
                let response = response.await?;
                Ok::<_, std::convert::Infallible>(match activity {
                    Some(activity) => response.map(|b| Body::new(activity.until_written(b))),
                    None => response,
                })
            }
        }
    });
    let cfg = &transport.settings;
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // Heads and idle connections are timed by `keep_alive.rs`: hyper's one timer would
        // close a kept-alive connection `--header-read-timeout` after its last response.
        .header_read_timeout(None)
        // hyper's default (~400 KiB) would let each client that stops reading pin that much.
        .max_buf_size(cfg.max_write_buffer.max(8192));
    cfg.http2.apply_to_hyper(&mut builder.http2());
    let builder = match proto {
        Proto::Http1(_) => builder.http1_only(),
        Proto::Http2 => builder.http2_only(),
    };
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let expired = async {
        match &activity {
            Some(activity) => {
                activity
                    .expired(
                        cfg.header_read_timeout,
                        cfg.keep_alive_timeout,
                        &transport.idle,
                    )
                    .await
            }
            None => std::future::pending().await,
        }
    };
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
        why = expired => {
            why.count(&transport.metrics);
            tracing::debug!(?why, "closed a kept-alive connection");
            if why != Expiry::HeaderRead {
                // Idle: nothing in flight, so this closes it at once, cleanly.
                conn.as_mut().graceful_shutdown();
                let _ = conn.as_mut().await;
            }
        }
    }
}
