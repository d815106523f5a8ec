//! Prometheus metrics. One recorder per process (the `metrics` facade is
//! global), installed on first use and shared by every server the process
//! starts. Metric values never carry message content, keys or user ids.
//!
//! A histogram's samples wait in the recorder until they are folded into
//! its buckets: by a scrape, and every [`UPKEEP_EVERY`] by a thread of its
//! own. Without that thread a server nobody scrapes kept every sample (8
//! bytes per delivered message and per store group: its memory grew ~6 MiB
//! a minute at 3,300 msgs/s, without end).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Histogram buckets for latencies, from half a millisecond to the hour a
/// message may wait.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
    600.0, 3600.0,
];

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// How often waiting histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// Upkeeps run so far (for the test that they run; what an upkeep frees
/// is not visible from outside the recorder, the soak shows it).
static UPKEEPS: AtomicU64 = AtomicU64::new(0);

/// Installs the recorder if this process has none yet; returns the handle
/// `/metrics` renders from (None if another recorder was installed first).
pub(crate) fn install() -> Option<PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let installed = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("seconds".into()), LATENCY_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder);
            match installed {
                Ok(handle) => {
                    start_upkeep(handle.clone());
                    Some(handle)
                }
                Err(error) => {
                    tracing::warn!(%error, "metrics recorder not installed; /metrics will be empty");
                    None
                }
            }
        })
        .clone()
}

/// Folds waiting histogram samples into their buckets every
/// [`UPKEEP_EVERY`], for the life of the process (the recorder is global).
fn start_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
                UPKEEPS.fetch_add(1, Ordering::Relaxed);
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(
            %error,
            "cannot start the metrics upkeep thread; histograms will grow until /metrics is scraped"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_runs_without_a_scrape() {
        assert!(install().is_some());
        let before = UPKEEPS.load(Ordering::Relaxed);
        let deadline = std::time::Instant::now() + 5 * UPKEEP_EVERY;
        while UPKEEPS.load(Ordering::Relaxed) < before + 2 {
            assert!(
                std::time::Instant::now() < deadline,
                "no upkeep within {:?}",
                5 * UPKEEP_EVERY
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
