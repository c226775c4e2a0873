//! A TCP proxy in front of a server that can silence its connections (a phone that sleeps, a
//! network that drops) and let them through again.
#![allow(clippy::unwrap_used)]

use tokio::net::TcpStream;

/// A TCP proxy in front of a real server that the test can cut (closing every connection
/// through it and refusing new ones) and restore: a network partition between one Ringback
/// server and Redis, while others still reach it.
pub struct Proxy {
    pub port: u16,
    open: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    pub async fn start(upstream: u16) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, _) = tokio::sync::watch::channel(true);
        let gate = open.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                let mut gate = gate.subscribe();
                if !*gate.borrow_and_update() {
                    continue; // dropped: the connection is refused
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = gate.wait_for(|open| !*open) => {}
                    }
                });
            }
        });
        Proxy { port, open }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    pub fn restore(&self) {
        self.open.send_replace(true);
    }
}
