//! The cluster backend for one test: [`ClusterBackend`], a PostgreSQL
//! schema and a Redis key prefix of the test's own on the local services
//! (dropped with it), and the nodes that share them, in process
//! ([`ClusterBackend::start_node`]) or as binaries
//! ([`ClusterBackend::node_env`]).

use std::sync::Arc;
use std::time::Duration;

use wisp_server::clock::SystemClock;
use wisp_server::store::Stores;
use wisp_server::store::postgres::PgStore;
use wisp_server::store::redis_mailbox::RedisMailbox;
use wisp_server::{Config, Server};

use crate::server::test_config;

/// A PostgreSQL schema and a Redis key prefix of one test's own.
#[derive(Debug)]
pub struct ClusterBackend {
    pub pg_url: String,
    pub redis_url: String,
    pub schema: String,
    pub prefix: String,
}

fn unavailable(what: &str, url: &str, why: &str) -> Option<ClusterBackend> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("no {what} at {url} ({why}), and CI=true: the cluster backend must be tested in CI");
    }
    eprintln!("skipped: no {what} at {url} ({why})");
    None
}

impl ClusterBackend {
    /// A fresh schema and prefix on the PostgreSQL at
    /// `WISP_TEST_POSTGRES_URL` and the Redis at `WISP_TEST_REDIS_URL` (the
    /// local ones by default); None (after saying so) without either,
    /// except in CI, where that fails the test.
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let pg_url = std::env::var("WISP_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let redis_url = std::env::var("WISP_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut admin = match tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect(&pg_url),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return unavailable("PostgreSQL", &pg_url, &e.to_string()),
            Err(_) => return unavailable("PostgreSQL", &pg_url, "timed out"),
        };
        let ping = redis::Client::open(redis_url.as_str()).and_then(|c| {
            c.get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        });
        if let Err(e) = ping {
            return unavailable("Redis", &redis_url, &e.to_string());
        }
        let tag = format!("{:016x}", rand::random::<u64>());
        let schema = format!("wisp_test_{tag}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create schema");
        Some(Self {
            pg_url,
            redis_url,
            schema,
            prefix: format!("wisp-test-{tag}"),
        })
    }

    /// A node's stores.
    pub async fn stores(&self) -> Stores {
        self.stores_on(&self.redis_url).await
    }

    /// A node's stores, with mailboxes in the Redis at `redis_url` (a
    /// Sentinel set or a Redis Cluster the test started).
    pub async fn stores_on(&self, redis_url: &str) -> Stores {
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.pg_url)
            .expect("url")
            .options([("search_path", self.schema.as_str())]);
        let relational = PgStore::connect_with(options).await.expect("postgres");
        let mailbox = RedisMailbox::connect_with_prefix(redis_url, &self.prefix)
            .await
            .expect("redis");
        Stores {
            accounts: Arc::new(relational.clone()),
            friends: Arc::new(relational.clone()),
            prekeys: Arc::new(relational),
            limits: Some(Arc::new(mailbox.limits())),
            mailbox: Arc::new(mailbox),
        }
    }

    /// A node in this process on this cluster (its mailboxes and its
    /// cross-node bus on the cluster's Redis), with the
    /// [`test_config`](crate::test_config) but no puzzle at all.
    pub async fn start_node(&self) -> Server {
        self.start_node_with(|_| {}).await
    }

    /// A node as [`ClusterBackend::start_node`] starts it, with `tweak`
    /// applied to its config. Mailboxes live in the Redis at the config's
    /// `redis_url` after the tweak (a Sentinel set, a Redis Cluster); a
    /// tweak that sets it to None leaves them on the cluster's Redis and
    /// the node without a bus (it hears of nothing another node does).
    pub async fn start_node_with(&self, tweak: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config {
            pow_difficulty: 0,
            ..test_config(wisp_server::config::DEFAULT_DATA_DIR.into())
        };
        self.configure(&mut config);
        tweak(&mut config);
        let redis_url = config.redis_url.as_deref().unwrap_or(&self.redis_url);
        let stores = self.stores_on(redis_url).await;
        Server::start_with(&config, stores, Arc::new(SystemClock))
            .await
            .expect("node starts")
    }

    /// The environment that points a `wisp-server` binary at this
    /// cluster's schema and key prefix (with no puzzle and no limits).
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        let separator = if self.pg_url.contains('?') { '&' } else { '?' };
        vec![
            (
                "WISP_POSTGRES_URL",
                format!(
                    "{}{separator}options[search_path]={}",
                    self.pg_url, self.schema
                ),
            ),
            ("WISP_REDIS_URL", self.redis_url.clone()),
            ("WISP_REDIS_PREFIX", self.prefix.clone()),
            ("WISP_POW_DIFFICULTY", "0".into()),
            ("WISP_REGISTER_LIMIT", "0".into()),
            ("WISP_SEND_LIMIT", "0".into()),
        ]
    }

    /// Puts `config` on this cluster's Redis (for the cross-node bus).
    pub fn configure(&self, config: &mut Config) {
        config.redis_url = Some(self.redis_url.clone());
        config.redis_prefix = self.prefix.clone();
    }
}

impl Drop for ClusterBackend {
    fn drop(&mut self) {
        // Drop the schema and the keys, from a thread of its own: drop runs
        // inside the test's runtime, which must not block on async work.
        let (pg_url, redis_url) = (self.pg_url.clone(), self.redis_url.clone());
        let (schema, prefix) = (self.schema.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_url).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                });
            }
            if let Ok(client) = redis::Client::open(redis_url.as_str())
                && let Ok(mut conn) = client.get_connection()
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        });
        let _ = cleanup.join();
    }
}
