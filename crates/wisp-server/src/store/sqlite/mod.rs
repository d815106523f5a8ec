//! The embedded backend: one SQLite file in WAL mode, no other service.
//!
//! Writes go through two connections, each the only one of its kind: the
//! mailbox writes (storing, burning, purging messages) through the
//! [group commit](group_commit) thread's connection, everything else
//! (accounts, friendships, keys) through a one-connection writer pool.
//! SQLite's write lock, taken with a busy timeout, keeps the two apart, so
//! its one-writer rule never turns into "database is locked" errors; every
//! read-check-write (the friend cap, the key cap) runs inside one
//! `BEGIN IMMEDIATE` transaction that no other write can interleave with.
//! Reads use a small pool of read-only connections. The SQL of accounts,
//! friendships and keys is shared with PostgreSQL ([`super::sql`]).
//! `secure_delete` is on, so deleted rows are overwritten rather than left
//! in free pages.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use wisp_proto::UserId;

use super::StoreError;

mod group_commit;
mod mailbox;
mod migrations;

/// The database file's name inside the data directory.
pub const DATABASE_FILE: &str = "wisp.sqlite3";

const READ_CONNECTIONS: u32 = 4;

/// How long a connection waits for another one's write to finish.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Set on every connection (the pools' and the group commit's).
const CONNECTION_PRAGMAS: [(&str, &str); 5] = [
    // Every commit is synced before anyone hears "stored".
    ("synchronous", "FULL"),
    ("foreign_keys", "ON"),
    // Deleted rows are overwritten, not left in free pages.
    ("secure_delete", "ON"),
    // Statement journals in memory: otherwise a temporary file per group
    // of writes is created, written and unlinked.
    ("temp_store", "MEMORY"),
    // SQLite's default 2 MiB of pages per connection, said outright. Each
    // connection's cache is private (six connections, six copies of the
    // same pages; the operating system's page cache holds the file once),
    // and in WAL mode a connection drops all of it whenever it starts
    // reading after another connection wrote: under a message load, every
    // group commit empties the readers' caches, so a larger one buys
    // nothing, and when nothing is written it only grows. With 32 MiB, the
    // readers filled with copies of the accounts table as users logged in
    // (0.27 KiB of the server's memory per idle user at 15,000). On the
    // group commit's connection a larger cache also cost CPU (every commit
    // walks the whole cache: pcache1TruncateUnsafe was 3 % of the server
    // at 16,000 msgs/s with 32 MiB).
    ("cache_size", "-2000"),
];

/// The embedded store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    /// Every change to the mailboxes, committed in groups on a thread of
    /// its own.
    group_commit: group_commit::GroupCommit,
    readers: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database in `data_dir` and brings its
    /// schema up to date.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let mut options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(BUSY_TIMEOUT);
        for (name, value) in CONNECTION_PRAGMAS {
            options = options.pragma(name, value);
        }
        let writer = pool_options()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        migrations::run(&writer).await?;
        let readers = pool_options()
            .max_connections(READ_CONNECTIONS)
            .connect_with(options.read_only(true))
            .await?;
        Ok(Self {
            group_commit: group_commit::GroupCommit::start(&path).await?,
            writer,
            readers,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the group commit (committing what is queued and
    /// checkpointing the WAL), then the pools.
    pub async fn close(&self) {
        self.group_commit.close().await;
        self.readers.close().await;
        self.writer.close().await;
    }
}

/// What both pools share. sqlx pings a pooled connection before every
/// use by default, to find connections a network dropped: a SQLite
/// connection is a file handle on a thread of sqlx's, so the ping found
/// nothing and cost one more round trip to that thread per query (a login
/// makes three reads; without the ping, 8 % more logins per second in
/// `wisp-bench idle`).
fn pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(30))
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

impl SqliteStore {
    /// An immediate transaction on the writer: SQLite's write lock is held
    /// from its first statement, so no other write (of this pool or of the
    /// group commit) can interleave with a read-check-write. `_users` is
    /// not needed: the lock covers the whole database.
    async fn begin_write(
        &self,
        _users: &[UserId],
    ) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// The one-time-key claim: one statement on the single writer, so two
    /// claims never take the same key.
    const CLAIM_ONE_TIME_KEY: &'static str = "DELETE FROM one_time_keys WHERE id = \
         (SELECT id FROM one_time_keys WHERE owner = $1 ORDER BY id LIMIT 1) \
         RETURNING public_key, signature";
}

// Queries go to the read-only pool, single writing statements to the
// one-connection writer pool.
super::sql::relational_store!(SqliteStore, sqlx::Sqlite, readers: readers, writer: writer);

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Arc;

    use crate::store::{AccountStore, Stores};

    async fn open() -> (tempfile::TempDir, Stores) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let stores = Stores {
            accounts: Arc::new(store.clone()),
            friends: Arc::new(store.clone()),
            prekeys: Arc::new(store.clone()),
            mailbox: Arc::new(store),
            limits: None,
        };
        (dir, stores)
    }

    #[tokio::test]
    async fn conformance() {
        let (_dir, stores) = open().await;
        let time =
            crate::store::conformance::SuiteTime::Manual(crate::clock::ManualClock::starting_now());
        crate::store::conformance::run_all(&stores, &time).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn friend_cap_holds_under_concurrent_accepts() {
        let (_dir, stores) = open().await;
        crate::store::conformance::friend_cap_race(Arc::clone(&stores.friends), &*stores.accounts)
            .await;
    }

    /// A store written before ids were per mailbox (schema 3) opens with
    /// its messages and retry records, and each mailbox counts on from its
    /// newest id.
    #[tokio::test]
    async fn a_store_with_one_global_id_sequence_upgrades() {
        use crate::store::{MailboxStore, NewMessage, Quota};
        use wisp_proto::{MessageId, UnixMillis};
        let dir = tempfile::tempdir().unwrap();
        let (s, r, other) = (
            UserId::from_ed25519(&[1; 32]),
            UserId::from_ed25519(&[2; 32]),
            UserId::from_ed25519(&[3; 32]),
        );
        let now = UnixMillis(1_795_485_132_326);
        let expires = now.plus(std::time::Duration::from_secs(600));
        {
            let db = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            db.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, \
                 name TEXT NOT NULL, applied_ms INTEGER NOT NULL) STRICT;",
            )
            .unwrap();
            for (version, sql) in [
                (
                    1,
                    include_str!("../../../migrations/sqlite/0001_accounts_and_friends.sql"),
                ),
                (
                    2,
                    include_str!("../../../migrations/sqlite/0002_keys_and_mailboxes.sql"),
                ),
                (
                    3,
                    include_str!("../../../migrations/sqlite/0003_sent_ids_by_client_id.sql"),
                ),
            ] {
                db.execute_batch(sql).unwrap();
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?1, 'old', 0)",
                    rusqlite::params![version],
                )
                .unwrap();
            }
            // Message 7 of the old global sequence waits for r.
            db.execute(
                "INSERT INTO messages (id, recipient, sender, ciphertext, sent_ms, expires_ms) \
                 VALUES (7, ?1, ?2, x'00', ?3, ?4)",
                rusqlite::params![
                    r.as_bytes().as_slice(),
                    s.as_bytes().as_slice(),
                    now.0,
                    expires.0
                ],
            )
            .unwrap();
            db.execute(
                "INSERT INTO sent_ids (client_msg_id, sender, message_id, expires_ms) \
                 VALUES (?1, ?2, 7, ?3)",
                rusqlite::params![[9u8; 16].as_slice(), s.as_bytes().as_slice(), expires.0],
            )
            .unwrap();
        }
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let put = |to, id: [u8; 16]| {
            let store = store.clone();
            async move {
                let message = NewMessage {
                    sender: s,
                    recipient: to,
                    client_msg_id: &id,
                    ciphertext: b"x",
                    sent_at: now,
                    expires_at: expires,
                };
                store.put(message, &Quota::messages(10)).await.unwrap()
            }
        };
        let waiting = store.fetch(r, MessageId(0), now, 10).await.unwrap();
        assert_eq!(waiting.iter().map(|m| m.id.0).collect::<Vec<_>>(), [7]);
        let retry = put(r, [9; 16]).await;
        assert_eq!((retry.id.0, retry.duplicate), (7, true));
        assert_eq!(put(r, [10; 16]).await.id.0, 8);
        assert_eq!(put(other, [10; 16]).await.id.0, 1);
        store.close().await;
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
