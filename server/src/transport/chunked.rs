//! `transfer-encoding: chunked` as an HTTP/1.1 event stream is written: each piece of the body
//! one chunk, its size line made without formatting machinery (this runs once per delivery).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::AsyncWrite;

/// A chunk's size line for `len` bytes of data: the size in hex, then CRLF, in the first of
/// the bytes returned (no formatting machinery: this runs once per delivery).
fn size_line(len: usize) -> ([u8; 20], usize) {
    let mut line = [0; 20];
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, byte) in line[..digits].iter_mut().enumerate() {
        let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
        *byte = b"0123456789abcdef"[nibble];
    }
    line[digits..digits + 2].copy_from_slice(b"\r\n");
    (line, digits + 2)
}

/// One chunk of `transfer-encoding: chunked` on its way out: size line, data, CRLF.
#[derive(Default)]
pub struct Chunk {
    /// The size line (hex, CRLF) in its first `line_len` bytes.
    size_line: [u8; 20],
    line_len: u8,
    /// Unwritten bytes at the end of the size line.
    size_left: u8,
    /// Unwritten bytes of the CRLF after the data.
    crlf_left: u8,
    data: Bytes,
    /// This is the last chunk (`0\r\n\r\n`).
    pub last: bool,
}

impl Chunk {
    pub fn data(data: Bytes) -> Self {
        let mut chunk = Chunk::default();
        if data.is_empty() {
            return chunk; // an empty chunk would end the body
        }
        let (line, len) = size_line(data.len());
        chunk.size_line = line;
        chunk.line_len = len as u8;
        chunk.size_left = len as u8;
        chunk.data = data;
        chunk.crlf_left = 2;
        chunk
    }

    pub fn last() -> Self {
        let mut chunk = Chunk::default();
        chunk.size_line[..5].copy_from_slice(b"0\r\n\r\n");
        chunk.line_len = 5;
        chunk.size_left = 5;
        chunk.last = true;
        chunk
    }

    /// Bytes already framed, `before`, and then what is left of this chunk, as one piece (a
    /// chunk a writer wrote in part before this one: see `shared_tcp.rs`).
    pub fn after(self, before: Bytes) -> Self {
        Chunk {
            data: self.bytes_after(&before),
            last: self.last,
            ..Chunk::default()
        }
    }

    /// What is left of this chunk as one buffer (size line, data, CRLF).
    pub fn into_bytes(self) -> Bytes {
        self.bytes_after(&[])
    }

    /// `before`, then what is left of this chunk, in one buffer.
    fn bytes_after(&self, before: &[u8]) -> Bytes {
        let (line, crlf) = (self.line_left(), self.crlf_left());
        let mut all = BytesMut::with_capacity(before.len() + line.len() + self.data.len() + 2);
        for part in [before, line, &self.data, crlf] {
            all.put_slice(part);
        }
        all.freeze()
    }

    /// The unwritten end of the size line.
    fn line_left(&self) -> &[u8] {
        &self.size_line[usize::from(self.line_len - self.size_left)..self.line_len.into()]
    }

    /// The unwritten end of the CRLF after the data.
    fn crlf_left(&self) -> &'static [u8] {
        &b"\r\n"[usize::from(2 - self.crlf_left)..]
    }

    pub fn is_empty(&self) -> bool {
        self.size_left == 0 && self.data.is_empty() && self.crlf_left == 0
    }

    /// Writes what is left, in as few writes as the socket takes.
    pub fn poll_write<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let slices = [
                IoSlice::new(self.line_left()),
                IoSlice::new(&self.data),
                IoSlice::new(self.crlf_left()),
            ];
            let mut n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let from_line = n.min(self.size_left.into());
            self.size_left -= from_line as u8;
            n -= from_line;
            let from_data = n.min(self.data.len());
            self.data.advance(from_data);
            n -= from_data;
            self.crlf_left -= n.min(self.crlf_left.into()) as u8;
        }
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncReadExt;

    /// A chunk's size line is its length in lower-case hex, at every number of digits.
    #[test]
    fn the_size_line_is_the_length_in_hex() {
        for len in [1usize, 9, 10, 15, 16, 255, 256, 4096, 0x12345, 0xfffff] {
            let chunk = Chunk::data(Bytes::from(vec![b'x'; len]));
            let line = &chunk.size_line[..chunk.line_len.into()];
            assert_eq!(line, format!("{len:x}\r\n").as_bytes(), "{len}");
        }
    }

    #[tokio::test]
    async fn chunks_survive_partial_writes() {
        // A writer that takes at most 3 bytes per call: every boundary gets split.
        let (client, mut server) = tokio::io::duplex(3);
        let writer = tokio::spawn(async move {
            let mut client = client;
            for data in [&b"hello"[..], b"", b"a longer frame\n\n"] {
                let mut chunk = Chunk::data(Bytes::from_static(data));
                poll_fn(|cx| chunk.poll_write(&mut client, cx))
                    .await
                    .unwrap();
            }
            let mut chunk = Chunk::last();
            poll_fn(|cx| chunk.poll_write(&mut client, cx))
                .await
                .unwrap();
        });
        let mut out = Vec::new();
        server.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "5\r\nhello\r\n10\r\na longer frame\n\n\r\n0\r\n\r\n"
        );
    }
}
