//! Schema migrations for the SQLite backend: numbered SQL files compiled
//! into the binary, each applied once, in order, inside a transaction.

use sqlx::SqlitePool;

use super::backend;
use crate::store::StoreError;

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
];

pub(super) async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL) STRICT",
    )
    .execute(pool)
    .await
    .map_err(backend)?;
    for (version, name, sql) in MIGRATIONS {
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(backend)?;
        if applied.is_some() {
            tx.rollback().await.map_err(backend)?;
            continue;
        }
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(|e| {
            StoreError::Backend(format!("migration {version} ({name}) failed: {e}"))
        })?;
        sqlx::query(
            "INSERT INTO schema_migrations (version, name, applied_ms) \
             VALUES (?, ?, CAST(unixepoch('subsec') * 1000 AS INTEGER))",
        )
        .bind(version)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        tracing::info!(version, name, "applied schema migration");
    }
    Ok(())
}
