//! 1,000 subscribers that never read, beside one that does: the reader gets every message, the
//! stalled ones are cut off, and the heap stays within the configured bounds throughout. Its
//! own test binary: the counting allocator sees the whole process. (What the stalled ones cost
//! a reader's latency is measured by `ringback bench --stalled`, see BENCHMARKS.md.)
#![allow(clippy::unwrap_used)]

mod common;

use cap::Cap;
use common::{config, SseClient, TestServer, PATIENCE};
use server::config::ServeArgs;
use std::alloc::System;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const STALLED: usize = 1000;
const MESSAGES: usize = 2000;
const SIZE: usize = 4 * 1024;
const HISTORY_BYTES: usize = 1 << 20;
/// `sse::MAX_BATCH_BYTES`: the most one write of an event stream carries.
const BATCH: usize = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_subscribers_cost_bounded_memory() {
    let server = TestServer::start(ServeArgs {
        history: 256,
        history_bytes: HISTORY_BYTES,
        max_message_bytes: 2 * SIZE,
        max_subscribers_per_ip: 0,
        ..config()
    })
    .await;
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&server.addr.into()).unwrap();
        socket.set_nonblocking(true).unwrap();
        let mut s = tokio::net::TcpStream::from_std(socket.into()).unwrap();
        s.write_all(b"GET /messages HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let reader = SseClient::connect(server.addr, "/messages", &[]).await;
    let mut subs = server.state.feed.watch_subscribers();
    subs.wait_for(|n| *n == STALLED + 1).await.unwrap();
    let baseline = ALLOCATOR.allocated();

    // Sample the heap while the feed runs.
    let peak = Arc::new(AtomicUsize::new(baseline));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = tokio::spawn({
        let (peak, done) = (peak.clone(), done.clone());
        async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(ALLOCATOR.allocated(), Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });
    let payload = serde_json::Value::String("x".repeat(SIZE));
    let (published, received) =
        common::publish_to_reader(&server.state.feed, reader, "blue", &payload, MESSAGES).await;
    assert_eq!(
        received, published,
        "the reader got every message, in order"
    );
    tokio::time::timeout(PATIENCE, subs.wait_for(|n| *n <= 1))
        .await
        .expect("every stalled subscriber was cut off")
        .unwrap();
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();

    let peak = peak.load(Ordering::Relaxed) - baseline.min(peak.load(Ordering::Relaxed));
    let per_stalled = peak.saturating_sub(HISTORY_BYTES) / STALLED;
    eprintln!(
        "peak heap growth {peak} bytes over {MESSAGES} x {SIZE} B published: history {HISTORY_BYTES} + {per_stalled} per stalled subscriber"
    );
    // The bounds: the history's bytes (plus the entries that a cut-off pins a little longer),
    // and per stalled connection the one batch (up to 64 KiB) its write is waiting with, plus
    // the connection's own state. (Event streams over HTTP/1.1 bypass hyper's write buffer,
    // `http1.rs`; under hyper this was 88 KiB each with a 64 KiB `--max-write-buffer`.)
    let bound = 2 * HISTORY_BYTES + STALLED * (BATCH + 8 * 1024);
    assert!(
        peak <= bound,
        "heap grew by {peak} bytes; the bound is {bound}"
    );
    assert_eq!(
        server
            .state
            .metrics
            .lagged_disconnects
            .load(Ordering::Relaxed),
        STALLED as u64
    );
    drop(stalled);
    server.shutdown().await;
}
