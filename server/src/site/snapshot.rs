//! The page's first paint, built from what the feed holds: its public channels, the latest
//! messages of each, and the id the page's live stream resumes after.

use crate::feed::broadcast::BroadcastList;
use app::message::{Message, Snapshot};
use app::snapshot::SnapshotSource;
use std::sync::Arc;

/// The snapshot every page load and `POST /api/snapshot` read: `per_channel` messages of each
/// channel (`--ui-messages`), and whether the compose box asks for a token.
pub fn source(feed: BroadcastList, per_channel: usize, publish_token: bool) -> SnapshotSource {
    SnapshotSource(Arc::new(move || {
        first_paint(&feed, per_channel, publish_token)
    }))
}

fn first_paint(feed: &BroadcastList, per_channel: usize, publish_token: bool) -> Snapshot {
    let latest = feed.latest(per_channel);
    Snapshot {
        channels: latest.channels.iter().map(|c| c.to_string()).collect(),
        // Every entry's JSON was made from a message by the feed; one that did not read back
        // would be left out rather than fail the page.
        messages: latest
            .entries
            .iter()
            .filter_map(|e| serde_json::from_slice::<Message>(&e.json).ok())
            .collect(),
        last_id: Some(latest.newest),
        per_channel,
        publish_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::broadcast::Limits;
    use serde_json::json;

    #[test]
    fn the_first_paint_holds_the_latest_messages_their_channels_and_where_to_resume() {
        let feed = BroadcastList::new(Limits::default(), 1, &["red"], Default::default());
        for i in 0..5 {
            feed.publish(if i % 2 == 0 { "red" } else { "green" }, &json!({ "n": i }))
                .unwrap();
        }
        let snapshot = (source(feed, 2, true).0)();
        assert_eq!(snapshot.channels, vec!["red", "green"]);
        let got: Vec<(&str, u64)> = snapshot
            .messages
            .iter()
            .map(|m| (&*m.channel, m.id))
            .collect();
        assert_eq!(
            got,
            vec![("green", 2), ("red", 3), ("green", 4), ("red", 5)]
        );
        assert_eq!(snapshot.messages[3].data, json!({ "n": 4 }));
        assert_eq!(snapshot.last_id, Some(5));
        assert_eq!(snapshot.per_channel, 2);
        assert!(snapshot.publish_token);
    }
}
