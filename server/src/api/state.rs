//! What the API's handlers share, cloned into each request (every field a shared handle).

use crate::api::auth::Auth;
use crate::api::limits::{PublishRate, ReplayBudget, SubscriberLimits};
use crate::api::refusal::Refusals;
use crate::config::ServeArgs;
use crate::feed::broadcast::BroadcastList;
use crate::feed::source::Source;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
use crate::runtime::log_summary::LogSummary;
use std::sync::Arc;

#[derive(Clone)]
pub struct ApiState {
    /// The broadcast list every subscriber reads.
    pub feed: BroadcastList,
    /// Where publishers append: the list itself, or the Redis log it follows.
    pub source: Source,
    /// Who may publish over HTTP, and who may read private channels.
    pub auth: Arc<Auth>,
    /// Subscribers held, in total and per address.
    pub subscribers: Arc<SubscriberLimits>,
    /// Publish rate per credential.
    pub publish_rate: Arc<PublishRate>,
    /// New channels per credential (the same keys as the publish rate).
    pub new_channel_rate: Arc<PublishRate>,
    pub config: Arc<ServeArgs>,
    pub metrics: Arc<Metrics>,
    /// Cancelled once at shutdown; event streams watch it so a graceful shutdown can finish.
    pub shutdown: CancelToken,
    /// What resuming streams may replay together (`--replay-rate`).
    pub replay: Arc<ReplayBudget>,
    /// The log of refusals, one summary per reason.
    pub refusals: Arc<Refusals>,
    /// The log of what happens to many streams at once.
    pub logs: Arc<StreamLogs>,
}

/// Log lines of events that come in herds (a crash's resumes, a fleet's tokens), each written
/// as one line and a count per interval.
#[derive(Debug)]
pub struct StreamLogs {
    /// Resumes from beyond the history (their clients are told of the gap).
    pub gaps: Arc<LogSummary>,
    /// Streams ended at their JWT's expiry.
    pub expiries: Arc<LogSummary>,
}

impl Default for StreamLogs {
    fn default() -> Self {
        StreamLogs {
            gaps: Arc::new(LogSummary::new(
                "resume beyond history; client told of the gap",
                tracing::Level::INFO,
            )),
            expiries: Arc::new(LogSummary::new(
                "event stream ended at its JWT's expiry",
                tracing::Level::INFO,
            )),
        }
    }
}
