//! Presence: how many subscribers each channel has, across the feed.
//!
//! The broadcast list counts this server's subscribers per channel as subscriptions come and go
//! (a subscriber with a `?type=` filter on each channel it names, one without on every channel
//! it may read). Every `--presence-interval` this task gathers them:
//! - **embedded**, they are the feed's counts;
//! - **behind Redis**, each server writes its counts to a hash of its own
//!   (`<prefix>:presence:<server>`) that expires after `--presence-expiry` unless the next
//!   report renews it, and reads every live server's summed in the same script call
//!   (`PRESENCE_LUA`): a server that dies drops out of the counts within the expiry; one that
//!   stops cleanly withdraws its counts at once. While Redis is unreachable the counts are this
//!   server's own (`ringback_presence_report_failures_total`).
//!
//! When the counts changed, the list sends them to every subscriber as one `ringback.presence`
//! event with every channel's count (at most one per interval, whatever the churn; a stream that
//! missed one is right again with the next). Counts are kept for the channels this server
//! carries only, so the event is bounded by `--max-channels`, not by what subscribers name.

use crate::config::PresenceArgs;
use crate::feed::broadcast::{BroadcastList, ChannelState};
use crate::feed::source::Source;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::runtime::jitter;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::time::MissedTickBehavior;

/// Gathers the counts every interval until `shutdown`, and hands changed ones to the list.
pub async fn run(
    source: Source,
    feed: BroadcastList,
    settings: PresenceArgs,
    metrics: Arc<Metrics>,
    shutdown: CancelToken,
) {
    // Names this server's counts in Redis: unique per process, also across restarts.
    let server = format!("{:016x}", jitter::random());
    let period = settings.interval();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let channels = feed.channels();
        let own = local(&channels);
        let counts = match &source {
            Source::Embedded(..) => own,
            Source::Redis(redis) => {
                let mine = own.iter().map(|(name, n, _)| (&**name, *n));
                let report = redis.report_presence(&server, mine, settings.expiry());
                let report = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    report = report => report,
                };
                match report {
                    Ok(totals) => across(&channels, totals),
                    Err(e) => {
                        tracing::debug!(error = %e, "presence not reported; counting this server's subscribers only");
                        metrics
                            .presence_report_failures
                            .fetch_add(1, Ordering::Relaxed);
                        own
                    }
                }
            }
        };
        if feed.set_presence(counts) {
            metrics.presence_updates.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Source::Redis(redis) = &source {
        redis.withdraw_presence(&server).await;
    }
}

/// This server's counts (channels with subscribers only).
fn local(channels: &[ChannelState]) -> Vec<(Arc<str>, u64, bool)> {
    channels
        .iter()
        .filter(|c| c.subscribers > 0)
        .map(|c| (c.name.clone(), c.subscribers, c.private))
        .collect()
}

/// The counts summed over every server, for the channels this server carries.
fn across(channels: &[ChannelState], totals: Vec<(String, u64)>) -> Vec<(Arc<str>, u64, bool)> {
    let totals: HashMap<String, u64> = totals.into_iter().collect();
    channels
        .iter()
        .filter_map(|c| {
            let n = totals.get(&*c.name).copied().unwrap_or(0);
            (n > 0).then(|| (c.name.clone(), n, c.private))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeedLimits;
    use crate::feed::broadcast::Start;
    use crate::feed::channels::ChannelSet;

    fn feed() -> BroadcastList {
        let list = BroadcastList::new(
            FeedLimits::default(),
            1,
            &["red", "blue"],
            Arc::new(Metrics::default()),
        );
        list.set_private(ChannelSet::parse(&["secret"]).unwrap());
        list.publish("secret", &"s".into()).unwrap();
        list
    }

    fn counts(list: &BroadcastList) -> Vec<(String, u64)> {
        list.channels()
            .into_iter()
            .map(|c| (c.name.to_string(), c.subscribers))
            .collect()
    }

    /// Filtered subscribers count on the channels they name, the others on every channel they
    /// may read; a private channel counts only those granted it; leaving counts down.
    #[test]
    fn subscribers_count_on_the_channels_they_read() {
        let list = feed();
        let sub = |filter: Option<&[&str]>, grants: Option<&[&str]>| {
            list.subscribe(
                Start::Live,
                filter.map(|f| f.iter().map(|s| s.to_string()).collect()),
                grants.map(|g| Arc::new(ChannelSet::parse(g).unwrap())),
                CancelToken::new(),
            )
            .0
        };
        let everyone = sub(None, None);
        let red = sub(Some(&["red"]), None);
        let granted = sub(None, Some(&["secret"]));
        let also_granted = sub(None, Some(&["secret"]));
        assert_eq!(
            counts(&list),
            [("red", 4), ("blue", 3), ("secret", 2)].map(|(c, n)| (c.to_owned(), n))
        );
        drop((everyone, granted));
        assert_eq!(
            counts(&list),
            [("red", 2), ("blue", 1), ("secret", 1)].map(|(c, n)| (c.to_owned(), n))
        );
        drop((red, also_granted));
        let left = counts(&list);
        assert_eq!(left.len(), 3, "every channel still listed: {left:?}");
        assert!(left.iter().all(|(_, n)| *n == 0), "{left:?}");
    }

    /// Changed counts reach every subscriber once, as one event; private counts only those
    /// granted them; unchanged counts are not sent again.
    #[tokio::test]
    async fn changed_counts_reach_subscribers_once() {
        let list = feed();
        let (mut public, _) = list.subscribe(Start::Live, None, None, CancelToken::new());
        let grants = Some(Arc::new(ChannelSet::parse(&["secret"]).unwrap()));
        let (mut granted, _) = list.subscribe(Start::Live, None, grants, CancelToken::new());
        assert_eq!(public.try_next(1 << 16).unwrap(), None);
        let channels = list.channels();
        assert!(list.set_presence(local(&channels)));
        assert!(!list.set_presence(local(&channels)));
        let text = |b: bytes::Bytes| String::from_utf8(b.to_vec()).unwrap();
        assert_eq!(
            text(public.next(1 << 16).await.unwrap()),
            "event: ringback.presence\ndata: {\"subscribers\":{\"red\":2,\"blue\":2}}\n\n"
        );
        assert_eq!(
            text(granted.next(1 << 16).await.unwrap()),
            "event: ringback.presence\ndata: {\"subscribers\":{\"red\":2,\"blue\":2,\"secret\":1}}\n\n"
        );
        assert_eq!(public.try_next(1 << 16).unwrap(), None);
        assert_eq!(list.presence().count("secret"), 1);
    }

    #[test]
    fn totals_are_kept_for_the_channels_this_server_carries() {
        let list = feed();
        let totals = vec![("blue".to_owned(), 5), ("elsewhere".to_owned(), 9)];
        let counts = across(&list.channels(), totals);
        assert_eq!(counts, vec![(Arc::from("blue"), 5, false)]);
    }
}
