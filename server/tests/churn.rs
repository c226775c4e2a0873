//! 1,000 subscribers connect and disconnect; the server's tasks, connections, subscribers and
//! heap return to their baseline. Its own test binary: the counting allocator sees the whole
//! process, so no other test may run beside it.
#![allow(clippy::unwrap_used)]

// A binary of its own (its counting allocator sees only its own test) uses a part of the
// support; the rest is not dead, the `it` binary uses it.
#[allow(dead_code, unused_imports)]
mod support;

use cap::Cap;
use std::alloc::System;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use support::{config, until, TestServer, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const SUBSCRIBERS: usize = 1000;

/// Opens an SSE stream over raw TCP and waits for its first bytes (the `retry:` preamble), by
/// which time the server has registered the subscription.
async fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /messages HTTP/1.1\r\nhost: test\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let mut got = Vec::new();
    while !got.windows(6).any(|w| w == b"retry:") {
        let n = tokio::time::timeout(PATIENCE, s.read(&mut buf))
            .await
            .expect("the stream opens in time")
            .unwrap();
        assert!(n > 0, "stream closed early");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// Connects `SUBSCRIBERS` clients, publishes one message they all could read, disconnects them
/// all, and waits until the server has let go of every one.
async fn round(server: &TestServer) {
    let mut clients = Vec::with_capacity(SUBSCRIBERS);
    for _ in 0..SUBSCRIBERS {
        clients.push(open(server.addr).await);
    }
    let mut subs = server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == SUBSCRIBERS).await;
    server
        .state
        .api
        .feed
        .publish("red", &serde_json::json!("to all"))
        .unwrap();
    drop(clients);
    tokio::time::timeout(PATIENCE, subs.wait_for(|n| *n == 0))
        .await
        .unwrap()
        .unwrap();
    // Connection tasks end right after their subscriptions are dropped.
    let metrics = server.state.api.metrics.clone();
    tokio::time::timeout(PATIENCE, async move {
        while metrics.connections.load(Ordering::Relaxed) != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every connection task ended");
}

async fn settled_tasks(expected: usize) -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    // A finished task is reaped by the runtime shortly after its last poll: yield until it is.
    for _ in 0..10_000 {
        if metrics.num_alive_tasks() <= expected {
            break;
        }
        tokio::task::yield_now().await;
    }
    metrics.num_alive_tasks()
}

/// A leaked subscriber or connection costs kilobytes (buffers, task, registry slot); 2,000 of
/// them would be megabytes. 64 KiB over 2,000 subscribers is 32 bytes each: room for allocator
/// noise, none for a leak.
const LEAK_FREE: usize = 64 * 1024;

/// The heap once what is freed late has been: the first reading within [`LEAK_FREE`] of
/// `baseline`, or the last within `PATIENCE`. Some of what the last round's sockets held goes
/// a moment after their tasks end (~120 KB of 2,000 sockets' state, seen in one run of eight,
/// gone 5 ms later); a leak never goes.
async fn settled_heap(baseline: usize) -> usize {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let heap = ALLOCATOR.allocated();
        if heap.saturating_sub(baseline) < LEAK_FREE || tokio::time::Instant::now() >= deadline {
            return heap;
        }
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_that_leave_free_everything() {
    let server = TestServer::start(config()).await;
    // Warm-up: the runtime's I/O slab and the allocator's pools grow once and are reused.
    round(&server).await;
    let tasks = settled_tasks(0).await;
    let heap = ALLOCATOR.allocated();

    round(&server).await;
    round(&server).await;

    assert_eq!(
        settled_tasks(tasks).await,
        tasks,
        "task count back to baseline"
    );
    assert_eq!(server.state.api.feed.subscriber_count(), 0);
    let after = settled_heap(heap).await;
    let growth = after.saturating_sub(heap);
    eprintln!("heap growth {growth} tasks {tasks}");
    assert!(
        growth < LEAK_FREE,
        "heap grew by {growth} bytes over {} subscribers (from {heap} to {after})",
        2 * SUBSCRIBERS
    );
    server.shutdown().await;
}
