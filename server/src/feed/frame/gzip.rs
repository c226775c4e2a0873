//! Event streams compressed once for every subscriber (gzip, RFC 1952 around RFC 1951 deflate).
//!
//! Each frame is deflated at most twice, whatever the number of subscribers:
//!
//! - by the **shared** compressor, which runs over the feed's public frames in order and is
//!   sync-flushed after each (its output for a frame ends on a byte boundary, so the frame can be
//!   delivered at once), its back-references reaching into the frames before it: this is where
//!   a feed of similar JSON objects gets small. Every `reset_every` frames the compressor is
//!   *fully* flushed before a frame (its window emptied), and before the first frame after
//!   `reset_after` without one: nothing from that frame on refers to anything before it, so a
//!   subscriber can join the shared stream there, soon in a fast feed and in a slow one;
//! - **alone**, by a compressor reset before each frame: its output refers to nothing before it,
//!   so it decodes after whatever the subscriber's decoder has seen.
//!
//! A frame's alone output is made the first time a stream needs it (a stream that joined since
//! the last reset point, a filtered one, a frame appended while no stream was compressed), once
//! for all of them; while no subscriber reads a compressed stream, the shared compressor rests
//! (a stream that starts asks for a reset point with its first frames, as a stream's own frames
//! always do). A list with compression on and no browser asking for it does no compression work.
//!
//! A subscriber ([`GzipStream`]) holds no compressor, only where it stands: its stream is the gzip
//! header, then each frame's *alone* output until a reset point, and from there the *shared*
//! output, as long as it receives exactly the shared stream's frames. Anything else it receives
//! (a private frame, a heartbeat, presence, a gap, the preamble: compressed alone too) shifts
//! what its decoder's window holds against the shared compressor's, so it goes back to the
//! alone outputs until the next reset point. A filtered subscriber, which skips frames of the
//! shared stream, always takes the alone outputs. The end of the stream is a final empty block
//! and the trailer: the CRC-32 of everything the subscriber received, combined from each
//! frame's (no byte is read twice: [`Crc`]), and its length. A delivery hands over the chosen
//! output as the list's shared bytes, as a plain stream's does, not a copy.

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress, Status};
use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::time::Instant;

/// The compression level: zlib's default, most of level 9's ratio on short JSON frames.
pub const LEVEL: u32 = 6;
/// Shared frames between two reset points at most...
pub const RESET_EVERY: usize = 64;
/// ...and time since the last one, so a subscriber of a slow feed is soon in step.
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// The gzip header every compressed stream starts with: deflate, no flags, no time, OS unknown.
pub const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// A final, empty deflate block (fixed Huffman codes: `BFINAL=1, BTYPE=01`, then end of block).
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// One frame's compressed forms: the shared one made when it is appended, the alone one the
/// first time a stream needs it.
#[derive(Clone, Debug)]
pub struct Deflated {
    /// The shared compressor's output for the frame; `None` for a frame outside the shared
    /// stream (a private channel's, or one appended while the shared compressor rested).
    pub shared: Option<Bytes>,
    /// Whether the shared compressor's window was emptied just before this frame: from here on,
    /// a subscriber may take the shared outputs.
    pub reset: bool,
    /// The frame deflated alone, once made.
    alone: OnceLock<Bytes>,
    /// The frame's CRC-32, for the subscriber's trailer.
    pub crc: Crc,
}

impl Deflated {
    /// The bytes made when the frame was appended (counted against the history's byte bound).
    pub fn size(&self) -> usize {
        self.shared.as_ref().map_or(0, Bytes::len)
    }

    /// The frame (`plain`, which these forms are of) deflated alone: made by the first stream
    /// that needs it, which adds its length to `made` (the history counts it), then shared.
    pub fn alone(&self, plain: &[u8], made: &AtomicUsize) -> &Bytes {
        self.alone.get_or_init(|| {
            let alone = alone(plain);
            made.fetch_add(alone.len(), Ordering::Relaxed);
            alone
        })
    }

    /// The length of the alone output, if it was made.
    pub fn alone_made(&self) -> usize {
        self.alone.get().map_or(0, Bytes::len)
    }
}

/// The feed's shared compressor, and when it empties its window. (A frame's alone form is made
/// by [`alone`], this thread's compressor.)
pub struct Deflater {
    shared: Compress,
    /// Frames the shared compressor has taken since its window was last emptied.
    since_reset: usize,
    reset_every: usize,
    /// When the window was last emptied, and how long it may go without.
    reset_at: Instant,
    reset_after: Duration,
}

impl Deflater {
    /// Compressors at `level` (0–9) whose shared window is emptied every `reset_every` frames
    /// and before the first frame `reset_after` after the last reset.
    pub fn new(level: u32, reset_every: usize, reset_after: Duration) -> Self {
        let level = Compression::new(level.min(9));
        Deflater {
            shared: Compress::new(level, false),
            // The first shared frame starts a stream: it is a reset point.
            since_reset: usize::MAX,
            reset_every: reset_every.max(1),
            reset_at: Instant::now(),
            reset_after,
        }
    }

    /// The compressed forms of `frame` made now; `shared`: the frame joins the shared stream
    /// (every public frame does while a stream is compressed); `reset`: its window is emptied
    /// before this frame whatever the count and the time (subscribers went out of step and want
    /// back in).
    pub fn deflate(&mut self, frame: &[u8], shared: bool, reset: bool) -> Deflated {
        let (shared, reset) = if shared {
            let now = Instant::now();
            let reset = reset
                || self.since_reset >= self.reset_every
                || now.duration_since(self.reset_at) >= self.reset_after;
            let mut out = BytesMut::new();
            if reset {
                // Empties the window: what follows refers to nothing before (an empty stored
                // block, part of this frame's output). Before the first frame the compressor is
                // fresh: nothing to flush.
                if self.since_reset != usize::MAX {
                    out.put(run(&mut self.shared, &[], FlushCompress::Full));
                }
                self.since_reset = 0;
                self.reset_at = now;
            }
            self.since_reset += 1;
            out.put(run(&mut self.shared, frame, FlushCompress::Sync));
            (Some(out.freeze()), reset)
        } else {
            (None, false)
        };
        Deflated {
            shared,
            reset,
            alone: OnceLock::new(),
            crc: Crc::of(frame),
        }
    }
}

/// `frame` deflated alone, by this thread's compressor (reset first): it decodes after anything.
/// For a frame of the list the first time a stream needs it, and for every frame of one stream's
/// own (its preamble, a gap, an ending).
pub fn alone(frame: &[u8]) -> Bytes {
    thread_local! {
        static ALONE: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
    }
    ALONE.with(|compress| {
        let mut compress = compress.borrow_mut();
        compress.reset();
        run(&mut compress, frame, FlushCompress::Sync)
    })
}

/// A control frame's forms for a compressed stream: deflated alone, and its CRC-32.
#[derive(Clone, Debug)]
pub struct Alone {
    pub deflated: Bytes,
    pub crc: Crc,
}

impl Alone {
    pub fn new(frame: &[u8]) -> Self {
        Alone {
            deflated: alone(frame),
            crc: Crc::of(frame),
        }
    }
}

/// A piece's CRC-32, with what appending it to a stream's CRC takes: the CRC of `A` then `B` is
/// `(x^(8·len B) · crc(A)) mod P  xor  crc(B)` over GF(2) (zlib's `crc32_combine`), and the
/// factor `x^(8·len B) mod P` is made once per piece, so a delivery's part is one carry-less
/// multiplication (~32 shifts), not the O(log n) squarings of combining from scratch.
#[derive(Clone, Copy, Debug)]
pub struct Crc {
    crc: u32,
    /// `x^(8·len) mod P`.
    shift: u32,
    len: u32,
}

/// The CRC-32 polynomial, reflected.
const POLY: u32 = 0xedb8_8320;

impl Crc {
    pub fn of(piece: &[u8]) -> Self {
        let len = u32::try_from(piece.len()).unwrap_or(u32::MAX);
        Crc {
            crc: crc32fast::hash(piece),
            shift: x8n_mod_p(u64::from(len)),
            len,
        }
    }

    /// The CRC-32 of what `acc` covers followed by this piece.
    fn after(&self, acc: u32) -> u32 {
        mult_mod_p(self.shift, acc) ^ self.crc
    }

    /// The CRC of this piece followed by `next`: a run of frames, appended to a stream's CRC
    /// with one multiplication whatever its length.
    pub fn then(&self, next: Crc) -> Crc {
        Crc {
            crc: next.after(self.crc),
            // x^(8·(a+b)) = x^(8·a) · x^(8·b)
            shift: mult_mod_p(self.shift, next.shift),
            len: self.len.wrapping_add(next.len),
        }
    }
}

/// `a · b mod P` over GF(2), in CRC-32's reflected bit order (zlib's `multmodp`).
fn mult_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
}

/// `x^(8·n) mod P` (zlib's `x2nmodp(n, 3)`).
fn x8n_mod_p(mut n: u64) -> u32 {
    // x^(2^k) mod P for k = 3, 4, …: x^8 first, each the square of the one before.
    let mut power = 1u32 << (31 - 8);
    let mut p = 1u32 << 31; // x^0
    while n != 0 {
        if n & 1 != 0 {
            p = mult_mod_p(power, p);
        }
        power = mult_mod_p(power, power);
        n >>= 1;
    }
    p
}

/// The heartbeat's forms, made once.
pub fn heartbeat() -> &'static Alone {
    static HEARTBEAT: OnceLock<Alone> = OnceLock::new();
    HEARTBEAT.get_or_init(|| Alone::new(super::HEARTBEAT))
}

/// Runs `compress` over all of `input` and flushes as `flush` says.
fn run(compress: &mut Compress, input: &[u8], flush: FlushCompress) -> Bytes {
    let mut out = Vec::with_capacity(input.len() + input.len() / 8 + 64);
    let start_in = compress.total_in();
    loop {
        let taken = usize::try_from(compress.total_in() - start_in).unwrap_or(usize::MAX);
        let status = compress
            .compress_vec(&input[taken.min(input.len())..], &mut out, flush)
            .unwrap_or(Status::StreamEnd);
        let done = compress.total_in() - start_in == input.len() as u64;
        // A flush is complete when the output did not fill: zlib had room to finish it.
        if (done && out.len() < out.capacity()) || status == Status::StreamEnd {
            return Bytes::from(out);
        }
        out.reserve(out.capacity().max(64));
    }
}

/// What a subscriber of a compressed stream has received: whether its decoder is in step with
/// the shared compressor, and the CRC-32 and length of everything so far.
#[derive(Default, Clone, Copy, Debug)]
pub struct GzipStream {
    started: bool,
    in_step: bool,
    crc: u32,
    /// Bytes received, modulo 2^32 (the trailer's ISIZE).
    len: u32,
}

impl GzipStream {
    /// The output of a message frame this subscriber is sent next: its shared output when the
    /// subscriber's decoder is in step (or comes into step at a reset point) and it reads the
    /// whole shared stream (`whole`: no filter), else its alone output. The list's own bytes,
    /// handed over without a copy; the header, if not sent yet, must go before them
    /// ([`GzipStream::header`]).
    ///
    /// `plain` is the frame `forms` are of; the alone output, made if it was not yet, adds its
    /// length to `made`.
    pub fn take<'a>(
        &mut self,
        plain: &[u8],
        forms: &'a Deflated,
        whole: bool,
        made: &AtomicUsize,
    ) -> &'a Bytes {
        self.add(forms.crc);
        match &forms.shared {
            Some(shared) if whole && (self.in_step || forms.reset) => {
                self.in_step = true;
                shared
            }
            _ => {
                // Outside the shared stream, or not in step with it: alone, and out of step
                // (this frame's plain text is not where the shared compressor has it).
                self.in_step = false;
                forms.alone(plain, made)
            }
        }
    }

    /// Whether the shared outputs of the frames that follow in the shared stream may go to it
    /// as they are: its header is sent and its decoder is in step (the list's writers write
    /// only these, [`GzipStream::took_shared`]).
    pub fn takes_shared(&self) -> bool {
        self.started && self.in_step
    }

    /// It was sent the shared outputs of a run of frames whose plain text's CRC is `run` (the
    /// frames' [`Crc::then`]); only when it [`takes_shared`](GzipStream::takes_shared).
    pub fn took_shared(&mut self, run: Crc) {
        debug_assert!(self.takes_shared());
        self.add(run);
    }

    /// The gzip header, the first time it is asked for.
    pub fn header(&mut self) -> Option<&'static [u8]> {
        (!std::mem::replace(&mut self.started, true)).then_some(&HEADER[..])
    }

    /// Appends a frame outside the shared stream (a heartbeat, presence, a gap), deflated
    /// alone; the subscriber is out of step until the next reset point.
    pub fn other(&mut self, out: &mut BytesMut, frame: &Alone) {
        self.start(out);
        self.in_step = false;
        out.put_slice(&frame.deflated);
        self.add(frame.crc);
    }

    /// The end of the stream: a final block and the trailer.
    pub fn finish(&mut self, out: &mut BytesMut) {
        self.start(out);
        out.put_slice(&FINAL_BLOCK);
        out.put_u32_le(self.crc);
        out.put_u32_le(self.len);
    }

    fn start(&mut self, out: &mut BytesMut) {
        if let Some(header) = self.header() {
            out.put_slice(header);
        }
    }

    fn add(&mut self, piece: Crc) {
        self.len = self.len.wrapping_add(piece.len);
        self.crc = piece.after(self.crc);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::io::Read;

    /// Appends what `stream` is sent for `plain` (whose forms are `forms`), as a batch gathers
    /// it (the header first).
    fn send(
        stream: &mut GzipStream,
        out: &mut BytesMut,
        plain: &[u8],
        forms: &Deflated,
        whole: bool,
    ) {
        if let Some(header) = stream.header() {
            out.put_slice(header);
        }
        out.put_slice(stream.take(plain, forms, whole, &AtomicUsize::new(0)));
    }

    fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes).read_to_end(&mut out)?;
        Ok(out)
    }

    /// A feed of JSON objects with repeated keys, like notifications or price ticks.
    fn tick(i: usize, channel: &str) -> Vec<u8> {
        format!(
            "id: {i}\nevent: {channel}\ndata: {{\"id\":{i},\"type\":\"{channel}\",\"data\":{{\"symbol\":\"ACME\",\"price\":{}.{:02},\"volume\":{}}},\"time\":{}}}\n\n",
            100 + i % 7,
            i % 100,
            1000 + i * 37 % 500,
            1_795_000_000_000u64 + i as u64 * 250,
        )
        .into_bytes()
    }

    #[test]
    fn crcs_combine_as_the_whole_ones() {
        let pieces: [&[u8]; 4] = [
            b"",
            b"id: 1\nevent: blue\n",
            &[0xffu8; 300],
            b"data: {}\n\n",
        ];
        let mut acc = 0;
        let mut whole = Vec::new();
        for piece in pieces {
            acc = Crc::of(piece).after(acc);
            whole.extend_from_slice(piece);
            assert_eq!(acc, crc32fast::hash(&whole));
        }
        // A run's CRC, made by `then`, appends as its pieces one by one do.
        let run = pieces[1..]
            .iter()
            .fold(Crc::of(pieces[0]), |run, p| run.then(Crc::of(p)));
        let start = crc32fast::hash(b"before");
        let by_one = pieces.iter().fold(start, |acc, p| Crc::of(p).after(acc));
        assert_eq!(run.after(start), by_one);
        assert_eq!(run.len as usize, whole.len());
    }

    #[test]
    fn a_stream_that_joins_mid_feed_decodes_and_shrinks_once_in_step() {
        let mut deflater = Deflater::new(6, 16, Duration::from_secs(3600));
        let frames: Vec<(Vec<u8>, Deflated)> = (0..200)
            .map(|i| {
                let frame = tick(i, "blue");
                let d = deflater.deflate(&frame, true, false);
                (frame, d)
            })
            .collect();
        let mut stream = GzipStream::default();
        let mut out = BytesMut::new();
        let mut plain = Vec::new();
        for (frame, d) in &frames[37..] {
            send(&mut stream, &mut out, frame, d, true);
            plain.extend_from_slice(frame);
        }
        stream.finish(&mut out);
        assert_eq!(gunzip(&out).unwrap(), plain);
        // Steady, a frame of this feed is ~3× smaller; the frames before the first reset point
        // after joining go alone (~1.1×).
        assert!(
            out.len() * 2 < plain.len(),
            "{} bytes for {} plain",
            out.len(),
            plain.len()
        );
    }

    /// What one subscriber does at each step of a random feed.
    #[derive(Clone, Debug)]
    enum Step {
        /// A frame on channel `0..3` (channel 3 is private), a reset point asked for or not.
        Publish(u8, bool),
        /// A public frame appended while the shared compressor rests (it raced a subscriber's
        /// start: the subscriber reads it, though none was compressed when it was appended).
        Rested,
        /// A control frame reaches this subscriber.
        Other,
    }

    proptest! {
        #[test]
        fn every_subscriber_decodes_exactly_its_plain_stream(
            steps in proptest::collection::vec(
                prop_oneof![
                    4 => (0u8..4, proptest::bool::weighted(0.1)).prop_map(|(c, r)| Step::Publish(c, r)),
                    1 => Just(Step::Other),
                    1 => Just(Step::Rested),
                ],
                1..160,
            ),
            reset_every in 1usize..24,
            subscribers in proptest::collection::vec(
                // Joins at step, reads channel (None: all), granted the private channel.
                (0usize..160, proptest::option::of(0u8..4), any::<bool>()),
                1..6,
            ),
        ) {
            let mut deflater = Deflater::new(6, reset_every, Duration::from_secs(3600));
            let mut streams: Vec<(GzipStream, BytesMut, Vec<u8>)> = subscribers
                .iter()
                .map(|_| Default::default())
                .collect();
            for (i, step) in steps.iter().enumerate() {
                match step {
                    Step::Publish(..) | Step::Rested => {
                        let (channel, private) = match step {
                            Step::Publish(channel, _) => (*channel, *channel == 3),
                            _ => (0, false),
                        };
                        let frame = tick(i, &format!("c{channel}"));
                        let d = match step {
                            Step::Publish(_, reset) => deflater.deflate(&frame, !private, *reset),
                            _ => deflater.deflate(&frame, false, false),
                        };
                        for ((stream, out, plain), (join, filter, granted)) in
                            streams.iter_mut().zip(&subscribers)
                        {
                            let wants = i >= *join
                                && filter.is_none_or(|f| f == channel)
                                && (!private || *granted);
                            if wants {
                                send(stream, out, &frame, &d, filter.is_none());
                                plain.extend_from_slice(&frame);
                            }
                        }
                    }
                    Step::Other => {
                        let frame = format!(": {i}\n\n").into_bytes();
                        let other = Alone::new(&frame);
                        for ((stream, out, plain), (join, ..)) in streams.iter_mut().zip(&subscribers) {
                            if i >= *join {
                                stream.other(out, &other);
                                plain.extend_from_slice(&frame);
                            }
                        }
                    }
                }
            }
            for (stream, out, plain) in &mut streams {
                stream.finish(out);
                prop_assert_eq!(gunzip(out).unwrap(), plain.clone());
            }
        }
    }
}
