//! Schema migrations for the SQLite backend: numbered SQL files compiled
//! into the binary, each applied once, in order, inside a transaction.

use sqlx::SqlitePool;

use crate::store::StoreError;
use crate::store::sql::apply_migration;

/// `(version, name, sql)`, in order. Append only; never edit a shipped one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts_and_friends",
        include_str!("../../../migrations/sqlite/0001_accounts_and_friends.sql"),
    ),
    (
        2,
        "keys_and_mailboxes",
        include_str!("../../../migrations/sqlite/0002_keys_and_mailboxes.sql"),
    ),
    (
        3,
        "sent_ids_by_client_id",
        include_str!("../../../migrations/sqlite/0003_sent_ids_by_client_id.sql"),
    ),
    (
        4,
        "friend_requests_to_any_id",
        include_str!("../../../migrations/sqlite/0004_friend_requests_to_any_id.sql"),
    ),
    (
        5,
        "mailbox_ids_per_recipient",
        include_str!("../../../migrations/sqlite/0005_mailbox_ids_per_recipient.sql"),
    ),
    (
        6,
        "deleted_accounts",
        include_str!("../../../migrations/sqlite/0006_deleted_accounts.sql"),
    ),
];

pub(super) async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL) STRICT",
    )
    .execute(pool)
    .await?;
    // One transaction per migration, each holding the write lock.
    for migration in MIGRATIONS {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        apply_migration!(
            tx,
            migration,
            "INSERT INTO schema_migrations (version, name, applied_ms) \
             VALUES ($1, $2, CAST(unixepoch('subsec') * 1000 AS INTEGER))"
        );
        tx.commit().await?;
    }
    Ok(())
}
