//! The relational half of the cluster backend: accounts, friendships and
//! keys in PostgreSQL, shared by every node.
//!
//! Friend operations lock both users' account rows (`FOR UPDATE`, in id
//! order, so two transactions never wait on each other in a cycle) and then
//! run the shared [friend rules](super::friend_rules): however many nodes
//! race, no one gets a 21st friend. The pool reconnects by itself after a
//! database restart; a query that fails meanwhile fails cleanly.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use wisp_proto::UserId;
use wisp_proto::limits::MAX_STORED_ONE_TIME_KEYS;

use super::friend_rules::{self, FriendTx};
use super::{
    AccountStore, ClaimedKey, CreateAccountError, FriendEntry, FriendError, FriendStore,
    IdentityKeys, PendingRequests, PreKeyStore, RequestEntry, RequestOutcome, SignedKey,
    StoreError, UnixMillis,
};

mod migrations;

/// Connections per node.
const POOL_SIZE: u32 = 16;

/// The PostgreSQL store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

fn backend(error: sqlx::Error) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn user_from_row(bytes: &[u8]) -> Result<UserId, StoreError> {
    UserId::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn key_from_row(bytes: &[u8]) -> Result<[u8; 32], StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt(format!("key of {} bytes", bytes.len())))
}

fn id(user: &UserId) -> &[u8] {
    user.as_bytes().as_slice()
}

impl PgStore {
    /// Connects to `url` (e.g. `postgres://wisp@db1/wisp`) and brings the
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(backend)?;
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
            .await
            .map_err(backend)?;
        migrations::run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Runs `work` in one transaction holding row locks on the accounts of
    /// `users`, committing only when it succeeds.
    async fn write<T, F>(&self, users: [UserId; 2], work: F) -> Result<T, FriendError>
    where
        F: for<'c> FnOnce(
                &'c mut PgTx<'_>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, FriendError>> + Send + 'c>,
            > + Send,
        T: Send,
    {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        let mut locked = users;
        locked.sort();
        sqlx::query("SELECT 1 FROM accounts WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE")
            .bind(locked.iter().map(|u| u.to_vec()).collect::<Vec<_>>())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let result = {
            let mut steps = PgTx(&mut tx);
            work(&mut steps).await
        };
        match result {
            Ok(value) => {
                tx.commit().await.map_err(backend)?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::error!(%rollback, "rollback failed");
                }
                Err(error)
            }
        }
    }

    async fn list(
        &self,
        sql: &'static str,
        user: UserId,
    ) -> Result<Vec<(UserId, UnixMillis)>, StoreError> {
        let rows: Vec<(Vec<u8>, i64)> = sqlx::query_as(sql)
            .bind(id(&user))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|(user, at)| Ok((user_from_row(&user)?, at)))
            .collect()
    }
}

#[async_trait]
impl AccountStore for PgStore {
    async fn create_account(
        &self,
        user: UserId,
        keys: &IdentityKeys,
        now: UnixMillis,
    ) -> Result<(), CreateAccountError> {
        let done = sqlx::query(
            "INSERT INTO accounts \
             (user_id, ed25519_key, curve25519_key, identity_signature, created_ms) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id(&user))
        .bind(keys.ed25519.as_slice())
        .bind(keys.curve25519.as_slice())
        .bind(keys.curve25519_signature.as_slice())
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(CreateAccountError::AlreadyRegistered);
        }
        Ok(())
    }

    async fn identity(&self, user: UserId) -> Result<Option<IdentityKeys>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT ed25519_key, curve25519_key, identity_signature FROM accounts WHERE user_id = $1",
        )
        .bind(id(&user))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        row.map(|(ed, curve, signature)| {
            Ok(IdentityKeys {
                ed25519: key_from_row(&ed)?,
                curve25519: key_from_row(&curve)?,
                curve25519_signature: signature,
            })
        })
        .transpose()
    }

    async fn server_name(&self, proposed: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ('server_name', $1) ON CONFLICT DO NOTHING",
        )
        .bind(proposed)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'server_name'")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The friend rules' primitive steps inside a PostgreSQL transaction.
struct PgTx<'c>(&'c mut PgConnection);

impl PgTx<'_> {
    async fn count(&mut self, sql: &'static str, user: UserId) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(id(&user))
            .fetch_one(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    async fn exists(
        &mut self,
        sql: &'static str,
        a: UserId,
        b: UserId,
    ) -> Result<bool, StoreError> {
        let found: Option<i32> = sqlx::query_scalar(sql)
            .bind(id(&a))
            .bind(id(&b))
            .fetch_optional(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(found.is_some())
    }

    async fn run(&mut self, sql: &'static str, a: UserId, b: UserId) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(id(&a))
            .bind(id(&b))
            .execute(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn insert(
        &mut self,
        sql: &'static str,
        a: UserId,
        b: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        sqlx::query(sql)
            .bind(id(&a))
            .bind(id(&b))
            .bind(now)
            .execute(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl FriendTx for PgTx<'_> {
    async fn account_exists(&mut self, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .count("SELECT count(*) FROM accounts WHERE user_id = $1", user)
            .await?
            > 0)
    }

    async fn has_blocked(&mut self, owner: UserId, other: UserId) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM blocks WHERE owner = $1 AND blocked = $2",
            owner,
            other,
        )
        .await
    }

    async fn are_friends(&mut self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM friends WHERE owner = $1 AND friend = $2",
            a,
            b,
        )
        .await
    }

    async fn has_request(&mut self, from: UserId, to: UserId) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM friend_requests WHERE from_user = $1 AND to_user = $2",
            from,
            to,
        )
        .await
    }

    async fn friend_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count("SELECT count(*) FROM friends WHERE owner = $1", user)
            .await
    }

    async fn outgoing_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count(
            "SELECT count(*) FROM friend_requests WHERE from_user = $1",
            user,
        )
        .await
    }

    async fn visible_incoming_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count(
            "SELECT count(*) FROM friend_requests WHERE to_user = $1 \
             AND from_user NOT IN (SELECT blocked FROM blocks WHERE owner = $1)",
            user,
        )
        .await
    }

    async fn block_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count("SELECT count(*) FROM blocks WHERE owner = $1", user)
            .await
    }

    async fn insert_request(
        &mut self,
        from: UserId,
        to: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO friend_requests (from_user, to_user, created_ms) VALUES ($1, $2, $3)",
            from,
            to,
            now,
        )
        .await
    }

    async fn delete_request(&mut self, from: UserId, to: UserId) -> Result<bool, StoreError> {
        Ok(self
            .run(
                "DELETE FROM friend_requests WHERE from_user = $1 AND to_user = $2",
                from,
                to,
            )
            .await?
            > 0)
    }

    async fn insert_friendship(
        &mut self,
        a: UserId,
        b: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO friends (owner, friend, since_ms) VALUES ($1, $2, $3)";
        self.insert(sql, a, b, now).await?;
        self.insert(sql, b, a, now).await
    }

    async fn delete_friendship(&mut self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        Ok(self
            .run(
                "DELETE FROM friends WHERE (owner = $1 AND friend = $2) OR (owner = $2 AND friend = $1)",
                a,
                b,
            )
            .await?
            > 0)
    }

    async fn insert_block(
        &mut self,
        owner: UserId,
        other: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO blocks (owner, blocked, created_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            owner,
            other,
            now,
        )
        .await
    }

    async fn delete_block(&mut self, owner: UserId, other: UserId) -> Result<bool, StoreError> {
        Ok(self
            .run(
                "DELETE FROM blocks WHERE owner = $1 AND blocked = $2",
                owner,
                other,
            )
            .await?
            > 0)
    }
}

#[async_trait]
impl FriendStore for PgStore {
    async fn request(
        &self,
        from: UserId,
        to: UserId,
        now: UnixMillis,
    ) -> Result<RequestOutcome, FriendError> {
        self.write([from, to], |tx| {
            Box::pin(friend_rules::request(tx, from, to, now))
        })
        .await
    }

    async fn accept(&self, me: UserId, from: UserId, now: UnixMillis) -> Result<(), FriendError> {
        self.write([me, from], |tx| {
            Box::pin(friend_rules::accept(tx, me, from, now))
        })
        .await
    }

    async fn decline(&self, me: UserId, from: UserId) -> Result<(), FriendError> {
        self.write([me, from], |tx| {
            Box::pin(friend_rules::decline(tx, me, from))
        })
        .await
    }

    async fn cancel(&self, me: UserId, to: UserId) -> Result<(), FriendError> {
        self.decline(to, me).await
    }

    async fn remove(&self, me: UserId, other: UserId) -> Result<(), FriendError> {
        self.write([me, other], |tx| {
            Box::pin(friend_rules::remove(tx, me, other))
        })
        .await
    }

    async fn block(&self, me: UserId, other: UserId, now: UnixMillis) -> Result<bool, FriendError> {
        self.write([me, other], |tx| {
            Box::pin(friend_rules::block(tx, me, other, now))
        })
        .await
    }

    async fn unblock(&self, me: UserId, other: UserId) -> Result<(), FriendError> {
        self.write([me, other], |tx| {
            Box::pin(friend_rules::unblock(tx, me, other))
        })
        .await
    }

    async fn friends(&self, me: UserId) -> Result<Vec<FriendEntry>, StoreError> {
        let rows = self
            .list(
                "SELECT friend, since_ms FROM friends WHERE owner = $1 ORDER BY since_ms, friend",
                me,
            )
            .await?;
        Ok(rows
            .into_iter()
            .map(|(user, since)| FriendEntry { user, since })
            .collect())
    }

    async fn pending(&self, me: UserId) -> Result<PendingRequests, StoreError> {
        let entries = |rows: Vec<(UserId, UnixMillis)>| {
            rows.into_iter()
                .map(|(user, created)| RequestEntry { user, created })
                .collect()
        };
        let incoming = self
            .list(
                "SELECT from_user, created_ms FROM friend_requests WHERE to_user = $1 \
                 AND from_user NOT IN (SELECT blocked FROM blocks WHERE owner = $1) \
                 ORDER BY created_ms, from_user",
                me,
            )
            .await?;
        let outgoing = self
            .list(
                "SELECT to_user, created_ms FROM friend_requests WHERE from_user = $1 \
                 ORDER BY created_ms, to_user",
                me,
            )
            .await?;
        let blocked = self
            .list(
                "SELECT blocked, created_ms FROM blocks WHERE owner = $1 ORDER BY created_ms, blocked",
                me,
            )
            .await?;
        Ok(PendingRequests {
            incoming: entries(incoming),
            outgoing: entries(outgoing),
            blocked: blocked.into_iter().map(|(user, _)| user).collect(),
        })
    }

    async fn are_friends(&self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM friends WHERE owner = $1 AND friend = $2")
                .bind(id(&a))
                .bind(id(&b))
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        Ok(found.is_some())
    }
}

async fn one_time_count(conn: &mut PgConnection, owner: UserId) -> Result<usize, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM one_time_keys WHERE owner = $1")
        .bind(id(&owner))
        .fetch_one(conn)
        .await
        .map_err(backend)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[async_trait]
impl PreKeyStore for PgStore {
    async fn add_keys(
        &self,
        owner: UserId,
        one_time: &[SignedKey],
        fallback: Option<&SignedKey>,
    ) -> Result<usize, StoreError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        // One upload at a time per owner, so the cap holds.
        sqlx::query("SELECT 1 FROM accounts WHERE user_id = $1 FOR UPDATE")
            .bind(id(&owner))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let stored = one_time_count(&mut tx, owner).await?;
        let room = MAX_STORED_ONE_TIME_KEYS.saturating_sub(stored);
        for key in one_time.iter().take(room) {
            sqlx::query(
                "INSERT INTO one_time_keys (owner, public_key, signature) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id(&owner))
            .bind(key.public_key.as_slice())
            .bind(key.signature.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if let Some(key) = fallback {
            sqlx::query(
                "INSERT INTO fallback_keys (owner, public_key, signature) VALUES ($1, $2, $3) \
                 ON CONFLICT (owner) DO UPDATE SET public_key = excluded.public_key, \
                 signature = excluded.signature",
            )
            .bind(id(&owner))
            .bind(key.public_key.as_slice())
            .bind(key.signature.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let total = one_time_count(&mut tx, owner).await?;
        tx.commit().await.map_err(backend)?;
        Ok(total)
    }

    async fn claim(&self, owner: UserId) -> Result<Option<ClaimedKey>, StoreError> {
        // SKIP LOCKED: concurrent claims take different keys, never the same.
        let one_time: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "DELETE FROM one_time_keys WHERE id = \
             (SELECT id FROM one_time_keys WHERE owner = $1 ORDER BY id LIMIT 1 \
              FOR UPDATE SKIP LOCKED) \
             RETURNING public_key, signature",
        )
        .bind(id(&owner))
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?;
        let claimed = match one_time {
            Some(row) => Some((row, false)),
            None => sqlx::query_as::<_, (Vec<u8>, Vec<u8>)>(
                "SELECT public_key, signature FROM fallback_keys WHERE owner = $1",
            )
            .bind(id(&owner))
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?
            .map(|row| (row, true)),
        };
        claimed
            .map(|((public_key, signature), fallback)| {
                Ok(ClaimedKey {
                    key: SignedKey {
                        public_key: key_from_row(&public_key)?,
                        signature,
                    },
                    fallback,
                })
            })
            .transpose()
    }

    async fn one_time_key_count(&self, owner: UserId) -> Result<usize, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(backend)?;
        one_time_count(&mut conn, owner).await
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use sqlx::Connection;

    use super::*;

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
