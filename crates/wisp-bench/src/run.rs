//! `wisp-bench run`: users registered, befriended in circles, logged in
//! over the given nodes, then messages at an aggregate rate, every one
//! accounted for.
//!
//! Each message carries a header (phase, sequence number, send time) ahead
//! of padding, in a blob made once: the server sees opaque ciphertext of the
//! usual size and the bench spends no time on crypto. The receiver of a
//! message reads the header, records the send→deliver latency, and
//! acknowledges (burns) it, in batches as they come. At the end of a phase
//! every acknowledged send must have been delivered exactly once and burned.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::sync::mpsc;
use wisp_client::{
    Client, ClientError, ClientMsgId, ErrorCode, Events, Identity, LocalState, ServerEvent, UserId,
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
}

/// Latency and throughput over one second of a phase.
#[derive(Debug, Clone, Serialize)]
pub struct Second {
    pub t: u64,
    pub delivered: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The result of one phase.
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
    /// The first send error, if any (e.g. a rate limit).
    pub first_error: Option<String>,
    pub timeline: Vec<Second>,
    /// Every latency bucket: (upper bound in ms, count), for the report.
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
             latency send→deliver: p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms{}",
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

/// Runs `jobs` with at most [`SETUP_PARALLELISM`] at once, ticking `bar`.
async fn in_parallel<T, F>(jobs: Vec<F>, bar: &ProgressBar) -> anyhow::Result<Vec<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..jobs.len()).map(|_| None).collect();
    let mut running = tokio::task::JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        if running.len() >= SETUP_PARALLELISM
            && let Some(done) = running.join_next().await
        {
            let (j, value) = done.context("setup task")?;
            results[j] = Some(value?);
            bar.inc(1);
        }
        running.spawn(async move { (i, job.await) });
    }
    while let Some(done) = running.join_next().await {
        let (j, value) = done.context("setup task")?;
        results[j] = Some(value?);
        bar.inc(1);
    }
    bar.finish();
    results
        .into_iter()
        .map(|r| r.context("a setup job did not finish"))
        .collect()
}

/// Registers `users` new identities, spread over `servers`, over a few
/// connections each registering many (so a large run does not leave tens of
/// thousands of closed connections behind). Identity `i` is registered on
/// `servers[i % servers.len()]`.
pub async fn register(
    servers: &[String],
    users: usize,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<Identity>> {
    let workers = SETUP_PARALLELISM.min(users).max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..workers {
        let servers = servers.to_vec();
        let bar = bar.clone();
        tasks.spawn(async move {
            let mut mine = Vec::new();
            let mut connections: HashMap<usize, Client> = HashMap::new();
            for i in (worker..users).step_by(workers) {
                let node = i % servers.len();
                if let std::collections::hash_map::Entry::Vacant(slot) = connections.entry(node) {
                    let url = &servers[node];
                    let (client, _) = Client::connect(url)
                        .await
                        .map_err(|e| explain(e, &format!("connecting to {url}")))?;
                    slot.insert(client);
                }
                let identity = Identity::generate();
                if let Some(client) = connections.get(&node) {
                    client
                        .register(&identity)
                        .await
                        .map_err(|e| explain(e, "registering"))?;
                }
                mine.push((i, identity));
                bar.inc(1);
            }
            anyhow::Ok(mine)
        });
    }
    let mut identities: Vec<Option<Identity>> = (0..users).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        for (i, identity) in done.context("registration task")?? {
            identities[i] = Some(identity);
        }
    }
    identities
        .into_iter()
        .map(|i| i.context("a registration did not finish"))
        .collect()
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
    /// each in on one of `servers` (round robin).
    ///
    /// With `e2e`, every user also publishes one-time keys and opens an Olm
    /// session with each friend, and every message is encrypted and
    /// decrypted for real.
    pub async fn start(
        servers: &[String],
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
        let identities = register(servers, users, &bar).await?;
        bar.finish();

        // Log in, each on its node.
        let bar = progress(quiet, users as u64, "logging in");
        let jobs: Vec<_> = identities
            .into_iter()
            .enumerate()
            .map(|(i, identity)| {
                let url = servers[i % servers.len()].clone();
                async move {
                    let (mut client, events) = Client::connect(&url)
                        .await
                        .map_err(|e| explain(e, &format!("connecting to {url}")))?;
                    let name = client.server_name().to_owned();
                    client
                        .login(&identity, &name)
                        .await
                        .map_err(|e| explain(e, "logging in"))?;
                    Ok((identity, client, events))
                }
            })
            .collect();
        let logged_in = in_parallel(jobs, &bar).await?;

        // Circles of six (the last one takes any remainder).
        let ids: Vec<UserId> = logged_in
            .iter()
            .map(|(identity, ..)| identity.user_id())
            .collect();
        let mut circles: Vec<std::ops::Range<usize>> = (0..users)
            .step_by(CIRCLE)
            .map(|start| start..(start + CIRCLE).min(users))
            .collect();
        if circles.len() > 1 && circles.last().is_some_and(|c| c.len() < 2) {
            let last = circles.pop().unwrap_or(0..0);
            if let Some(previous) = circles.last_mut() {
                previous.end = last.end;
            }
        }
        let mut clients: Vec<Arc<Client>> = Vec::new();
        let mut events_of = Vec::new();
        let mut identities = Vec::new();
        for (identity, client, events) in logged_in {
            clients.push(Arc::new(client));
            events_of.push(events);
            identities.push(identity);
        }
        let mut friends: Vec<Vec<UserId>> = vec![Vec::new(); users];
        let mut pairs = Vec::new();
        for circle in &circles {
            for i in circle.clone() {
                for j in (i + 1)..circle.end {
                    pairs.push((i, j));
                    friends[i].push(ids[j]);
                    friends[j].push(ids[i]);
                }
            }
        }
        let bar = progress(quiet, pairs.len() as u64, "befriending");
        let jobs: Vec<_> = pairs
            .into_iter()
            .map(|(i, j)| {
                let (a, b) = (Arc::clone(&clients[i]), Arc::clone(&clients[j]));
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
            })
            .collect();
        in_parallel(jobs, &bar).await?;
        let olms = if e2e {
            Some(open_sessions(&clients, identities, &friends, quiet).await?)
        } else {
            None
        };

        let (observe, observed) = mpsc::unbounded_channel();
        let receivers_stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let mut swarm_users = Vec::with_capacity(users);
        for (i, events) in events_of.into_iter().enumerate() {
            let olm = olms.as_ref().map(|o| Arc::clone(&o[i]));
            tokio::spawn(receive(
                events,
                Arc::clone(&clients[i]),
                olm.clone(),
                observe.clone(),
                epoch,
                Arc::clone(&receivers_stop),
            ));
            swarm_users.push(User {
                id: ids[i],
                client: Arc::clone(&clients[i]),
                friends: std::mem::take(&mut friends[i]),
                olm,
            });
        }
        Ok(Self {
            users: swarm_users,
            nodes: servers.len(),
            observed,
            receivers_stop,
            epoch,
            next_seq: Arc::new(AtomicU64::new(0)),
            phase: 0,
            quiet,
        })
    }

    /// Sends at `rate` messages per second (all users together) for
    /// `duration`, then waits for every acknowledged message.
    pub async fn phase(&mut self, rate: f64, duration: Duration) -> anyhow::Result<Summary> {
        if rate <= 0.0 {
            bail!("the rate must be above 0");
        }
        self.phase += 1;
        let phase = self.phase;
        let senders = self.users.len();
        let period = Duration::from_secs_f64(senders as f64 / rate);
        let started = Instant::now();
        let until = started + duration;
        let acked = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        let counters = Arc::new(SendCounters::default());
        let mut tasks = tokio::task::JoinSet::new();
        for (i, user) in self.users.iter().enumerate() {
            let client = Arc::clone(&user.client);
            let olm = user.olm.clone();
            let friends = user.friends.clone();
            let acked = Arc::clone(&acked);
            let counters = Arc::clone(&counters);
            let next_seq = Arc::clone(&self.next_seq);
            let epoch = self.epoch;
            // Spread the senders' ticks over one period.
            let offset = period.mul_f64(i as f64 / senders as f64);
            tasks.spawn(async move {
                let mut blob = vec![0u8; MESSAGE_BYTES];
                rand::fill(&mut blob[..]);
                blob[..4].copy_from_slice(MAGIC);
                blob[4..8].copy_from_slice(&phase.to_be_bytes());
                let until = tokio::time::Instant::from_std(until);
                // At a low rate a sender's period can outlast the window:
                // neither the offset nor a tick may hold it past the end.
                if tokio::time::timeout_at(until, tokio::time::sleep(offset))
                    .await
                    .is_err()
                {
                    return;
                }
                let mut tick = tokio::time::interval(period);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                let mut n = 0usize;
                let mut mine = Vec::new();
                loop {
                    if tokio::time::timeout_at(until, tick.tick()).await.is_err()
                        || tokio::time::Instant::now() >= until
                    {
                        break;
                    }
                    let to = friends[n % friends.len()];
                    n += 1;
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    blob[8..16].copy_from_slice(&seq.to_be_bytes());
                    let sent_us = u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
                    blob[16..24].copy_from_slice(&sent_us.to_be_bytes());
                    counters.sent.fetch_add(1, Ordering::Relaxed);
                    let id = wisp_client::new_client_msg_id();
                    let ciphertext = match &olm {
                        None => blob.clone(),
                        Some(olm) => match seal(olm, to, id, phase, seq, sent_us) {
                            Ok(ciphertext) => ciphertext,
                            Err(error) => {
                                counters.errors.fetch_add(1, Ordering::Relaxed);
                                counters.first_error(error);
                                continue;
                            }
                        },
                    };
                    match client.send_ciphertext(to, id, ciphertext, TTL).await {
                        Ok(_) => mine.push(seq),
                        Err(error) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            counters.first_error(error.to_string());
                        }
                    }
                }
                if let Ok(mut all) = acked.lock() {
                    all.extend(mine);
                }
            });
        }
        // Progress while sending.
        let bar = if self.quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new(duration.as_secs().max(1));
            bar.set_style(
                ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} s  {prefix}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message(format!("{rate:.0} msgs/s"));
            bar
        };
        let mut record = Recorder::new(phase, started.duration_since(self.epoch));
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        while !tasks.is_empty() {
            tokio::select! {
                done = tasks.join_next() => {
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
        let sending_took = started.elapsed();
        bar.finish_and_clear();
        let acked = std::mem::take(
            &mut *acked
                .lock()
                .map_err(|_| anyhow::anyhow!("a sender panicked"))?,
        );
        // Wait for every acknowledged message (and its burn) while they
        // still come.
        let deadline = Instant::now() + DRAIN_MAX;
        let mut quiet_until = Instant::now() + DRAIN_QUIET;
        while Instant::now() < deadline.min(quiet_until)
            && (acked.iter().any(|seq| !record.deliveries.contains_key(seq))
                || record.burned < record.deliveries.len() as u64)
        {
            match tokio::time::timeout(Duration::from_millis(100), self.observed.recv()).await {
                Ok(Some(observed)) => {
                    record.take(observed);
                    quiet_until = Instant::now() + DRAIN_QUIET;
                }
                Ok(None) => break,
                Err(_) => {}
            }
        }
        let lost = acked
            .iter()
            .filter(|seq| !record.deliveries.contains_key(seq))
            .count() as u64;
        let duplicated = record
            .deliveries
            .values()
            .map(|n| u64::from(n.saturating_sub(1)))
            .sum();
        let delivered = record.deliveries.len() as u64;
        let ms = |us: u64| us as f64 / 1000.0;
        let total = &record.total;
        Ok(Summary {
            users: self.users.len(),
            nodes: self.nodes,
            target_rate: rate,
            duration_s: sending_took.as_secs_f64(),
            sent: counters.sent.load(Ordering::Relaxed),
            acked: acked.len() as u64,
            send_errors: counters.errors.load(Ordering::Relaxed),
            delivered,
            lost,
            duplicated,
            left_stored: delivered.saturating_sub(record.burned),
            // Sends happen only inside the window, so a server that falls
            // behind shows as fewer acknowledged in it.
            msgs_per_s: acked.len() as f64 / duration.as_secs_f64(),
            p50_ms: ms(total.value_at_quantile(0.5)),
            p99_ms: ms(total.value_at_quantile(0.99)),
            p999_ms: ms(total.value_at_quantile(0.999)),
            max_ms: ms(total.max()),
            first_error: counters.first.lock().ok().and_then(|e| e.clone()),
            timeline: record
                .seconds
                .iter()
                .enumerate()
                .map(|(t, h)| Second {
                    t: t as u64,
                    delivered: h.len(),
                    p50_ms: ms(h.value_at_quantile(0.5)),
                    p99_ms: ms(h.value_at_quantile(0.99)),
                })
                .collect(),
            histogram: total
                .iter_log(1000, 1.25)
                .filter(|v| v.count_since_last_iteration() > 0)
                .map(|v| (ms(v.value_iterated_to()), v.count_since_last_iteration()))
                .collect(),
        })
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
            "{:>8.0} msgs/s target: {:.0} acknowledged/s, p99 {:.2} ms, lost {} — {}",
            rate,
            summary.msgs_per_s,
            summary.p99_ms,
            summary.lost,
            if held { "held" } else { "not held" }
        );
        steps.push(summary);
        Ok(held)
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

#[derive(Default)]
struct SendCounters {
    sent: AtomicU64,
    errors: AtomicU64,
    first: std::sync::Mutex<Option<String>>,
}

impl SendCounters {
    fn first_error(&self, error: String) {
        if let Ok(mut first) = self.first.lock()
            && first.is_none()
        {
            *first = Some(error);
        }
    }
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
}
