//! One handle to a deployment's Redis, whatever its topology:
//!
//! - `redis://[user:password@]host:port[/db]` (or `rediss://`, `unix://`):
//!   one server;
//! - `redis+sentinel://[user:password@]host:port[,host:port…]/service[/db]`:
//!   the primary of `service` as the listed Sentinels name it (the
//!   credentials and database are the data nodes'); after a failover the
//!   link asks the Sentinels again and follows the new primary, no restart;
//! - `redis+cluster://[user:password@]host:port[,host:port…]`: a Redis
//!   Cluster, found from these seed nodes.
//!
//! Credentials are percent-decoded the way redis-rs decodes them in
//! `redis://` URLs (`%40` for `@`, `%3A` for `:`…).
//!
//! A command that fails because the connection broke or the server stepped
//! down (`READONLY`, `LOADING`, `MASTERDOWN`…) is retried with exponential
//! backoff and jitter, for up to [`RedisLink::FAILOVER_WAIT`]: long enough
//! to ride out a Sentinel failover, short enough that a caller hears about
//! an outage. The jitter spreads the retries of many nodes (and of many
//! tasks on one node) waiting out the same failover, so they do not hit
//! the new primary in lockstep. Every command Wisp sends is safe to repeat
//! (scripts are idempotent by design: a put carries its client message id,
//! a burn names its ids).

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult,
    ServerErrorKind, Value,
};
use tokio::sync::Mutex;

use super::StoreError;

/// How long connecting to one Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one reply may take (above the longest `WAIT` Wisp sends).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first retry waits this long (plus jitter)...
const FIRST_RETRY: Duration = Duration::from_millis(50);

/// ...and each later one twice the one before, up to this (plus jitter).
const LONGEST_RETRY: Duration = Duration::from_millis(800);

/// A `redis+sentinel://` URL, read.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `redis://host:port` of each Sentinel.
    sentinels: Vec<String>,
    /// The monitored service's name.
    service: String,
    /// The data nodes' user, decoded.
    username: Option<String>,
    /// The data nodes' password, decoded.
    password: Option<String>,
    /// The data nodes' database.
    db: i64,
}

impl std::fmt::Debug for SentinelUrl {
    // Credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentinelUrl")
            .field("sentinels", &self.sentinels)
            .field("service", &self.service)
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// A `redis+cluster://` URL, read.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterUrl {
    /// `user:password@` as written (still percent-encoded: it goes into
    /// the `redis://` URL of each node, which redis-rs decodes), or empty.
    auth: String,
    /// `host:port` of each seed.
    seeds: Vec<String>,
}

impl std::fmt::Debug for ClusterUrl {
    // Credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterUrl")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

/// A Redis URL of any of the forms above, read and checked but not
/// connected to. Its `Display` writes the URL back (credentials
/// percent-encoded) so that it reads back the same; `Debug` leaves the
/// credentials out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisUrl {
    /// One server, as redis-rs reads it.
    Standalone(StandaloneUrl),
    /// A service behind Sentinels.
    Sentinel(SentinelUrl),
    /// A Redis Cluster.
    Cluster(ClusterUrl),
}

/// A `redis://`, `rediss://` or `unix://` URL that redis-rs accepts. Kept as
/// written: redis-rs decodes it again on connecting.
#[derive(Clone, PartialEq, Eq)]
pub struct StandaloneUrl(String);

impl std::fmt::Debug for StandaloneUrl {
    // Credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandaloneUrl(..)")
    }
}

impl RedisUrl {
    /// Reads `url`; the error says what is wrong with it.
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            return SentinelUrl::parse(rest).map(Self::Sentinel);
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            return ClusterUrl::parse(rest).map(Self::Cluster);
        }
        redis::Client::open(url).map_err(|e| bad_url(e.to_string()))?;
        Ok(Self::Standalone(StandaloneUrl(url.to_owned())))
    }
}

/// What a credential is percent-encoded as: everything but letters and
/// digits, so it reads back whatever it holds.
fn encode(credential: &str) -> percent_encoding::PercentEncode<'_> {
    percent_encoding::utf8_percent_encode(credential, percent_encoding::NON_ALPHANUMERIC)
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standalone(StandaloneUrl(url)) => f.write_str(url),
            Self::Sentinel(url) => {
                f.write_str("redis+sentinel://")?;
                if let Some(password) = &url.password {
                    let user = url.username.as_deref().unwrap_or_default();
                    write!(f, "{}:{}@", encode(user), encode(password))?;
                }
                let hosts: Vec<&str> = url
                    .sentinels
                    .iter()
                    .map(|s| s.trim_start_matches("redis://"))
                    .collect();
                write!(f, "{}/{}/{}", hosts.join(","), url.service, url.db)
            }
            Self::Cluster(url) => write!(f, "redis+cluster://{}{}", url.auth, url.seeds.join(",")),
        }
    }
}

fn bad_url(why: impl std::fmt::Display) -> StoreError {
    StoreError::Config(format!("invalid Redis URL: {why}"))
}

/// Percent-decodes one credential, as redis-rs does for `redis://` URLs.
fn decode(what: &str, encoded: &str) -> Result<String, StoreError> {
    percent_encoding::percent_decode_str(encoded)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| bad_url(format!("the {what} is not UTF-8 once percent-decoded")))
}

/// Splits `[user[:password]@]hosts` into the decoded credentials and the
/// hosts. (As in `redis://` URLs, a lone `secret@` is a password.)
fn split_auth(authority: &str) -> Result<(Option<String>, Option<String>, &str), StoreError> {
    let Some((auth, hosts)) = authority.rsplit_once('@') else {
        return Ok((None, None, authority));
    };
    let (user, password) = auth.split_once(':').unwrap_or(("", auth));
    let user = (!user.is_empty())
        .then(|| decode("user name", user))
        .transpose()?;
    Ok((user, Some(decode("password", password)?), hosts))
}

/// `host:port,host:port` as a list, each checked.
fn hosts(list: &str) -> Result<Vec<String>, StoreError> {
    let hosts: Vec<String> = list
        .split(',')
        .map(|host| {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| bad_url(format!("`{host}` needs a port (host:port)")))?;
            let odd = |c: char| c.is_whitespace() || c.is_control() || "/@?#".contains(c);
            if name.is_empty() || name.contains(odd) || port.parse::<u16>().is_err() {
                return Err(bad_url(format!("`{host}` is not host:port")));
            }
            Ok(host.to_owned())
        })
        .collect::<Result<_, _>>()?;
    if hosts.is_empty() {
        return Err(bad_url("no host given"));
    }
    Ok(hosts)
}

impl SentinelUrl {
    /// Reads what follows `redis+sentinel://`.
    fn parse(rest: &str) -> Result<Self, StoreError> {
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            bad_url("a Sentinel URL names its service: redis+sentinel://host:port/service")
        })?;
        let (username, password, list) = split_auth(authority)?;
        let (service, db) = match path.split_once('/') {
            Some((service, db)) => (
                service,
                db.parse()
                    .map_err(|_| bad_url(format!("database `{db}` is not a number")))?,
            ),
            None => (path, 0),
        };
        if service.is_empty() {
            return Err(bad_url("the Sentinel service name is empty"));
        }
        Ok(Self {
            sentinels: hosts(list)?
                .into_iter()
                .map(|h| format!("redis://{h}"))
                .collect(),
            service: service.to_owned(),
            username,
            password,
            db,
        })
    }
}

impl ClusterUrl {
    /// Reads what follows `redis+cluster://`.
    fn parse(rest: &str) -> Result<Self, StoreError> {
        let (auth, list) = match rest.rsplit_once('@') {
            Some((auth, list)) => (format!("{auth}@"), list),
            None => (String::new(), rest),
        };
        Ok(Self {
            auth,
            seeds: hosts(list.trim_end_matches('/'))?,
        })
    }
}

/// Whether `error` means "this server cannot serve you now; try again,
/// maybe elsewhere" rather than "this command is wrong".
fn transient(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        // Mid-failover the Sentinels name no usable primary for a moment.
        || error.kind() == ErrorKind::MasterNameNotFoundBySentinel
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::ReadOnly
                    | ServerErrorKind::MasterDown
                    | ServerErrorKind::BusyLoading
                    | ServerErrorKind::TryAgain
                    | ServerErrorKind::ClusterDown
            )
        )
}

/// The primary named by Sentinels, reconnected after every failover.
struct SentinelPrimary {
    sentinel: Mutex<SentinelClient>,
    /// The connection to the primary as last resolved.
    current: Mutex<Option<MultiplexedConnection>>,
}

impl SentinelPrimary {
    async fn resolve(&self) -> RedisResult<redis::Client> {
        self.sentinel.lock().await.async_get_client().await
    }

    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            return Ok(connection.clone());
        }
        let client = self.resolve().await?;
        let connection = client
            .get_multiplexed_async_connection_with_config(&connection_config())
            .await?;
        *current = Some(connection.clone());
        Ok(connection)
    }

    async fn forget(&self) {
        *self.current.lock().await = None;
    }
}

fn connection_config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
}

/// The deployment's Redis, connected: one variant per topology its URL
/// can name.
#[derive(Clone)]
enum Topology {
    /// One server (`redis://`).
    Standalone {
        client: redis::Client,
        manager: ConnectionManager,
    },
    /// The primary Sentinels name (`redis+sentinel://`).
    Sentinel(Arc<SentinelPrimary>),
    /// A Redis Cluster (`redis+cluster://`).
    Cluster {
        /// `user:password@`, or empty.
        auth: Arc<str>,
        /// `host:port` of each seed.
        seeds: Arc<Vec<String>>,
        connection: ClusterConnection,
    },
}

/// A connection to the deployment's Redis: cheap to clone, shared by all
/// tasks, reconnects and follows failovers by itself.
#[derive(Clone)]
pub(crate) struct RedisLink {
    topology: Topology,
    db: i64,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let topology = match self.topology {
            Topology::Standalone { .. } => "standalone",
            Topology::Sentinel(_) => "sentinel",
            Topology::Cluster { .. } => "cluster",
        };
        f.debug_struct("RedisLink")
            .field("topology", &topology)
            .finish()
    }
}

/// The retry schedule of one command: exponential with jitter (each wait
/// is the doubling step plus up to as much again at random), for as many
/// attempts as fit in [`RedisLink::FAILOVER_WAIT`].
fn retry_schedule() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(FIRST_RETRY)
        .with_max_delay(LONGEST_RETRY)
        .with_jitter()
        .without_max_times()
        .with_total_delay(Some(RedisLink::FAILOVER_WAIT))
}

impl RedisLink {
    /// How long a command keeps being retried through a broken connection
    /// or a failover before its caller hears of the failure.
    pub(crate) const FAILOVER_WAIT: Duration = Duration::from_secs(15);

    /// Connects to the Redis `url` names (see the module documentation).
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        let url = match RedisUrl::parse(url)? {
            RedisUrl::Sentinel(url) => return Self::connect_sentinel(url).await,
            RedisUrl::Cluster(url) => return Self::connect_cluster(url).await,
            RedisUrl::Standalone(StandaloneUrl(url)) => url,
        };
        let client = redis::Client::open(url).map_err(|e| bad_url(e.to_string()))?;
        let db = client.get_connection_info().redis_settings().db();
        let manager = client
            .get_connection_manager_with_config(
                ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT)),
            )
            .await?;
        Ok(Self {
            topology: Topology::Standalone { client, manager },
            db,
        })
    }

    async fn connect_sentinel(url: SentinelUrl) -> Result<Self, StoreError> {
        let mut node = redis::RedisConnectionInfo::default().set_db(url.db);
        if let Some(username) = url.username {
            node = node.set_username(username);
        }
        if let Some(password) = url.password {
            node = node.set_password(password);
        }
        let sentinel = SentinelClient::build(
            url.sentinels,
            url.service,
            Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node)),
            SentinelServerType::Master,
        )?;
        let primary = Arc::new(SentinelPrimary {
            sentinel: Mutex::new(sentinel),
            current: Mutex::new(None),
        });
        primary.connection().await?;
        Ok(Self {
            topology: Topology::Sentinel(primary),
            db: url.db,
        })
    }

    async fn connect_cluster(url: ClusterUrl) -> Result<Self, StoreError> {
        let ClusterUrl { auth, seeds } = url;
        let urls = seeds.iter().map(|h| format!("redis://{auth}{h}"));
        let connection = redis::cluster::ClusterClient::builder(urls)
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .build()?
            .get_async_connection()
            .await?;
        Ok(Self {
            topology: Topology::Cluster {
                auth: auth.into(),
                seeds: Arc::new(seeds),
                connection,
            },
            db: 0,
        })
    }

    /// Whether this is a Redis Cluster (where commands without a key have
    /// no single home).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.topology, Topology::Cluster { .. })
    }

    /// A client for a pub/sub connection: the server (or current primary)
    /// itself; in a cluster, any reachable seed (a publication reaches
    /// every node of a cluster).
    pub(crate) async fn pubsub_client(&self, attempt: usize) -> RedisResult<redis::Client> {
        match &self.topology {
            Topology::Standalone { client, .. } => Ok(client.clone()),
            Topology::Sentinel(primary) => primary.resolve().await,
            Topology::Cluster { auth, seeds, .. } => {
                redis::Client::open(format!("redis://{auth}{}", seeds[attempt % seeds.len()]))
            }
        }
    }

    /// Every key matching `pattern`, from every primary. It walks the whole
    /// key space (`SCAN`, which never blocks the server for long): for
    /// tests, and for the rare account deletion, not for a hot path.
    pub(crate) async fn all_keys(&self, pattern: &str) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let Topology::Cluster {
            auth, connection, ..
        } = &self.topology
        else {
            scan_into(&mut self.clone(), pattern, &mut keys).await?;
            return Ok(keys);
        };
        // `CLUSTER NODES`: "<id> <host:port@bus> <flags> …" per node.
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut connection.clone())
            .await?;
        for line in nodes.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(address), Some(flags)) = (fields.get(1), fields.get(2)) else {
                continue;
            };
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                continue;
            }
            let address = address.split('@').next().unwrap_or(address);
            let client = redis::Client::open(format!("redis://{auth}{address}"))?;
            let mut node = client
                .get_multiplexed_async_connection_with_config(&connection_config())
                .await?;
            scan_into(&mut node, pattern, &mut keys).await?;
        }
        Ok(keys)
    }

    /// Runs `op` once on a connection. A Sentinel link forgets a primary
    /// that failed transiently, so the next attempt asks the Sentinels.
    async fn attempt<'a, T>(
        &self,
        op: &impl Fn(Connection) -> RedisFuture<'a, T>,
    ) -> RedisResult<T> {
        match &self.topology {
            Topology::Standalone { manager, .. } => op(Connection::Manager(manager.clone())).await,
            Topology::Cluster { connection, .. } => {
                op(Connection::Cluster(connection.clone())).await
            }
            Topology::Sentinel(primary) => {
                let outcome = op(Connection::Multiplexed(primary.connection().await?)).await;
                if outcome.as_ref().is_err_and(transient) {
                    primary.forget().await;
                }
                outcome
            }
        }
    }

    /// Runs `op` on a connection, retrying transient failures on the
    /// [`retry_schedule`] until [`Self::FAILOVER_WAIT`] has passed.
    async fn retrying<'a, T>(
        &self,
        op: impl Fn(Connection) -> RedisFuture<'a, T>,
    ) -> RedisResult<T> {
        let started = tokio::time::Instant::now();
        let (link, op) = (self, &op);
        (move || async move { link.attempt(op).await })
            .retry(retry_schedule())
            .when(|error| transient(error) && started.elapsed() < Self::FAILOVER_WAIT)
            .notify(|error, _| {
                metrics::counter!("wisp_redis_retries_total").increment(1);
                tracing::debug!(%error, "Redis unavailable; retrying");
            })
            .await
    }
}

/// Appends every key on `connection`'s server that matches `pattern`.
async fn scan_into<C: ConnectionLike + Send + Sync>(
    connection: &mut C,
    pattern: &str,
    keys: &mut Vec<String>,
) -> RedisResult<()> {
    use redis::AsyncCommands;
    let mut iter: redis::AsyncIter<'_, String> = connection.scan_match(pattern).await?;
    while let Some(key) = iter.next_item().await {
        keys.push(key?);
    }
    Ok(())
}

/// The connection one attempt runs on.
enum Connection {
    Manager(ConnectionManager),
    Multiplexed(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Manager(c) => c.req_packed_command(cmd),
            Self::Multiplexed(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Multiplexed(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Manager(c) => c.get_db(),
            Self::Multiplexed(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

impl ConnectionLike for RedisLink {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            self.retrying(|mut connection| {
                Box::pin(async move { connection.req_packed_command(cmd).await })
            })
            .await
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            self.retrying(|mut connection| {
                Box::pin(async move {
                    connection
                        .req_packed_commands(pipeline, offset, count)
                        .await
                })
            })
            .await
        })
    }

    fn get_db(&self) -> i64 {
        self.db
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_each_topology() {
        let sentinel = "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/wisp/2";
        assert_eq!(
            SentinelUrl::parse(sentinel.strip_prefix("redis+sentinel://").unwrap()).unwrap(),
            SentinelUrl {
                sentinels: vec![
                    "redis://10.0.0.1:26379".into(),
                    "redis://10.0.0.2:26379".into()
                ],
                service: "wisp".into(),
                username: None,
                password: Some("s3cret".into()),
                db: 2,
            }
        );
        assert_eq!(
            ClusterUrl::parse("u:p@a:7000,b:7001").unwrap(),
            ClusterUrl {
                auth: "u:p@".into(),
                seeds: vec!["a:7000".into(), "b:7001".into()]
            }
        );
    }

    #[test]
    fn sentinel_credentials_are_percent_decoded_like_redis_urls() {
        let url = SentinelUrl::parse("w%40sp:p%40ss%3Aw%2Fd%25@h:1/wisp").unwrap();
        assert_eq!(url.username.as_deref(), Some("w@sp"));
        assert_eq!(url.password.as_deref(), Some("p@ss:w/d%"));
        // The same as redis-rs makes of a `redis://` URL.
        let info = redis::Client::open("redis://w%40sp:p%40ss%3Aw%2Fd%25@h:1")
            .unwrap()
            .get_connection_info()
            .redis_settings()
            .clone();
        assert_eq!(info.username(), url.username.as_deref());
        assert_eq!(info.password(), url.password.as_deref());
        let error = SentinelUrl::parse(":%ff@h:1/wisp").unwrap_err().to_string();
        assert!(error.contains("not UTF-8"), "{error}");
    }

    async fn connect_error(url: &str) -> String {
        match RedisLink::connect(url).await {
            Ok(link) => panic!("{url} connected: {link:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[tokio::test]
    async fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("redis+sentinel://10.0.0.1:26379", "names its service"),
            ("redis+sentinel://10.0.0.1/wisp", "needs a port"),
            ("redis+sentinel://10.0.0.1:26379/", "service name is empty"),
            ("redis+cluster://a:notaport", "not host:port"),
            ("redis+cluster://a b:7000", "not host:port"),
            ("redis+sentinel://h?x:26379/wisp", "not host:port"),
            ("http://x", "invalid Redis URL"),
        ] {
            let error = connect_error(url).await;
            assert!(error.contains(says), "{url}: {error}");
        }
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let sentinel = SentinelUrl::parse("user:s3cret@h:1/wisp").unwrap();
        let cluster = ClusterUrl::parse("user:s3cret@h:1").unwrap();
        for shown in [format!("{sentinel:?}"), format!("{cluster:?}")] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("user"),
                "{shown}"
            );
        }
    }

    #[test]
    fn retries_are_jittered_and_fit_the_failover_wait() {
        use backon::BackoffBuilder;
        let first: Vec<Duration> = retry_schedule().build().collect();
        let second: Vec<Duration> = retry_schedule().build().collect();
        assert_ne!(first, second, "two nodes do not retry in lockstep");
        assert!(first.iter().sum::<Duration>() <= RedisLink::FAILOVER_WAIT);
        assert!(first.len() >= 10, "retries all through the wait: {first:?}");
        // (Backon computes in f32: a step may be off by a few nanoseconds.)
        let slack = Duration::from_millis(1);
        for (n, delay) in first.iter().enumerate() {
            let step = (FIRST_RETRY * 2u32.pow(n.min(10) as u32)).min(LONGEST_RETRY);
            assert!(
                *delay + slack >= step && *delay <= step * 2 + slack,
                "{n}: {delay:?}"
            );
        }
    }
}
