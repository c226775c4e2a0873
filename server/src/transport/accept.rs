//! The accept loop: one task per connection, at most `--max-connections` at once, and
//! notify-then-drain shutdown.
//!
//! Shutdown (as in mini-redis): the `shutdown` token is cancelled once, which every connection
//! task and every event stream watches; event streams end (EventSource reconnects elsewhere),
//! each connection finishes its in-flight requests, and [`serve_listener`] waits, up to a grace period,
//! for the last connection task to drop its clone of the drain sender.

use crate::metrics::Metrics;
use crate::transport::{sniff, Transport};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// Serves `listener` until `shutdown` completes, then drains (see the module docs).
pub async fn serve_listener(
    listener: TcpListener,
    transport: Transport,
    shutdown: impl Future<Output = ()>,
) {
    // Bounds open connections: when all permits are out, the loop holds the one connection it
    // accepted and stops accepting, and new clients wait in the kernel's backlog instead of
    // exhausting the process's files.
    let limit = Arc::new(Semaphore::new(transport.settings.max_connections.max(1)));
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, _peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of files, or a connection reset before accept: wait, don't spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // At the limit, with a client waiting, idle kept-alive connections make room first: one
        // waiting with nothing to say should not keep out a client with a request.
        let permit = match limit.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                transport.idle.reclaim();
                tokio::select! {
                    _ = &mut shutdown => break,
                    permit = limit.clone().acquire_owned() => match permit {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                }
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(run_connection(
            stream,
            transport.clone(),
            drain_tx.clone(),
            permit,
        ));
    }
    tracing::info!("shutting down: closing streams and draining connections");
    drop(listener);
    transport.shutdown.cancel();
    drop(drain_tx);
    let grace = transport.settings.shutdown_grace;
    if tokio::time::timeout(grace, drain_rx.recv()).await.is_err() {
        tracing::warn!(
            open = transport.metrics.connections.load(Ordering::Relaxed),
            "connections still open after the shutdown grace period; dropping them"
        );
    }
}

/// Counts a connection for as long as its task lives.
struct ConnectionGuard(Arc<Metrics>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_connection(
    stream: TcpStream,
    transport: Transport,
    _drain: mpsc::Sender<()>,
    _permit: OwnedSemaphorePermit,
) {
    transport
        .metrics
        .connections
        .fetch_add(1, Ordering::Relaxed);
    let _guard = ConnectionGuard(transport.metrics.clone());
    sniff::serve_tcp(stream, transport).await;
}
