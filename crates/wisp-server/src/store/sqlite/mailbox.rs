//! Mailboxes in SQLite: one row per undelivered message, deleted on burn or
//! expiry (with `secure_delete`, so the ciphertext is overwritten). Every
//! write goes through the [group commit](super::group_commit); fetches use
//! the read-only pool.

use async_trait::async_trait;
use wisp_proto::{MessageId, UnixMillis, UserId};

use super::SqliteStore;
use crate::store::sql::user_from_row;
use crate::store::{
    Accepted, MailboxStore, NewMessage, PutError, Quota, StoreError, StoredMessage,
};

pub(super) fn id_from_row(id: i64) -> Result<MessageId, StoreError> {
    u64::try_from(id)
        .map(MessageId)
        .map_err(|_| StoreError::Corrupt(format!("message id {id}")))
}

pub(super) fn id_to_row(id: MessageId) -> i64 {
    i64::try_from(id.0).unwrap_or(i64::MAX)
}

/// A page of a mailbox. `LIMIT CAST(? AS INTEGER)`, not `LIMIT ?`: SQLite
/// plans a bare parameter in `LIMIT` with the value bound to it, so the
/// statement is prepared again every time it is bound (every delivery).
pub(super) const FETCH: &str = "SELECT id, sender, ciphertext, sent_ms, expires_ms FROM messages \
     WHERE recipient = ? AND id > ? AND expires_ms > ? ORDER BY id LIMIT CAST(? AS INTEGER)";

#[async_trait]
impl MailboxStore for SqliteStore {
    async fn put(&self, message: NewMessage<'_>, quota: &Quota) -> Result<Accepted, PutError> {
        self.group_commit.put(message, quota).await
    }

    async fn fetch(
        &self,
        recipient: UserId,
        after: MessageId,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let rows: Vec<(i64, Vec<u8>, Vec<u8>, i64, i64)> = sqlx::query_as(FETCH)
            .bind(recipient.as_bytes().as_slice())
            .bind(id_to_row(after))
            .bind(now.0)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.readers)
            .await?;
        rows.into_iter()
            .map(|(id, sender, ciphertext, sent_at, expires_at)| {
                Ok(StoredMessage {
                    id: id_from_row(id)?,
                    sender: user_from_row(&sender)?,
                    ciphertext,
                    sent_at: UnixMillis(sent_at),
                    expires_at: UnixMillis(expires_at),
                })
            })
            .collect()
    }

    async fn burn(&self, recipient: UserId, ids: &[MessageId]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        self.group_commit.burn(recipient, ids.to_vec()).await
    }

    async fn purge_expired(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError> {
        self.group_commit.purge_expired(now, limit).await
    }

    async fn drop_conversation(&self, a: UserId, b: UserId) -> Result<u64, StoreError> {
        self.group_commit.drop_conversation(a, b).await
    }

    async fn erase_user(&self, user: UserId) -> Result<u64, StoreError> {
        self.group_commit.erase_user(user).await
    }

    #[cfg(any(test, feature = "test-support"))]
    async fn pending_between(
        &self,
        sender: UserId,
        recipient: UserId,
        now: UnixMillis,
    ) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM messages WHERE recipient = ? AND sender = ? AND expires_ms > ?",
        )
        .bind(recipient.as_bytes().as_slice())
        .bind(sender.as_bytes().as_slice())
        .bind(now.0)
        .fetch_one(&self.readers)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    async fn maintain(&self) -> Result<bool, StoreError> {
        // Old WAL frames still hold page images from before a delete;
        // checkpointing and truncating the WAL removes them.
        self.group_commit.maintain().await
    }

    #[cfg(any(test, feature = "test-support"))]
    async fn stored_count(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM messages")
            .fetch_one(&self.writer)
            .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
