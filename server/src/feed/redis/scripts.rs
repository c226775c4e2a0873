//! The Lua scripts Redis runs for the feed, each in its own `.lua` file beside this one, read
//! at compile time. Each file says what it takes (KEYS, ARGV) and returns.

use redis::Script;

/// What both log scripts share: the id arithmetic, and the next id for a new entry.
const LOG_LUA_COMMON: &str = include_str!("lua/log_common.lua");

/// Appends Pub/Sub messages to the log, each unless another server already wrote it.
const APPEND_LUA: &str = include_str!("lua/append.lua");

/// Appends one message published directly, at most once per idempotency key and window.
const PUBLISH_LUA: &str = include_str!("lua/publish.lua");

/// Raises the id counter past what a server served from a log that was rewound.
const RAISE_LUA: &str = include_str!("lua/raise.lua");

/// Reports this server's subscriber counts and returns the feed's.
const PRESENCE_LUA: &str = include_str!("lua/presence.lua");

/// The Pub/Sub appender ([`APPEND_LUA`] after the shared functions).
pub(super) fn append() -> Script {
    Script::new(&format!("{LOG_LUA_COMMON}{APPEND_LUA}"))
}

/// The direct publisher ([`PUBLISH_LUA`] after the shared functions).
pub(super) fn publish() -> Script {
    Script::new(&format!("{LOG_LUA_COMMON}{PUBLISH_LUA}"))
}

/// The id counter's raise after a rewound log ([`RAISE_LUA`]).
pub(super) fn raise() -> Script {
    Script::new(RAISE_LUA)
}

/// The presence report ([`PRESENCE_LUA`]).
pub(super) fn presence() -> Script {
    Script::new(PRESENCE_LUA)
}
