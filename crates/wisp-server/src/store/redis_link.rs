//! One handle to a deployment's Redis, whatever its shape:
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
//! A command that fails because the connection broke or the server stepped
//! down (`READONLY`, `LOADING`, `MASTERDOWN`…) is retried, with backoff, for
//! up to [`RedisLink::FAILOVER_WAIT`]: long enough to ride out a Sentinel
//! failover, short enough that a caller hears about an outage. Every
//! command Wisp sends is safe to repeat (scripts are idempotent by design:
//! a put carries its client message id, a burn names its ids).

use std::sync::Arc;
use std::time::Duration;

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

/// The shape of a deployment's Redis, parsed from its URL.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Topology {
    /// One server.
    Standalone(String),
    /// A primary found through Sentinels.
    Sentinel {
        /// `redis://host:port` of each Sentinel.
        sentinels: Vec<String>,
        /// The monitored service's name.
        service: String,
        username: Option<String>,
        password: Option<String>,
        db: i64,
    },
    /// A Redis Cluster found from seed nodes.
    Cluster {
        /// `user:password@`, or empty.
        auth: String,
        /// `host:port` of each seed.
        seeds: Vec<String>,
    },
}

impl std::fmt::Debug for Topology {
    // Credentials stay out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Standalone(_) => f.write_str("Standalone"),
            Self::Sentinel {
                sentinels, service, ..
            } => f
                .debug_struct("Sentinel")
                .field("sentinels", sentinels)
                .field("service", service)
                .finish_non_exhaustive(),
            Self::Cluster { seeds, .. } => f
                .debug_struct("Cluster")
                .field("seeds", seeds)
                .finish_non_exhaustive(),
        }
    }
}

fn bad_url(why: impl std::fmt::Display) -> StoreError {
    StoreError::Config(format!("invalid Redis URL: {why}"))
}

/// Splits `[user:password@]rest` into the credentials and the rest.
fn split_auth(s: &str) -> (Option<String>, Option<String>, &str) {
    match s.rsplit_once('@') {
        None => (None, None, s),
        Some((auth, rest)) => {
            let (user, password) = match auth.split_once(':') {
                Some((user, password)) => (user, Some(password.to_owned())),
                None => ("", Some(auth.to_owned())),
            };
            let user = (!user.is_empty()).then(|| user.to_owned());
            (user, password, rest)
        }
    }
}

/// `host:port,host:port` as a list, each checked.
fn hosts(list: &str) -> Result<Vec<String>, StoreError> {
    let hosts: Vec<String> = list
        .split(',')
        .map(|host| {
            let (name, port) = host
                .rsplit_once(':')
                .ok_or_else(|| bad_url(format!("`{host}` needs a port (host:port)")))?;
            if name.is_empty() || port.parse::<u16>().is_err() {
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

impl Topology {
    /// Reads a Redis URL (see the module documentation for the forms).
    pub(crate) fn parse(url: &str) -> Result<Self, StoreError> {
        if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            let (username, password, rest) = split_auth(rest);
            let (list, path) = rest.split_once('/').ok_or_else(|| {
                bad_url("a Sentinel URL names its service: redis+sentinel://host:port/service")
            })?;
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
            return Ok(Self::Sentinel {
                sentinels: hosts(list)?
                    .into_iter()
                    .map(|h| format!("redis://{h}"))
                    .collect(),
                service: service.to_owned(),
                username,
                password,
                db,
            });
        }
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (auth, list) = match rest.rsplit_once('@') {
                Some((auth, list)) => (format!("{auth}@"), list),
                None => (String::new(), rest),
            };
            let list = list.trim_end_matches('/');
            return Ok(Self::Cluster {
                auth,
                seeds: hosts(list)?,
            });
        }
        redis::Client::open(url).map_err(|e| bad_url(e.to_string()))?;
        Ok(Self::Standalone(url.to_owned()))
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

#[derive(Clone)]
enum Shape {
    Standalone {
        client: redis::Client,
        manager: ConnectionManager,
    },
    Sentinel(Arc<SentinelPrimary>),
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
    shape: Shape,
    db: i64,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shape = match self.shape {
            Shape::Standalone { .. } => "standalone",
            Shape::Sentinel(_) => "sentinel",
            Shape::Cluster { .. } => "cluster",
        };
        f.debug_struct("RedisLink").field("shape", &shape).finish()
    }
}

fn backend(error: RedisError) -> StoreError {
    StoreError::from(error)
}

impl RedisLink {
    /// How long a command keeps being retried through a broken connection
    /// or a failover before its caller hears of the failure.
    pub(crate) const FAILOVER_WAIT: Duration = Duration::from_secs(15);

    /// Connects to the Redis `url` names.
    pub(crate) async fn connect(url: &str) -> Result<Self, StoreError> {
        match Topology::parse(url)? {
            Topology::Standalone(url) => {
                let client = redis::Client::open(url).map_err(backend)?;
                let db = client.get_connection_info().redis_settings().db();
                let manager = client
                    .get_connection_manager_with_config(
                        ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(CONNECT_TIMEOUT))
                            .set_response_timeout(Some(RESPONSE_TIMEOUT)),
                    )
                    .await
                    .map_err(backend)?;
                Ok(Self {
                    shape: Shape::Standalone { client, manager },
                    db,
                })
            }
            Topology::Sentinel {
                sentinels,
                service,
                username,
                password,
                db,
            } => {
                let mut node = redis::RedisConnectionInfo::default().set_db(db);
                if let Some(username) = username {
                    node = node.set_username(username);
                }
                if let Some(password) = password {
                    node = node.set_password(password);
                }
                let sentinel = SentinelClient::build(
                    sentinels,
                    service,
                    Some(SentinelNodeConnectionInfo::default().set_redis_connection_info(node)),
                    SentinelServerType::Master,
                )
                .map_err(backend)?;
                let primary = Arc::new(SentinelPrimary {
                    sentinel: Mutex::new(sentinel),
                    current: Mutex::new(None),
                });
                primary.connection().await.map_err(backend)?;
                Ok(Self {
                    shape: Shape::Sentinel(primary),
                    db,
                })
            }
            Topology::Cluster { auth, seeds } => {
                let urls = seeds.iter().map(|h| format!("redis://{auth}{h}"));
                let connection = redis::cluster::ClusterClient::builder(urls)
                    .connection_timeout(CONNECT_TIMEOUT)
                    .response_timeout(RESPONSE_TIMEOUT)
                    .build()
                    .map_err(backend)?
                    .get_async_connection()
                    .await
                    .map_err(backend)?;
                Ok(Self {
                    shape: Shape::Cluster {
                        auth: auth.into(),
                        seeds: Arc::new(seeds),
                        connection,
                    },
                    db: 0,
                })
            }
        }
    }

    /// Whether this is a Redis Cluster (where commands without a key have
    /// no single home).
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.shape, Shape::Cluster { .. })
    }

    /// A client for a pub/sub connection: the server (or current primary)
    /// itself; in a cluster, any reachable seed (a publication reaches
    /// every node of a cluster).
    pub(crate) async fn pubsub_client(&self, attempt: usize) -> RedisResult<redis::Client> {
        match &self.shape {
            Shape::Standalone { client, .. } => Ok(client.clone()),
            Shape::Sentinel(primary) => primary.resolve().await,
            Shape::Cluster { auth, seeds, .. } => {
                redis::Client::open(format!("redis://{auth}{}", seeds[attempt % seeds.len()]))
            }
        }
    }

    /// Every key matching `pattern`, from every primary (for tests and
    /// operators' checks: it walks the whole key space).
    pub(crate) async fn all_keys(&self, pattern: &str) -> RedisResult<Vec<String>> {
        let mut keys = Vec::new();
        let Shape::Cluster {
            auth, connection, ..
        } = &self.shape
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

    /// Runs `op` on a connection, retrying transient failures (see the
    /// module documentation) until [`Self::FAILOVER_WAIT`] has passed.
    async fn retrying<'a, T>(
        &self,
        mut op: impl FnMut(Connection) -> RedisFuture<'a, T>,
    ) -> RedisResult<T> {
        let started = tokio::time::Instant::now();
        let mut delay = Duration::from_millis(50);
        loop {
            let outcome = match &self.shape {
                Shape::Standalone { manager, .. } => op(Connection::Manager(manager.clone())).await,
                Shape::Cluster { connection, .. } => {
                    op(Connection::Cluster(connection.clone())).await
                }
                Shape::Sentinel(primary) => match primary.connection().await {
                    Ok(connection) => {
                        let outcome = op(Connection::Multiplexed(connection)).await;
                        if outcome.as_ref().is_err_and(transient) {
                            primary.forget().await;
                        }
                        outcome
                    }
                    Err(error) => Err(error),
                },
            };
            match outcome {
                Err(error) if transient(&error) && started.elapsed() < Self::FAILOVER_WAIT => {
                    metrics::counter!("wisp_redis_retries_total").increment(1);
                    tracing::debug!(%error, "Redis unavailable; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(800));
                }
                outcome => return outcome,
            }
        }
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
    fn urls_name_each_shape() {
        assert_eq!(
            Topology::parse("redis://127.0.0.1:6379").unwrap(),
            Topology::Standalone("redis://127.0.0.1:6379".into())
        );
        assert_eq!(
            Topology::parse("redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379/wisp/2")
                .unwrap(),
            Topology::Sentinel {
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
            Topology::parse("redis+cluster://u:p@a:7000,b:7001").unwrap(),
            Topology::Cluster {
                auth: "u:p@".into(),
                seeds: vec!["a:7000".into(), "b:7001".into()]
            }
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, says) in [
            ("redis+sentinel://10.0.0.1:26379", "names its service"),
            ("redis+sentinel://10.0.0.1/wisp", "needs a port"),
            ("redis+sentinel://10.0.0.1:26379/", "service name is empty"),
            ("redis+cluster://a:notaport", "not host:port"),
            ("http://x", "invalid Redis URL"),
        ] {
            let error = Topology::parse(url).unwrap_err().to_string();
            assert!(error.contains(says), "{url}: {error}");
        }
    }

    #[test]
    fn credentials_stay_out_of_debug_output() {
        let topology = Topology::parse("redis+sentinel://:s3cret@h:1/wisp").unwrap();
        assert!(!format!("{topology:?}").contains("s3cret"));
    }
}
