//! Log lines that do not amplify: an event that happens to many clients at once (a thousand
//! subscribers cut for falling behind, shed by a full server, or ended at their token's expiry)
//! is one line, then one summary per interval with how many more there were, not a line each.
//! The metrics carry every one; the log says that it happened, and how much.
//!
//! The first event after a quiet interval is logged at once, with its details. Those that follow
//! within [`INTERVAL`] are counted, and one line says how many when the interval ends (a task
//! sleeps until then, made by the first event held back), so the count of a burst that stops is
//! still written, and a storm that goes on writes one line per interval.

use crate::runtime::lock::MutexExt;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;
use tracing::Level;

/// How often a summary may write a line.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// One kind of repeated event, logged at `level` at most once per [`INTERVAL`].
#[derive(Debug)]
pub struct LogSummary {
    /// What happened, as the log line says it (`subscriber fell behind the history`).
    what: &'static str,
    level: Level,
    window: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    /// Events before this instant are counted, not logged.
    until: Option<Instant>,
    /// Events held back in the current window.
    held: u64,
    /// A task will write the held count when the window ends.
    flush_due: bool,
}

/// Logs `message` with the summary's fields at a level chosen at run time (tracing's macros
/// take a constant one).
macro_rules! at_level {
    ($level:expr, $($rest:tt)*) => {
        match $level {
            Level::ERROR => tracing::error!($($rest)*),
            Level::WARN => tracing::warn!($($rest)*),
            Level::INFO => tracing::info!($($rest)*),
            Level::DEBUG => tracing::debug!($($rest)*),
            _ => tracing::trace!($($rest)*),
        }
    };
}

impl LogSummary {
    pub const fn new(what: &'static str, level: Level) -> Self {
        LogSummary {
            what,
            level,
            window: Mutex::new(Window {
                until: None,
                held: 0,
                flush_due: false,
            }),
        }
    }

    /// One event: logged now with `detail` if the summary has been quiet for an interval,
    /// otherwise counted for the interval's summary line. `detail` is formatted only when
    /// logged.
    pub fn note(self: &std::sync::Arc<Self>, detail: impl FnOnce() -> String) {
        let now = Instant::now();
        let mut window = self.window.lock_or_recover();
        if window.until.is_none_or(|until| now >= until) && !window.flush_due {
            window.until = Some(now + INTERVAL);
            drop(window);
            let detail = detail();
            at_level!(self.level, detail = %detail, "{}", self.what);
            return;
        }
        window.held += 1;
        if window.flush_due {
            return;
        }
        let until = window.until.unwrap_or(now);
        window.flush_due = true;
        drop(window);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let me = self.clone();
                runtime.spawn(async move {
                    tokio::time::sleep_until(until).await;
                    me.flush();
                });
            }
            // Outside a runtime (a test, a destructor at exit): no summary to wait for.
            Err(_) => self.flush(),
        }
    }

    /// Writes the count held back, and opens a new window: a storm that goes on is summed again
    /// an interval later.
    fn flush(&self) {
        let mut window = self.window.lock_or_recover();
        let held = std::mem::take(&mut window.held);
        window.flush_due = false;
        window.until = Some(Instant::now() + INTERVAL);
        drop(window);
        if held > 0 {
            let seconds = INTERVAL.as_secs();
            at_level!(
                self.level,
                count = held,
                "{} ({held} more in {seconds} s)",
                self.what
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex as StdMutex};

    /// Log lines written on this thread while `f` runs, as text.
    #[derive(Clone, Default)]
    pub(crate) struct Captured(Arc<StdMutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock_or_recover().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        /// Captures every line at DEBUG and above for the current thread until the guard drops.
        pub(crate) fn start() -> (Captured, tracing::subscriber::DefaultGuard) {
            let captured = Captured::default();
            let writer = captured.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(Level::DEBUG)
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .finish();
            (captured, tracing::subscriber::set_default(subscriber))
        }

        pub(crate) fn lines(&self) -> Vec<String> {
            let bytes = self.0.lock_or_recover().clone();
            String::from_utf8_lossy(&bytes)
                .lines()
                .map(str::to_owned)
                .collect()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_line_then_one_summary() {
        let (log, _guard) = Captured::start();
        let summary = Arc::new(LogSummary::new("subscriber cut", Level::WARN));
        for i in 0..1000 {
            summary.note(|| format!("cursor {i}"));
        }
        assert_eq!(log.lines().len(), 1, "{:?}", log.lines());
        assert!(log.lines()[0].contains("cursor 0"));
        tokio::time::sleep(INTERVAL).await;
        tokio::task::yield_now().await;
        let lines = log.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[1].contains("999 more in 10 s"), "{}", lines[1]);
        // Quiet for an interval: the next event is logged at once, with its details.
        tokio::time::sleep(INTERVAL).await;
        summary.note(|| "later".into());
        assert_eq!(log.lines().len(), 3);
        assert!(log.lines()[2].contains("later"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_storm_writes_one_line_per_interval() {
        let (log, _guard) = Captured::start();
        let summary = Arc::new(LogSummary::new("shed", Level::INFO));
        // 100 events a second for a minute.
        for _ in 0..60 * 100 {
            summary.note(String::new);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(INTERVAL).await;
        tokio::task::yield_now().await;
        let lines = log.lines();
        assert!(
            (6..=8).contains(&lines.len()),
            "{} lines: {lines:?}",
            lines.len()
        );
        let counted: u64 = lines
            .iter()
            .filter_map(|l| l.split(" (").nth(1)?.split(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(counted + 1, 6000, "every event is in a line or a count");
    }
}
