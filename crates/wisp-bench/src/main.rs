//! The `wisp-bench` command: `run`, `idle` and `plan`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use wisp_bench::json::{FindMaxReport, RunReport, Warmup};
use wisp_bench::plan::{Machines, Model, Plan};
use wisp_bench::redis_stats::RedisProbe;
use wisp_bench::run::{Summary, Swarm};
use wisp_bench::server_usage::{ServerSampler, ServerUsage};
use wisp_client::ConnectOptions;

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
    Run(RunArgs),
    /// Hold many logged-in idle users and report the server's memory per
    /// connection.
    Idle(IdleArgs),
    /// Print the brief's traffic table, storage sizes and, given a measured
    /// run, the machines a deployment needs.
    Plan(PlanArgs),
}

// The flags of `wisp-bench run` (a plain comment: a doc comment here
// would compete with the subcommand's own).
#[derive(Debug, Args)]
struct RunArgs {
    /// WebSocket URL of each node, comma-separated; users are spread
    /// over them
    #[arg(
        long,
        value_delimiter = ',',
        required = true,
        value_name = "URL[,URL...]"
    )]
    server: Vec<String>,
    #[command(flatten)]
    tls: TlsArgs,
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
    /// Write an SVG report (latency over time, histogram, and with
    /// --server-pid the servers' memory and CPU) to FILE
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// A server's process id (repeat the flag or separate ids with commas
    /// for the nodes of a cluster on this machine): its resident memory
    /// and CPU are read from /proc once a second, from the end of the
    /// warm-up to the end of the run, and reported (start, peak and end
    /// memory, mean and peak CPU; every sample in --json and --report).
    /// Their user+system CPU during each measured phase (or --find-max
    /// step), divided by the messages delivered in it, is reported as
    /// server_cpu_us_per_msg (beside bench_cpu_us_per_msg, this tool's
    /// own, always reported). A process that is not running is an error at
    /// start; one that goes away mid-run is a warning and its sampling
    /// stops
    #[arg(long, value_delimiter = ',', value_name = "PID[,PID...]")]
    server_pid: Vec<u32>,
    /// The Redis servers behind a cluster (redis://host:port, the primary
    /// the nodes use first, then its replicas, comma-separated): each is
    /// asked INFO before and after every measured phase (or --find-max
    /// step), and the commands the primary ran (those inside scripts
    /// included, by command) and the CPU all of them used are reported
    /// per delivered message (`redis` in --json). An address that does not
    /// answer is an error at start
    #[arg(long, value_delimiter = ',', value_name = "URL[,URL...]")]
    redis: Vec<String>,
    /// No progress bars
    #[arg(long)]
    quiet: bool,
}

// The flags of `wisp-bench idle`.
#[derive(Debug, Args)]
struct IdleArgs {
    /// WebSocket URL of the server
    #[arg(long, value_name = "URL")]
    server: String,
    #[command(flatten)]
    tls: TlsArgs,
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
}

// The TLS flag of every subcommand taking --server.
#[derive(Debug, Args)]
struct TlsArgs {
    /// For wss:// servers: also trust the CA certificate(s) in this PEM
    /// file (a self-hosted deployment's own CA), besides the system's
    /// roots. A refused certificate ends the run with exit code 3
    #[arg(long, env = "WISP_CA_CERT", value_name = "FILE")]
    ca_cert: Option<PathBuf>,
}

impl TlsArgs {
    /// The connect options every connection of the run shares (one TLS
    /// configuration for all).
    fn options(&self) -> anyhow::Result<ConnectOptions> {
        Ok(match &self.ca_cert {
            Some(path) => ConnectOptions::new().with_ca_file(path)?,
            None => ConnectOptions::new(),
        })
    }
}

// The flags of `wisp-bench plan`.
#[derive(Debug, Args)]
struct PlanArgs {
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

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run_swarm(args).await,
        Command::Idle(args) => idle(args).await,
        Command::Plan(args) => plan(&args),
    }
}

/// What a `run` measured and prints.
struct Outcome {
    /// The summary or the JSON object.
    output: String,
    /// Everything arrived exactly once (and, with `--find-max`, a rate held).
    ok: bool,
}

/// `wisp-bench run`: the swarm, its warm-up, then one measured phase or
/// the search for the highest rate held, with the servers sampled while
/// it measures.
async fn run_swarm(args: RunArgs) -> anyhow::Result<ExitCode> {
    let options = args.tls.options()?;
    // Checked before the swarm is set up: a wrong id costs no wait.
    let sampler = if args.server_pid.is_empty() {
        None
    } else {
        Some(ServerSampler::new(&args.server_pid)?)
    };
    let redis = if args.redis.is_empty() {
        None
    } else {
        Some(RedisProbe::connect(&args.redis).await?)
    };
    let mut swarm = Swarm::start(&args.server, &options, args.users, args.e2e, args.quiet).await?;
    swarm.measure_cpu_of(&args.server_pid);
    if let Some(redis) = redis {
        swarm.measure_redis(redis);
    }
    let warmup = warm_up(&mut swarm, &args).await?;
    let sampling = sampler.map(ServerSampler::start);
    let duration = Duration::from_secs(args.duration);
    let phases = if args.find_max {
        swarm
            .find_max(args.rate, 1.25, duration, args.p99_limit_ms)
            .await?
    } else {
        vec![swarm.phase(args.rate, duration).await?]
    };
    let server = match sampling {
        Some(sampling) => sampling.finish().await?,
        None => Vec::new(),
    };
    swarm.stop();
    let outcome = if args.find_max {
        found_max(&args, &phases, warmup, &server)?
    } else {
        measured(&args, &phases, warmup, &server)?
    };
    if let Some(path) = &args.report {
        std::fs::write(path, wisp_bench::report::svg(&phases, &server))
            .with_context(|| format!("writing {}", path.display()))?;
        if !args.json {
            eprintln!("report written to {}", path.display());
        }
    }
    println!("{}", outcome.output);
    Ok(if outcome.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Sends for `--warmup` seconds at `--rate`, outside the figures, and says
/// how it went on stderr; `None` with `--warmup 0`.
async fn warm_up(swarm: &mut Swarm, args: &RunArgs) -> anyhow::Result<Option<Warmup>> {
    if args.warmup == 0 {
        return Ok(None);
    }
    let rate = args.rate;
    let warm = swarm.phase(rate, Duration::from_secs(args.warmup)).await?;
    eprintln!(
        "warm-up: {} s at {rate:.0} msgs/s, {} acknowledged, lost {}, duplicated {}, left stored {} (not in the figures)",
        args.warmup, warm.acked, warm.lost, warm.duplicated, warm.left_stored
    );
    Ok(Some(Warmup::of(&warm, args.warmup)))
}

/// One line per server process, after the summary (nothing without
/// `--server-pid`).
fn server_lines(server: &[ServerUsage]) -> String {
    server
        .iter()
        .map(|usage| format!("\n{}", usage.render()))
        .collect()
}

/// The outcome of one measured phase of `--duration` seconds at `--rate`.
fn measured(
    args: &RunArgs,
    phases: &[Summary],
    warmup: Option<Warmup>,
    server: &[ServerUsage],
) -> anyhow::Result<Outcome> {
    let summary = phases.first().context("no phase was measured")?;
    let ok = summary.clean() && warmup.as_ref().is_none_or(Warmup::clean);
    let output = if args.json {
        serde_json::to_string(&RunReport::new(summary, warmup).with_server(server))?
    } else {
        format!("{}{}", summary.render(), server_lines(server))
    };
    Ok(Outcome { output, ok })
}

/// The outcome of `--find-max`: steps of `--duration` seconds from
/// `--rate` up, and the highest rate held.
fn found_max(
    args: &RunArgs,
    steps: &[Summary],
    warmup: Option<Warmup>,
    server: &[ServerUsage],
) -> anyhow::Result<Outcome> {
    let limit = args.p99_limit_ms;
    let warm_clean = warmup.as_ref().is_none_or(Warmup::clean);
    let report = FindMaxReport::new(steps, warmup, limit).with_server(server);
    let ok = report.held && steps.iter().all(Summary::clean) && warm_clean;
    let output = if args.json {
        serde_json::to_string(&report)?
    } else {
        let found = match report.best {
            Some(best) => format!(
                "highest rate held (p99 ≤ {limit} ms, nothing lost): {:.0} msgs/s (p99 {:.2} ms)\n\n{}",
                best.msgs_per_s,
                best.p99_ms,
                best.render()
            ),
            None => format!(
                "no rate held p99 ≤ {limit} ms with nothing lost; start lower than --rate {}",
                args.rate
            ),
        };
        format!("{found}{}", server_lines(server))
    };
    Ok(Outcome { output, ok })
}

/// `wisp-bench idle`.
async fn idle(args: IdleArgs) -> anyhow::Result<ExitCode> {
    let summary = wisp_bench::idle::idle(
        &args.server,
        &args.tls.options()?,
        args.users,
        args.server_pid,
        Duration::from_secs(args.hold),
        args.quiet,
    )
    .await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!("{}", summary.render());
    }
    Ok(ExitCode::SUCCESS)
}

/// `wisp-bench plan`.
fn plan(args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let model = Model {
        users: args.users,
        dau: args.dau,
        friends: args.friends,
        msgs_per_day: args.msgs_per_day,
        peak_hours: args.peak_hours,
        login_peak_hours: args.login_peak_hours,
        ..Model::brief(args.users)
    };
    let capacity = args.node_capacity.as_ref().map(node_capacity).transpose()?;
    let plan = Plan::new(
        model,
        capacity,
        Machines {
            redis_memory: args.redis_memory_gib * 1024.0 * 1024.0 * 1024.0,
            redis_ops_per_s: args.redis_ops_per_s,
            headroom: args.headroom,
        },
    );
    if args.json {
        println!("{}", serde_json::to_string(&plan)?);
    } else {
        print!("{}", plan.render());
    }
    Ok(ExitCode::SUCCESS)
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
