//! What the API's handlers share, cloned into each request (every field a shared handle).

use crate::api::auth::Auth;
use crate::api::limits::{PublishRate, SubscriberLimits};
use crate::config::ServeArgs;
use crate::feed::broadcast::BroadcastList;
use crate::feed::source::Source;
use crate::metrics::Metrics;
use crate::runtime::cancel::CancelToken;
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
}
