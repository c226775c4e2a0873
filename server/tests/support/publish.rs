//! Publishing: over `POST /messages`, and straight into a server's feed at a reader's pace.
#![allow(clippy::unwrap_used)]

use super::client::request;
use super::sse::SseClient;
use super::{until, PATIENCE};
use http::StatusCode;
use http_body_util::BodyExt;
use std::net::SocketAddr;

/// `POST /messages` with `body`; returns the status and the JSON answer.
pub async fn publish(addr: SocketAddr, body: &str) -> (StatusCode, serde_json::Value) {
    let (status, _, body) = request(
        addr,
        "POST",
        "/messages",
        &[("content-type", "application/json")],
        body.to_owned(),
    )
    .await;
    let bytes = tokio::time::timeout(PATIENCE, body.collect())
        .await
        .expect("the answer's body in time")
        .unwrap()
        .to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or_default())
}

/// Publishes `data` on `channel`; returns the id.
pub async fn publish_ok(addr: SocketAddr, channel: &str, data: &str) -> u64 {
    let body = serde_json::json!({ "type": channel, "data": data }).to_string();
    let (status, json) = publish(addr, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{json}");
    json["id"].as_u64().unwrap()
}

/// Publishes `count` copies of `payload` on `channel` straight into the feed, never more than 8
/// ahead of what the reader reports through `progress` (so only a stalled subscriber can fall
/// behind a small history). Returns the ids.
pub async fn publish_keeping_pace(
    feed: &ringback::BroadcastList,
    channel: &str,
    payload: &serde_json::Value,
    count: usize,
    progress: &mut tokio::sync::watch::Receiver<usize>,
) -> Vec<u64> {
    let mut ids = Vec::with_capacity(count);
    for i in 0..count {
        until(progress, |n| i < *n + 8).await;
        ids.push(feed.publish(channel, payload).unwrap());
    }
    ids
}

/// Publishes `count` copies of `payload` on `channel` straight into the feed while `reader`
/// reads them, never more than 8 ahead of it; returns the ids published and the ids the reader
/// received, in order. The reader's stream must stay open throughout.
pub async fn publish_to_reader(
    feed: &ringback::BroadcastList,
    mut reader: SseClient,
    channel: &str,
    payload: &serde_json::Value,
    count: usize,
) -> (Vec<u64>, Vec<u64>) {
    let (progress_tx, mut progress) = tokio::sync::watch::channel(0usize);
    let reading = tokio::spawn(async move {
        let mut ids = Vec::new();
        while ids.len() < count {
            let e = reader
                .next_message()
                .await
                .expect("the reader's stream stays open");
            ids.push(e.id.unwrap().parse::<u64>().unwrap());
            progress_tx.send_replace(ids.len());
        }
        ids
    });
    let published = publish_keeping_pace(feed, channel, payload, count, &mut progress).await;
    let received = tokio::time::timeout(PATIENCE, reading)
        .await
        .unwrap()
        .unwrap();
    (published, received)
}
