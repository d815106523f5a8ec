//! One-time and fallback keys in SQLite.

use async_trait::async_trait;
use sqlx::SqliteConnection;
use wisp_proto::UserId;
use wisp_proto::limits::MAX_STORED_ONE_TIME_KEYS;

use super::{SqliteStore, backend, key_from_row};
use crate::store::{ClaimedKey, PreKeyStore, SignedKey, StoreError};

async fn count(conn: &mut SqliteConnection, owner: UserId) -> Result<usize, StoreError> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM one_time_keys WHERE owner = ?")
        .bind(owner.as_bytes().as_slice())
        .fetch_one(conn)
        .await
        .map_err(backend)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

#[async_trait]
impl PreKeyStore for SqliteStore {
    async fn add_keys(
        &self,
        owner: UserId,
        one_time: &[SignedKey],
        fallback: Option<&SignedKey>,
    ) -> Result<usize, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let room = MAX_STORED_ONE_TIME_KEYS.saturating_sub(count(&mut tx, owner).await?);
        for key in one_time.iter().take(room) {
            sqlx::query(
                "INSERT INTO one_time_keys (owner, public_key, signature) VALUES (?, ?, ?) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(owner.as_bytes().as_slice())
            .bind(key.public_key.as_slice())
            .bind(key.signature.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        if let Some(key) = fallback {
            sqlx::query(
                "INSERT INTO fallback_keys (owner, public_key, signature) VALUES (?, ?, ?) \
                 ON CONFLICT (owner) DO UPDATE SET public_key = excluded.public_key, \
                 signature = excluded.signature",
            )
            .bind(owner.as_bytes().as_slice())
            .bind(key.public_key.as_slice())
            .bind(key.signature.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        }
        let total = count(&mut tx, owner).await?;
        tx.commit().await.map_err(backend)?;
        Ok(total)
    }

    async fn claim(&self, owner: UserId) -> Result<Option<ClaimedKey>, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(backend)?;
        let one_time: Option<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
            "DELETE FROM one_time_keys WHERE id = \
             (SELECT id FROM one_time_keys WHERE owner = ? ORDER BY id LIMIT 1) \
             RETURNING public_key, signature",
        )
        .bind(owner.as_bytes().as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(backend)?;
        let claimed = match one_time {
            Some(row) => Some((row, false)),
            None => sqlx::query_as::<_, (Vec<u8>, Vec<u8>)>(
                "SELECT public_key, signature FROM fallback_keys WHERE owner = ?",
            )
            .bind(owner.as_bytes().as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .map(|row| (row, true)),
        };
        tx.commit().await.map_err(backend)?;
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
        let mut conn = self.readers.acquire().await.map_err(backend)?;
        count(&mut conn, owner).await
    }
}
