//! `run --server-pid`: the servers' memory and CPU, sampled once a second
//! while the run measures, so a soak shows whether memory stays flat.
//!
//! A [`ServerSampler`] checks every process id when the run starts (a
//! wrong id is an error before any user is registered); [`Sampling`] is
//! the task reading `/proc` in the background. A process that goes away
//! mid-run is a warning on stderr: its sampling stops, the run goes on.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::proc::{CpuUse, cpu_percent, cpu_use, rss_kib};

/// How often each process is read.
const PERIOD: Duration = Duration::from_secs(1);

/// A last reading taken when sampling stops, unless one is this recent: a
/// CPU figure over a few milliseconds would be noise (the counters move in
/// 10 ms ticks).
const FINAL_READING_AFTER: Duration = Duration::from_millis(500);

/// One reading of one process.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Seconds since sampling started.
    pub t_s: f64,
    pub rss_kib: u64,
    /// CPU since the previous reading, in percent of one core (`null` for
    /// the first reading, which has no previous one).
    pub cpu_percent: Option<f64>,
}

/// Resident memory at the first reading, its highest, and at the last.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RssKib {
    pub start: u64,
    pub peak: u64,
    pub end: u64,
}

/// CPU over the whole sampling (first to last reading) and over its
/// busiest interval, in percent of one core.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct CpuPercent {
    pub mean: f64,
    pub peak: f64,
}

/// What one server process used during the run: its `server` entry in
/// `run --json`.
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// `null` if the process was gone before the first reading.
    pub rss_kib: Option<RssKib>,
    /// `null` with fewer than two readings.
    pub cpu_percent: Option<CpuPercent>,
    /// Whether the process went away (or its id passed to another
    /// process) before the run ended; its samples stop there.
    pub disappeared: bool,
    pub samples: Vec<Sample>,
}

impl ServerUsage {
    /// One line: memory at start, peak and end in MiB, and mean CPU.
    pub fn render(&self) -> String {
        let mib = |kib: u64| kib as f64 / 1024.0;
        let memory = match self.rss_kib {
            Some(rss) => format!(
                "resident {:.1} MiB at start, {:.1} MiB peak, {:.1} MiB at end",
                mib(rss.start),
                mib(rss.peak),
                mib(rss.end)
            ),
            None => "no reading".to_owned(),
        };
        let cpu = match self.cpu_percent {
            Some(cpu) => format!(
                "; CPU {:.0}% of a core on average (peak {:.0}%)",
                cpu.mean, cpu.peak
            ),
            None => String::new(),
        };
        let gone = match (self.disappeared, self.samples.last()) {
            (true, Some(last)) => format!(" (gone after {:.0} s)", last.t_s),
            (true, None) => " (gone)".to_owned(),
            (false, _) => String::new(),
        };
        format!("server pid {}: {memory}{cpu}{gone}", self.pid)
    }
}

/// The processes to sample, each checked readable.
#[derive(Debug)]
pub struct ServerSampler {
    /// Each process and when it started (to tell it from a later process
    /// given the same id).
    watched: Vec<(u32, u64)>,
}

impl ServerSampler {
    /// Checks that every one of `pids` is a running process whose memory
    /// and CPU can be read.
    pub fn new(pids: &[u32]) -> anyhow::Result<Self> {
        let watched = pids
            .iter()
            .map(|&pid| {
                rss_kib(pid)
                    .and_then(|_| cpu_use(pid))
                    .map(|cpu| (pid, cpu.start_ticks))
                    .with_context(|| format!("--server-pid {pid}"))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Self { watched })
    }

    /// Starts reading every process once a second, from now.
    pub fn start(self) -> Sampling {
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(sample_until(self.watched, stopped));
        Sampling { stop, task }
    }
}

/// Sampling under way.
#[derive(Debug)]
pub struct Sampling {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<ServerUsage>>,
}

impl Sampling {
    /// Takes a last reading and returns what each process used, in the
    /// order their ids were given.
    pub async fn finish(self) -> anyhow::Result<Vec<ServerUsage>> {
        let _ = self.stop.send(());
        self.task.await.context("the sampling task failed")
    }
}

/// Reads `watched` every [`PERIOD`] until `stopped`, then once more.
async fn sample_until(
    watched: Vec<(u32, u64)>,
    mut stopped: oneshot::Receiver<()>,
) -> Vec<ServerUsage> {
    let started = Instant::now();
    let mut processes: Vec<Process> = watched
        .into_iter()
        .map(|(pid, start_ticks)| Process::new(pid, start_ticks))
        .collect();
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_reading: Option<Instant> = None;
    loop {
        let stopping = tokio::select! {
            _ = tick.tick() => false,
            _ = &mut stopped => true,
        };
        if stopping && last_reading.is_some_and(|at| at.elapsed() < FINAL_READING_AFTER) {
            break;
        }
        let t = started.elapsed();
        for process in &mut processes {
            process.read(t);
        }
        last_reading = Some(Instant::now());
        if stopping {
            break;
        }
    }
    processes.into_iter().map(Process::usage).collect()
}

/// One process's readings so far.
struct Process {
    pid: u32,
    start_ticks: u64,
    /// (time, CPU used) at the first and the latest reading.
    first: Option<(Duration, Duration)>,
    latest: Option<(Duration, Duration)>,
    samples: Vec<Sample>,
    disappeared: bool,
}

impl Process {
    fn new(pid: u32, start_ticks: u64) -> Self {
        Self {
            pid,
            start_ticks,
            first: None,
            latest: None,
            samples: Vec::new(),
            disappeared: false,
        }
    }

    /// Reads the process at `t` since sampling started; if it is gone,
    /// says so and reads it no more.
    fn read(&mut self, t: Duration) {
        if self.disappeared {
            return;
        }
        let pid = self.pid;
        let reading = cpu_use(pid).and_then(|cpu| {
            if cpu.start_ticks != self.start_ticks {
                anyhow::bail!("the id now belongs to another process");
            }
            Ok((rss_kib(pid)?, cpu))
        });
        match reading {
            Ok((rss_kib, cpu)) => self.record(t, rss_kib, cpu),
            Err(error) => {
                eprintln!(
                    "wisp-bench: warning: server pid {pid} is gone after {:.0} s ({error:#}); its sampling stops, the run goes on",
                    t.as_secs_f64()
                );
                self.disappeared = true;
            }
        }
    }

    fn record(&mut self, t: Duration, rss_kib: u64, cpu: CpuUse) {
        let cpu_percent = self
            .latest
            .map(|(then, used)| cpu_percent(used, cpu.used, t.saturating_sub(then)));
        self.first.get_or_insert((t, cpu.used));
        self.latest = Some((t, cpu.used));
        self.samples.push(Sample {
            t_s: t.as_millis() as f64 / 1000.0,
            rss_kib,
            cpu_percent,
        });
    }

    fn usage(self) -> ServerUsage {
        let rss_kib = match (self.samples.first(), self.samples.last()) {
            (Some(first), Some(last)) => Some(RssKib {
                start: first.rss_kib,
                peak: self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0),
                end: last.rss_kib,
            }),
            _ => None,
        };
        let cpu_percent = match (self.first, self.latest) {
            (Some((t0, used0)), Some((t1, used1))) if t1 > t0 => Some(CpuPercent {
                mean: cpu_percent(used0, used1, t1 - t0),
                peak: self
                    .samples
                    .iter()
                    .filter_map(|s| s.cpu_percent)
                    .fold(0.0, f64::max),
            }),
            _ => None,
        };
        ServerUsage {
            pid: self.pid,
            rss_kib,
            cpu_percent,
            disappeared: self.disappeared,
            samples: self.samples,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cpu(ms: u64) -> CpuUse {
        CpuUse {
            used: Duration::from_millis(ms),
            start_ticks: 7,
        }
    }

    #[test]
    fn usage_sums_up_the_readings() {
        let mut process = Process::new(4242, 7);
        let s = Duration::from_secs;
        process.record(s(0), 1000, cpu(0));
        process.record(s(1), 3000, cpu(800));
        process.record(s(2), 2000, cpu(1000));
        let usage = process.usage();
        let rss = usage.rss_kib.unwrap();
        assert_eq!((rss.start, rss.peak, rss.end), (1000, 3000, 2000));
        let cpu = usage.cpu_percent.unwrap();
        // 1 s of CPU over 2 s; the busiest second had 0.8 s.
        assert_eq!(cpu.mean, 50.0);
        assert_eq!(cpu.peak, 80.0);
        assert_eq!(usage.samples[0].cpu_percent, None);
        assert_eq!(usage.samples[2].cpu_percent, Some(20.0));
        assert!(!usage.disappeared);
        assert_eq!(
            usage.render(),
            "server pid 4242: resident 1.0 MiB at start, 2.9 MiB peak, 2.0 MiB at end; CPU 50% of a core on average (peak 80%)"
        );
    }

    #[test]
    fn a_process_read_once_has_memory_but_no_cpu_figure() {
        let mut process = Process::new(1, 7);
        process.record(Duration::ZERO, 512, cpu(10));
        let usage = process.usage();
        assert_eq!(usage.rss_kib.unwrap().peak, 512);
        assert!(usage.cpu_percent.is_none());
        let json = serde_json::to_value(&usage).unwrap();
        assert!(json["cpu_percent"].is_null());
        assert_eq!(json["samples"][0]["rss_kib"], 512);
    }

    #[test]
    fn a_missing_process_is_refused_at_start() {
        // Above the kernel's highest pid (4194304).
        let error = ServerSampler::new(&[std::process::id(), 999_999_999]).unwrap_err();
        assert!(format!("{error:#}").contains("--server-pid 999999999"));
    }

    #[test]
    fn a_process_whose_id_is_reused_counts_as_gone() {
        let mut process = Process::new(std::process::id(), 0);
        process.read(Duration::ZERO);
        assert!(process.disappeared && process.samples.is_empty());
        assert!(process.usage().render().ends_with("no reading (gone)"));
    }

    #[tokio::test]
    async fn sampling_this_process_reads_its_memory() {
        let sampling = ServerSampler::new(&[std::process::id()]).unwrap().start();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let usage = sampling.finish().await.unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].pid, std::process::id());
        assert!(usage[0].rss_kib.unwrap().start > 0);
        // A reading at 0 s, one at 1 s; the last is that one (too recent
        // for another).
        assert!(usage[0].samples.len() >= 2, "{usage:?}");
        assert!(usage[0].cpu_percent.is_some());
        assert!(!usage[0].disappeared);
    }
}
