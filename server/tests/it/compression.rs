//! Compressed event streams over real HTTP/1.1 (`--stream-compression gzip`, the default): each stream
//! decoded chunk by chunk as it arrives, as a browser decodes it, holds exactly the events of
//! the same stream uncompressed, joined live, resumed mid-window and filtered; it ends whole
//! (final block, CRC-32 and length); and a client that asks for nothing gets the plain stream.
#![allow(clippy::unwrap_used)]

use crate::support::*;
use ringback::config::ServeArgs;

/// The default: streams compressed for clients that accept it.
fn compressing() -> ServeArgs {
    config()
}

/// A realistic event: a JSON object of ~150 bytes with repeated keys (a price tick).
fn tick(i: usize) -> String {
    format!(
        r#"{{"symbol":"ACME","price":{}.{:02},"volume":{},"venue":"XNAS","side":"buy"}}"#,
        100 + i % 7,
        i % 100,
        1000 + i * 37 % 500
    )
}

/// The next `n` events of `sse` that carry messages.
async fn messages(sse: &mut SseClient, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        out.push(sse.next_message().await.expect("the stream stays open"));
    }
    out
}

const GZIP: &[(&str, &str)] = &[("accept-encoding", "gzip, deflate, br, zstd")];

#[tokio::test]
async fn a_compressed_stream_holds_exactly_the_plain_streams_events() {
    let server = TestServer::start(compressing()).await;
    // A history to resume into: the resume lands mid-window (between two reset points).
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(
            publish_ok(
                server.addr,
                if i % 3 == 0 { "red" } else { "blue" },
                &tick(i),
            )
            .await,
        );
    }
    let resume = ids[70].to_string();
    let mut streams = Vec::new();
    for (path, resume) in [
        ("/messages", None),
        ("/messages", Some(resume.as_str())),
        ("/messages?type=blue", Some(resume.as_str())),
    ] {
        let mut headers = vec![];
        if let Some(id) = resume {
            headers.push(("last-event-id", id));
        }
        let plain = SseClient::connect(server.addr, path, &headers).await;
        headers.extend_from_slice(GZIP);
        let gzip = SseClient::connect(server.addr, path, &headers).await;
        assert_eq!(gzip.headers["content-encoding"], "gzip", "{path}");
        assert_eq!(gzip.headers["vary"], "accept-encoding");
        assert!(plain.headers.get("content-encoding").is_none());
        assert_eq!(plain.headers["vary"], "accept-encoding");
        streams.push((path, resume.is_some(), plain, gzip));
    }
    for i in 100..400 {
        publish_ok(
            server.addr,
            if i % 3 == 0 { "red" } else { "blue" },
            &tick(i),
        )
        .await;
    }
    for (path, resumed, plain, gzip) in &mut streams {
        let blue_only = path.contains("type=blue");
        let replayed = if *resumed { 29 } else { 0 };
        let expected = (if *resumed { 71..400 } else { 100..400 })
            .filter(|i| !blue_only || i % 3 != 0)
            .count();
        let want = messages(plain, expected).await;
        let got = messages(gzip, expected).await;
        assert_eq!(
            got, want,
            "{path}, resumed: {resumed} ({replayed} replayed)"
        );
    }
    // Past the first reset points the whole feed's stream is much smaller than its plain text;
    // a filtered one (frames compressed alone) a little.
    let (_, _, _, whole) = &streams[0];
    assert!(
        whole.wire_bytes * 2 < whole.plain_bytes,
        "{} bytes on the wire for {} plain",
        whole.wire_bytes,
        whole.plain_bytes
    );
    let (_, _, _, filtered) = &streams[2];
    assert!(filtered.wire_bytes < filtered.plain_bytes);
    // A stream the server ends on purpose (shutdown) ends whole.
    server.shutdown().await;
    for (path, _, _, gzip) in &mut streams {
        while gzip.next_event().await.is_some() {}
        assert_eq!(gzip.ended_whole, Some(true), "{path}");
    }
}

#[tokio::test]
async fn control_events_heartbeats_and_a_gap_decode_in_a_compressed_stream() {
    let mut cfg = compressing();
    cfg.feed.history = 8;
    cfg.events.heartbeat = std::time::Duration::from_millis(100);
    let server = TestServer::start(cfg).await;
    let first = publish_ok(server.addr, "blue", &tick(0)).await;
    for i in 1..20 {
        publish_ok(server.addr, "blue", &tick(i)).await;
    }
    // Resumed from beyond the history: the gap event first, then what it still holds.
    let id = first.to_string();
    let mut headers = vec![("last-event-id", id.as_str())];
    headers.extend_from_slice(GZIP);
    let mut sse = SseClient::connect(server.addr, "/messages", &headers).await;
    let gap = sse.next_event().await.unwrap();
    assert_eq!(gap.event.as_deref(), Some("ringback.gap"));
    assert_eq!(messages(&mut sse, 8).await.len(), 8);
    // Heartbeats while idle, then a live message after them: the stream is still in step.
    let comments = sse.comments;
    while sse.comments < comments + 2 {
        tokio::time::timeout(std::time::Duration::from_millis(300), sse.next_event())
            .await
            .ok();
    }
    let live = publish_ok(server.addr, "red", &tick(99)).await;
    let next = messages(&mut sse, 1).await;
    assert_eq!(next[0].id, Some(live.to_string()));
    assert!(sse.retry.is_some(), "the preamble's retry: decoded");
}
