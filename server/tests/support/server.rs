//! A real server on `127.0.0.1:0`, in this process, and the settings tests start it with.
#![allow(clippy::unwrap_used)]

use super::PATIENCE;
use ringback::config::ServeArgs;
use ringback::server::AppState;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: ServeArgs) -> TestServer {
        Self::start_state(state(config)).await
    }

    pub async fn start_state(state: AppState) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(ringback::server::run(listener, state.clone(), async move {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts a graceful shutdown and waits for `run` to return.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(PATIENCE, task)
                .await
                .expect("shutdown finished")
                .unwrap();
        }
    }
}

/// The server state for `config`, rendering pages without hashed files (tests add a manifest
/// with `with_assets` where they need one).
pub fn state(config: ServeArgs) -> AppState {
    let site_root = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/site");
    let leptos = leptos::config::LeptosOptions::builder()
        .output_name("ringback")
        .site_root(site_root)
        .build();
    AppState::new(config, leptos).expect("usable configuration")
}

/// The test configuration: defaults, with overrides applied by the caller; presence counts are
/// gathered once an hour, so their events (whose timing is the clock's) interleave only with
/// the streams of the tests that ask for them (`presence.rs`).
pub fn config() -> ServeArgs {
    let mut cfg = ServeArgs::default();
    cfg.presence.presence_interval = Duration::from_secs(3600);
    cfg
}
