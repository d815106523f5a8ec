//! The relational half of the cluster backend: accounts, friendships and
//! keys in PostgreSQL, shared by every node.
//!
//! The SQL is shared with SQLite ([`super::sql`]); what is PostgreSQL's own
//! is here. Write transactions lock the users' account rows (`FOR UPDATE`,
//! in id order, so two transactions never wait on each other in a cycle)
//! and then run the shared [friend rules](super::friend_rules) or the key
//! upload: however many nodes race, no one gets a 21st friend or more keys
//! than the cap. The pool reconnects by itself after a database restart; a
//! query that fails meanwhile fails cleanly.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use wisp_proto::UserId;

use super::StoreError;

mod migrations;

/// Connections per node.
const POOL_SIZE: u32 = 16;

/// The PostgreSQL store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (e.g. `postgres://wisp@db1/wisp`) and brings the
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        Self::connect_with(options).await
    }

    /// Connects with explicit options (tests use a schema of their own).
    pub async fn connect_with(options: PgConnectOptions) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(Duration::from_secs(10))
            // Check a connection before use, so one broken by a database
            // restart is replaced rather than handed out.
            .test_before_acquire(true)
            .connect_with(options)
            .await?;
        migrations::run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A transaction holding row locks on the accounts of `users`, taken in
    /// id order.
    async fn begin_write(
        &self,
        users: &[UserId],
    ) -> Result<sqlx::Transaction<'_, sqlx::Postgres>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut locked: Vec<Vec<u8>> = users.iter().map(|u| u.to_vec()).collect();
        locked.sort();
        sqlx::query("SELECT 1 FROM accounts WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE")
            .bind(locked)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }

    /// The one-time-key claim. `SKIP LOCKED`: concurrent claims take
    /// different keys, never the same one, and never wait for each other.
    const CLAIM_ONE_TIME_KEY: &'static str = "DELETE FROM one_time_keys WHERE id = \
         (SELECT id FROM one_time_keys WHERE owner = $1 ORDER BY id LIMIT 1 \
          FOR UPDATE SKIP LOCKED) \
         RETURNING public_key, signature";
}

// Queries and writes share one pool.
super::sql::relational_store!(PgStore, sqlx::Postgres, readers: pool, writer: pool);

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use sqlx::Connection;
    use sqlx::postgres::PgConnection;

    use super::*;
    use crate::store::AccountStore;

    /// The PostgreSQL the tests use: `WISP_TEST_POSTGRES_URL`, or the local
    /// server. Each test gets a schema of its own, so tests run in parallel
    /// and leave the database as they found it.
    pub(crate) struct TestDatabase {
        pub(crate) store: PgStore,
        url: String,
        schema: String,
    }

    impl TestDatabase {
        /// None (after saying so) when there is no PostgreSQL, unless in CI,
        /// where that fails the test: CI must exercise this backend.
        pub(crate) async fn open() -> Option<Self> {
            let url = std::env::var("WISP_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
            let reachable =
                tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await;
            let mut admin = match reachable {
                Ok(Ok(conn)) => conn,
                Ok(Err(error)) => return unreachable(&url, &error.to_string()),
                Err(_) => return unreachable(&url, "timed out"),
            };
            let schema = format!("wisp_test_{:016x}", rand::random::<u64>());
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut admin)
                .await
                .expect("create test schema");
            let options = PgConnectOptions::from_str(&url)
                .expect("url")
                .options([("search_path", schema.as_str())]);
            let store = PgStore::connect_with(options).await.expect("connect");
            Some(Self { store, url, schema })
        }

        pub(crate) async fn drop_schema(self) {
            self.store.close().await;
            if let Ok(mut admin) = PgConnection::connect(&self.url).await {
                let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA {} CASCADE",
                    self.schema
                )))
                .execute(&mut admin)
                .await;
            }
        }
    }

    fn unreachable(url: &str, why: &str) -> Option<TestDatabase> {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "no PostgreSQL at {url} ({why}), and CI=true: the cluster backend must be tested in CI"
            );
        }
        eprintln!("skipped: no PostgreSQL at {url} ({why})");
        None
    }

    #[tokio::test]
    async fn conformance() {
        let Some(db) = TestDatabase::open().await else {
            return;
        };
        crate::store::conformance::run_relational(&db.store, &db.store, &db.store).await;
        db.drop_schema().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn friend_cap_holds_under_concurrent_accepts() {
        let Some(db) = TestDatabase::open().await else {
            return;
        };
        crate::store::conformance::friend_cap_race(Arc::new(db.store.clone()), &db.store).await;
        db.drop_schema().await;
    }

    #[tokio::test]
    async fn two_nodes_starting_together_migrate_once() {
        let Some(db) = TestDatabase::open().await else {
            return;
        };
        let options = PgConnectOptions::from_str(&db.url)
            .expect("url")
            .options([("search_path", db.schema.as_str())]);
        let (a, b) = tokio::join!(
            PgStore::connect_with(options.clone()),
            PgStore::connect_with(options)
        );
        let (a, b) = (a.expect("node a"), b.expect("node b"));
        assert_eq!(
            a.server_name("node-a").await.unwrap(),
            b.server_name("node-b").await.unwrap(),
            "all nodes of a deployment agree on its name"
        );
        db.drop_schema().await;
    }
}
