//! Several stateless nodes on one PostgreSQL and one Redis (the real local
//! ones; each test in a schema and key prefix of its own): users on
//! different nodes befriend and message each other, pushed across nodes,
//! and a removal on one node takes effect on another at once.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::{Device, befriend_devices, code_of, device_at};
use sqlx::Connection;
use wisp_client::Event;
use wisp_proto::ErrorCode;
use wisp_server::clock::SystemClock;
use wisp_server::store::Stores;
use wisp_server::store::postgres::PgStore;
use wisp_server::store::redis_mailbox::RedisMailbox;
use wisp_server::{Config, Server};

const HOUR: Duration = Duration::from_secs(3600);

/// A PostgreSQL schema and a Redis prefix for one test's cluster.
struct Cluster {
    pg_url: String,
    redis_url: String,
    schema: String,
    prefix: String,
    nodes: Vec<Server>,
}

/// None (after saying so) without PostgreSQL or Redis, except in CI.
fn unavailable(what: &str, url: &str, why: &str) -> Option<Cluster> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("no {what} at {url} ({why}), and CI=true: the cluster backend must be tested in CI");
    }
    eprintln!("skipped: no {what} at {url} ({why})");
    None
}

impl Cluster {
    async fn start(nodes: usize) -> Option<Self> {
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
        if let Err(e) = redis::Client::open(redis_url.as_str()).and_then(|c| {
            c.get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        }) {
            return unavailable("Redis", &redis_url, &e.to_string());
        }
        let tag = format!("{:016x}", rand::random::<u64>());
        let schema = format!("wisp_test_{tag}");
        let prefix = format!("wisp-test-{tag}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut cluster = Self {
            pg_url,
            redis_url,
            schema,
            prefix,
            nodes: Vec::new(),
        };
        for _ in 0..nodes {
            let node = cluster.node().await;
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    async fn node(&self) -> Server {
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.pg_url)
            .unwrap()
            .options([("search_path", self.schema.as_str())]);
        let relational = PgStore::connect_with(options).await.unwrap();
        let mailbox = RedisMailbox::connect_with_prefix(&self.redis_url, &self.prefix)
            .await
            .unwrap();
        let stores = Stores {
            accounts: Arc::new(relational.clone()),
            friends: Arc::new(relational.clone()),
            prekeys: Arc::new(relational),
            mailbox: Arc::new(mailbox),
        };
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            pow_difficulty: 0,
            register_limit: 0,
            send_limit: 0,
            redis_url: Some(self.redis_url.clone()),
            redis_prefix: self.prefix.clone(),
            ..Config::default()
        };
        Server::start_with(&config, stores, Arc::new(SystemClock))
            .await
            .unwrap()
    }

    fn url(&self, node: usize) -> String {
        self.nodes[node].ws_url()
    }

    async fn stop(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
        if let Ok(mut admin) = sqlx::PgConnection::connect(&self.pg_url).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                self.schema
            )))
            .execute(&mut admin)
            .await;
        }
        if let Ok(client) = redis::Client::open(self.redis_url.as_str())
            && let Ok(mut conn) = client.get_connection()
        {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.prefix))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
            }
        }
    }
}

/// The next message text, skipping other events.
async fn next_text(device: &mut Device) -> String {
    loop {
        if let Event::Message(message) = device.event().await {
            device.messenger.confirm().await.unwrap();
            return message.text.to_string();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_talk_pushed_across_nodes() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let mut alice = device_at(&cluster.url(0)).await;
    let mut bob = device_at(&cluster.url(1)).await;
    // Both online and idle: whatever arrives now is pushed, not fetched at
    // login.
    assert!(alice.read_all().await.is_empty());
    assert!(bob.read_all().await.is_empty());

    alice
        .messenger
        .client()
        .request_friend(bob.id())
        .await
        .unwrap();
    loop {
        if let Event::FriendRequest { from } = bob.event().await {
            assert_eq!(from, alice.id());
            break;
        }
    }
    bob.messenger
        .client()
        .accept_friend(alice.id())
        .await
        .unwrap();

    for n in 0..20 {
        alice
            .messenger
            .send_text(bob.id(), &format!("across {n}"), HOUR, None)
            .await
            .unwrap();
        let received = tokio::time::timeout(Duration::from_secs(5), next_text(&mut bob))
            .await
            .expect("pushed to the other node within 5 s");
        assert_eq!(received, format!("across {n}"));
    }
    bob.messenger
        .send_text(alice.id(), "and back", HOUR, None)
        .await
        .unwrap();
    assert_eq!(next_text(&mut alice).await, "and back");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_on_one_node_blocks_a_send_through_another_at_once() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let alice = device_at(&cluster.url(0)).await;
    let mut bob = device_at(&cluster.url(1)).await;
    befriend_devices(&alice, &bob).await;
    bob.messenger
        .send_text(alice.id(), "hello", HOUR, None)
        .await
        .unwrap();

    alice
        .messenger
        .client()
        .remove_friend(bob.id())
        .await
        .unwrap();
    let refused = bob
        .messenger
        .send_text(alice.id(), "still there?", HOUR, None)
        .await;
    assert_eq!(code_of(refused), ErrorCode::NotFriends);
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reconnecting_to_another_node_gets_what_is_pending() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let mut alice = device_at(&cluster.url(0)).await;
    let bob = device_at(&cluster.url(1)).await;
    befriend_devices(&alice, &bob).await;
    let b = bob.id();
    let home = bob.home;
    drop(bob.messenger);
    for text in ["one", "two", "three"] {
        alice
            .messenger
            .send_text(b, text, HOUR, None)
            .await
            .unwrap();
    }
    // Bob comes back through the third node.
    let mut bob = common::reopen_at(&cluster.url(2), home).await;
    assert_eq!(bob.read_all().await, vec!["one", "two", "three"]);
    let _ = &mut alice;
    cluster.stop().await;
}
