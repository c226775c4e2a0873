//! Event streams handed from their handlers' tasks to the connection's task, which writes
//! them from then on.

use crate::runtime::lock::MutexExt;
use futures::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll};

/// One event stream's remaining life: its body copied to its `SendStream`.
pub(super) type EventPump = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Event streams on their way from their handlers' tasks to the connection's task. Not an
/// `mpsc` channel: one allocates a block of 32 slots (~1 KB) for every connection, and an idle
/// browser connection has handed over its one event stream long ago. This holds nothing while
/// nothing is in transit, and its receiving side is one flag to read.
pub(super) struct Handover {
    /// `None` once the connection's task has ended: what arrives then is dropped, not kept
    /// (a pump holds the `Conn` that would hold it).
    pumps: Mutex<Option<Vec<EventPump>>>,
    /// Set when `pumps` has something for the connection's task.
    ready: AtomicBool,
    waker: AtomicWaker,
}

impl Handover {
    pub(super) fn new() -> Self {
        Handover {
            pumps: Mutex::new(Some(Vec::new())),
            ready: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        }
    }

    /// Hands `pump` to the connection's task; dropped if that task has ended.
    pub(super) fn give(&self, pump: EventPump) {
        let mut pumps = self.pumps.lock_or_recover();
        match pumps.as_mut() {
            Some(pumps) => pumps.push(pump),
            None => return,
        }
        drop(pumps);
        self.ready.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// The pumps handed over since the last call; `Pending` (and a wake-up registered) when
    /// there are none.
    pub(super) fn poll_take(&self, cx: &mut Context<'_>) -> Poll<Vec<EventPump>> {
        if !self.ready.swap(false, Ordering::AcqRel) {
            self.waker.register(cx.waker());
            // A `give` between the check and the registration has set the flag again.
            if !self.ready.swap(false, Ordering::AcqRel) {
                return Poll::Pending;
            }
        }
        let mut pumps = self.pumps.lock_or_recover();
        Poll::Ready(pumps.as_mut().map(std::mem::take).unwrap_or_default())
    }

    /// The connection's task has ended: drops what is in transit and whatever comes later.
    fn close(&self) {
        let pumps = self.pumps.lock_or_recover().take();
        drop(pumps);
    }
}

/// Closes a [`Handover`] when dropped.
pub(super) struct CloseOnDrop<'a>(pub(super) &'a Handover);

impl Drop for CloseOnDrop<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}
