//! The feed: messages in (the in-process bus, Redis, the demo), validated, encoded once, and
//! kept in the one bounded broadcast list every subscriber reads. Knows nothing of HTTP
//! handlers or connections: imports only `runtime`, `encoding`, `config`, `metrics`,
//! `app::message` and `app::time` (a message's time is the page's too).

pub mod broadcast;
pub mod channels;
pub mod demo;
pub mod frame;
pub mod idempotency;
pub mod presence;
pub mod redis;
pub mod source;
