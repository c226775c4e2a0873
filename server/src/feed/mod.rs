//! The feed: messages in (the in-process bus, Redis, the demo), validated, encoded once, and
//! kept in the one bounded broadcast list every subscriber reads. Knows nothing of HTTP
//! handlers or connections: imports only `runtime`, `config`, `metrics` and `app::message`.

pub mod broadcast;
pub mod channels;
pub mod demo;
pub mod frame;
pub mod redis_ingest;
pub mod redis_primary;
pub mod source;
