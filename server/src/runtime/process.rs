//! This process's memory, CPU and open-file limit.

/// This process's resident memory and CPU time, as Prometheus's process collector names them.
#[derive(Clone, Copy, Debug)]
pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_seconds: f64,
}

/// Reads [`ProcessStats`] from Linux's `/proc/self` (`None` elsewhere). CPU ticks are taken at
/// 100 per second, the value on every Linux this runs on.
pub fn process_stats() -> Option<ProcessStats> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let rss_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ProcessStats {
        rss_bytes: rss_kib * 1024,
        cpu_seconds: ticks as f64 / 100.0,
    })
}

/// Raises this process's open-file limit to its hard limit (each connection is a file); returns
/// the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_stats_are_read() {
        let before = process_stats().expect("Linux /proc");
        assert!(before.rss_bytes > 1 << 20, "{before:?}");
        // Work for a while (the kernel counts CPU time in ticks of 10 ms): the counter moves.
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(200) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = process_stats().expect("Linux /proc");
        assert!(
            after.cpu_seconds > before.cpu_seconds,
            "{before:?} -> {after:?}"
        );
    }
}
