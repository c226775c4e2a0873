//! `GET /api/channels`: the channels the feed carries, each with its subscribers across the feed
//! (every server on one Redis; see `feed/presence.rs`) and its newest message.
//!
//! Private channels are listed only to a request whose credential grants them (`?token=`, the
//! bearer header or the subscriber cookie, as for `GET /messages`). The counts are the ones the
//! streams receive as `ringback.presence` events, gathered every `--presence-interval`.

use crate::api::refusal::Refusal;
use crate::api::state::ApiState;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};

/// One channel of the answer.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ChannelInfo {
    #[serde(rename = "type")]
    pub channel: String,
    /// Subscribers reading it across the feed.
    pub subscribers: u64,
    /// Its newest message's id and time (Unix ms); none before its first message.
    pub last_id: Option<u64>,
    pub last_time: Option<u64>,
}

#[derive(Debug, Deserialize)]
pub struct ChannelsQuery {
    token: Option<String>,
}

/// `GET /api/channels` → `200 [{"type", "subscribers", "last_id", "last_time"}, …]` in the
/// order the feed learnt them; `401` for a credential given on purpose that is not accepted.
pub async fn list(
    State(state): State<ApiState>,
    Query(query): Query<ChannelsQuery>,
    headers: HeaderMap,
) -> Result<Json<Vec<ChannelInfo>>, Refusal> {
    let grants = state.auth.reader(query.token.as_deref(), &headers)?.grants;
    let presence = state.feed.presence();
    let channels = state
        .feed
        .channels()
        .into_iter()
        .filter(|c| !c.private || grants.contains(&c.name))
        .map(|c| ChannelInfo {
            subscribers: presence.count(&c.name),
            last_id: c.newest.map(|(id, _)| id),
            last_time: c.newest.map(|(_, time)| time),
            channel: c.name.to_string(),
        })
        .collect();
    Ok(Json(channels))
}
