//! The hostile clients Ringback's attack tests (`server/tests/`) and its load tool
//! (`ringback-bench load --attack`, its stalled subscribers) both open. A client of the server
//! over the network, nothing of the server's own: the server's tests depend on this crate, not
//! on the load tool.

use std::net::{Ipv4Addr, SocketAddr};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `source` whose receive buffer is small (4 KiB): what the server writes to
/// a client that does not read stays on the server's side. The stalled and hostile clients of
/// the load tool and of the server's tests all connect this way.
pub async fn small_socket(server: SocketAddr, source: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    socket.bind(SocketAddr::from((source, 0)))?;
    socket.connect(server).await
}

/// One HTTP/2 frame.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(0).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A cleartext HTTP/2 client in raw frames: every window opened to 2^31-1, `streams` requests
/// for the event stream, and then it never reads (the bytes to send, after which the client
/// sends nothing and reads nothing).
pub fn stalling_h2_client(streams: u32, authority: &str) -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    let mut settings = vec![0, 2, 0, 0, 0, 0, 0, 4];
    settings.extend_from_slice(&0x7fff_ffffu32.to_be_bytes());
    out.extend(frame(4, 0, 0, &settings));
    out.extend(frame(8, 0, 0, &(0x7fff_ffffu32 - 65_535).to_be_bytes()));
    // HPACK, static table: :method GET, :scheme http; literal :path and :authority.
    let mut block = vec![0x82, 0x86, 0x04, 9];
    block.extend_from_slice(b"/messages");
    let authority = &authority.as_bytes()[..authority.len().min(127)];
    block.extend_from_slice(&[0x01, authority.len() as u8]);
    block.extend_from_slice(authority);
    for i in 0..streams {
        out.extend(frame(1, 0x4 | 0x1, 2 * i + 1, &block));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stalling_client_is_well_formed() {
        let bytes = stalling_h2_client(2, "t");
        assert!(bytes.starts_with(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        // Walk the frames after the preface: SETTINGS, WINDOW_UPDATE, two HEADERS on 1 and 3.
        let mut at = 24;
        let mut seen = Vec::new();
        while at < bytes.len() {
            let len = u32::from_be_bytes([0, bytes[at], bytes[at + 1], bytes[at + 2]]) as usize;
            let stream = u32::from_be_bytes(bytes[at + 5..at + 9].try_into().unwrap());
            seen.push((bytes[at + 3], stream));
            at += 9 + len;
        }
        assert_eq!(at, bytes.len());
        assert_eq!(seen, vec![(4, 0), (8, 0), (1, 1), (1, 3)]);
    }
}
