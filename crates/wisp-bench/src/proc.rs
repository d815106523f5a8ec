//! What Linux's `/proc` says about a server process: its resident memory
//! (`/proc/PID/status`) and the CPU time it has used (`/proc/PID/stat`).
//! The parsers take the files' text, so they are tested without a process.

use std::time::Duration;

use anyhow::Context;

/// Clock ticks per second, the unit of `utime` and `stime` in
/// `/proc/PID/stat`. Linux reports them in `USER_HZ`, which is 100 on every
/// architecture it supports (whatever the kernel's own `HZ`); reading it
/// with `sysconf(_SC_CLK_TCK)` would need `libc` and `unsafe`, which this
/// project forbids.
const TICKS_PER_SECOND: u64 = 100;

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status (is the server running?)"))?;
    vm_rss_kib(&status).with_context(|| format!("no VmRSS in /proc/{pid}/status"))
}

/// The CPU a process has used so far, and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuUse {
    /// User plus system time, all its threads together.
    pub used: Duration,
    /// When it started, in ticks after boot: a process that ends and whose
    /// id is given to another shows a different start.
    pub start_ticks: u64,
}

/// The CPU process `pid` has used so far.
pub fn cpu_use(pid: u32) -> anyhow::Result<CpuUse> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (is the server running?)"))?;
    parse_stat(&stat).with_context(|| format!("/proc/{pid}/stat is not as expected"))
}

/// User plus system CPU of `pids` together so far; a process that is gone
/// counts nothing (its sampling already warns).
pub fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter()
        .filter_map(|pid| cpu_use(*pid).ok())
        .map(|u| u.used)
        .sum()
}

/// CPU used between two readings, in microseconds per message, over
/// `messages` (`None` for none).
pub fn us_per_message(before: Duration, after: Duration, messages: u64) -> Option<f64> {
    (messages > 0).then(|| after.saturating_sub(before).as_secs_f64() * 1e6 / messages as f64)
}

/// The `VmRSS` line of a `/proc/PID/status` text, in KiB (`None` for a
/// process without memory, such as a zombie).
fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// The CPU time and start of a `/proc/PID/stat` text. Its second field,
/// the command name in parentheses, may itself hold spaces and
/// parentheses, so the fields are counted from the last `)`: the third
/// field (`state`) follows it, `utime` and `stime` are the 14th and 15th,
/// `starttime` the 22nd (proc(5)).
fn parse_stat(stat: &str) -> Option<CpuUse> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // Field n (1-based) is fields[n - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    let ticks = field(14)?.checked_add(field(15)?)?;
    Some(CpuUse {
        used: ticks_to_duration(ticks),
        start_ticks: field(22)?,
    })
}

fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_secs(ticks / TICKS_PER_SECOND)
        + Duration::from_millis(ticks % TICKS_PER_SECOND * (1000 / TICKS_PER_SECOND))
}

/// CPU used over an interval, as a percentage of one core (a server busy
/// on two cores for the whole interval shows 200).
pub fn cpu_percent(before: Duration, after: Duration, interval: Duration) -> f64 {
    if interval.is_zero() {
        return 0.0;
    }
    after.saturating_sub(before).as_secs_f64() / interval.as_secs_f64() * 100.0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const STATUS: &str = "Name:\twisp-server\nUmask:\t0022\nState:\tS (sleeping)\n\
        VmPeak:\t  812344 kB\nVmSize:\t  812340 kB\nVmHWM:\t   60112 kB\n\
        VmRSS:\t   52436 kB\nRssAnon:\t   40000 kB\nThreads:\t5\n";

    /// A stat line whose command name holds spaces and parentheses, even a
    /// `) ` that looks like the end of the name; utime 1234, stime 566,
    /// starttime 98765.
    const STAT: &str = "4242 ((wisp server) (x)) S 1 4242 4242 0 -1 4194560 9000 0 0 0 \
        1234 566 0 0 20 0 5 0 98765 812340000 13109 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17475 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn the_resident_set_is_read_from_the_vm_rss_line() {
        assert_eq!(vm_rss_kib(STATUS), Some(52_436));
        // A zombie has no memory lines.
        assert_eq!(vm_rss_kib("Name:\twisp-server\nState:\tZ (zombie)\n"), None);
        assert_eq!(vm_rss_kib("VmRSS:\tlots kB\n"), None);
    }

    #[test]
    fn cpu_fields_are_counted_from_the_last_parenthesis() {
        let cpu = parse_stat(STAT).unwrap();
        // 1234 + 566 ticks at 100 a second.
        assert_eq!(cpu.used, Duration::from_millis(18_000));
        assert_eq!(cpu.start_ticks, 98_765);
        let plain = STAT.replace("((wisp server) (x))", "(wisp-server)");
        assert_eq!(parse_stat(&plain), Some(cpu));
        assert_eq!(parse_stat("4242 (wisp-server) S 1 2 3"), None);
        assert_eq!(parse_stat("no parenthesis at all"), None);
    }

    #[test]
    fn ticks_become_durations_at_a_hundred_a_second() {
        assert_eq!(ticks_to_duration(0), Duration::ZERO);
        assert_eq!(ticks_to_duration(1), Duration::from_millis(10));
        assert_eq!(ticks_to_duration(250), Duration::from_millis(2500));
    }

    #[test]
    fn cpu_percent_is_of_one_core_over_the_interval() {
        let second = Duration::from_secs(1);
        assert_eq!(cpu_percent(second, second * 2, second), 100.0);
        assert_eq!(
            cpu_percent(Duration::ZERO, Duration::from_millis(500), second * 2),
            25.0
        );
        // Two cores busy for the whole interval.
        assert_eq!(cpu_percent(Duration::ZERO, second * 4, second * 2), 200.0);
        // No interval, or a counter that went backwards: nothing used.
        assert_eq!(cpu_percent(Duration::ZERO, second, Duration::ZERO), 0.0);
        assert_eq!(cpu_percent(second * 2, second, second), 0.0);
    }

    #[test]
    fn this_process_has_a_resident_set_and_a_start() {
        let pid = std::process::id();
        assert!(rss_kib(pid).unwrap() > 0);
        let cpu = cpu_use(pid).unwrap();
        assert!(cpu.start_ticks > 0);
        assert!(cpu_use(pid).unwrap().used >= cpu.used);
    }
}
