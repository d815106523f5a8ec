//! `wisp-bench run --json`: the object a run prints, typed. Its field
//! names and nesting are a public contract (scripts, and `wisp-bench plan
//! --node-capacity`, read them): extend, never rename.
//!
//! A plain run prints a [`RunReport`]: the measured phase's
//! [`Summary`] fields, its `timeline` and `histogram`, and `warmup`. A
//! `--find-max` run prints a [`FindMaxReport`]: the same [`Summary`]
//! fields for the highest step held (or the first step when none held),
//! so a script reads either output the same way, then the search's own
//! fields and every step under `steps` (each without its timeline and
//! histogram, which go to `--report`).
//!
//! Either adds `server` when run with `--server-pid`: each process's
//! memory and CPU over the measured phase(s) ([`ServerUsage`]).

use serde::Serialize;

use crate::run::{Second, Summary};
use crate::server_usage::ServerUsage;

/// The warm-up's accounting (its messages are checked like the others but
/// left out of the figures).
#[derive(Debug, Clone, Serialize)]
pub struct Warmup {
    pub seconds: u64,
    pub target_rate: f64,
    pub acked: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub left_stored: u64,
}

impl Warmup {
    /// The accounting of `phase`, a warm-up of `seconds`.
    pub fn of(phase: &Summary, seconds: u64) -> Self {
        Self {
            seconds,
            target_rate: phase.target_rate,
            acked: phase.acked,
            lost: phase.lost,
            duplicated: phase.duplicated,
            left_stored: phase.left_stored,
        }
    }

    /// Whether every acknowledged warm-up message arrived exactly once and
    /// left the server.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.left_stored == 0
    }
}

/// A plain run's JSON.
#[derive(Debug, Serialize)]
pub struct RunReport<'a> {
    #[serde(flatten)]
    pub phase: &'a Summary,
    /// Latency and throughput per second.
    pub timeline: &'a [Second],
    /// Every latency bucket: (upper bound in ms, count).
    pub histogram: &'a [(f64, u64)],
    /// `null` with `--warmup 0`.
    pub warmup: Option<Warmup>,
    /// With `--server-pid`: each server process's memory and CPU, read
    /// once a second from the end of the warm-up to the end of the run
    /// (absent without the flag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<&'a [ServerUsage]>,
}

impl<'a> RunReport<'a> {
    pub fn new(phase: &'a Summary, warmup: Option<Warmup>) -> Self {
        Self {
            phase,
            timeline: &phase.timeline,
            histogram: &phase.histogram,
            warmup,
            server: None,
        }
    }

    /// The report with what each server process used (none without
    /// `--server-pid`).
    pub fn with_server(self, server: &'a [ServerUsage]) -> Self {
        Self {
            server: (!server.is_empty()).then_some(server),
            ..self
        }
    }
}

/// A `--find-max` run's JSON.
#[derive(Debug, Serialize)]
pub struct FindMaxReport<'a> {
    /// The highest step held, or else the first step, flattened into the
    /// top level.
    #[serde(flatten)]
    pub shown: Option<&'a Summary>,
    /// `null` with `--warmup 0`.
    pub warmup: Option<Warmup>,
    /// Whether any step held.
    pub held: bool,
    /// The highest rate held (`null` when none held).
    pub max_msgs_per_s: Option<f64>,
    /// Its p99 latency (`null` when none held).
    pub max_p99_ms: Option<f64>,
    pub p99_limit_ms: f64,
    /// Every step, in the order run.
    pub steps: &'a [Summary],
    /// With `--server-pid`: each server process's memory and CPU, read
    /// once a second from the end of the warm-up to the end of the run
    /// (absent without the flag).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<&'a [ServerUsage]>,
    /// The highest step held (not printed: `shown` carries it).
    #[serde(skip)]
    pub best: Option<&'a Summary>,
}

impl<'a> FindMaxReport<'a> {
    /// The report of `steps` searched with `p99_limit_ms`.
    pub fn new(steps: &'a [Summary], warmup: Option<Warmup>, p99_limit_ms: f64) -> Self {
        let best = steps
            .iter()
            .filter(|s| s.held(p99_limit_ms))
            .max_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s));
        Self {
            shown: best.or(steps.first()),
            warmup,
            held: best.is_some(),
            max_msgs_per_s: best.map(|b| b.msgs_per_s),
            max_p99_ms: best.map(|b| b.p99_ms),
            p99_limit_ms,
            steps,
            server: None,
            best,
        }
    }

    /// The report with what each server process used (none without
    /// `--server-pid`).
    pub fn with_server(self, server: &'a [ServerUsage]) -> Self {
        Self {
            server: (!server.is_empty()).then_some(server),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// The fields of a phase, as a plain run has printed them since the
    /// first `--json`.
    const PHASE_FIELDS: [&str; 20] = [
        "users",
        "nodes",
        "target_rate",
        "duration_s",
        "sent",
        "acked",
        "send_errors",
        "delivered",
        "lost",
        "duplicated",
        "left_stored",
        "msgs_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "server_cpu_us_per_msg",
        "bench_cpu_us_per_msg",
        "redis",
        "first_error",
    ];

    fn phase(target_rate: f64, msgs_per_s: f64, p99_ms: f64) -> Summary {
        Summary {
            users: 30,
            nodes: 1,
            target_rate,
            duration_s: 1.0,
            sent: 100,
            acked: 100,
            send_errors: 0,
            delivered: 100,
            lost: 0,
            duplicated: 0,
            left_stored: 0,
            msgs_per_s,
            p50_ms: 1.0,
            p99_ms,
            p999_ms: p99_ms,
            max_ms: p99_ms,
            server_cpu_us_per_msg: None,
            bench_cpu_us_per_msg: None,
            redis: None,
            first_error: None,
            timeline: vec![Second {
                t: 0,
                delivered: 100,
                p50_ms: 1.0,
                p99_ms,
            }],
            histogram: vec![(1.0, 100)],
        }
    }

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    fn sorted(fields: &[&'static str]) -> Vec<&'static str> {
        let mut fields = fields.to_vec();
        fields.sort_unstable();
        fields
    }

    #[test]
    fn a_plain_run_prints_its_phase_timeline_histogram_and_warmup() {
        let measured = phase(100.0, 100.0, 2.0);
        let warm = Warmup::of(&phase(100.0, 100.0, 2.0), 5);
        let json = serde_json::to_value(RunReport::new(&measured, Some(warm))).unwrap();
        let mut expected = PHASE_FIELDS.to_vec();
        expected.extend(["timeline", "histogram", "warmup"]);
        assert_eq!(keys(&json), sorted(&expected));
        assert_eq!(json["timeline"][0]["delivered"], 100);
        assert_eq!(json["histogram"][0], serde_json::json!([1.0, 100]));
        assert_eq!(
            keys(&json["warmup"]),
            sorted(&[
                "seconds",
                "target_rate",
                "acked",
                "lost",
                "duplicated",
                "left_stored"
            ])
        );
        assert_eq!(json["warmup"]["seconds"], 5);

        let json = serde_json::to_value(RunReport::new(&measured, None)).unwrap();
        assert!(json["warmup"].is_null() && json.get("warmup").is_some());
    }

    #[test]
    fn a_find_max_prints_the_best_step_held_at_the_top_and_every_step_without_details() {
        // The second step is the fastest held; the third did not hold.
        let steps = [
            phase(100.0, 100.0, 2.0),
            phase(125.0, 125.0, 3.0),
            phase(156.0, 120.0, 80.0),
        ];
        let json = serde_json::to_value(FindMaxReport::new(&steps, None, 50.0)).unwrap();
        let mut expected = PHASE_FIELDS.to_vec();
        expected.extend([
            "warmup",
            "held",
            "max_msgs_per_s",
            "max_p99_ms",
            "p99_limit_ms",
            "steps",
        ]);
        assert_eq!(keys(&json), sorted(&expected));
        assert_eq!(json["held"], true);
        assert_eq!(json["max_msgs_per_s"], 125.0);
        assert_eq!(json["max_p99_ms"], 3.0);
        assert_eq!(json["p99_limit_ms"], 50.0);
        assert_eq!(json["target_rate"], 125.0, "the best step's fields");
        assert_eq!(json["steps"].as_array().unwrap().len(), 3);
        for step in json["steps"].as_array().unwrap() {
            assert_eq!(keys(step), sorted(&PHASE_FIELDS));
        }
    }

    #[test]
    fn server_usage_is_added_only_with_server_pids() {
        use crate::server_usage::{CpuPercent, RssKib, Sample};

        let measured = phase(100.0, 100.0, 2.0);
        let usage = [ServerUsage {
            pid: 4242,
            rss_kib: Some(RssKib {
                start: 1000,
                peak: 1200,
                end: 1100,
            }),
            cpu_percent: Some(CpuPercent {
                mean: 40.0,
                peak: 55.0,
            }),
            disappeared: false,
            samples: vec![Sample {
                t_s: 0.0,
                rss_kib: 1000,
                cpu_percent: None,
            }],
        }];
        let json =
            serde_json::to_value(RunReport::new(&measured, None).with_server(&usage)).unwrap();
        let server = &json["server"][0];
        assert_eq!(
            keys(server),
            sorted(&["pid", "rss_kib", "cpu_percent", "disappeared", "samples"])
        );
        assert_eq!(server["pid"], 4242);
        assert_eq!(keys(&server["rss_kib"]), sorted(&["start", "peak", "end"]));
        assert_eq!(server["rss_kib"]["peak"], 1200);
        assert_eq!(keys(&server["cpu_percent"]), sorted(&["mean", "peak"]));
        assert_eq!(
            keys(&server["samples"][0]),
            sorted(&["t_s", "rss_kib", "cpu_percent"])
        );

        let plain = serde_json::to_value(RunReport::new(&measured, None).with_server(&[])).unwrap();
        assert!(plain.get("server").is_none());

        let steps = [measured.clone()];
        let json = serde_json::to_value(FindMaxReport::new(&steps, None, 50.0).with_server(&usage))
            .unwrap();
        assert_eq!(json["server"][0]["rss_kib"]["end"], 1100);
        assert!(json["steps"][0].get("server").is_none());
    }

    #[test]
    fn a_find_max_that_held_nothing_shows_its_first_step_and_nulls() {
        let steps = [phase(1000.0, 10.0, 900.0)];
        let report = FindMaxReport::new(&steps, None, 50.0);
        assert!(!report.held && report.best.is_none());
        let json = serde_json::to_value(report).unwrap();
        assert_eq!(json["held"], false);
        assert!(json["max_msgs_per_s"].is_null() && json["max_p99_ms"].is_null());
        assert_eq!(json["target_rate"], 1000.0, "the first step's fields");
        assert!(json.get("timeline").is_none() && json.get("histogram").is_none());
    }
}
