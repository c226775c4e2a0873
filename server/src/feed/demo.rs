//! The demo source: a message every interval across a few channels, so a fresh page is alive.
//!
//! On for the README's run command, off by default for the binary (`--demo`).

use crate::feed::source::Source;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use app::message::DEFAULT_CHANNELS as CHANNELS;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

const WORDS: [&str; 8] = [
    "hello", "ring", "back", "live", "feed", "ping", "pong", "news",
];

/// The demo's message `n` (from 0): its channel, each of the page's in turn, and its text.
pub fn message(n: usize) -> (&'static str, String) {
    let channel = CHANNELS[n % CHANNELS.len()];
    let text = format!("demo #{} — {}", n + 1, WORDS[(n * 7 / 3) % WORDS.len()]);
    (channel, text)
}

/// Publishes until `shutdown` fires.
pub async fn run(source: Source, metrics: Arc<Metrics>, interval: Duration, shutdown: CancelToken) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: usize = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (channel, text) = message(n);
        if source
            .publish("demo", channel, &serde_json::Value::String(text))
            .await
            .is_ok()
        {
            metrics.published_demo.fetch_add(1, Ordering::Relaxed);
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::broadcast::{BroadcastList, Limits, Start};

    #[tokio::test(start_paused = true)]
    async fn publishes_once_per_interval_across_channels() {
        let metrics = Arc::new(Metrics::default());
        let limits = Limits {
            history: 64,
            history_bytes: 1 << 20,
            max_message_bytes: 1024,
            max_channels: 8,
            channel_idle: std::time::Duration::ZERO,
        };
        let feed = BroadcastList::new(limits, 1, &CHANNELS, metrics.clone());
        let (mut sub, _) = feed.subscribe(Start::Live, None, None, CancelToken::new());
        let shutdown = CancelToken::new();
        let started = tokio::time::Instant::now();
        let task = tokio::spawn(run(
            Source::Embedded(
                feed.clone(),
                std::sync::Arc::new(crate::feed::idempotency::IdempotencyKeys::new(
                    Default::default(),
                    metrics.clone(),
                )),
            ),
            metrics.clone(),
            Duration::from_secs(1),
            shutdown.clone(),
        ));
        let mut channels = Vec::new();
        for _ in 0..3 {
            let frame = sub.next(1).await.unwrap();
            let text = String::from_utf8(frame.to_vec()).unwrap();
            let event = text
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap()
                .to_owned();
            channels.push(event);
        }
        assert_eq!(channels, CHANNELS);
        // The paused clock advanced exactly two intervals (the first tick is immediate).
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(metrics.published_demo.load(Ordering::Relaxed), 3);
    }
}
