//! `--report FILE`: an SVG with the run's latency over time (p50 and p99
//! per second) and its latency histogram, and with `--server-pid` two more
//! panels: each server's resident memory and its CPU over the run.

use std::fmt::Write as _;

use crate::run::Summary;
use crate::server_usage::ServerUsage;

const WIDTH: f64 = 900.0;
const PANEL: f64 = 300.0;
const MARGIN: f64 = 60.0;

/// A line colour per server process (cycled).
const SERVER_COLORS: [&str; 6] = [
    "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2", "#7f7f7f",
];

/// The report for `runs` (one per phase; a `--find-max` run has several,
/// laid end to end on the time axis) and `server`, the processes sampled
/// with `--server-pid` (none without).
pub fn svg(runs: &[Summary], server: &[ServerUsage]) -> String {
    let mut out = String::new();
    let panels = if server.is_empty() { 2.0 } else { 4.0 };
    let height = panels * PANEL + (panels + 1.0) * MARGIN;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    timeline(&mut out, runs);
    histogram(&mut out, runs);
    if !server.is_empty() {
        let memory = server
            .iter()
            .map(|usage| {
                let points = usage
                    .samples
                    .iter()
                    .map(|s| (s.t_s, s.rss_kib as f64 / 1024.0));
                (usage.pid, points.collect())
            })
            .collect::<Vec<_>>();
        server_panel(&mut out, 2, "Server resident memory", "MiB", &memory);
        let cpu = server
            .iter()
            .map(|usage| {
                let points = usage
                    .samples
                    .iter()
                    .filter_map(|s| Some((s.t_s, s.cpu_percent?)));
                (usage.pid, points.collect())
            })
            .collect::<Vec<_>>();
        server_panel(&mut out, 3, "Server CPU", "% of one core", &cpu);
    }
    let _ = writeln!(out, "</svg>");
    out
}

fn axis(out: &mut String, top: f64, title: &str, x_label: &str, y_label: &str) {
    let left = MARGIN;
    let right = WIDTH - MARGIN / 2.0;
    let bottom = top + PANEL;
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="{}" font-size="14" font-weight="bold">{title}</text>"#,
        top - 10.0
    );
    let _ = writeln!(
        out,
        r#"<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/><line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{x_label}</text>"#,
        (left + right) / 2.0,
        bottom + 35.0
    );
    let _ = writeln!(
        out,
        r#"<text x="15" y="{}" transform="rotate(-90 15 {})" text-anchor="middle">{y_label}</text>"#,
        top + PANEL / 2.0,
        top + PANEL / 2.0
    );
}

fn ticks(out: &mut String, top: f64, max_x: f64, max_y: f64, x_fmt: impl Fn(f64) -> String) {
    let left = MARGIN;
    let span = WIDTH - 1.5 * MARGIN;
    for i in 0..=4 {
        let f = f64::from(i) / 4.0;
        let y = top + PANEL - f * PANEL;
        let _ = writeln!(
            out,
            r##"<text x="{}" y="{}" text-anchor="end">{:.1}</text><line x1="{left}" y1="{y}" x2="{}" y2="{y}" stroke="#eee"/>"##,
            left - 5.0,
            y + 4.0,
            f * max_y,
            WIDTH - MARGIN / 2.0
        );
        let x = left + f * span;
        let _ = writeln!(
            out,
            r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
            top + PANEL + 15.0,
            x_fmt(f * max_x)
        );
    }
}

/// One line of `(x, y)` points in the panel at `top`, scaled to
/// `max_x` and `max_y`.
fn polyline(
    out: &mut String,
    color: &str,
    (top, max_x, max_y): (f64, f64, f64),
    points: impl Iterator<Item = (f64, f64)>,
) {
    let span = WIDTH - 1.5 * MARGIN;
    let path: Vec<String> = points
        .map(|(x, y)| {
            format!(
                "{:.1},{:.1}",
                MARGIN + x / max_x * span,
                top + PANEL - y / max_y * PANEL
            )
        })
        .collect();
    let _ = writeln!(
        out,
        r#"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
        path.join(" ")
    );
}

fn timeline(out: &mut String, runs: &[Summary]) {
    let top = MARGIN;
    axis(out, top, "Send→deliver latency over time", "seconds", "ms");
    let mut points = Vec::new();
    let mut offset = 0.0;
    for run in runs {
        for second in &run.timeline {
            points.push((offset + second.t as f64, second.p50_ms, second.p99_ms));
        }
        offset += run.timeline.len() as f64;
    }
    let max_x = offset.max(1.0);
    let max_y = points.iter().map(|p| p.2).fold(1.0_f64, f64::max).ceil();
    ticks(out, top, max_x, max_y, |x| format!("{x:.0}"));
    for (series, color, label) in [(1usize, "#1f77b4", "p50"), (2, "#d62728", "p99")] {
        let line = points
            .iter()
            .map(|p| (p.0, if series == 1 { p.1 } else { p.2 }));
        polyline(out, color, (top, max_x, max_y), line);
        let y = top + 10.0 + if series == 1 { 0.0 } else { 15.0 };
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{y}" fill="{color}">{label}</text>"#,
            WIDTH - MARGIN - 20.0
        );
    }
}

fn histogram(out: &mut String, runs: &[Summary]) {
    let top = 2.0 * MARGIN + PANEL;
    axis(
        out,
        top,
        "Latency histogram (all phases)",
        "ms (log scale)",
        "messages",
    );
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    for run in runs {
        for &(ms, count) in &run.histogram {
            match buckets.iter_mut().find(|(b, _)| (*b - ms).abs() < 1e-9) {
                Some(bucket) => bucket.1 += count,
                None => buckets.push((ms, count)),
            }
        }
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let max_ms = buckets.last().map_or(1.0, |b| b.0).max(1.0);
    let min_ms = buckets.first().map_or(0.001, |b| b.0).max(0.001);
    let max_count = buckets.iter().map(|b| b.1).max().unwrap_or(1).max(1) as f64;
    let span = WIDTH - 1.5 * MARGIN;
    let scale = |ms: f64| {
        let range = (max_ms / min_ms).ln().max(1e-9);
        MARGIN + (ms / min_ms).ln().max(0.0) / range * span
    };
    ticks(out, top, 1.0, max_count, |f| {
        format!("{:.2}", min_ms * (max_ms / min_ms).powf(f))
    });
    let mut previous = MARGIN;
    for (ms, count) in &buckets {
        let x = scale(*ms);
        let h = *count as f64 / max_count * PANEL;
        let _ = writeln!(
            out,
            r##"<rect x="{previous:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="#2ca02c"/>"##,
            top + PANEL - h,
            (x - previous).max(1.0)
        );
        previous = x;
    }
}

/// Panel number `index` (0 at the top): one line per server process over
/// the seconds since sampling started, each `(pid, [(t_s, value)])`.
fn server_panel(
    out: &mut String,
    index: u32,
    title: &str,
    y_label: &str,
    series: &[(u32, Vec<(f64, f64)>)],
) {
    let top = f64::from(index + 1) * MARGIN + f64::from(index) * PANEL;
    axis(out, top, title, "seconds since the warm-up ended", y_label);
    let points = series.iter().flat_map(|(_, points)| points);
    let max_x = points.clone().map(|p| p.0).fold(1.0_f64, f64::max).ceil();
    let max_y = points.map(|p| p.1).fold(1.0_f64, f64::max).ceil();
    ticks(out, top, max_x, max_y, |x| format!("{x:.0}"));
    for (i, (pid, points)) in series.iter().enumerate() {
        let color = SERVER_COLORS[i % SERVER_COLORS.len()];
        polyline(out, color, (top, max_x, max_y), points.iter().copied());
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" fill="{color}" text-anchor="end">pid {pid}</text>"#,
            WIDTH - MARGIN / 2.0 - 5.0,
            top + 10.0 + 15.0 * i as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Second;
    use crate::server_usage::Sample;

    #[test]
    fn a_report_plots_its_panels_and_the_servers_when_sampled() {
        let run = Summary {
            users: 2,
            nodes: 1,
            target_rate: 10.0,
            duration_s: 2.0,
            sent: 20,
            acked: 20,
            send_errors: 0,
            delivered: 20,
            lost: 0,
            duplicated: 0,
            left_stored: 0,
            msgs_per_s: 10.0,
            p50_ms: 1.0,
            p99_ms: 2.0,
            p999_ms: 2.0,
            max_ms: 2.0,
            server_cpu_us_per_msg: None,
            bench_cpu_us_per_msg: None,
            redis: None,
            first_error: None,
            timeline: vec![
                Second {
                    t: 0,
                    delivered: 10,
                    p50_ms: 1.0,
                    p99_ms: 2.0,
                },
                Second {
                    t: 1,
                    delivered: 10,
                    p50_ms: 1.1,
                    p99_ms: 1.9,
                },
            ],
            histogram: vec![(1.0, 15), (2.0, 5)],
        };
        let plain = svg(std::slice::from_ref(&run), &[]);
        assert!(plain.starts_with("<svg"));
        assert_eq!(plain.matches("<polyline").count(), 2);
        assert!(plain.contains("Latency histogram"));
        assert!(!plain.contains("Server"));
        assert!(plain.trim_end().ends_with("</svg>"));

        // Two server processes: a memory and a CPU line for each.
        let usage = |pid| ServerUsage {
            pid,
            rss_kib: None,
            cpu_percent: None,
            disappeared: false,
            samples: vec![
                Sample {
                    t_s: 0.0,
                    rss_kib: 2048,
                    cpu_percent: None,
                },
                Sample {
                    t_s: 1.0,
                    rss_kib: 3072,
                    cpu_percent: Some(40.0),
                },
            ],
        };
        let with_server = svg(&[run], &[usage(11), usage(12)]);
        assert_eq!(with_server.matches("<polyline").count(), 2 + 2 * 2);
        assert!(with_server.contains("Server resident memory"));
        assert!(with_server.contains("Server CPU"));
        assert!(with_server.contains(">pid 12</text>"));
        assert!(with_server.contains(r#"height="1500""#));
        assert!(with_server.trim_end().ends_with("</svg>"));
    }
}
