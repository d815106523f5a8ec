//! Schema migrations for PostgreSQL: numbered SQL files compiled into the
//! binary, applied once each, in order. An advisory lock serialises nodes
//! that start at the same moment.

use sqlx::PgPool;

use crate::store::StoreError;
use crate::store::sql::apply_migration;

/// `(version, name, sql)`, in order. Append only; never edit a shipped one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "accounts_friends_keys",
        include_str!("../../../migrations/postgres/0001_accounts_friends_keys.sql"),
    ),
    (
        2,
        "friend_requests_to_any_id",
        include_str!("../../../migrations/postgres/0002_friend_requests_to_any_id.sql"),
    ),
    (
        3,
        "deleted_accounts",
        include_str!("../../../migrations/postgres/0003_deleted_accounts.sql"),
    ),
];

/// Any fixed number: the key of the advisory lock migrations hold.
const MIGRATION_LOCK: i64 = 0x7769_7370; // "wisp"

pub(super) async fn run(pool: &PgPool) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (\
         version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    ?;
    for migration in MIGRATIONS {
        apply_migration!(
            tx,
            migration,
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)"
        );
    }
    tx.commit().await?;
    Ok(())
}
