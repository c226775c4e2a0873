//! A cancellation token whose waiting futures poll without taking a lock.
//!
//! Why not `tokio_util`'s `CancellationToken`: every poll of its `cancelled()` future takes the
//! token's mutex (`is_cancelled`) and its `Notify`'s waiter lock. An SSE stream polls its
//! shutdown and cut-off futures on every delivery, and the HTTP/2 driver polls the stream's
//! cut-off again around each write: at 10,000 streams × 10 messages/s, `is_cancelled` alone was
//! 8% of the server's CPU (`perf`, docs/benchmarks-history.md), a per-stream child token included. Here a
//! waiting future registers its waker once, in a list under a lock; later polls read one flag
//! and refresh an [`AtomicWaker`] (no lock); `cancel` sets the flag, then wakes the list.
//!
//! There is no parent/child tree: the server's uses are one shutdown token shared by all, and
//! one cut-off token per connection or stream.

use crate::runtime::lock::MutexExt;
use futures::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

/// Cancelled once, by any clone; every [`Cancelled`] future of every clone then completes.
#[derive(Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    cancelled: AtomicBool,
    /// The futures waiting, by slot; a slot is freed when its future is dropped.
    waiters: Mutex<slab::Slab<Arc<AtomicWaker>>>,
}

impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels the token: wakes every waiting future. Idempotent.
    pub fn cancel(&self) {
        if self.inner.cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        // A future that registers after this lock is released sees the flag when it checks
        // again after registering; one registered before is in the list.
        let waiters = self.inner.waiters.lock_or_recover();
        for (_, waker) in waiters.iter() {
            waker.wake();
        }
    }

    pub fn is_cancelled(&self) -> bool {
        self.inner.cancelled.load(Ordering::Acquire)
    }

    /// Completes once the token is cancelled (at once if it already is). Owns a clone of the
    /// token, so it can be kept in a struct and polled many times.
    pub fn cancelled(&self) -> Cancelled {
        Cancelled {
            inner: self.inner.clone(),
            slot: None,
            last: None,
        }
    }

    /// Futures registered and not yet dropped (for tests).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.inner.waiters.lock_or_recover().len()
    }
}

/// The future of [`CancelToken::cancelled`].
pub struct Cancelled {
    inner: Arc<Inner>,
    /// Registered on the first poll that has to wait.
    slot: Option<(usize, Arc<AtomicWaker>)>,
    /// The waker last registered, kept here too: a poll from the same task (the usual case)
    /// then compares two pointers in memory the poll touches anyway, instead of refreshing the
    /// shared [`AtomicWaker`], a cache line of its own per waiting future.
    last: Option<Waker>,
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.inner.cancelled.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        match &this.slot {
            Some(_) if this.last.as_ref().is_some_and(|w| w.will_wake(cx.waker())) => {
                return Poll::Pending;
            }
            Some((_, waker)) => waker.register(cx.waker()),
            None => {
                let waker = Arc::new(AtomicWaker::new());
                waker.register(cx.waker());
                let key = this.inner.waiters.lock_or_recover().insert(waker.clone());
                this.slot = Some((key, waker));
            }
        }
        this.last = Some(cx.waker().clone());
        // Cancelled between the first check and the registration: `cancel` may have walked
        // the list before this waker was in it (or woken the waker this poll replaced).
        if this.inner.cancelled.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Cancelled {
    fn drop(&mut self) {
        if let Some((key, _)) = self.slot.take() {
            self.inner.waiters.lock_or_recover().remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn cancel_wakes_every_waiting_future_of_every_clone() {
        let token = CancelToken::new();
        let tasks: Vec<_> = (0..100)
            .map(|_| tokio::spawn(token.clone().cancelled()))
            .collect();
        // Every task has polled (and registered) once before the token is cancelled.
        let bound = std::time::Duration::from_secs(10);
        tokio::time::timeout(bound, async {
            while token.waiting() < 100 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every task registered");
        assert!(tasks.iter().all(|t| !t.is_finished()));
        token.clone().cancel();
        // A lost wake-up fails here, within the bound, rather than hanging the test.
        tokio::time::timeout(bound, futures::future::join_all(tasks))
            .await
            .expect("every waiting future woken")
            .into_iter()
            .for_each(|t| t.unwrap());
        assert!(token.is_cancelled());
    }

    #[test]
    fn a_future_made_or_polled_after_cancel_is_ready_at_once() {
        let token = CancelToken::new();
        let mut early = token.cancelled();
        assert!((&mut early).now_or_never().is_none());
        token.cancel();
        token.cancel();
        assert!(early.now_or_never().is_some());
        assert!(token.cancelled().now_or_never().is_some());
    }

    #[test]
    fn dropped_futures_leave_the_list() {
        let token = CancelToken::new();
        let mut futures: Vec<_> = (0..10).map(|_| token.cancelled()).collect();
        for f in &mut futures {
            assert!(f.now_or_never().is_none());
        }
        assert_eq!(token.waiting(), 10);
        futures.truncate(3);
        assert_eq!(token.waiting(), 3);
        drop(futures);
        assert_eq!(token.waiting(), 0);
    }

    #[test]
    fn a_cancel_from_another_thread_is_never_lost() {
        // The race `poll` re-checks for: cancel lands while a future is registering.
        for _ in 0..1000 {
            let token = CancelToken::new();
            let other = token.clone();
            let canceller = std::thread::spawn(move || other.cancel());
            // Waited for on a thread of its own: a lost wake-up fails within the bound instead
            // of hanging the test.
            let (done, finished) = std::sync::mpsc::channel();
            let waiting = token.cancelled();
            std::thread::spawn(move || {
                futures::executor::block_on(waiting);
                let _ = done.send(());
            });
            finished
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("a cancel from another thread woke the waiting future");
            canceller.join().unwrap();
        }
    }
}
