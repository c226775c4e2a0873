//! The `ringback` binary as a child process: started, its log read, signalled.
#![allow(clippy::unwrap_used)]

use super::{free_port, scratch, PATIENCE};
use std::net::SocketAddr;

/// The `ringback` binary serving on a free port, started and awaited by its "live" line.
pub async fn spawn_server(name: &str, extra: &[&str]) -> (tokio::process::Child, SocketAddr) {
    let (child, addr, _) = spawn_logged(name, extra).await;
    (child, addr)
}

/// The same, keeping every line it writes (its logs go to stdout).
pub async fn spawn_logged(
    name: &str,
    extra: &[&str],
) -> (
    tokio::process::Child,
    SocketAddr,
    std::sync::Arc<std::sync::Mutex<String>>,
) {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let data = scratch(name);
    let log_level = if extra.contains(&"--log") {
        &[][..]
    } else {
        &["--log", "warn"][..]
    };
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ringback"))
        .args(["--addr", &addr.to_string()])
        .args(log_level)
        .arg("--data-dir")
        .arg(&data)
        .args(extra)
        .env("LEPTOS_OUTPUT_NAME", "ringback")
        .env_remove("LEPTOS_HASH_FILES")
        .env_remove("REDIS_URL")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("Ringback is live") {
                return;
            }
        }
        panic!("the server exited before serving");
    })
    .await
    .expect("the server started");
    // Keep draining stdout so the child never blocks on a full pipe.
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    tokio::spawn({
        let log = log.clone();
        async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        }
    });
    (child, addr, log)
}

pub fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    let status = std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap();
    assert!(status.success());
}
