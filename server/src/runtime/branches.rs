//! Wake-ups told apart, for a task that drives several sources in one loop.
//!
//! A `select!` over a connection's sources polls every one of them whenever any wakes the task,
//! and a source woken *by another source during the same poll* (h2 wakes its connection when a
//! stream hands it data) costs the task a second trip through the scheduler and every source
//! again. Here each branch gets a waker of its own that sets the branch's bit: a poll runs
//! rounds, each polling only the branches woken since the last, until none is; a wake-up that
//! comes while the task is polling only sets its bit, and the round after takes it. A branch
//! polls its sources until each waits (or ends): one left ready has registered no wake-up, and
//! its branch would not be polled again.
//!
//! A branch that wakes itself on every poll (tokio's cooperative budget spent) would keep the
//! rounds going, so a poll runs at most [`MAX_ROUNDS`] of them and then gives the scheduler a
//! turn, its task woken to come back.

use futures::task::AtomicWaker;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// Rounds one poll runs before it gives the scheduler a turn.
pub const MAX_ROUNDS: usize = 8;

/// The wake-ups of a task's branches (at most 32), each with its own waker.
pub struct Branches {
    shared: Arc<Shared>,
    wakers: Box<[Waker]>,
}

struct Shared {
    /// A bit per branch woken since it was last polled.
    woken: AtomicU32,
    /// Set while the task is in [`Branches::poll`]: a wake-up then only sets its bit.
    polling: AtomicBool,
    task: AtomicWaker,
}

struct BranchWaker {
    shared: Arc<Shared>,
    bit: u32,
}

impl Wake for BranchWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.shared.woken.fetch_or(self.bit, SeqCst);
        // Paired with `poll`'s store of `polling` and load of `woken`: either the poll sees
        // this bit after it stops, or this sees it stopped and wakes the task.
        if !self.shared.polling.load(SeqCst) {
            self.shared.task.wake();
        }
    }
}

impl Branches {
    /// `count` branches, numbered from 0, all woken to begin with (each must be polled once to
    /// register its waker).
    pub fn new(count: u32) -> Self {
        assert!((1..=32).contains(&count), "1 to 32 branches");
        let all = u32::MAX >> (32 - count);
        let shared = Arc::new(Shared {
            woken: AtomicU32::new(all),
            polling: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        let wakers = (0..count)
            .map(|i| {
                Waker::from(Arc::new(BranchWaker {
                    shared: shared.clone(),
                    bit: 1 << i,
                }))
            })
            .collect();
        Branches { shared, wakers }
    }

    /// The bit of branch `branch` in the set `round` is given.
    pub const fn bit(branch: u32) -> u32 {
        1 << branch
    }

    /// A context whose waker wakes branch `branch`: poll the branch's sources with it.
    pub fn context(&self, branch: u32) -> Context<'_> {
        Context::from_waker(&self.wakers[branch as usize])
    }

    /// Runs `round` with the set of branches woken, as long as some are (at most
    /// [`MAX_ROUNDS`] times), until it is ready.
    pub fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        mut round: impl FnMut(u32, &Self) -> Poll<T>,
    ) -> Poll<T> {
        let shared = &*self.shared;
        shared.task.register(cx.waker());
        shared.polling.store(true, SeqCst);
        let mut rounds = 0;
        loop {
            let woken = shared.woken.swap(0, SeqCst);
            if woken != 0 {
                if rounds == MAX_ROUNDS {
                    // Put back for the next poll, which the scheduler runs after the others.
                    shared.woken.fetch_or(woken, SeqCst);
                    shared.polling.store(false, SeqCst);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                rounds += 1;
                if let Poll::Ready(out) = round(woken, self) {
                    shared.polling.store(false, SeqCst);
                    return Poll::Ready(out);
                }
                continue;
            }
            if self.stop() {
                return Poll::Pending;
            }
        }
    }

    /// Ends a poll that found no branch woken; `false` when one was woken meanwhile (between
    /// that finding and now, its wake-up only set its bit): the poll then goes on.
    fn stop(&self) -> bool {
        let shared = &*self.shared;
        shared.polling.store(false, SeqCst);
        if shared.woken.load(SeqCst) == 0 {
            return true;
        }
        shared.polling.store(true, SeqCst);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::atomic::AtomicUsize;

    /// Counts the wake-ups of the task driving the branches.
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn counting() -> (Arc<CountingWaker>, Waker) {
        let count = Arc::new(CountingWaker(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    #[test]
    fn a_round_polls_only_the_branches_woken() {
        let branches = Branches::new(3);
        let (task, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut seen = Vec::new();
        let poll = branches.poll(&mut cx, |woken, _| {
            seen.push(woken);
            Poll::<()>::Pending
        });
        assert!(poll.is_pending());
        assert_eq!(seen, [0b111], "every branch is polled once to begin with");

        branches.wakers[1].wake_by_ref();
        assert_eq!(
            task.0.load(SeqCst),
            1,
            "a wake-up between polls wakes the task"
        );
        seen.clear();
        let _ = branches.poll(&mut cx, |woken, _| {
            seen.push(woken);
            Poll::<()>::Pending
        });
        assert_eq!(seen, [Branches::bit(1)]);
    }

    #[test]
    fn a_branch_woken_during_a_poll_gets_a_round_of_the_same_poll_and_no_wake_up() {
        let branches = Branches::new(2);
        let (task, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let _ = branches.poll(&mut cx, |_, _| Poll::<()>::Pending);
        branches.wakers[0].wake_by_ref();
        let before = task.0.load(SeqCst);
        let mut seen = Vec::new();
        let _ = branches.poll(&mut cx, |woken, b| {
            seen.push(woken);
            if woken == Branches::bit(0) {
                // Branch 0's work wakes branch 1 (a stream handing its connection data).
                b.context(1).waker().wake_by_ref();
            }
            Poll::<()>::Pending
        });
        assert_eq!(seen, [Branches::bit(0), Branches::bit(1)]);
        assert_eq!(task.0.load(SeqCst), before, "no trip through the scheduler");
    }

    #[test]
    fn a_branch_that_always_wakes_itself_gives_the_scheduler_a_turn() {
        let branches = Branches::new(1);
        let (task, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut rounds = 0;
        let poll = branches.poll(&mut cx, |_, b| {
            rounds += 1;
            b.context(0).waker().wake_by_ref();
            Poll::<()>::Pending
        });
        assert!(poll.is_pending());
        assert_eq!(rounds, MAX_ROUNDS);
        assert_eq!(task.0.load(SeqCst), 1, "woken to come back");
        let mut seen = Vec::new();
        let _ = branches.poll(&mut cx, |woken, _| {
            seen.push(woken);
            Poll::<()>::Pending
        });
        assert_eq!(seen, [1], "the branch's wake-up was kept for the next poll");
    }

    #[test]
    fn a_wake_up_that_comes_as_a_poll_stops_is_taken_by_that_poll() {
        let branches = Branches::new(1);
        let (task, waker) = counting();
        let _ = branches.poll(&mut Context::from_waker(&waker), |_, _| Poll::<()>::Pending);
        // A poll that has just found nothing woken; a wake-up comes before it stops.
        branches.shared.polling.store(true, SeqCst);
        branches.wakers[0].wake_by_ref();
        assert_eq!(
            task.0.load(SeqCst),
            0,
            "a wake-up during a poll only sets its bit"
        );
        assert!(!branches.stop(), "the poll goes on to take it");
        assert_eq!(branches.shared.woken.swap(0, SeqCst), 1, "its round");
        assert!(branches.stop(), "and stops once it has");
    }

    #[tokio::test]
    async fn a_wake_up_from_another_thread_is_never_lost() {
        // Ping-pong: each wake-up waits until a round has seen it, so it comes just as a poll
        // finds nothing more and stops, and each is the last for a while: one lost hangs it.
        const WAKES: usize = 100_000;
        let branches = Arc::new(Branches::new(1));
        let waker = branches.wakers[0].clone();
        let (fired, seen) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let wake = {
            let (fired, seen) = (fired.clone(), seen.clone());
            std::thread::spawn(move || {
                for i in 1..=WAKES {
                    fired.store(i, SeqCst);
                    waker.wake_by_ref();
                    while seen.load(SeqCst) < i {
                        std::hint::spin_loop();
                    }
                }
            })
        };
        let all_seen = poll_fn(|cx| {
            branches.poll(cx, |_, _| {
                seen.store(fired.load(SeqCst), SeqCst);
                if seen.load(SeqCst) == WAKES {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
        });
        let all_seen = tokio::time::timeout(std::time::Duration::from_secs(20), all_seen).await;
        let last = seen.load(SeqCst);
        // Let the waking thread go whatever happened.
        seen.store(WAKES, SeqCst);
        wake.join().unwrap();
        assert!(
            all_seen.is_ok(),
            "a wake-up was lost: the last round saw {last}"
        );
    }
}
