//! Criterion benchmarks for the hot pieces of the feed: the SSE encoder, appending to the
//! broadcast list with N readers taking each frame, and the `Last-Event-ID` lookup.
//!
//! `cargo bench -p server --bench hot`; results and their dates in BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringback::config::FeedLimits;
use ringback::metrics::Metrics;
use ringback::CancelToken;
use ringback::{BroadcastList, Start};
use std::hint::black_box;
use std::sync::Arc;

fn list(history: usize) -> BroadcastList {
    let limits = FeedLimits {
        history,
        history_bytes: 64 << 20,
        max_message_bytes: 64 << 10,
        max_channels: 64,
        channel_idle: std::time::Duration::ZERO,
    };
    BroadcastList::new(
        limits,
        1,
        &["red", "yellow", "blue"],
        Arc::new(Metrics::default()),
    )
}

/// A typical message: a 64-character text.
fn payload() -> serde_json::Value {
    serde_json::Value::String(
        "an important message, sixty-four characters long, give or take.".into(),
    )
}

fn encoder(c: &mut Criterion) {
    let data = serde_json::to_vec(&payload()).unwrap_or_default();
    c.bench_function("sse/encode_message", |b| {
        b.iter(|| {
            ringback::Message {
                id: black_box(1_795_000_000_000_001),
                time: 1_795_000_000_000,
                channel: "blue",
                data_json: &data,
                extra_json: b"",
                announce: false,
            }
            .encode()
        })
    });
}

fn append_with_readers(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast/append_then_each_reader_takes_it");
    let data = payload();
    for readers in [0usize, 10, 100, 1000] {
        let feed = list(1024);
        let mut subs: Vec<_> = (0..readers)
            .map(|_| {
                feed.subscribe(Start::Live, None, None, CancelToken::new())
                    .0
            })
            .collect();
        group.throughput(Throughput::Elements(readers.max(1) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(readers), &readers, |b, _| {
            b.iter(|| {
                let _ = feed.publish("blue", &data);
                for sub in &mut subs {
                    black_box(sub.try_next(64 << 10).ok());
                }
            })
        });
    }
    group.finish();
}

fn resume_lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast/resume_from_last_event_id");
    for history in [1024usize, 65_536] {
        let feed = list(history);
        let data = payload();
        for _ in 0..history {
            let _ = feed.publish("blue", &data);
        }
        // Resume from the middle of the history: registration, bisection, first frame.
        let middle = 1 + history as u64 / 2;
        group.bench_with_input(
            BenchmarkId::from_parameter(history),
            &middle,
            |b, &after| {
                b.iter(|| {
                    let (mut sub, gap) =
                        feed.subscribe(Start::After(after), None, None, CancelToken::new());
                    black_box(gap);
                    black_box(sub.try_next(1).ok())
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, encoder, append_with_readers, resume_lookup);
criterion_main!(benches);
