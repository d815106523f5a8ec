//! The embedded backend: one SQLite file in WAL mode, no other service.
//!
//! All writes go through a single connection, so SQLite's one-writer rule
//! never turns into "database is locked" errors and every read-check-write
//! (the friend cap) runs inside one `BEGIN IMMEDIATE` transaction that no
//! other write can interleave with. Reads use a small pool of their own.
//! `secure_delete` is on, so deleted rows are overwritten rather than left
//! in free pages.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
};
use wisp_proto::UserId;

use super::friend_rules::{self, FriendTx};
use super::{
    AccountStore, CreateAccountError, FriendEntry, FriendError, FriendStore, IdentityKeys,
    PendingRequests, RequestEntry, RequestOutcome, StoreError, UnixMillis,
};

mod group;
mod mailbox;
mod migrations;
mod prekeys;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "wisp.sqlite3";

const READ_CONNECTIONS: u32 = 4;

/// How long a connection waits for another one's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Set on every connection (the pools' and the group writer's).
const CONNECTION_PRAGMAS: [(&str, &str); 5] = [
    // Every commit is synced before anyone hears "stored".
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    // Deleted rows are overwritten, not left in free pages.
    ("secure_delete", "ON"),
    // Statement journals in memory: otherwise a temporary file per group
    // of writes is created, written and unlinked.
    ("temp_store", "MEMORY"),
    // Up to 32 MiB of pages per connection (SQLite's default is 2 MiB):
    // the hot indexes stay in memory instead of being read back from the
    // file page by page.
    ("cache_size", "-32768"),
];

/// The embedded store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    /// Every change to the mailboxes, committed in groups on a thread of
    /// its own.
    group: group::GroupCommit,
    readers: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and brings its
    /// schema up to date.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(data_dir).map_err(|e| {
            StoreError::Backend(format!(
                "cannot create data directory {}: {e}",
                data_dir.display()
            ))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(backend)?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        for (name, value) in CONNECTION_PRAGMAS {
            options = options.pragma(name, value);
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(backend)?;
        migrations::run(&writer).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(READ_CONNECTIONS)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await
            .map_err(backend)?;
        Ok(Self {
            group: group::GroupCommit::start(&path).await?,
            writer,
            readers,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the mailbox writer (committing what is queued and
    /// checkpointing the WAL), then the pools.
    pub async fn close(&self) {
        self.group.close().await;
        self.readers.close().await;
        self.writer.close().await;
    }
}

/// Creates the data directory readable by its owner only: it holds the
/// social graph.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
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

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create_account(
        &self,
        user: UserId,
        keys: &IdentityKeys,
        now: UnixMillis,
    ) -> Result<(), CreateAccountError> {
        let done = sqlx::query(
            "INSERT INTO accounts \
             (user_id, ed25519_key, curve25519_key, identity_signature, created_ms) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(user.as_bytes().as_slice())
        .bind(keys.ed25519.as_slice())
        .bind(keys.curve25519.as_slice())
        .bind(keys.curve25519_signature.as_slice())
        .bind(now)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        if done.rows_affected() == 0 {
            return Err(CreateAccountError::AlreadyRegistered);
        }
        Ok(())
    }

    async fn identity(&self, user: UserId) -> Result<Option<IdentityKeys>, StoreError> {
        let row: Option<(Vec<u8>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "SELECT ed25519_key, curve25519_key, identity_signature FROM accounts WHERE user_id = ?",
        )
        .bind(user.as_bytes().as_slice())
        .fetch_optional(&self.readers)
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
            "INSERT INTO meta (key, value) VALUES ('server_name', ?) ON CONFLICT DO NOTHING",
        )
        .bind(proposed)
        .execute(&self.writer)
        .await
        .map_err(backend)?;
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'server_name'")
            .fetch_one(&self.writer)
            .await
            .map_err(backend)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.readers)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// The friend rules' primitive steps on the writer connection, inside a
/// transaction.
struct Tx<'c>(&'c mut SqliteConnection);

impl Tx<'_> {
    async fn count(&mut self, sql: &'static str, user: UserId) -> Result<usize, StoreError> {
        let n: i64 = sqlx::query_scalar(sql)
            .bind(user.as_bytes().as_slice())
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
        let found: Option<i64> = sqlx::query_scalar(sql)
            .bind(a.as_bytes().as_slice())
            .bind(b.as_bytes().as_slice())
            .fetch_optional(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(found.is_some())
    }

    async fn run(&mut self, sql: &'static str, a: UserId, b: UserId) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(a.as_bytes().as_slice())
            .bind(b.as_bytes().as_slice())
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
            .bind(a.as_bytes().as_slice())
            .bind(b.as_bytes().as_slice())
            .bind(now)
            .execute(&mut *self.0)
            .await
            .map_err(backend)?;
        Ok(())
    }
}

#[async_trait]
impl FriendTx for Tx<'_> {
    async fn account_exists(&mut self, user: UserId) -> Result<bool, StoreError> {
        Ok(self
            .count("SELECT count(*) FROM accounts WHERE user_id = ?", user)
            .await?
            > 0)
    }

    async fn has_blocked(&mut self, owner: UserId, other: UserId) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM blocks WHERE owner = ? AND blocked = ?",
            owner,
            other,
        )
        .await
    }

    async fn are_friends(&mut self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        self.exists("SELECT 1 FROM friends WHERE owner = ? AND friend = ?", a, b)
            .await
    }

    async fn has_request(&mut self, from: UserId, to: UserId) -> Result<bool, StoreError> {
        self.exists(
            "SELECT 1 FROM friend_requests WHERE from_user = ? AND to_user = ?",
            from,
            to,
        )
        .await
    }

    async fn friend_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count("SELECT count(*) FROM friends WHERE owner = ?", user)
            .await
    }

    async fn outgoing_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count(
            "SELECT count(*) FROM friend_requests WHERE from_user = ?",
            user,
        )
        .await
    }

    async fn visible_incoming_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count(
            "SELECT count(*) FROM friend_requests WHERE to_user = ?1 \
             AND from_user NOT IN (SELECT blocked FROM blocks WHERE owner = ?1)",
            user,
        )
        .await
    }

    async fn block_count(&mut self, user: UserId) -> Result<usize, StoreError> {
        self.count("SELECT count(*) FROM blocks WHERE owner = ?", user)
            .await
    }

    async fn insert_request(
        &mut self,
        from: UserId,
        to: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError> {
        self.insert(
            "INSERT INTO friend_requests (from_user, to_user, created_ms) VALUES (?, ?, ?)",
            from,
            to,
            now,
        )
        .await
    }

    async fn delete_request(&mut self, from: UserId, to: UserId) -> Result<bool, StoreError> {
        Ok(self
            .run(
                "DELETE FROM friend_requests WHERE from_user = ? AND to_user = ?",
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
        let sql = "INSERT INTO friends (owner, friend, since_ms) VALUES (?, ?, ?)";
        self.insert(sql, a, b, now).await?;
        self.insert(sql, b, a, now).await
    }

    async fn delete_friendship(&mut self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        Ok(self
            .run(
                "DELETE FROM friends WHERE (owner = ?1 AND friend = ?2) OR (owner = ?2 AND friend = ?1)",
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
            "INSERT INTO blocks (owner, blocked, created_ms) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            owner,
            other,
            now,
        )
        .await
    }

    async fn delete_block(&mut self, owner: UserId, other: UserId) -> Result<bool, StoreError> {
        Ok(self
            .run(
                "DELETE FROM blocks WHERE owner = ? AND blocked = ?",
                owner,
                other,
            )
            .await?
            > 0)
    }
}

impl SqliteStore {
    /// Runs `work` inside one immediate write transaction, committing only
    /// when it succeeds.
    async fn write<T, F>(&self, work: F) -> Result<T, FriendError>
    where
        F: for<'c> FnOnce(
                &'c mut Tx<'_>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, FriendError>> + Send + 'c>,
            > + Send,
        T: Send,
    {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let result = {
            let mut steps = Tx(&mut tx);
            work(&mut steps).await
        };
        match result {
            Ok(value) => {
                tx.commit().await.map_err(backend)?;
                Ok(value)
            }
            Err(error) => {
                if let Err(rollback) = tx.rollback().await {
                    tracing::error!(%rollback, "rollback failed; the connection is reset");
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
            .bind(user.as_bytes().as_slice())
            .fetch_all(&self.readers)
            .await
            .map_err(backend)?;
        rows.into_iter()
            .map(|(id, at)| Ok((user_from_row(&id)?, at)))
            .collect()
    }
}

#[async_trait]
impl FriendStore for SqliteStore {
    async fn request(
        &self,
        from: UserId,
        to: UserId,
        now: UnixMillis,
    ) -> Result<RequestOutcome, FriendError> {
        self.write(|tx| Box::pin(friend_rules::request(tx, from, to, now)))
            .await
    }

    async fn accept(&self, me: UserId, from: UserId, now: UnixMillis) -> Result<(), FriendError> {
        self.write(|tx| Box::pin(friend_rules::accept(tx, me, from, now)))
            .await
    }

    async fn decline(&self, me: UserId, from: UserId) -> Result<(), FriendError> {
        self.write(|tx| Box::pin(friend_rules::decline(tx, me, from)))
            .await
    }

    async fn cancel(&self, me: UserId, to: UserId) -> Result<(), FriendError> {
        self.decline(to, me).await
    }

    async fn remove(&self, me: UserId, other: UserId) -> Result<(), FriendError> {
        self.write(|tx| Box::pin(friend_rules::remove(tx, me, other)))
            .await
    }

    async fn block(&self, me: UserId, other: UserId, now: UnixMillis) -> Result<bool, FriendError> {
        self.write(|tx| Box::pin(friend_rules::block(tx, me, other, now)))
            .await
    }

    async fn unblock(&self, me: UserId, other: UserId) -> Result<(), FriendError> {
        self.write(|tx| Box::pin(friend_rules::unblock(tx, me, other)))
            .await
    }

    async fn friends(&self, me: UserId) -> Result<Vec<FriendEntry>, StoreError> {
        let rows = self
            .list(
                "SELECT friend, since_ms FROM friends WHERE owner = ? ORDER BY since_ms, friend",
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
                "SELECT from_user, created_ms FROM friend_requests WHERE to_user = ?1 \
                 AND from_user NOT IN (SELECT blocked FROM blocks WHERE owner = ?1) \
                 ORDER BY created_ms, from_user",
                me,
            )
            .await?;
        let outgoing = self
            .list(
                "SELECT to_user, created_ms FROM friend_requests WHERE from_user = ? \
                 ORDER BY created_ms, to_user",
                me,
            )
            .await?;
        let blocked = self
            .list(
                "SELECT blocked, created_ms FROM blocks WHERE owner = ? ORDER BY created_ms, blocked",
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
        let found: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM friends WHERE owner = ? AND friend = ?")
                .bind(a.as_bytes().as_slice())
                .bind(b.as_bytes().as_slice())
                .fetch_optional(&self.readers)
                .await
                .map_err(backend)?;
        Ok(found.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::store::Stores;

    async fn open() -> (tempfile::TempDir, Stores) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let stores = Stores {
            accounts: Arc::new(store.clone()),
            friends: Arc::new(store.clone()),
            prekeys: Arc::new(store.clone()),
            mailbox: Arc::new(store),
        };
        (dir, stores)
    }

    #[tokio::test]
    async fn conformance() {
        let (_dir, stores) = open().await;
        crate::store::conformance::run_all(&stores).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn friend_cap_holds_under_concurrent_accepts() {
        let (_dir, stores) = open().await;
        crate::store::conformance::friend_cap_race(Arc::clone(&stores.friends), &*stores.accounts)
            .await;
    }

    #[tokio::test]
    async fn migrations_are_idempotent_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let name = store.server_name("first").await.unwrap();
        store.close().await;
        let store = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(store.server_name("second").await.unwrap(), name);
        assert_eq!(name, "first");
    }
}
