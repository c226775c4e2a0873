//! Direct writes: a new frame written to every waiting subscriber's socket in one pass, without
//! waking each subscriber's task.
//!
//! A subscriber whose connection can take frames from outside its task (a
//! [`DirectWriter`](crate::runtime::connection::DirectWriter): HTTP/1.1 over cleartext TCP)
//! *parks* when it has read everything: it leaves its cursor here and waits. On each append a
//! few writer tasks (one per runtime worker but one, each with its share of the parked
//! subscribers) read the new frames once and write them to each parked subscriber's socket with
//! one non-blocking call, advancing its cursor; frames appended while a pass runs go together
//! in the next (a pass gives way to other tasks at tokio's cooperative budget, so publishers
//! are not held up by it). A subscriber is *handed back* to its own task (woken, and it reads
//! from its cursor as before) whenever that is not simple: its socket did not take the whole
//! write, it stands before the last pass, the frames are more than one batch, or the presence
//! counts changed. Its task also takes itself back whenever it wakes for anything else (a
//! heartbeat, its end, a source change, shutdown): a subscriber's socket is written by its task
//! or by a writer, never both, because a writer writes only a parked subscriber, under the lock
//! that parking and unparking take.
//!
//! Per delivery this costs what the floor costs (one write) plus a lock and a few loads; the
//! task's wake-up, its poll of every source it waits on, and the driver's poll are gone. Every
//! bound stays where it was: the write deadline, cuts and budgets apply to the task's writes,
//! and a socket that is not taking a write is handed back to them.
//!
//! A compressed stream is written too while its decoder is in step with the list's shared
//! compressor (see `feed::frame::gzip`): it takes the frames' shared outputs, one piece for
//! every such stream, and its state (the CRC and length its trailer will carry) is kept here
//! while it is parked. Out of step (after its own heartbeat, until the next reset point) it is
//! handed back, and its task sends the frames' alone outputs as before.
//!
//! Why not for every subscriber: a filtered or granted one reads its own selection; its task
//! reads for it as before.

use super::history::PublicFrame;
use super::registry::Slot;
use super::Shared;
use crate::feed::frame::gzip::{Crc, GzipStream};
use crate::runtime::connection::{WriteNow, Written};
use crate::runtime::lock::{MutexExt, RwLockExt};
use bytes::{Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use tokio::sync::watch;
use tokio::time::Instant;

/// The most bytes a writer hands one socket in one pass; more waiting frames than this, and
/// the subscribers are handed back to their tasks, which batch as they always have.
const MAX_PASS_BYTES: usize = 64 * 1024;

/// The writers and the parked subscribers they serve, made at the first direct subscriber.
pub(super) struct Writers {
    shards: Box<[Mutex<Shard>]>,
    /// The shard of the next subscriber: round the shards in turn.
    next: AtomicUsize,
}

/// One writer's subscribers, in a vector whose free places are reused.
#[derive(Default)]
struct Shard {
    parkings: Vec<Option<Arc<Parking>>>,
    free: Vec<usize>,
}

/// One direct subscriber: where its frames go and, while it is parked, its cursor.
pub(super) struct Parking {
    writer: Arc<dyn WriteNow>,
    slot: Arc<Slot>,
    /// The most bytes its stream takes in one piece.
    max_bytes: u32,
    shard: u32,
    index: u32,
    state: Mutex<ParkState>,
}

struct ParkState {
    /// Its task is waiting and the writers write for it.
    parked: bool,
    cursor: u64,
    /// The presence changes its task has sent: a newer one is its task's to send.
    presence_seen: u64,
    /// When a writer last wrote for it (its task's heartbeat is due a period after).
    written: Option<Instant>,
    waker: Option<Waker>,
    /// A compressed stream's state while parked (its task's the rest of the time).
    gzip: Option<GzipStream>,
}

impl Writers {
    /// Starts the writers for the list `shared`: one per runtime worker but one. Each sends on
    /// the worker it runs on, so writers on every worker would leave none for the publishers
    /// and the other connections while passes run; and senders in parallel contend for the
    /// kernel's locks on the receivers' side (on two cores, two writers took 1.27× the CPU of
    /// one at 1,000 subscribers × 800 msg/s, and had 5× its p99).
    pub(super) fn start(shared: &Arc<Shared>) -> Writers {
        let workers = tokio::runtime::Handle::current().metrics().num_workers();
        let n = workers.saturating_sub(1).max(1);
        for shard in 0..n {
            let mut head = shared.head.subscribe();
            let newest = *head.borrow_and_update();
            tokio::spawn(write(Arc::downgrade(shared), head, newest, shard));
        }
        Writers {
            shards: (0..n).map(|_| Mutex::default()).collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Registers a subscriber whose frames `writer` takes, at `cursor`.
    pub(super) fn register(
        &self,
        writer: Arc<dyn WriteNow>,
        slot: Arc<Slot>,
        max_bytes: usize,
        cursor: u64,
    ) -> Arc<Parking> {
        let shard = self.next.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        let mut parkings = self.shards[shard].lock_or_recover();
        let index = parkings.free.pop().unwrap_or(parkings.parkings.len());
        let parking = Arc::new(Parking {
            writer,
            slot,
            max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
            shard: shard as u32,
            index: index as u32,
            state: Mutex::new(ParkState {
                parked: false,
                cursor,
                presence_seen: 0,
                written: None,
                waker: None,
                gzip: None,
            }),
        });
        if index == parkings.parkings.len() {
            parkings.parkings.push(Some(parking.clone()));
        } else {
            parkings.parkings[index] = Some(parking.clone());
        }
        parking
    }

    /// Unregisters a subscriber (it is gone).
    pub(super) fn unregister(&self, parking: &Parking) {
        let mut shard = self.shards[parking.shard as usize].lock_or_recover();
        shard.parkings[parking.index as usize] = None;
        shard.free.push(parking.index as usize);
    }
}

impl Parking {
    /// Parks the subscriber at `cursor`, having sent `presence_seen` presence changes (and, on
    /// a compressed stream, standing at `gzip`): the writers write for it from now on.
    pub(super) fn park(&self, cursor: u64, presence_seen: u64, gzip: Option<GzipStream>) {
        let mut state = self.state.lock_or_recover();
        state.parked = true;
        state.cursor = cursor;
        state.presence_seen = presence_seen;
        state.gzip = gzip;
    }

    /// Ready once a writer has handed the subscriber back to its task.
    pub(super) fn poll_handed_back(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.state.lock_or_recover();
        if !state.parked {
            return Poll::Ready(());
        }
        if !state
            .waker
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            state.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Takes the subscriber back (parked or handed back): its cursor now, and its compressed
    /// stream's state.
    pub(super) fn unpark(&self) -> (u64, Option<GzipStream>) {
        let mut state = self.state.lock_or_recover();
        state.parked = false;
        state.waker = None;
        (state.cursor, state.gzip.take())
    }

    /// When a writer last wrote for the subscriber, if one has since this was last asked.
    pub(super) fn take_written(&self) -> Option<Instant> {
        self.state.lock_or_recover().written.take()
    }
}

/// A writer: on each change of the list (an append, new presence counts), one pass over its
/// shard's parked subscribers. `newest`: the newest id when `head` was last seen. Ends with the
/// list.
async fn write(list: Weak<Shared>, mut head: watch::Receiver<u64>, newest: u64, shard: usize) {
    let mut scratch = Scratch::default();
    // The newest id at the last pass: where the subscribers it left parked stand.
    let mut base = newest;
    while head.changed().await.is_ok() {
        let Some(shared) = list.upgrade() else {
            return;
        };
        // Seen before reading, so a change while this pass runs brings another pass.
        head.borrow_and_update();
        base = pass(&shared, shard, base, &mut scratch).await;
    }
}

/// Writes to every parked subscriber of `shard` the public frames after its cursor, if it
/// stands at `base` or after, and hands back the ones that cannot take them so; returns the
/// newest id.
async fn pass(shared: &Shared, shard: usize, base: u64, scratch: &mut Scratch) -> u64 {
    let presence = shared.presence.version();
    let (newest, whole) = {
        let state = shared.state.read_or_recover();
        let history = &state.history;
        let whole = history.public_after(base, MAX_PASS_BYTES, &mut scratch.frames);
        (history.newest, whole)
    };
    let Some(writers) = shared.writers.get() else {
        return newest;
    };
    let Scratch {
        frames,
        pieces,
        shared_pieces,
        parkings,
    } = scratch;
    pieces.clear();
    pieces.resize(frames.len(), None);
    shared_pieces.clear();
    shared_pieces.resize(frames.len(), None);
    // A snapshot, so subscribers come and go while the pass writes.
    parkings.extend(
        writers.shards[shard]
            .lock_or_recover()
            .parkings
            .iter()
            .flatten()
            .cloned(),
    );
    let now = Instant::now();
    let mut delivered = 0;
    for parking in parkings.drain(..) {
        // A long pass gives way now and then: the publishers run meanwhile, and the frames
        // they append wait for the next pass, which writes them together.
        tokio::task::coop::consume_budget().await;
        // Held by its task, which is parking (and then looks for new frames itself) or
        // taking itself back.
        let Some(mut state) = parking.state.try_lock_or_recover() else {
            continue;
        };
        // At `newest` or after it (it read newer frames, or presence counts, for itself while
        // this pass gave way, and parked again): nothing of this pass's is for it, and its
        // cursor stays.
        if !state.parked || (state.cursor >= newest && state.presence_seen >= presence) {
            continue;
        }
        let mut written = Written::Nothing;
        if whole && state.cursor >= base && state.presence_seen >= presence {
            // Its frames: those after its cursor, as one piece made once per place (on a
            // compressed stream in step with the shared compressor, their shared outputs).
            let first = frames.partition_point(|f| f.id <= state.cursor);
            let count = (frames.len() - first) as u64;
            let piece = match &state.gzip {
                None => piece(frames, pieces, first, |f| Some((&f.frame, None))),
                Some(stream) if stream.takes_shared() => piece(frames, shared_pieces, first, |f| {
                    f.shared.as_ref().map(|(bytes, crc)| (bytes, Some(*crc)))
                }),
                Some(_) => Piece::Unwritable,
            };
            written = match piece {
                Piece::Empty => Written::Whole, // only private frames: nothing for it
                Piece::Bytes(bytes, _) if bytes.len() <= parking.max_bytes as usize => {
                    parking.writer.write_now(bytes)
                }
                Piece::Bytes(..) | Piece::Unwritable => Written::Nothing,
            };
            if written != Written::Nothing {
                delivered += count;
                if let (Piece::Bytes(_, Some(run)), Some(stream)) = (piece, state.gzip.as_mut()) {
                    stream.took_shared(run);
                }
            }
        }
        if written != Written::Nothing {
            state.cursor = newest;
            state.written = Some(now);
            parking.slot.cursor.store(newest, Ordering::Release);
        }
        if written != Written::Whole {
            state.parked = false;
            let waker = state.waker.take();
            drop(state);
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
    if delivered > 0 {
        let out = &shared.metrics.messages_out;
        out.fetch_add(delivered, Ordering::Relaxed);
    }
    newest
}

/// A writer's buffers, kept from pass to pass.
#[derive(Default)]
struct Scratch {
    /// The public frames after the pass's base.
    frames: Vec<PublicFrame>,
    /// The frames from each index on as one piece, made when first needed.
    pieces: Vec<Option<Made>>,
    /// The same for compressed streams: the frames' shared outputs (`None` inside: one of
    /// them has none).
    shared_pieces: Vec<Option<Made>>,
    /// The shard's subscribers.
    parkings: Vec<Arc<Parking>>,
}

/// A piece as made: its bytes and, on a compressed stream, its plain text's CRC; `None` if it
/// cannot be made.
type Made = Option<(Bytes, Option<Crc>)>;

/// What a subscriber is to be sent.
#[derive(Clone, Copy)]
enum Piece<'a> {
    /// Nothing: no frame after its cursor.
    Empty,
    /// These bytes, and on a compressed stream the CRC of their plain text.
    Bytes(&'a Bytes, Option<Crc>),
    /// What it is to be sent is not in one piece here: its task reads it.
    Unwritable,
}

/// `frames` from `first` on, each in the form `form` gives (its bytes and, on a compressed
/// stream, its plain text's CRC; `None`: it has none), as one piece made once per place: the
/// frame's own bytes when it is one. `Unwritable` if a frame has no such form.
fn piece<'a>(
    frames: &[PublicFrame],
    pieces: &'a mut [Option<Made>],
    first: usize,
    form: impl Fn(&PublicFrame) -> Option<(&Bytes, Option<Crc>)>,
) -> Piece<'a> {
    let Some(rest) = frames.get(first..).filter(|rest| !rest.is_empty()) else {
        return Piece::Empty;
    };
    let made = pieces[first].get_or_insert_with(|| {
        if let [one] = rest {
            let (bytes, crc) = form(one)?;
            return Some((bytes.clone(), crc));
        }
        let size = rest.iter().filter_map(&form).map(|(b, _)| b.len()).sum();
        let (mut piece, mut run) = (BytesMut::with_capacity(size), None::<Crc>);
        for f in rest {
            let (bytes, crc) = form(f)?;
            piece.extend_from_slice(bytes);
            run = crc.map(|crc| run.map_or(crc, |run| run.then(crc)));
        }
        Some((piece.freeze(), run))
    });
    match made {
        Some((bytes, run)) => Piece::Bytes(bytes, *run),
        None => Piece::Unwritable,
    }
}
