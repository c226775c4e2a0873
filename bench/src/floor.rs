//! `ringback-bench floor`: the least work a server can do per delivery on this machine, run
//! beside Ringback so every per-delivery figure has a ratio to it (issue 27).
//!
//! One thread and one epoll loop (mio). The frames published during a loop turn are written, as
//! one HTTP/1.1 chunk, to every subscriber's socket with one `write()`; nothing is kept: a
//! subscriber whose socket does not take the whole write is dropped (the load tool counts what
//! it loses). With TLS (the first byte of a connection says, as on Ringback's one port) a
//! subscriber's chunk is encrypted into its connection's buffer and written in one call. It
//! speaks just enough HTTP/1.1 for `ringback-bench load`: `GET /messages` (the stream),
//! `POST /messages` (`{"type":…,"data":…}` → the frame Ringback would send, `202`),
//! `GET /metrics` (its memory and CPU, as Ringback's names them), `GET /healthz`.
//! No limits, no resume, no heartbeats, no presence: a floor, not a server.

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// `ringback-bench floor` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct FloorArgs {
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:3395")]
    pub addr: SocketAddr,
    /// Where Ringback's development certificate is kept (made there if missing), for TLS.
    #[arg(long, default_value = "target/bench-data")]
    pub data_dir: std::path::PathBuf,
}

const LISTENER: Token = Token(usize::MAX);

/// One connection: its socket, its TLS session once it starts one, what it sent so far.
struct Conn {
    socket: TcpStream,
    tls: Option<rustls::ServerConnection>,
    /// The first read decides cleartext or TLS.
    sniffed: bool,
    input: Vec<u8>,
    subscriber: bool,
}

/// Runs the floor until the process is killed.
pub fn run(args: &FloorArgs) -> Result<String, String> {
    ringback::raise_open_files_limit();
    let mut tls =
        (*ringback::server_config(None, None, &args.data_dir).map_err(|e| e.to_string())?).clone();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tls = Arc::new(tls);
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut listener = TcpListener::bind(args.addr).map_err(|e| e.to_string())?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .map_err(|e| e.to_string())?;
    eprintln!("floor listening on {}", args.addr);
    let mut conns: slab::Slab<Conn> = slab::Slab::new();
    let mut events = Events::with_capacity(4096);
    let (mut next_id, mut pending) = (1u64, Vec::<u8>::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, None).map_err(|e| e.to_string())?;
        for event in &events {
            if event.token() == LISTENER {
                while let Ok((mut socket, _)) = listener.accept() {
                    let _ = socket.set_nodelay(true);
                    let entry = conns.vacant_entry();
                    let token = Token(entry.key());
                    if poll
                        .registry()
                        .register(&mut socket, token, Interest::READABLE)
                        .is_ok()
                    {
                        entry.insert(Conn {
                            socket,
                            tls: None,
                            sniffed: false,
                            input: Vec::new(),
                            subscriber: false,
                        });
                    }
                }
                continue;
            }
            let key = event.token().0;
            let Some(conn) = conns.get_mut(key) else {
                continue;
            };
            let open = conn.read(&mut buf, &tls)
                && conn.serve(&mut next_id, &mut pending)
                && conn.flush_tls();
            if !open {
                let mut conn = conns.remove(key);
                let _ = poll.registry().deregister(&mut conn.socket);
            }
        }
        if pending.is_empty() {
            continue;
        }
        // One chunk of this turn's frames, one write per subscriber.
        let mut chunk = format!("{:x}\r\n", pending.len()).into_bytes();
        chunk.extend_from_slice(&pending);
        chunk.extend_from_slice(b"\r\n");
        pending.clear();
        let mut dropped = Vec::new();
        for (key, conn) in conns.iter_mut().filter(|(_, c)| c.subscriber) {
            if !conn.send(&chunk) {
                dropped.push(key);
            }
        }
        for key in dropped {
            let mut conn = conns.remove(key);
            let _ = poll.registry().deregister(&mut conn.socket);
        }
    }
}

impl Conn {
    /// Reads what the socket has; false when the peer is gone.
    fn read(&mut self, buf: &mut [u8], tls: &Arc<rustls::ServerConfig>) -> bool {
        loop {
            match self.socket.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    if !self.sniffed {
                        self.sniffed = true;
                        if buf[0] == 0x16 {
                            match rustls::ServerConnection::new(tls.clone()) {
                                Ok(session) => self.tls = Some(session),
                                Err(_) => return false,
                            }
                        }
                    }
                    match self.tls.as_mut() {
                        None => self.input.extend_from_slice(&buf[..n]),
                        Some(session) => {
                            let mut bytes = &buf[..n];
                            while !bytes.is_empty() {
                                if session.read_tls(&mut bytes).is_err()
                                    || session.process_new_packets().is_err()
                                {
                                    return false;
                                }
                            }
                            let _ = session.reader().read_to_end(&mut self.input);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// Answers every complete request read; false to close.
    fn serve(&mut self, next_id: &mut u64, pending: &mut Vec<u8>) -> bool {
        while let Some(end) = find(&self.input, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&self.input[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if self.input.len() < end + 4 + length {
                return true;
            }
            let body: Vec<u8> = self.input[end + 4..end + 4 + length].to_vec();
            self.input.drain(..end + 4 + length);
            let line = head.lines().next().unwrap_or_default().to_owned();
            let reply = if line.starts_with("get /messages") {
                self.subscriber = true;
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-store\r\ntransfer-encoding: chunked\r\n\r\n".to_vec()
            } else if line.starts_with("post /messages") {
                match frame(&body, *next_id) {
                    Some(frame) => {
                        pending.extend_from_slice(&frame);
                        *next_id += 1;
                        response("202 Accepted", &format!("{{\"id\":{}}}", *next_id - 1))
                    }
                    None => response("400 Bad Request", "{\"error\":\"bad message\"}"),
                }
            } else if line.starts_with("get /metrics") {
                let p = ringback::process_stats();
                let (rss, cpu) = p.map_or((0, 0.0), |p| (p.rss_bytes, p.cpu_seconds));
                response(
                    "200 OK",
                    &format!(
                        "process_resident_memory_bytes {rss}\nprocess_cpu_seconds_total {cpu}\n"
                    ),
                )
            } else if line.starts_with("get /healthz") {
                response("200 OK", "ok")
            } else {
                response("404 Not Found", "")
            };
            if !self.send(&reply) {
                return false;
            }
        }
        true
    }

    /// Writes `bytes` with one write (encrypted first over TLS); false if the socket did not
    /// take them all: nothing is kept for later.
    fn send(&mut self, bytes: &[u8]) -> bool {
        match self.tls.as_mut() {
            None => matches!(self.socket.write(bytes), Ok(n) if n == bytes.len()),
            Some(session) => session.writer().write_all(bytes).is_ok() && self.flush_tls(),
        }
    }

    /// Writes what the TLS session has to send; false if the socket did not take it all.
    fn flush_tls(&mut self) -> bool {
        let Some(session) = self.tls.as_mut() else {
            return true;
        };
        while session.wants_write() {
            match session.write_tls(&mut self.socket) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(_) => return false,
            }
        }
        true
    }
}

/// A published message's frame, made by Ringback's own encoder (`ringback::Message`).
fn frame(body: &[u8], id: u64) -> Option<Bytes> {
    let message: serde_json::Value = serde_json::from_slice(body).ok()?;
    let channel = message.get("type")?.as_str()?;
    let data_json = serde_json::to_vec(message.get("data")?).ok()?;
    let time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let message = ringback::Message {
        id,
        time,
        channel,
        data_json: &data_json,
        extra_json: b"",
        announce: false,
    };
    Some(message.encode().0)
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The floor sends the frame Ringback would, and refuses what Ringback refuses as a message.
    #[test]
    fn a_published_message_becomes_ringbacks_frame() {
        let frame = frame(br#"{"type":"load","data":{"t":1,"n":2}}"#, 7).unwrap();
        let text = String::from_utf8(frame.to_vec()).unwrap();
        let data = text
            .strip_prefix("id: 7\nevent: load\ndata: ")
            .and_then(|t| t.strip_suffix("\n\n"))
            .unwrap();
        let json: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(json["id"], 7);
        assert_eq!(json["data"], serde_json::json!({"t": 1, "n": 2}));
        assert!(json["time"].as_u64().is_some());
        assert!(frame_of(br#"{"data":1}"#).is_none());
        assert!(frame_of(b"not json").is_none());
    }

    fn frame_of(body: &[u8]) -> Option<Bytes> {
        frame(body, 1)
    }
}
