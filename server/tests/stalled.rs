//! Subscribers that never read, beside one that does: the reader gets every message, the
//! stalled ones are cut off, and the heap stays within the configured bounds throughout. Over
//! HTTP/1.1, 1,000 connections; over HTTP/2, 3 connections of 1,000 streams each with open
//! flow-control windows (the attack of issue 11); and idle HTTP/2 connections, one event stream
//! each, to show what each holds. Its own test binary: the counting allocator sees the whole
//! process, and the tests take turns. (What the stalled ones cost
//! a reader's latency is measured by `ringback bench --stalled`, see BENCHMARKS.md.)
#![allow(clippy::unwrap_used)]

// A binary of its own (its counting allocator sees only its own test) uses a part of the
// support; the rest is not dead, the `it` binary uses it.
#[allow(dead_code, unused_imports)]
mod support;

use cap::Cap;
use ringback::config::ServeArgs;
use std::alloc::System;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use support::{config, until, SseClient, TestServer, PATIENCE};
use test_support::{small_socket, stalling_h2_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[global_allocator]
static ALLOCATOR: Cap<System> = Cap::new(System, usize::MAX);

const STALLED: usize = 1000;
const MESSAGES: usize = 2000;
const SIZE: usize = 4 * 1024;
const HISTORY_BYTES: usize = 1 << 20;
/// `--max-write-buffer` (default): the most one write of an HTTP/1.1 event stream carries.
const BATCH: usize = 64 * 1024;

/// Publishes `MESSAGES` of `size` bytes straight into the feed, keeping pace with `reader`,
/// while sampling the heap; the reader must get every message and every other subscriber
/// (the stalled ones) must be cut off. Returns the heap's growth at its peak and after, over
/// what it held when called.
async fn feed_beside_the_stalled(
    server: &TestServer,
    reader: SseClient,
    subs: &mut tokio::sync::watch::Receiver<usize>,
    size: usize,
) -> (usize, usize) {
    let baseline = ALLOCATOR.allocated();
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
    let payload = serde_json::Value::String("x".repeat(size));
    let (published, received) =
        support::publish_to_reader(&server.state.api.feed, reader, "blue", &payload, MESSAGES)
            .await;
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
    let peak = peak.load(Ordering::Relaxed).saturating_sub(baseline);
    let after = ALLOCATOR.allocated().saturating_sub(baseline);
    (peak, after)
}

/// A server whose history holds at most `HISTORY_BYTES` of messages up to `2 * size` bytes,
/// with no per-address subscriber limit (the stalled clients share an address or three).
fn bounded(size: usize) -> ServeArgs {
    let mut cfg = config();
    cfg.feed.history = 256;
    cfg.feed.history_bytes = HISTORY_BYTES;
    cfg.feed.max_message_bytes = 2 * size;
    cfg.limits.max_subscribers_per_ip = 0;
    cfg
}

/// The tests measure the one heap: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_subscribers_cost_bounded_memory() {
    let _turn = SERIAL.lock().await;
    let server = TestServer::start(bounded(SIZE)).await;
    let mut stalled = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut s = small_socket(server.addr, Ipv4Addr::LOCALHOST)
            .await
            .unwrap();
        s.write_all(b"GET /messages HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    let reader = SseClient::connect(server.addr, "/messages", &[]).await;
    let mut subs = server.state.api.feed.watch_subscribers();
    until(&mut subs, |n| *n == STALLED + 1).await;
    let (peak, _after) = feed_beside_the_stalled(&server, reader, &mut subs, SIZE).await;
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
            .api
            .metrics
            .lagged_disconnects
            .load(Ordering::Relaxed),
        STALLED as u64
    );
    drop(stalled);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_http2_streams_cost_one_budget_per_connection() {
    const CONNECTIONS: usize = 3;
    const STREAMS: usize = 1000;
    const SIZE: usize = 1024;
    const BUDGET: usize = 256 * 1024;
    let _turn = SERIAL.lock().await;
    let server = TestServer::start({
        let mut cfg = bounded(SIZE);
        cfg.transport.max_connection_buffer = BUDGET;
        cfg
    })
    .await;
    let mut attackers = Vec::new();
    for i in 0..CONNECTIONS {
        let from = Ipv4Addr::new(127, 0, 0, 2 + i as u8);
        let mut s = small_socket(server.addr, from).await.unwrap();
        s.write_all(&stalling_h2_client(STREAMS as u32, "t"))
            .await
            .unwrap();
        attackers.push(s);
    }
    let reader = SseClient::connect(server.addr, "/messages", &[]).await;
    let mut subs = server.state.api.feed.watch_subscribers();
    // Every stream subscribed, or its connection already over budget: the responses' heads and
    // preambles alone (1,000 queued frames, each charged h2's bookkeeping) can pass 256 KiB when
    // the kernel takes them slowly, and a cut connection's streams never subscribe.
    let metrics = server.state.api.metrics.clone();
    let cut = move || metrics.cut_max_connection_buffer.load(Ordering::Relaxed) as usize;
    tokio::time::timeout(
        PATIENCE,
        subs.wait_for(|n| *n == (CONNECTIONS - cut()) * STREAMS + 1),
    )
    .await
    .expect("every stalled stream subscribed (or its connection was cut)")
    .unwrap();
    let (peak, after) = feed_beside_the_stalled(&server, reader, &mut subs, SIZE).await;
    let cuts = server
        .state
        .api
        .metrics
        .cut_max_connection_buffer
        .load(Ordering::Relaxed);
    eprintln!(
        "HTTP/2, {CONNECTIONS} x {STREAMS} stalled streams, {MESSAGES} x {SIZE} B: peak heap growth {peak} bytes, {after} after; {cuts} connections over budget"
    );
    // Every connection went over its budget and was closed (not merely its streams cut for
    // lagging, which would leave what they buffered to the write deadline).
    assert_eq!(cuts, CONNECTIONS as u64);
    // The bound: the history (and the entries cut-off streams pin a little longer), and per
    // connection its budget, which charges h2's bookkeeping of each queued frame too (twice:
    // h2's queues grow by doubling). Without the budget: 326 MB at peak, 321 MB after.
    let bound = 2 * HISTORY_BYTES + CONNECTIONS * 2 * BUDGET;
    assert!(
        peak <= bound,
        "heap grew by {peak} bytes; the bound is {bound}"
    );
    assert!(
        after <= HISTORY_BYTES,
        "{after} bytes still held after the cut"
    );
    drop(attackers);
    server.shutdown().await;
}

/// Reads the server's frames until the first DATA frame of stream 1 (the event stream's
/// preamble): by then the server has written and flushed everything it had for the stream.
async fn until_first_data(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    loop {
        let mut at = 0;
        while buf.len() >= at + 9 {
            let len = u32::from_be_bytes([0, buf[at], buf[at + 1], buf[at + 2]]) as usize;
            let (kind, id) = (
                buf[at + 3],
                u32::from_be_bytes(buf[at + 5..at + 9].try_into().unwrap()),
            );
            if kind == 0 && id == 1 {
                return;
            }
            at += 9 + len;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(PATIENCE, stream.read(&mut chunk))
            .await
            .expect("the server's frames in time")
            .unwrap();
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// An idle HTTP/2 connection with one event stream (a browser's shape, without TLS) holds its
/// state and nothing else: h2's frame writer buffer (16 KiB), frame reader buffer (8 KiB) and
/// HPACK scratch buffer (4 KiB) are released once what they held is written or decoded (the
/// patch in `vendor/h2`). One thread, so the server has finished each connection's turn before
/// its client reads the preamble.
#[tokio::test(flavor = "current_thread")]
async fn idle_http2_connections_hold_no_codec_buffers() {
    const CONNECTIONS: usize = 200;
    let _turn = SERIAL.lock().await;
    let server = TestServer::start({
        let mut cfg = config();
        cfg.limits.max_subscribers_per_ip = 0;
        cfg
    })
    .await;
    let baseline = ALLOCATOR.allocated();
    let mut clients = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut client = TcpStream::connect(server.addr).await.unwrap();
        client.write_all(&stalling_h2_client(1, "t")).await.unwrap();
        until_first_data(&mut client).await;
        clients.push(client);
    }
    let per_connection = ALLOCATOR.allocated().saturating_sub(baseline) / CONNECTIONS;
    eprintln!("{CONNECTIONS} idle HTTP/2 connections, one event stream each: {per_connection} bytes of heap each");
    // The connection's and the stream's state (h2's, the driver's, the event stream's, the
    // client's socket here) is ~11.5 KB in this debug build; any one of h2's three buffers kept
    // would add 4 to 16 KiB (all three: 44 KB each, measured).
    const BOUND: usize = 14 * 1024;
    assert!(
        per_connection <= BOUND,
        "each idle connection holds {per_connection} bytes; the bound is {BOUND}"
    );
    drop(clients);
    server.shutdown().await;
}
