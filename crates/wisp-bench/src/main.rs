//! The `wisp-bench` command: `run`, `idle` and `plan`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use wisp_bench::plan::{Machines, Model, Plan};
use wisp_bench::run::{Summary, Swarm};

/// Load generator and capacity planner for Wisp.
///
/// For a load test, start the server without its abuse limits, e.g.
/// `wisp-server --pow-difficulty 0 --register-limit 0 --send-limit 0`.
/// Exit codes: 0 success; 1 the run lost, duplicated or left a message
/// stored (or, with --find-max, no rate held); 2 bad usage; 3 the run could
/// not be carried out (server unreachable, refused).
#[derive(Debug, Parser)]
#[command(name = "wisp-bench", version)]
struct Cli {
    /// Threads the bench runs on. One (the default) leaves the other cores
    /// to a server on the same machine and spares the bench the cost of
    /// waking threads; give more to load remote servers harder
    #[arg(long, global = true, default_value_t = 1, value_name = "N")]
    threads: usize,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register, befriend and log in users, then send at a rate and account
    /// for every message.
    Run {
        /// WebSocket URL of each node, comma-separated; users are spread
        /// over them
        #[arg(
            long,
            value_delimiter = ',',
            required = true,
            value_name = "URL[,URL...]"
        )]
        server: Vec<String>,
        /// Users (in circles of six: each talks to five friends)
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Messages per second, all users together
        #[arg(long, default_value_t = 1000.0, value_name = "MSGS_PER_SEC")]
        rate: f64,
        /// Seconds of sending
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// Step the rate up (from --rate, ×1.25 a step of --duration
        /// seconds) to find the highest held with p99 ≤ --p99-limit-ms and
        /// nothing lost, then halve the gap between the last rate held and
        /// the first not held three times
        #[arg(long)]
        find_max: bool,
        /// Encrypt and decrypt every message for real with Olm (sessions are
        /// opened before the measured phase); by default messages are
        /// ready-made 200-byte blobs, so the server is what is measured
        #[arg(long)]
        e2e: bool,
        /// The latency bound --find-max holds to
        #[arg(long, default_value_t = 50.0, value_name = "MS")]
        p99_limit_ms: f64,
        /// Seconds of sending at --rate before anything is measured, while
        /// the server's caches fill and its files grow; its messages are
        /// checked like any others (a loss fails the run) but left out of
        /// the figures. 0 for none
        #[arg(long, default_value_t = 5, value_name = "SECONDS")]
        warmup: u64,
        /// Print one JSON object instead of the summary
        #[arg(long)]
        json: bool,
        /// Write an SVG report (latency over time, histogram) to FILE
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
        /// No progress bars
        #[arg(long)]
        quiet: bool,
    },
    /// Hold many logged-in idle users and report the server's memory per
    /// connection.
    Idle {
        /// WebSocket URL of the server
        #[arg(long, value_name = "URL")]
        server: String,
        /// Idle users to hold
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// The server's process id, to read its memory from /proc
        #[arg(long, value_name = "PID")]
        server_pid: Option<u32>,
        /// Seconds to hold the users after measuring
        #[arg(long, default_value_t = 0)]
        hold: u64,
        /// Print one JSON object instead of the summary
        #[arg(long)]
        json: bool,
        /// No progress bars
        #[arg(long)]
        quiet: bool,
    },
    /// Print the brief's traffic table, storage sizes and, given a measured
    /// run, the machines a deployment needs.
    Plan {
        /// Registered users
        #[arg(long, default_value_t = 10_000_000)]
        users: u64,
        /// Share of users active daily
        #[arg(long, default_value_t = 0.4)]
        dau: f64,
        /// Friends an active user talks to
        #[arg(long, default_value_t = 5)]
        friends: u64,
        /// Messages an active user sends each friend a day
        #[arg(long, default_value_t = 100)]
        msgs_per_day: u64,
        /// Hours the day's messages are packed into
        #[arg(long, default_value_t = 6.0)]
        peak_hours: f64,
        /// Hours the day's logins are packed into
        #[arg(long, default_value_t = 4.0)]
        login_peak_hours: f64,
        /// A `wisp-bench run --json` output: its msgs_per_s per node sizes
        /// the deployment
        #[arg(long, value_name = "RUN.json")]
        node_capacity: Option<PathBuf>,
        /// Share of measured capacity to plan for at peak
        #[arg(long, default_value_t = 0.5)]
        headroom: f64,
        /// Usable memory of one Redis machine, GiB
        #[arg(long, default_value_t = 48.0)]
        redis_memory_gib: f64,
        /// Commands one Redis shard serves per second
        #[arg(long, default_value_t = 100_000.0)]
        redis_ops_per_s: f64,
        /// Print one JSON object instead of the table
        #[arg(long)]
        json: bool,
    },
}

/// The per-node capacity in a run's JSON: a --find-max result's best held
/// step, or a plain run's throughput, divided by its nodes.
fn node_capacity(path: &PathBuf) -> anyhow::Result<f64> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let run: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a wisp-bench JSON output", path.display()))?;
    let rate = match run.get("max_msgs_per_s") {
        Some(max) => max.as_f64().with_context(|| {
            format!(
                "{} is a --find-max run in which no rate held; plan from one that held",
                path.display()
            )
        })?,
        None => run["msgs_per_s"]
            .as_f64()
            .with_context(|| format!("{} has no msgs_per_s", path.display()))?,
    };
    let nodes = run["nodes"].as_f64().unwrap_or(1.0).max(1.0);
    Ok(rate / nodes)
}

/// One `--find-max` step as JSON: a plain run's fields, without the
/// timeline and histogram (those go to `--report`).
fn step_json(step: &Summary) -> serde_json::Value {
    let mut value = serde_json::to_value(step).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.remove("timeline");
        object.remove("histogram");
    }
    value
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            server,
            users,
            rate,
            duration,
            find_max,
            e2e,
            p99_limit_ms,
            warmup,
            json,
            report,
            quiet,
        } => {
            let mut swarm = Swarm::start(&server, users, e2e, quiet).await?;
            let step = Duration::from_secs(duration);
            let warm = if warmup > 0 {
                let warm = swarm.phase(rate, Duration::from_secs(warmup)).await?;
                eprintln!(
                    "warm-up: {warmup} s at {rate:.0} msgs/s, {} acknowledged, lost {}, duplicated {}, left stored {} (not in the figures)",
                    warm.acked, warm.lost, warm.duplicated, warm.left_stored
                );
                Some(warm)
            } else {
                None
            };
            let warm_json = warm.as_ref().map(|w| {
                serde_json::json!({
                    "seconds": warmup,
                    "target_rate": w.target_rate,
                    "acked": w.acked,
                    "lost": w.lost,
                    "duplicated": w.duplicated,
                    "left_stored": w.left_stored,
                })
            });
            let warm_clean = warm.as_ref().is_none_or(|w| w.clean());
            let (phases, output, ok) = if find_max {
                let steps = swarm.find_max(rate, 1.25, step, p99_limit_ms).await?;
                let best = steps
                    .iter()
                    .filter(|s| s.held(p99_limit_ms))
                    .max_by(|a, b| a.msgs_per_s.total_cmp(&b.msgs_per_s))
                    .cloned();
                let all_clean = steps.iter().all(|s| s.clean());
                let text = match &best {
                    Some(best) => format!(
                        "highest rate held (p99 ≤ {p99_limit_ms} ms, nothing lost): {:.0} msgs/s (p99 {:.2} ms)\n\n{}",
                        best.msgs_per_s,
                        best.p99_ms,
                        best.render()
                    ),
                    None => format!(
                        "no rate held p99 ≤ {p99_limit_ms} ms with nothing lost; start lower than --rate {rate}"
                    ),
                };
                // The top level carries a plain run's fields (`sent`,
                // `lost`, `p99_ms`, `users`, `nodes`, …) for the highest step
                // held, or for the first step when none held, so a script
                // reads either output the same way; then the search's own
                // fields.
                let mut json_value = best
                    .as_ref()
                    .or(steps.first())
                    .map_or_else(|| serde_json::json!({}), step_json);
                if let Some(object) = json_value.as_object_mut() {
                    object.extend([
                        ("warmup".into(), warm_json.unwrap_or_default()),
                        ("held".into(), best.is_some().into()),
                        (
                            "max_msgs_per_s".into(),
                            best.as_ref().map(|b| b.msgs_per_s).into(),
                        ),
                        ("max_p99_ms".into(), best.as_ref().map(|b| b.p99_ms).into()),
                        ("p99_limit_ms".into(), p99_limit_ms.into()),
                        ("steps".into(), steps.iter().map(step_json).collect()),
                    ]);
                }
                (
                    steps,
                    if json { json_value.to_string() } else { text },
                    best.is_some() && all_clean && warm_clean,
                )
            } else {
                let summary = swarm.phase(rate, step).await?;
                let ok = summary.clean() && warm_clean;
                let text = if json {
                    let mut value = serde_json::to_value(&summary)?;
                    if let Some(object) = value.as_object_mut() {
                        object.insert("warmup".into(), warm_json.unwrap_or_default());
                    }
                    value.to_string()
                } else {
                    summary.render()
                };
                (vec![summary], text, ok)
            };
            swarm.stop();
            if let Some(path) = report {
                std::fs::write(&path, wisp_bench::report::svg(&phases))
                    .with_context(|| format!("writing {}", path.display()))?;
                if !json {
                    eprintln!("report written to {}", path.display());
                }
            }
            println!("{output}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Command::Idle {
            server,
            users,
            server_pid,
            hold,
            json,
            quiet,
        } => {
            let summary = wisp_bench::idle::idle(
                &server,
                users,
                server_pid,
                Duration::from_secs(hold),
                quiet,
            )
            .await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                println!("{}", summary.render());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            users,
            dau,
            friends,
            msgs_per_day,
            peak_hours,
            login_peak_hours,
            node_capacity: capacity_file,
            headroom,
            redis_memory_gib,
            redis_ops_per_s,
            json,
        } => {
            let model = Model {
                users,
                dau,
                friends,
                msgs_per_day,
                peak_hours,
                login_peak_hours,
                ..Model::brief(users)
            };
            let capacity = capacity_file.as_ref().map(node_capacity).transpose()?;
            let plan = Plan::new(
                model,
                capacity,
                Machines {
                    redis_memory: redis_memory_gib * 1024.0 * 1024.0 * 1024.0,
                    redis_ops_per_s,
                    headroom,
                },
            );
            if json {
                println!("{}", serde_json::to_string(&plan)?);
            } else {
                print!("{}", plan.render());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = if cli.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cli.threads)
            .enable_all()
            .build()
    };
    let outcome = runtime
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("wisp-bench: {error:#}");
            ExitCode::from(3)
        }
    }
}
