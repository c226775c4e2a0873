use super::history::SHARED_ALONE;
use super::subscription::Lagged;
use super::*;
use app::message::Message;
use bytes::Bytes;
use serde_json::json;
use std::time::Duration;

fn list(history: usize) -> BroadcastList {
    let limits = Limits {
        history,
        history_bytes: 1 << 20,
        max_message_bytes: 1024,
        max_channels: 8,
        channel_idle: Duration::ZERO,
    };
    BroadcastList::new(
        limits,
        1,
        &["red", "yellow", "blue"],
        Arc::new(Metrics::default()),
    )
}

fn ids(bytes: &Bytes) -> Vec<u64> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|n| n.parse().unwrap())
        .collect()
}

#[test]
fn ids_increase_and_frames_are_shared() {
    let list = list(8);
    let (mut a, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    let (mut b, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    assert_eq!(list.publish("blue", &json!("hi")).unwrap(), 1);
    assert_eq!(list.publish("blue", &json!("ho")).unwrap(), 2);
    let fa = a.try_next(1).unwrap().unwrap();
    let fb = b.try_next(1).unwrap().unwrap();
    // max_bytes 1: one frame per call, and the very same allocation for both readers.
    assert_eq!(fa.as_ptr(), fb.as_ptr());
    assert_eq!(ids(&fa), vec![1]);
    assert_eq!(ids(&a.try_next(1 << 16).unwrap().unwrap()), vec![2]);
    assert_eq!(a.try_next(1 << 16).unwrap(), None);
}

#[test]
fn ready_frames_are_coalesced() {
    let list = list(8);
    let (mut a, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    for i in 0..5 {
        list.publish("red", &json!(i)).unwrap();
    }
    assert_eq!(
        ids(&a.try_next(1 << 16).unwrap().unwrap()),
        vec![1, 2, 3, 4, 5]
    );
}

#[test]
fn large_frames_go_alone_as_the_lists_own_bytes() {
    let mut limits = list(8).limits().clone();
    limits.max_message_bytes = 64 * 1024;
    let list = BroadcastList::new(limits, 1, &[], Arc::default());
    let (mut resuming, _) = list.subscribe(Start::After(0), None, None, CancelToken::new());
    let (mut other, _) = list.subscribe(Start::After(0), None, None, CancelToken::new());
    list.publish("red", &json!(1)).unwrap();
    list.publish("red", &json!(2)).unwrap();
    list.publish("red", &json!("x".repeat(SHARED_ALONE)))
        .unwrap();
    list.publish("red", &json!("y".repeat(SHARED_ALONE)))
        .unwrap();
    list.publish("red", &json!(5)).unwrap();
    // The small ones together; each large one alone, the same allocation for every reader;
    // then the rest.
    assert_eq!(
        ids(&resuming.try_next(1 << 20).unwrap().unwrap()),
        vec![1, 2]
    );
    let big = resuming.try_next(1 << 20).unwrap().unwrap();
    assert_eq!(ids(&big), vec![3]);
    other.try_next(1 << 20).unwrap();
    assert_eq!(
        big.as_ptr(),
        other.try_next(1 << 20).unwrap().unwrap().as_ptr()
    );
    assert_eq!(ids(&resuming.try_next(1 << 20).unwrap().unwrap()), vec![4]);
    assert_eq!(ids(&resuming.try_next(1 << 20).unwrap().unwrap()), vec![5]);
    assert_eq!(resuming.try_next(1 << 20).unwrap(), None);
}

#[test]
fn a_subscriber_held_back_by_the_server_is_told_of_the_gap_not_cut() {
    let list = list(4);
    let (held_cut, stalled_cut) = (CancelToken::new(), CancelToken::new());
    let (mut held, _) = list.subscribe(Start::Live, None, None, held_cut.clone());
    let (_stalled, _) = list.subscribe(Start::Live, None, None, stalled_cut.clone());
    held.hold_back(true);
    for i in 0..8 {
        list.publish("red", &json!(i)).unwrap();
    }
    assert!(stalled_cut.is_cancelled(), "a stalled reader is cut");
    assert!(!held_cut.is_cancelled(), "one the server held back is not");
    let gap = held.try_next(1 << 16).unwrap().unwrap();
    let text = std::str::from_utf8(&gap).unwrap();
    assert_eq!(
        text,
        "event: ringback.gap\ndata: {\"after\":0,\"oldest\":null}\n\n"
    );
    // On live from the newest: what the history still holds was missed with the rest.
    held.hold_back(false);
    assert_eq!(held.try_next(1 << 16).unwrap(), None);
    list.publish("red", &json!(9)).unwrap();
    assert_eq!(ids(&held.try_next(1 << 16).unwrap().unwrap()), vec![9]);
}

#[tokio::test(start_paused = true)]
async fn cuts_are_logged_as_one_line_and_a_count() {
    let (log, _guard) = crate::runtime::log_summary::tests::Captured::start();
    let list = list(4);
    let cuts: Vec<CancelToken> = (0..100).map(|_| CancelToken::new()).collect();
    let subs: Vec<_> = cuts
        .iter()
        .map(|cut| list.subscribe(Start::Live, None, None, cut.clone()).0)
        .collect();
    for i in 0..16 {
        list.publish("red", &json!(i)).unwrap();
    }
    assert!(
        cuts.iter().all(CancelToken::is_cancelled),
        "every stalled reader is cut"
    );
    let warned = |log: &crate::runtime::log_summary::tests::Captured| {
        log.lines()
            .into_iter()
            .filter(|l| l.contains("fell behind the history"))
            .collect::<Vec<_>>()
    };
    assert_eq!(warned(&log).len(), 1, "{:?}", log.lines());
    tokio::time::sleep(crate::runtime::log_summary::INTERVAL).await;
    tokio::task::yield_now().await;
    let lines = warned(&log);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[1].contains("99 more"), "{}", lines[1]);
    assert_eq!(
        list.shared
            .metrics
            .lagged_disconnects
            .load(Ordering::Relaxed),
        100
    );
    drop(subs);
}

#[test]
fn filter_skips_other_channels() {
    let list = list(8);
    let (mut a, _) = list.subscribe(
        Start::Live,
        Some(vec!["red".into()]),
        None,
        CancelToken::new(),
    );
    list.publish("blue", &json!(1)).unwrap();
    list.publish("red", &json!(2)).unwrap();
    list.publish("blue", &json!(3)).unwrap();
    assert_eq!(ids(&a.try_next(1 << 16).unwrap().unwrap()), vec![2]);
    assert_eq!(a.cursor(), 3);
    assert_eq!(a.try_next(1 << 16).unwrap(), None);
}

/// Found by the `message_decoder` fuzz target: without serde_json's exact float parsing, a
/// number re-serialised by the feed could parse back one bit off on the subscriber's side.
#[test]
fn numbers_reach_subscribers_unchanged() {
    let body = br#"{"n":255555555555551555555,"f":0.1,"e":2.5555555555555154e20,"t":1e-7}"#;
    let data: serde_json::Value = serde_json::from_slice(body).unwrap();
    let list = list(4);
    list.publish("blue", &data).unwrap();
    let (mut sub, _) = list.subscribe(Start::After(0), None, None, CancelToken::new());
    let frame = sub.try_next(1 << 16).unwrap().unwrap();
    let text = std::str::from_utf8(&frame).unwrap();
    let line = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let message: Message = serde_json::from_str(line).unwrap();
    assert_eq!(message.data, data);
}

#[test]
fn private_entries_reach_only_granted_subscribers_live_and_on_replay() {
    let list = list(16);
    list.set_private(ChannelSet::parse(&["secret-*"]).unwrap());
    let grants = |p: &[&str]| Some(Arc::new(ChannelSet::parse(p).unwrap()));
    let sub = |start, g| list.subscribe(start, None, g, CancelToken::new()).0;
    let (mut public, mut granted, mut other) = (
        sub(Start::Live, None),
        sub(Start::Live, grants(&["secret-a"])),
        sub(Start::Live, grants(&["secret-b"])),
    );
    list.publish("blue", &json!(1)).unwrap();
    list.publish("secret-a", &json!(2)).unwrap();
    list.publish("secret-b", &json!(3)).unwrap();
    list.publish("blue", &json!(4)).unwrap();
    let read = |s: &mut Subscription| ids(&s.try_next(1 << 16).unwrap().unwrap());
    assert_eq!(read(&mut public), vec![1, 4]);
    assert_eq!(read(&mut granted), vec![1, 2, 4]);
    assert_eq!(read(&mut other), vec![1, 3, 4]);
    // Replay from Last-Event-ID applies the same rule, and a type filter cannot widen it.
    assert_eq!(read(&mut sub(Start::After(0), None)), vec![1, 4]);
    assert_eq!(
        read(&mut sub(Start::After(1), grants(&["secret-*"]))),
        vec![2, 3, 4]
    );
    let (mut filtered, _) = list.subscribe(
        Start::After(0),
        Some(vec!["secret-a".into()]),
        None,
        CancelToken::new(),
    );
    assert_eq!(filtered.try_next(1 << 16).unwrap(), None);
    assert_eq!(filtered.cursor(), 4);
    // A first paint is for anyone: no private message, no private channel name.
    let latest = list.latest(10);
    assert_eq!(
        latest.entries.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![1, 4]
    );
    assert!(latest.channels.iter().all(|c| !c.starts_with("secret")));
}

#[test]
fn resume_replays_and_reports_gaps() {
    let list = list(4);
    for i in 0..6 {
        list.publish("red", &json!(i)).unwrap(); // ids 1..=6; 3..=6 kept
    }
    let (mut a, gap) = list.subscribe(Start::After(4), None, None, CancelToken::new());
    assert_eq!(gap, None);
    assert_eq!(ids(&a.try_next(1 << 16).unwrap().unwrap()), vec![5, 6]);

    let (mut b, gap) = list.subscribe(Start::After(2), None, None, CancelToken::new());
    assert_eq!(gap, None, "id 2 was evicted but nothing after it was");
    assert_eq!(
        ids(&b.try_next(1 << 16).unwrap().unwrap()),
        vec![3, 4, 5, 6]
    );

    let (mut c, gap) = list.subscribe(Start::After(1), None, None, CancelToken::new());
    assert_eq!(
        gap,
        Some(Gap {
            after: 1,
            oldest: Some(3)
        })
    );
    assert_eq!(
        ids(&c.try_next(1 << 16).unwrap().unwrap()),
        vec![3, 4, 5, 6]
    );

    // An id from the future (another server's, or before a restart) is a gap too.
    let (_, gap) = list.subscribe(Start::After(99), None, None, CancelToken::new());
    assert_eq!(
        gap,
        Some(Gap {
            after: 99,
            oldest: Some(3)
        })
    );
}

#[test]
fn a_list_following_a_log_takes_its_ids_and_waits_for_ids_ahead() {
    let list = list(4);
    list.follow_log(100);
    assert_eq!(list.append(105, "red", b"1", b"").unwrap(), Some(105));
    assert_eq!(
        list.append(105, "red", b"1", b"").unwrap(),
        None,
        "a replayed entry is not shown twice"
    );
    assert_eq!(list.append(103, "red", b"1", b"").unwrap(), None);
    list.append(2000, "red", b"2", br#""source_id":1"#).unwrap();
    let latest = list.latest(8);
    assert_eq!(latest.newest, 2000);
    let json: serde_json::Value = serde_json::from_slice(&latest.entries[1].json).unwrap();
    assert_eq!(json["source_id"], 1);

    // Another server's id, not received here yet: no gap, it waits and gets what follows.
    let (mut ahead, gap) = list.subscribe(Start::After(3000), None, None, CancelToken::new());
    assert_eq!(gap, None);
    assert_eq!(ahead.try_next(1 << 16).unwrap(), None);
    list.append(3001, "red", b"3", b"").unwrap();
    assert_eq!(ids(&ahead.try_next(1 << 16).unwrap().unwrap()), vec![3001]);

    // Older than the log holds: a gap.
    let (_, gap) = list.subscribe(Start::After(99), None, None, CancelToken::new());
    assert_eq!(
        gap,
        Some(Gap {
            after: 99,
            oldest: Some(105)
        })
    );
}

#[test]
fn since_starts_at_the_first_message_published_then_or_later() {
    // Log ids carry their time: `ms * 1000 + seq`.
    let list = list(3);
    list.follow_log(1_000_000); // the log no longer holds what was published by 1,000 ms
    for (ms, seq) in [(2000, 0), (2000, 1), (3000, 0)] {
        list.append(ms * 1000 + seq, "red", b"1", b"").unwrap();
    }
    let from = |ms| {
        let (mut sub, gap) = list.subscribe(Start::Since(ms), None, None, CancelToken::new());
        let got = sub
            .try_next(1 << 16)
            .unwrap()
            .map(|f| ids(&f))
            .unwrap_or_default();
        (got, gap)
    };
    assert_eq!(from(2000), (vec![2_000_000, 2_000_001, 3_000_000], None));
    assert_eq!(from(2001), (vec![3_000_000], None));
    assert_eq!(from(3000), (vec![3_000_000], None));
    assert_eq!(from(3001), (vec![], None), "after the newest: live");
    assert_eq!(from(1500), (vec![2_000_000, 2_000_001, 3_000_000], None));
    // At or before what the log no longer holds: the gap, then all there is.
    let gap = Some(Gap {
        after: 0,
        oldest: Some(2_000_000),
    });
    assert_eq!(
        from(1000),
        (vec![2_000_000, 2_000_001, 3_000_000], gap.clone())
    );
    // Evicting moves the horizon: 2,000 ms is partly gone now.
    list.append(4_000_000, "red", b"1", b"").unwrap(); // evicts 2,000,000
    let (got, gap) = from(2000);
    assert_eq!(got, vec![2_000_001, 3_000_000, 4_000_000]);
    assert_eq!(gap.map(|g| g.oldest), Some(Some(2_000_001)));
}

#[test]
fn a_subscriber_behind_the_history_is_cut_off() {
    let list = list(8);
    let slow_cut = CancelToken::new();
    let (mut slow, _) = list.subscribe(Start::Live, None, None, slow_cut.clone());
    let (mut fast, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    for i in 0..8 {
        list.publish("red", &json!(i)).unwrap();
        assert!(fast.try_next(1 << 16).unwrap().is_some());
    }
    assert!(
        !slow_cut.is_cancelled(),
        "8 behind with a history of 8 is still whole"
    );
    list.publish("red", &json!(8)).unwrap();
    assert!(fast.try_next(1 << 16).unwrap().is_some());
    // One more eviction than the history: the scan cuts the slow one without polling it.
    assert!(slow_cut.is_cancelled());
    assert_eq!(slow.try_next(1 << 16), Err(Lagged));
    assert_eq!(
        list.shared
            .metrics
            .lagged_disconnects
            .load(Ordering::Relaxed),
        1
    );
}

#[test]
fn history_is_bounded_by_bytes() {
    let limits = Limits {
        history: 1000,
        history_bytes: 2000,
        max_message_bytes: 4096,
        max_channels: 8,
        channel_idle: Duration::ZERO,
    };
    let list = BroadcastList::new(limits, 1, &[], Arc::new(Metrics::default()));
    for _ in 0..100 {
        list.publish("red", &json!("x".repeat(300))).unwrap();
    }
    let (n, bytes) = list.held();
    assert!(bytes <= 2000, "{bytes}");
    assert!((1..10).contains(&n), "{n}");
}

#[test]
fn rejects_bad_input_and_keeps_going() {
    let list = list(8);
    assert!(matches!(
        list.publish("a\nb", &json!(1)),
        Err(Rejected::Channel(_))
    ));
    assert!(matches!(
        list.publish("red", &json!("x".repeat(2000))),
        Err(Rejected::TooLarge { .. })
    ));
    for c in ["c4", "c5", "c6", "c7", "c8"] {
        list.publish(c, &json!(1)).unwrap();
    }
    assert_eq!(
        list.publish("c9", &json!(1)),
        Err(Rejected::TooManyChannels(8))
    );
    assert_eq!(
        list.publish("red", &json!(1)).unwrap(),
        6,
        "rejections use no ids"
    );
}

#[tokio::test(start_paused = true)]
async fn idle_channels_make_room_unless_followed_or_default() {
    let limits = Limits {
        history: 100,
        history_bytes: 1 << 20,
        max_message_bytes: 1024,
        max_channels: 5,
        channel_idle: Duration::from_secs(600),
    };
    let metrics = Arc::new(Metrics::default());
    let list = BroadcastList::new(limits, 1, &["red", "blue"], metrics.clone());
    let (_follower, _) = list.subscribe(
        Start::Live,
        Some(vec!["c1".into()]),
        None,
        CancelToken::new(),
    );
    for c in ["c1", "c2", "c3"] {
        list.publish(c, &json!(1)).unwrap();
    }
    assert_eq!(
        list.publish("c4", &json!(1)),
        Err(Rejected::TooManyChannels(5))
    );
    assert!(list.check("c4", 1).is_err());
    tokio::time::advance(Duration::from_secs(599)).await;
    list.publish("c3", &json!(2)).unwrap(); // c3 stays busy
    tokio::time::advance(Duration::from_secs(1)).await;
    // c2 is idle (and nobody names it); c1 is followed; c3 was just used; the defaults stay.
    assert!(list.check("c4", 1).is_ok());
    assert_eq!(metrics.channels_forgotten.load(Ordering::Relaxed), 1);
    list.publish("c4", &json!(1)).unwrap();
    assert!(!list.knows_channel("c2"));
    assert!(list.knows_channel("c1") && list.knows_channel("red"));
    assert_eq!(
        list.publish("c5", &json!(1)),
        Err(Rejected::TooManyChannels(5))
    );
    // A forgotten channel is carried again, announced anew, when it has room.
    drop(_follower);
    tokio::time::advance(Duration::from_secs(600)).await;
    let (mut sub, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    list.publish("c2", &json!(3)).unwrap();
    let frame = sub.try_next(1 << 16).unwrap().unwrap();
    assert!(std::str::from_utf8(&frame)
        .unwrap()
        .starts_with("event: ringback.channel"));
}

#[test]
fn latest_takes_the_newest_per_channel() {
    let list = list(100);
    for i in 0..10 {
        list.publish(if i % 2 == 0 { "red" } else { "green" }, &json!(i))
            .unwrap();
    }
    let latest = list.latest(2);
    let channels: Vec<&str> = latest.channels.iter().map(|c| &**c).collect();
    assert_eq!(channels, vec!["red", "yellow", "blue", "green"]);
    let got: Vec<(String, u64)> = latest
        .entries
        .iter()
        .map(|e| (e.channel.to_string(), e.id))
        .collect();
    assert_eq!(
        got,
        vec![
            ("red".into(), 7),
            ("green".into(), 8),
            ("red".into(), 9),
            ("green".into(), 10)
        ]
    );
    assert_eq!(latest.newest, 10);
}

#[test]
fn dropping_a_subscription_unregisters_it() {
    let list = list(8);
    let subs: Vec<_> = (0..10)
        .map(|_| {
            list.subscribe(Start::Live, None, None, CancelToken::new())
                .0
        })
        .collect();
    assert_eq!(list.subscriber_count(), 10);
    drop(subs);
    assert_eq!(list.subscriber_count(), 0);
    assert_eq!(list.shared.registry.lock().unwrap().len(), 0);
}

/// Many writers and readers at once on the multi-threaded runtime: every reader receives
/// every message, in order, and none waits forever (a lost wake-up would hang this test,
/// which the timeout turns into a failure).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lost_wakeups_under_contention() {
    const WRITERS: u64 = 4;
    const PER_WRITER: u64 = 500;
    let list = list(4096);
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (mut sub, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        readers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < (WRITERS * PER_WRITER) as usize {
                let bytes = sub.next(1 << 16).await.expect("not lagged");
                seen.extend(ids(&bytes));
            }
            seen
        }));
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let list = list.clone();
            tokio::spawn(async move {
                for i in 0..PER_WRITER {
                    list.publish("red", &json!([w, i])).unwrap();
                    if i % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for r in readers {
        let seen = tokio::time::timeout(std::time::Duration::from_secs(30), r)
            .await
            .expect("a reader stalled: lost wake-up")
            .unwrap();
        let expected: Vec<u64> = (1..=WRITERS * PER_WRITER).collect();
        assert_eq!(seen, expected);
    }
}

/// With compression on and no compressed stream, no frame is compressed; a compressed reader
/// that comes later decodes the history (each frame deflated alone the first time a stream
/// needs it) and then the shared stream from its next frame (a reset point); once it has gone,
/// the shared compressor rests again.
#[test]
fn frames_are_compressed_only_while_a_stream_is() {
    use std::io::Read;
    let list = list(8);
    list.compress_frames();
    // For each id: (shared output made, a reset point, alone output made), and the plain frame.
    let forms = |id: u64| {
        let state = list.shared.state.read_or_recover();
        let entry = *state.history.latest(8).iter().find(|e| e.id == id).unwrap();
        let d = entry.deflated.as_ref().unwrap();
        let made = (d.shared.is_some(), d.reset, d.alone_made() > 0);
        (made, entry.frame.clone())
    };
    list.publish("red", &json!(1)).unwrap();
    assert_eq!(forms(1).0, (false, false, false));
    let (mut a, _) = list.subscribe(Start::After(0), None, None, CancelToken::new());
    a.compress();
    list.publish("red", &json!(2)).unwrap();
    assert_eq!(forms(2).0, (true, true, false));
    let mut gz = a.try_next(1 << 16).unwrap().unwrap().to_vec();
    assert_eq!(forms(1).0, (false, false, true), "made when first needed");
    gz.extend_from_slice(&a.finish().unwrap());
    let mut plain = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, [forms(1).1, forms(2).1].concat());
    drop(a);
    list.publish("red", &json!(3)).unwrap();
    assert_eq!(forms(3).0, (false, false, false));
}

/// Counts the times it is woken.
struct WakeCount(std::sync::atomic::AtomicUsize);

impl futures::task::ArcWake for WakeCount {
    fn wake_by_ref(count: &Arc<Self>) {
        count.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker, and how many times it has been woken.
fn counting_waker() -> (Arc<WakeCount>, std::task::Waker) {
    let count = Arc::new(WakeCount(Default::default()));
    (count.clone(), futures::task::waker(count))
}

/// A subscriber waiting for the list is woken by an append and by a presence change.
#[test]
fn a_waiting_subscriber_is_woken_by_an_append_and_a_presence_change() {
    use std::future::Future;
    use std::task::{Context, Poll};
    let list = list(8);
    let (mut sub, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    {
        let mut next = Box::pin(sub.next(1 << 16));
        assert!(next.as_mut().poll(&mut cx).is_pending());
        list.publish("red", &json!(1)).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken by the append");
        assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(Ok(b)) if ids(&b) == [1]));
    }
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending());
    assert!(list.set_presence(vec![(Arc::from("red"), 1, false)]));
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        2,
        "woken by the presence change"
    );
}

/// A connection for direct writes that keeps what it is given, and takes it whole, in part or
/// not at all as told.
struct Recorder {
    taken: Mutex<Vec<Bytes>>,
    answer: Mutex<crate::runtime::connection::Written>,
    written: tokio::sync::Notify,
}

impl Recorder {
    /// One that takes every write whole until told otherwise.
    fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            taken: Mutex::new(Vec::new()),
            answer: Mutex::new(crate::runtime::connection::Written::Whole),
            written: tokio::sync::Notify::new(),
        })
    }
}

/// A live subscriber of `list`, plain and unfiltered, whose frames the writers write to a
/// recorder while it waits.
fn direct_subscriber(list: &BroadcastList) -> (Subscription, Arc<Recorder>) {
    let (mut sub, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    let recorder = Recorder::new();
    sub.write_directly(recorder.clone(), 1 << 16);
    (sub, recorder)
}

impl crate::runtime::connection::WriteNow for Recorder {
    fn write_now(&self, frames: &Bytes) -> crate::runtime::connection::Written {
        let answer = *self.answer.lock().unwrap();
        if answer != crate::runtime::connection::Written::Nothing {
            self.taken.lock().unwrap().push(frames.clone());
        }
        self.written.notify_one();
        answer
    }
}

/// A parked subscriber's frames are written by the list's writers while its task sleeps; it
/// is woken only when its connection does not take them whole, and then reads on from where
/// the writers left it: nothing twice, nothing lost.
#[tokio::test]
async fn a_waiting_direct_subscriber_is_written_to_without_being_woken() {
    use crate::runtime::connection::Written;
    use std::future::Future;
    use std::task::{Context, Poll};
    let list = list(8);
    let (mut sub, recorder) = direct_subscriber(&list);
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending(), "parked");

    // Written by a writer, the subscriber's task not woken.
    list.publish("red", &json!(1)).unwrap();
    recorder.written.notified().await;
    list.publish("red", &json!(2)).unwrap();
    recorder.written.notified().await;
    let taken: Vec<Vec<u64>> = recorder.taken.lock().unwrap().iter().map(ids).collect();
    assert_eq!(taken, [[1], [2]]);
    assert_eq!(count.0.load(Ordering::SeqCst), 0, "not woken");

    // Taken in part: the connection keeps the rest, the task is woken and reads on after it.
    *recorder.answer.lock().unwrap() = Written::Part;
    list.publish("red", &json!(3)).unwrap();
    recorder.written.notified().await;
    assert_eq!(count.0.load(Ordering::SeqCst), 1, "woken");
    assert!(next.as_mut().poll(&mut cx).is_pending(), "parked again");
    drop(next);
    assert_eq!(sub.cursor(), 3);

    // Not taken: the task is woken and reads the frame itself.
    *recorder.answer.lock().unwrap() = Written::Nothing;
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending());
    list.publish("red", &json!(4)).unwrap();
    recorder.written.notified().await;
    assert_eq!(count.0.load(Ordering::SeqCst), 2, "woken");
    assert!(matches!(next.as_mut().poll(&mut cx), Poll::Ready(Ok(b)) if ids(&b) == [4]));
    drop(next);
    assert_eq!(list.shared.metrics.messages_out.load(Ordering::Relaxed), 4);

    // New presence counts are the task's to send: it is handed back for them.
    *recorder.answer.lock().unwrap() = Written::Whole;
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending());
    assert!(list.set_presence(vec![(Arc::from("red"), 1, false)]));
    while count.0.load(Ordering::SeqCst) < 3 {
        tokio::task::yield_now().await;
    }
    let Poll::Ready(Ok(presence)) = next.as_mut().poll(&mut cx) else {
        panic!("the presence frame");
    };
    assert!(presence.starts_with(b"event: ringback.presence"));
}

/// A pass takes the list's frames as it starts and gives way now and then; a subscriber that
/// meanwhile read newer frames for itself and parked again is not taken back to where the pass
/// began, so nothing it sent is written to it a second time (seen at 800 msg/s from 16
/// publishers: one frame in 7,000 twice).
#[tokio::test]
async fn a_pass_never_moves_a_subscriber_back() {
    use std::future::Future;
    use std::task::Context;
    let list = list(8);
    // Registered first, so the pass spends its budget on them before it comes to `sub`.
    let others: Vec<_> = (0..200).map(|_| direct_subscriber(&list)).collect();
    let (mut sub, recorder) = direct_subscriber(&list);
    let (_, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending(), "parked");

    // The pass for 1 begins and gives way before it comes to `sub`.
    list.publish("red", &json!(1)).unwrap();
    tokio::task::yield_now().await;
    assert!(recorder.taken.lock().unwrap().is_empty(), "not yet written");
    // Meanwhile `sub` reads 1 and 2 for itself and parks again.
    drop(next);
    list.publish("red", &json!(2)).unwrap();
    assert_eq!(ids(&sub.try_next(1 << 16).unwrap().unwrap()), [1, 2]);
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending(), "parked again");

    // The passes go on; 3 is the only frame written to it.
    list.publish("red", &json!(3)).unwrap();
    recorder.written.notified().await;
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let taken: Vec<u64> = recorder
        .taken
        .lock()
        .unwrap()
        .iter()
        .flat_map(ids)
        .collect();
    assert_eq!(taken, [3]);
    drop(others);
}

/// Only a subscriber that reads every public frame plainly has its frames written directly:
/// a filtered one is woken by an append as before.
#[tokio::test]
async fn a_filtered_subscriber_reads_for_itself() {
    let list = list(8);
    let filter = Some(vec!["red".to_owned()]);
    let (mut sub, _) = list.subscribe(Start::Live, filter, None, CancelToken::new());
    let recorder = Recorder::new();
    sub.write_directly(recorder.clone(), 1 << 16);
    let reader = tokio::spawn(async move { ids(&sub.next(1 << 16).await.unwrap()) });
    tokio::task::yield_now().await;
    list.publish("blue", &json!(1)).unwrap();
    list.publish("red", &json!(2)).unwrap();
    assert_eq!(reader.await.unwrap(), [2]);
    assert!(recorder.taken.lock().unwrap().is_empty());
}

/// A compressed stream in step with the shared compressor is written by the writers too: the
/// frames' shared outputs, its state (the CRC and length of its trailer) kept while it is
/// parked. Out of step (after a heartbeat of its own) it is handed back and its task sends the
/// alone outputs. Everything it was sent, in order, is one gzip stream of the plain frames.
#[tokio::test]
async fn a_compressed_direct_subscriber_is_written_one_valid_gzip_stream() {
    use std::future::Future;
    use std::io::Read;
    use std::task::Context;
    let list = list(16);
    list.compress_frames();
    let (mut plain, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
    let (mut sub, recorder) = {
        let (mut sub, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        sub.compress();
        let recorder = Recorder::new();
        sub.write_directly(recorder.clone(), 1 << 16);
        (sub, recorder)
    };
    let (count, waker) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    let mut sent: Vec<u8> = Vec::new();

    // Its first frame (the header not yet sent) is its task's: handed back, read for itself.
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending(), "parked");
    list.publish("red", &json!(1)).unwrap();
    sent.extend_from_slice(&soon(next).await.unwrap());
    assert!(recorder.taken.lock().unwrap().is_empty());

    // In step now: written by the writers, its task not woken; 2 and 3, appended before a
    // pass runs, in one piece (their CRCs combined), then 4.
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending(), "parked");
    let woken = count.0.load(Ordering::SeqCst);
    list.publish("red", &json!(2)).unwrap();
    list.publish("red", &json!(3)).unwrap();
    soon(recorder.written.notified()).await;
    list.publish("red", &json!(4)).unwrap();
    soon(recorder.written.notified()).await;
    assert_eq!(count.0.load(Ordering::SeqCst), woken, "not woken");
    assert_eq!(recorder.taken.lock().unwrap().len(), 2, "two pieces");
    for piece in recorder.taken.lock().unwrap().drain(..) {
        sent.extend_from_slice(&piece);
    }
    drop(next);
    assert_eq!(sub.cursor(), 4);

    // A heartbeat of its own puts it out of step: the next frame is its task's again.
    sent.extend_from_slice(&sub.heartbeat());
    let mut next = Box::pin(sub.next(1 << 16));
    assert!(next.as_mut().poll(&mut cx).is_pending(), "parked");
    list.publish("red", &json!(5)).unwrap();
    sent.extend_from_slice(&soon(next).await.unwrap());
    assert!(recorder.taken.lock().unwrap().is_empty(), "not written");
    sent.extend_from_slice(&sub.finish().unwrap());

    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&sent[..])
        .read_to_end(&mut decoded)
        .expect("one valid gzip stream, its trailer's CRC and length right");
    let frames = plain.try_next(1 << 16).unwrap().unwrap();
    let heartbeat = crate::feed::frame::HEARTBEAT;
    let at = |id: u64| {
        let text = std::str::from_utf8(&frames).unwrap();
        text.find(&format!("id: {id}\n")).unwrap()
    };
    let expected = [&frames[..at(5)], heartbeat, &frames[at(5)..]].concat();
    assert_eq!(
        String::from_utf8_lossy(&decoded),
        String::from_utf8_lossy(&expected)
    );
    assert_eq!(list.shared.metrics.messages_out.load(Ordering::Relaxed), 10);
}

/// `f`, within 10 s: what should come and does not fails the test, never hangs it.
async fn soon<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("in time")
}
