//! `wisp-bench run`: users registered, befriended in circles, logged in
//! over the given nodes, then messages at an aggregate rate, every one
//! accounted for.
//!
//! Set-up (registering, logging in, befriending, with `--e2e` opening Olm
//! sessions) runs a bounded number of operations at once, on `futures`
//! streams. Then each phase starts one [`Sender`] task per user. Each
//! message carries a header (phase, sequence number, send time) ahead of
//! padding, in a blob made once per sender: the server sees opaque
//! ciphertext of the usual size and, unless `--e2e` asks for real Olm
//! encryption, the bench spends no time on crypto. The receiver of a
//! message reads the header, records the send→deliver latency, and
//! acknowledges (burns) it, in batches as they come. At the end of a phase
//! every acknowledged send must have been delivered exactly once and burned.

use crate::proc::{cpu_of, us_per_message};
use crate::redis_stats::{Reading, RedisProbe, RedisUse};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{StreamExt, TryStreamExt, stream};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use wisp_client::{
    Client, ClientError, ClientMsgId, ConnectOptions, ErrorCode, Events, Identity, LocalState,
    ServerEvent, UserId,
};
use wisp_proto::frames::sealed::Kind;
use wisp_proto::frames::{Sealed, Text};

/// Users per circle: each talks to the other five (the brief's 5 friends).
const CIRCLE: usize = 6;

/// Size of a message's ciphertext (the brief's short text, encrypted).
pub const MESSAGE_BYTES: usize = 200;

/// Marks a bench message.
const MAGIC: &[u8; 4] = b"WBv1";

/// After the last send, the bench waits for stragglers until none has come
/// for this long: an overloaded server's late messages are late, not lost.
const DRAIN_QUIET: Duration = Duration::from_secs(10);

/// And no longer than this in all.
const DRAIN_MAX: Duration = Duration::from_secs(120);

/// Operations in flight during setup.
const SETUP_PARALLELISM: usize = 32;

/// Messages live an hour, as the longest a user may choose.
const TTL: Duration = Duration::from_secs(3600);

/// One user of the swarm.
struct User {
    id: UserId,
    client: Arc<Client>,
    friends: Vec<UserId>,
    /// With `--e2e`: the user's Olm state (sessions with every friend).
    olm: Option<Olm>,
}

/// A user's end-to-end state, shared by its sending and receiving tasks.
type Olm = Arc<std::sync::Mutex<LocalState>>;

/// What receivers report.
enum Observed {
    Delivered {
        phase: u32,
        seq: u64,
        latency_us: u64,
        at: Duration,
    },
    Burned(u64),
}

/// Registered, befriended, logged-in users, ready for phases of traffic.
pub struct Swarm {
    users: Vec<User>,
    nodes: usize,
    observed: mpsc::UnboundedReceiver<Observed>,
    receivers_stop: Arc<AtomicBool>,
    epoch: Instant,
    next_seq: Arc<AtomicU64>,
    phase: u32,
    quiet: bool,
    /// Server processes whose CPU each phase divides by its deliveries
    /// (`run --server-pid`).
    server_pids: Vec<u32>,
    /// The Redis servers read around each phase (`--redis`).
    redis: Option<RedisProbe>,
}

/// Latency and throughput over one second of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The result of one phase. Serialized, its figures: a `--find-max`
/// step's JSON; a plain run's JSON adds the timeline and histogram
/// ([`crate::json::RunReport`]).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub users: usize,
    pub nodes: usize,
    pub target_rate: f64,
    pub duration_s: f64,
    /// Sends attempted.
    pub sent: u64,
    /// Sends the server acknowledged.
    pub acked: u64,
    /// Sends refused or failed (not acknowledged).
    pub send_errors: u64,
    /// Distinct acknowledged messages delivered.
    pub delivered: u64,
    /// Acknowledged messages never delivered.
    pub lost: u64,
    /// Deliveries beyond the first of a message.
    pub duplicated: u64,
    /// Delivered messages whose burn the server did not confirm (still
    /// stored).
    pub left_stored: u64,
    /// Acknowledged messages per second over the phase.
    pub msgs_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    /// User plus system CPU of the `--server-pid` processes during the
    /// phase (sending and draining), per message delivered, in µs (`null`
    /// without `--server-pid`).
    pub server_cpu_us_per_msg: Option<f64>,
    /// The same for this load generator (it shares the machine).
    pub bench_cpu_us_per_msg: Option<f64>,
    /// What the Redis servers did per message (`null` without `--redis`).
    pub redis: Option<RedisUse>,
    /// The first send error, if any (e.g. a rate limit).
    pub first_error: Option<String>,
    /// Latency and throughput per second, for the report.
    #[serde(skip)]
    pub timeline: Vec<Second>,
    /// Every latency bucket: (upper bound in ms, count), for the report.
    #[serde(skip)]
    pub histogram: Vec<(f64, u64)>,
}

impl Summary {
    /// Whether every acknowledged message arrived exactly once and left the
    /// server.
    pub fn clean(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.left_stored == 0
    }

    /// Whether the rate was held: clean, p99 within `p99_limit_ms`, and at
    /// least 95% of the target acknowledged.
    pub fn held(&self, p99_limit_ms: f64) -> bool {
        self.clean() && self.p99_ms <= p99_limit_ms && self.msgs_per_s >= 0.95 * self.target_rate
    }

    /// The human-readable summary.
    pub fn render(&self) -> String {
        format!(
            "users {} on {} node(s), target {:.0} msgs/s for {:.0} s\n\
             sent {}  acked {}  delivered {}  lost {}  duplicated {}  left stored {}  send errors {}\n\
             throughput {:.0} msgs/s\n\
             latency send→deliver: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms\n\
             CPU per delivered message: server {}, bench {}{}{}",
            self.users,
            self.nodes,
            self.target_rate,
            self.duration_s,
            self.sent,
            self.acked,
            self.delivered,
            self.lost,
            self.duplicated,
            self.left_stored,
            self.send_errors,
            self.msgs_per_s,
            self.p50_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            micros(
                self.server_cpu_us_per_msg,
                "not measured (give --server-pid)"
            ),
            micros(self.bench_cpu_us_per_msg, "not measured"),
            self.redis
                .as_ref()
                .map(|redis| format!("\nRedis per delivered message: {}", redis.render()))
                .unwrap_or_default(),
            self.first_error
                .as_ref()
                .map(|e| format!("\nfirst send error: {e}"))
                .unwrap_or_default()
        )
    }
}

/// A progress bar on stderr (hidden with `quiet`).
pub fn progress(quiet: bool, len: u64, what: &str) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Says what to do about a refusal during setup.
fn explain(error: ClientError, doing: &str) -> anyhow::Error {
    let hint = match error.code() {
        Some(ErrorCode::RateLimited) => {
            " (the server rate-limits this; for a load test start it with --register-limit 0 --send-limit 0)"
        }
        _ => "",
    };
    anyhow::anyhow!("{doing}: {error}{hint}")
}

/// Runs `jobs` with at most [`SETUP_PARALLELISM`] at once, ticking `bar`
/// as each finishes. The results come in the jobs' order; the first error
/// drops the jobs still running.
async fn in_parallel<T, F>(
    jobs: impl IntoIterator<Item = F>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<T>>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let mut done: Vec<(usize, T)> = stream::iter(jobs.into_iter().enumerate())
        .map(|(i, job)| async move { job.await.map(|value| (i, value)) })
        .buffer_unordered(SETUP_PARALLELISM)
        .inspect_ok(|_| bar.inc(1))
        .try_collect()
        .await?;
    bar.finish();
    done.sort_unstable_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, value)| value).collect())
}

/// Connects to `url`, saying what failed (the SDK's own "cannot connect to
/// URL: …" already names it).
async fn connect(url: &str, options: &ConnectOptions) -> anyhow::Result<(Client, Events)> {
    Client::connect_with(url, options)
        .await
        .map_err(|e| match e {
            ClientError::Connect { .. } | ClientError::Certificate { .. } => anyhow::anyhow!("{e}"),
            other => explain(other, &format!("connecting to {url}")),
        })
}

/// Registers `users` new identities, spread over `servers`, over a few
/// connections each registering many (so a large run does not leave tens of
/// thousands of closed connections behind). Identity `i` is registered on
/// `servers[i % servers.len()]`.
pub async fn register(
    servers: &[String],
    options: &ConnectOptions,
    users: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Identity>> {
    let workers = SETUP_PARALLELISM.min(users).max(1);
    let batches: Vec<Vec<(usize, Identity)>> = stream::iter(0..workers)
        .map(|worker| register_batch(servers, options, (worker..users).step_by(workers), bar))
        .buffer_unordered(workers)
        .try_collect()
        .await?;
    let mut registered: Vec<(usize, Identity)> = batches.into_iter().flatten().collect();
    registered.sort_unstable_by_key(|(i, _)| *i);
    Ok(registered
        .into_iter()
        .map(|(_, identity)| identity)
        .collect())
}

/// Registers a new identity for each of `indices`, one after the other,
/// keeping one connection per node.
async fn register_batch(
    servers: &[String],
    options: &ConnectOptions,
    indices: impl Iterator<Item = usize>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<(usize, Identity)>> {
    let mut mine = Vec::new();
    let mut connections: HashMap<usize, Client> = HashMap::new();
    for i in indices {
        let node = i % servers.len();
        let client = match connections.entry(node) {
            Entry::Occupied(slot) => slot.into_mut(),
            Entry::Vacant(slot) => slot.insert(connect(&servers[node], options).await?.0),
        };
        let identity = Identity::generate();
        client
            .register(&identity)
            .await
            .map_err(|e| explain(e, "registering"))?;
        mine.push((i, identity));
        bar.inc(1);
    }
    Ok(mine)
}

/// Logs identity `i` in on `servers[i % servers.len()]`, over a connection
/// of its own.
async fn log_in(
    servers: &[String],
    options: &ConnectOptions,
    identities: Vec<Identity>,
    quiet: bool,
) -> anyhow::Result<Vec<(Identity, Client, Events)>> {
    let bar = progress(quiet, identities.len() as u64, "logging in");
    let jobs = identities.into_iter().enumerate().map(|(i, identity)| {
        let url = &servers[i % servers.len()];
        async move {
            let (mut client, events) = connect(url, options).await?;
            let name = client.server_name().to_owned();
            client
                .login(&identity, &name)
                .await
                .map_err(|e| explain(e, "logging in"))?;
            Ok((identity, client, events))
        }
    });
    in_parallel(jobs, &bar).await
}

/// Users `0..users` in circles of six (the last one takes any remainder).
fn circles(users: usize) -> Vec<Range<usize>> {
    let mut circles: Vec<Range<usize>> = (0..users)
        .step_by(CIRCLE)
        .map(|start| start..(start + CIRCLE).min(users))
        .collect();
    if circles.len() > 1 && circles.last().is_some_and(|c| c.len() < 2) {
        let last = circles.pop().unwrap_or(0..0);
        if let Some(previous) = circles.last_mut() {
            previous.end = last.end;
        }
    }
    circles
}

/// Every pair of users in each circle, and each user's friends.
fn friendships(
    circles: &[Range<usize>],
    ids: &[UserId],
) -> (Vec<(usize, usize)>, Vec<Vec<UserId>>) {
    let mut friends: Vec<Vec<UserId>> = vec![Vec::new(); ids.len()];
    let mut pairs = Vec::new();
    for circle in circles {
        for i in circle.clone() {
            for j in (i + 1)..circle.end {
                pairs.push((i, j));
                friends[i].push(ids[j]);
                friends[j].push(ids[i]);
            }
        }
    }
    (pairs, friends)
}

/// Makes each pair friends: the first asks, the second accepts.
async fn befriend(
    clients: &[Arc<Client>],
    ids: &[UserId],
    pairs: Vec<(usize, usize)>,
    quiet: bool,
) -> anyhow::Result<()> {
    let bar = progress(quiet, pairs.len() as u64, "befriending");
    let jobs = pairs.into_iter().map(|(i, j)| {
        let (a, b) = (&clients[i], &clients[j]);
        let (ida, idb) = (ids[i], ids[j]);
        async move {
            a.request_friend(idb)
                .await
                .map_err(|e| explain(e, "requesting a friend"))?;
            b.accept_friend(ida)
                .await
                .map_err(|e| explain(e, "accepting a friend"))?;
            Ok(())
        }
    });
    in_parallel(jobs, &bar).await?;
    Ok(())
}

impl std::fmt::Debug for Swarm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swarm")
            .field("users", &self.users.len())
            .field("nodes", &self.nodes)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl Swarm {
    /// Registers `users` users, befriends them in circles of six, and logs
    /// each in on one of `servers` (round robin), every connection with
    /// `options` (a CA to trust for `wss://`).
    ///
    /// With `e2e`, every user also publishes one-time keys and opens an Olm
    /// session with each friend, and every message is encrypted and
    /// decrypted for real.
    pub async fn start(
        servers: &[String],
        options: &ConnectOptions,
        users: usize,
        e2e: bool,
        quiet: bool,
    ) -> anyhow::Result<Self> {
        if servers.is_empty() {
            bail!("give at least one server URL");
        }
        if users < 2 {
            bail!("a swarm needs at least 2 users (they message each other)");
        }
        let bar = progress(quiet, users as u64, "registering");
        let identities = register(servers, options, users, &bar).await?;
        bar.finish();
        let logged_in = log_in(servers, options, identities, quiet).await?;
        let ids: Vec<UserId> = logged_in
            .iter()
            .map(|(identity, ..)| identity.user_id())
            .collect();
        let mut clients: Vec<Arc<Client>> = Vec::new();
        let mut events_of = Vec::new();
        let mut identities = Vec::new();
        for (identity, client, events) in logged_in {
            clients.push(Arc::new(client));
            events_of.push(events);
            identities.push(identity);
        }
        let (pairs, mut friends) = friendships(&circles(users), &ids);
        befriend(&clients, &ids, pairs, quiet).await?;
        let olms = if e2e {
            Some(open_sessions(&clients, identities, &friends, quiet).await?)
        } else {
            None
        };
        let members = events_of.into_iter().enumerate().map(|(i, events)| {
            let user = User {
                id: ids[i],
                client: Arc::clone(&clients[i]),
                friends: std::mem::take(&mut friends[i]),
                olm: olms.as_ref().map(|o| Arc::clone(&o[i])),
            };
            (user, events)
        });
        Ok(Self::listen(members.collect(), servers.len(), quiet))
    }

    /// The swarm of `members`, each with a receiver on its events.
    fn listen(members: Vec<(User, Events)>, nodes: usize, quiet: bool) -> Self {
        let (observe, observed) = mpsc::unbounded_channel();
        let receivers_stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let mut users = Vec::with_capacity(members.len());
        for (user, events) in members {
            tokio::spawn(receive(
                events,
                Arc::clone(&user.client),
                user.olm.clone(),
                observe.clone(),
                epoch,
                Arc::clone(&receivers_stop),
            ));
            users.push(user);
        }
        Self {
            users,
            nodes,
            observed,
            receivers_stop,
            epoch,
            next_seq: Arc::new(AtomicU64::new(0)),
            phase: 0,
            quiet,
            server_pids: Vec::new(),
            redis: None,
        }
    }

    /// Sends at `rate` messages per second (all users together) for
    /// `duration`, then waits for every acknowledged message.
    pub async fn phase(&mut self, rate: f64, duration: Duration) -> anyhow::Result<Summary> {
        if rate <= 0.0 {
            bail!("the rate must be above 0");
        }
        self.phase += 1;
        let redis_before = self.read_redis().await;
        let cpu_before = (cpu_of(&self.server_pids), cpu_of(&[std::process::id()]));
        let started = Instant::now();
        let counters = Arc::new(SendCounters::default());
        let senders = self.spawn_senders(rate, started + duration, &counters);
        let mut record = Recorder::new(self.phase, started.duration_since(self.epoch));
        let bar = sending_bar(self.quiet, rate, duration);
        self.record_while_sending(senders, &mut record, &counters, &bar, started, duration)
            .await?;
        let sending_took = started.elapsed();
        bar.finish_and_clear();
        let acked = counters.take_acked()?;
        self.drain(&mut record, &acked).await;
        let cpu_after = (cpu_of(&self.server_pids), cpu_of(&[std::process::id()]));
        let redis_after = self.read_redis().await;
        let window = Window {
            rate,
            duration,
            sending_took,
        };
        let mut summary = self.summarize(window, &acked, &counters, &record);
        let delivered = summary.delivered;
        if !self.server_pids.is_empty() {
            summary.server_cpu_us_per_msg = us_per_message(cpu_before.0, cpu_after.0, delivered);
        }
        summary.bench_cpu_us_per_msg = us_per_message(cpu_before.1, cpu_after.1, delivered);
        if let (Some(before), Some(after)) = (redis_before, redis_after) {
            summary.redis = RedisUse::between(&before, &after, delivered);
        }
        Ok(summary)
    }

    /// Starts every user's [`Sender`] for the current phase, their ticks
    /// spread over one period, all ending at `until`.
    fn spawn_senders(
        &self,
        rate: f64,
        until: Instant,
        counters: &Arc<SendCounters>,
    ) -> JoinSet<()> {
        let senders = self.users.len();
        let period = Duration::from_secs_f64(senders as f64 / rate);
        let until = tokio::time::Instant::from_std(until);
        let mut tasks = JoinSet::new();
        for (i, user) in self.users.iter().enumerate() {
            let sender = Sender {
                client: Arc::clone(&user.client),
                olm: user.olm.clone(),
                friends: user.friends.clone(),
                counters: Arc::clone(counters),
                next_seq: Arc::clone(&self.next_seq),
                epoch: self.epoch,
                phase: self.phase,
                // Spread the senders' ticks over one period.
                offset: period.mul_f64(i as f64 / senders as f64),
                period,
                until,
            };
            tasks.spawn(sender.run());
        }
        tasks
    }

    /// Records what the receivers observe until every sender is done,
    /// showing progress on `bar`.
    async fn record_while_sending(
        &mut self,
        mut senders: JoinSet<()>,
        record: &mut Recorder,
        counters: &SendCounters,
        bar: &ProgressBar,
        started: Instant,
        duration: Duration,
    ) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        while !senders.is_empty() {
            tokio::select! {
                done = senders.join_next() => {
                    if let Some(Err(error)) = done {
                        bail!("a sender failed: {error}");
                    }
                }
                Some(observed) = self.observed.recv() => record.take(observed),
                _ = ticker.tick() => {
                    bar.set_position(started.elapsed().as_secs().min(duration.as_secs()));
                    bar.set_prefix(format!(
                        "sent {}  delivered {}",
                        counters.sent.load(Ordering::Relaxed),
                        record.delivered_total
                    ));
                }
            }
        }
        Ok(())
    }

    /// Waits for every message in `acked` (and its burn) while they still
    /// come: until none has come for [`DRAIN_QUIET`], [`DRAIN_MAX`] at most.
    async fn drain(&mut self, record: &mut Recorder, acked: &[u64]) {
        let deadline = Instant::now() + DRAIN_MAX;
        let mut quiet_until = Instant::now() + DRAIN_QUIET;
        while Instant::now() < deadline.min(quiet_until) && !record.complete(acked) {
            match tokio::time::timeout(Duration::from_millis(100), self.observed.recv()).await {
                Ok(Some(observed)) => {
                    record.take(observed);
                    quiet_until = Instant::now() + DRAIN_QUIET;
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
    }

    /// The phase's figures.
    fn summarize(
        &self,
        window: Window,
        acked: &[u64],
        counters: &SendCounters,
        record: &Recorder,
    ) -> Summary {
        let delivered = record.deliveries.len() as u64;
        let total = &record.total;
        Summary {
            users: self.users.len(),
            nodes: self.nodes,
            target_rate: window.rate,
            duration_s: window.sending_took.as_secs_f64(),
            sent: counters.sent.load(Ordering::Relaxed),
            acked: acked.len() as u64,
            send_errors: counters.errors.load(Ordering::Relaxed),
            delivered,
            lost: record.lost(acked),
            duplicated: record.duplicated(),
            left_stored: delivered.saturating_sub(record.burned),
            // Sends happen only inside the window, so a server that falls
            // behind shows as fewer acknowledged in it.
            msgs_per_s: acked.len() as f64 / window.duration.as_secs_f64(),
            p50_ms: ms(total.value_at_quantile(0.5)),
            p99_ms: ms(total.value_at_quantile(0.99)),
            p999_ms: ms(total.value_at_quantile(0.999)),
            max_ms: ms(total.max()),
            server_cpu_us_per_msg: None,
            bench_cpu_us_per_msg: None,
            redis: None,
            first_error: counters.first.lock().ok().and_then(|e| e.clone()),
            timeline: record.timeline(),
            histogram: record.histogram(),
        }
    }

    /// Steps the rate up from `start` by `factor` until a step is not
    /// held (p99 over `p99_limit_ms`, anything lost, or the server falls
    /// behind: under 95% of the target acknowledged), then halves the gap
    /// between the last rate held and the first not held, [`REFINE_STEPS`]
    /// times. Returns every step, in the order run.
    pub async fn find_max(
        &mut self,
        start: f64,
        factor: f64,
        step: Duration,
        p99_limit_ms: f64,
    ) -> anyhow::Result<Vec<Summary>> {
        let mut steps = Vec::new();
        let mut rate = start;
        let mut held_at: Option<f64> = None;
        let failed_at = loop {
            if self
                .find_max_step(rate, step, p99_limit_ms, &mut steps)
                .await?
            {
                held_at = Some(rate);
                if steps.len() >= MAX_STEPS {
                    return Ok(steps);
                }
                rate *= factor;
            } else {
                break rate;
            }
        };
        let Some(mut low) = held_at else {
            return Ok(steps);
        };
        let mut high = failed_at;
        for _ in 0..REFINE_STEPS {
            let rate = ((low + high) / 2.0).round();
            if self
                .find_max_step(rate, step, p99_limit_ms, &mut steps)
                .await?
            {
                low = rate;
            } else {
                high = rate;
            }
        }
        Ok(steps)
    }

    /// Runs one step of [`Self::find_max`], says how it went, and whether
    /// it held.
    async fn find_max_step(
        &mut self,
        rate: f64,
        step: Duration,
        p99_limit_ms: f64,
        steps: &mut Vec<Summary>,
    ) -> anyhow::Result<bool> {
        let summary = self.phase(rate, step).await?;
        let held = summary.held(p99_limit_ms);
        eprintln!(
            "{:>8.0} msgs/s target: {:.0} acknowledged/s, p99 {:.2} ms, lost {}, CPU/msg server {} bench {}{} — {}",
            rate,
            summary.msgs_per_s,
            summary.p99_ms,
            summary.lost,
            micros(summary.server_cpu_us_per_msg, "-"),
            micros(summary.bench_cpu_us_per_msg, "-"),
            summary
                .redis
                .as_ref()
                .map(|redis| format!(", Redis {}", redis.render()))
                .unwrap_or_default(),
            if held { "held" } else { "not held" }
        );
        steps.push(summary);
        Ok(held)
    }

    /// Measures the CPU of these server processes in every phase from now
    /// on ([`Summary::server_cpu_us_per_msg`]).
    pub fn measure_cpu_of(&mut self, pids: &[u32]) {
        self.server_pids = pids.to_vec();
    }

    /// Reads the Redis servers of every phase from now on
    /// ([`Summary::redis`]).
    pub fn measure_redis(&mut self, probe: RedisProbe) {
        self.redis = Some(probe);
    }

    /// The Redis servers now, if they are measured; a failed reading is a
    /// warning (that phase has no Redis figures), not the end of the run.
    async fn read_redis(&self) -> Option<Reading> {
        match self.redis.as_ref()?.read().await {
            Ok(reading) => Some(reading),
            Err(error) => {
                eprintln!("warning: {error:#}; this phase has no Redis figures");
                None
            }
        }
    }

    /// Stops the receivers and closes every connection.
    pub fn stop(self) {
        self.receivers_stop.store(true, Ordering::Relaxed);
    }

    /// The swarm's user ids (for tests).
    pub fn user_ids(&self) -> Vec<UserId> {
        self.users.iter().map(|u| u.id).collect()
    }
}

/// What a phase's senders did, together.
#[derive(Default)]
struct SendCounters {
    sent: AtomicU64,
    errors: AtomicU64,
    /// The first send error.
    first: std::sync::Mutex<Option<String>>,
    /// The sequence numbers the server acknowledged (each sender adds its
    /// own when it is done).
    acked: std::sync::Mutex<Vec<u64>>,
}

impl SendCounters {
    fn first_error(&self, error: String) {
        if let Ok(mut first) = self.first.lock()
            && first.is_none()
        {
            *first = Some(error);
        }
    }

    /// Adds one sender's acknowledged sends.
    fn acked(&self, mine: Vec<u64>) {
        if let Ok(mut all) = self.acked.lock() {
            all.extend(mine);
        }
    }

    /// Every acknowledged send, once the senders are done.
    fn take_acked(&self) -> anyhow::Result<Vec<u64>> {
        let mut acked = self
            .acked
            .lock()
            .map_err(|_| anyhow::anyhow!("a sender panicked"))?;
        Ok(std::mem::take(&mut *acked))
    }
}

/// The sending window of a phase.
struct Window {
    /// Messages per second asked for, all users together.
    rate: f64,
    /// How long the senders were to send.
    duration: Duration,
    /// How long until the last sender was done.
    sending_took: Duration,
}

/// One user's sending side in a phase: a message to the next of its
/// friends every `period`, from `offset` into the phase until `until`.
struct Sender {
    client: Arc<Client>,
    olm: Option<Olm>,
    friends: Vec<UserId>,
    counters: Arc<SendCounters>,
    next_seq: Arc<AtomicU64>,
    epoch: Instant,
    phase: u32,
    offset: Duration,
    period: Duration,
    until: tokio::time::Instant,
}

impl Sender {
    /// Sends until the window ends, then adds what was acknowledged to the
    /// counters. The blob is made once; each send only stamps its header.
    async fn run(self) {
        let mut blob = vec![0u8; MESSAGE_BYTES];
        rand::fill(&mut blob[..]);
        blob[..4].copy_from_slice(MAGIC);
        blob[4..8].copy_from_slice(&self.phase.to_be_bytes());
        let until = self.until;
        // At a low rate a sender's period can outlast the window:
        // neither the offset nor a tick may hold it past the end.
        if tokio::time::timeout_at(until, tokio::time::sleep(self.offset))
            .await
            .is_err()
        {
            return;
        }
        let mut tick = tokio::time::interval(self.period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut n = 0usize;
        let mut mine = Vec::new();
        loop {
            if tokio::time::timeout_at(until, tick.tick()).await.is_err()
                || tokio::time::Instant::now() >= until
            {
                break;
            }
            let to = self.friends[n % self.friends.len()];
            n += 1;
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            blob[8..16].copy_from_slice(&seq.to_be_bytes());
            let sent_us = u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
            blob[16..24].copy_from_slice(&sent_us.to_be_bytes());
            self.counters.sent.fetch_add(1, Ordering::Relaxed);
            let id = wisp_client::new_client_msg_id();
            let ciphertext = match &self.olm {
                None => blob.clone(),
                Some(olm) => match seal(olm, to, id, self.phase, seq, sent_us) {
                    Ok(ciphertext) => ciphertext,
                    Err(error) => {
                        self.counters.errors.fetch_add(1, Ordering::Relaxed);
                        self.counters.first_error(error);
                        continue;
                    }
                },
            };
            match self.client.send_ciphertext(to, id, ciphertext, TTL).await {
                Ok(_) => mine.push(seq),
                Err(error) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                    self.counters.first_error(error.to_string());
                }
            }
        }
        self.counters.acked(mine);
    }
}

/// The progress bar while a phase sends (hidden with `quiet`).
fn sending_bar(quiet: bool, rate: f64, duration: Duration) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(duration.as_secs().max(1));
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} s  {prefix}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(format!("{rate:.0} msgs/s"));
    bar
}

/// Microseconds as milliseconds.
/// A CPU figure per message as shown, e.g. `51.3 µs`, or `missing`.
fn micros(value: Option<f64>, missing: &str) -> String {
    value.map_or_else(|| missing.to_owned(), |us| format!("{us:.1} µs"))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// Steps of `--find-max` going up, at most.
const MAX_STEPS: usize = 30;

/// Steps of `--find-max` halving the gap between held and not held, after
/// going up.
const REFINE_STEPS: usize = 3;

/// A phase's measurements.
struct Recorder {
    phase: u32,
    /// When the phase started, from the swarm's epoch.
    start: Duration,
    total: Histogram<u64>,
    seconds: Vec<Histogram<u64>>,
    /// seq → deliveries.
    deliveries: HashMap<u64, u32>,
    delivered_total: u64,
    burned: u64,
}

/// Latencies from 1 µs to 10 min at 3 significant figures.
#[allow(clippy::expect_used)] // constant, valid bounds
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

impl Recorder {
    fn new(phase: u32, start: Duration) -> Self {
        Self {
            phase,
            start,
            total: histogram(),
            seconds: Vec::new(),
            deliveries: HashMap::new(),
            delivered_total: 0,
            burned: 0,
        }
    }

    fn take(&mut self, observed: Observed) {
        match observed {
            Observed::Delivered {
                phase,
                seq,
                latency_us,
                at,
            } => {
                if phase != self.phase {
                    return;
                }
                *self.deliveries.entry(seq).or_default() += 1;
                self.delivered_total += 1;
                let latency = latency_us.max(1);
                let _ = self.total.record(latency);
                let second = at.saturating_sub(self.start).as_secs() as usize;
                while self.seconds.len() <= second {
                    self.seconds.push(histogram());
                }
                let _ = self.seconds[second].record(latency);
            }
            Observed::Burned(n) => self.burned += n,
        }
    }

    /// Whether every one of `acked` was delivered and every delivery
    /// burned.
    fn complete(&self, acked: &[u64]) -> bool {
        acked.iter().all(|seq| self.deliveries.contains_key(seq))
            && self.burned >= self.deliveries.len() as u64
    }

    /// Acknowledged messages never delivered.
    fn lost(&self, acked: &[u64]) -> u64 {
        acked
            .iter()
            .filter(|seq| !self.deliveries.contains_key(seq))
            .count() as u64
    }

    /// Deliveries beyond the first of a message.
    fn duplicated(&self) -> u64 {
        self.deliveries
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// Latency and deliveries per second of the phase.
    fn timeline(&self) -> Vec<Second> {
        self.seconds
            .iter()
            .enumerate()
            .map(|(t, h)| Second {
                t: t as u64,
                delivered: h.len(),
                p50_ms: ms(h.value_at_quantile(0.5)),
                p99_ms: ms(h.value_at_quantile(0.99)),
            })
            .collect()
    }

    /// Every non-empty latency bucket: (upper bound in ms, count).
    fn histogram(&self) -> Vec<(f64, u64)> {
        self.total
            .iter_log(1000, 1.25)
            .filter(|v| v.count_since_last_iteration() > 0)
            .map(|v| (ms(v.value_iterated_to()), v.count_since_last_iteration()))
            .collect()
    }
}

/// Text padding, so an encrypted message carries about as much as a short
/// chat message.
const E2E_TEXT_BYTES: usize = 120;

/// Encrypts a bench message for `to` (its header as text, padded).
fn seal(
    olm: &Olm,
    to: UserId,
    client_msg_id: ClientMsgId,
    phase: u32,
    seq: u64,
    sent_us: u64,
) -> Result<Vec<u8>, String> {
    let mut body = format!("WBv1 {phase} {seq} {sent_us} ");
    while body.len() < E2E_TEXT_BYTES {
        body.push('.');
    }
    let now_ms = wisp_client::now_ms();
    let sealed = Sealed {
        client_msg_id: client_msg_id.0.to_vec(),
        sent_unix_ms: now_ms.0,
        expires_unix_ms: now_ms.0.saturating_add(3_600_000),
        kind: Some(Kind::Text(Text {
            body,
            view_seconds: 0,
        })),
    };
    olm.lock()
        .map_err(|_| "a user's Olm state was poisoned".to_owned())?
        .encrypt(to, &sealed)
        .map_err(|e| format!("encrypting: {e}"))
}

/// Decrypts a bench message from `from` and reads its header.
fn open(olm: &Olm, from: UserId, ciphertext: &[u8]) -> Option<(u32, u64, u64)> {
    let sealed = olm.lock().ok()?.decrypt(from, ciphertext).ok()?;
    let Some(Kind::Text(text)) = sealed.kind else {
        return None;
    };
    let mut parts = text.body.split(' ');
    if parts.next()? != "WBv1" {
        return None;
    }
    Some((
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
        parts.next()?.parse().ok()?,
    ))
}

/// Gives every user an Olm state, publishes its one-time keys, and opens a
/// session with each friend (claiming one of the friend's keys), so that
/// the measured phase encrypts and decrypts but sets nothing up.
async fn open_sessions(
    clients: &[Arc<Client>],
    identities: Vec<Identity>,
    friends: &[Vec<UserId>],
    quiet: bool,
) -> anyhow::Result<Vec<Olm>> {
    let now_ms = wisp_client::now_ms();
    let bar = progress(quiet, clients.len() as u64, "keys");
    let jobs: Vec<_> = identities
        .into_iter()
        .zip(clients.iter().cloned())
        .map(|(identity, client)| async move {
            let mut state = LocalState::new(identity);
            if let Some(upload) =
                state.prepare_key_upload(client.keys_remaining_at_login() as usize, now_ms)
            {
                client
                    .upload_keys(upload)
                    .await
                    .map_err(|e| explain(e, "uploading keys"))?;
                state.keys_published();
            }
            Ok(Arc::new(std::sync::Mutex::new(state)))
        })
        .collect();
    let olms = in_parallel(jobs, &bar).await?;
    let bar = progress(quiet, clients.len() as u64, "sessions");
    let jobs: Vec<_> = clients
        .iter()
        .cloned()
        .zip(olms.iter().cloned())
        .zip(friends.iter().cloned())
        .map(|((client, olm), friends)| async move {
            for friend in friends {
                let bundle = client
                    .claim_keys(friend)
                    .await
                    .map_err(|e| explain(e, "claiming a friend's keys"))?;
                olm.lock()
                    .map_err(|_| anyhow::anyhow!("a user's Olm state was poisoned"))?
                    .start_session(friend, &bundle)
                    .map_err(|e| anyhow::anyhow!("opening a session: {e}"))?;
            }
            Ok(())
        })
        .collect();
    in_parallel(jobs, &bar).await?;
    Ok(olms)
}

/// Reads the header of a bench message: (phase, seq, sent µs).
fn header(ciphertext: &[u8]) -> Option<(u32, u64, u64)> {
    if ciphertext.len() < 24 || &ciphertext[..4] != MAGIC {
        return None;
    }
    let phase = u32::from_be_bytes(ciphertext[4..8].try_into().ok()?);
    let seq = u64::from_be_bytes(ciphertext[8..16].try_into().ok()?);
    let sent = u64::from_be_bytes(ciphertext[16..24].try_into().ok()?);
    Some((phase, seq, sent))
}

/// One user's receiving side: records deliveries and burns them in
/// batches (whatever has arrived when the previous burn returned).
async fn receive(
    mut events: Events,
    client: Arc<Client>,
    olm: Option<Olm>,
    observe: mpsc::UnboundedSender<Observed>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) {
    const BATCH: usize = 256;
    let mut ids = Vec::with_capacity(BATCH);
    loop {
        let Some(event) = events.next().await else {
            return;
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let mut next = Some(event);
        while let Some(event) = next.take() {
            if let ServerEvent::Delivery(delivery) = event {
                let now = epoch.elapsed();
                let read = match &olm {
                    None => header(&delivery.ciphertext),
                    Some(olm) => open(olm, delivery.from, &delivery.ciphertext),
                };
                if let Some((phase, seq, sent_us)) = read {
                    let now_us = u64::try_from(now.as_micros()).unwrap_or(u64::MAX);
                    let _ = observe.send(Observed::Delivered {
                        phase,
                        seq,
                        latency_us: now_us.saturating_sub(sent_us),
                        at: now,
                    });
                }
                ids.push(delivery.message_id);
            }
            if ids.len() >= BATCH {
                break;
            }
            // Whatever else has already arrived joins this batch.
            next = events.try_next();
        }
        if !ids.is_empty() {
            match client.ack(std::mem::take(&mut ids)).await {
                Ok(burned) => {
                    let _ = observe.send(Observed::Burned(u64::from(burned)));
                }
                Err(_) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip_and_strangers_are_ignored() {
        let mut blob = vec![0u8; MESSAGE_BYTES];
        blob[..4].copy_from_slice(MAGIC);
        blob[4..8].copy_from_slice(&7u32.to_be_bytes());
        blob[8..16].copy_from_slice(&42u64.to_be_bytes());
        blob[16..24].copy_from_slice(&1234u64.to_be_bytes());
        assert_eq!(header(&blob), Some((7, 42, 1234)));
        assert_eq!(header(b"short"), None);
        assert_eq!(header(&[0u8; 200]), None);
    }

    #[test]
    fn users_fall_into_circles_of_six_and_the_last_takes_a_lone_remainder() {
        assert_eq!(circles(2), vec![0..2]);
        assert_eq!(circles(12), vec![0..6, 6..12]);
        assert_eq!(circles(13), vec![0..6, 6..13]);
        assert_eq!(circles(14), vec![0..6, 6..12, 12..14]);
        let ids: Vec<UserId> = (0..13).map(|_| Identity::generate().user_id()).collect();
        let (pairs, friends) = friendships(&circles(13), &ids);
        // 15 pairs in a circle of six, 21 in one of seven.
        assert_eq!(pairs.len(), 15 + 21);
        assert_eq!(friends[0].len(), 5);
        assert_eq!(friends[12].len(), 6);
        assert!(!friends[6].contains(&ids[5]));
    }
}
