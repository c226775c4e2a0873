//! What the integration tests share, by topic (as tokio's `tests/support/`): a real server on
//! `127.0.0.1:0` ([`server`]), requests over a real HTTP/1.1 client ([`client`], [`publish`]), an SSE
//! reader that parses events as EventSource would ([`sse`]), real `redis-server` and
//! `redis-sentinel` processes ([`redis_server`]), a TCP proxy that can silence a connection ([`proxy`]),
//! tokens ([`auth`]) and the server binary as a process ([`process`]). Each is re-exported
//! here: a test names what it uses, not where it lives.
#![allow(clippy::unwrap_used)]

pub mod auth;
pub mod client;
pub mod process;
pub mod proxy;
pub mod publish;
pub mod redis_server;
pub mod server;
pub mod sse;

pub use auth::*;
pub use client::*;
pub use process::*;
pub use proxy::*;
pub use publish::*;
pub use redis_server::*;
pub use server::*;
pub use sse::*;
use std::time::Duration;

/// A bound on how long a test waits for an event that should arrive; reaching it is a failure,
/// never a pass.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `rx`'s value satisfies `want`, for at most `PATIENCE`: a lost wake-up or a value
/// that never comes fails the test, it never hangs it.
pub async fn until<T>(rx: &mut tokio::sync::watch::Receiver<T>, want: impl FnMut(&T) -> bool) {
    let seen = tokio::time::timeout(PATIENCE, rx.wait_for(want)).await;
    seen.expect("the awaited value in time")
        .expect("its sender is alive");
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ringback-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A port nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
