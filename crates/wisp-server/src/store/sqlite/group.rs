//! Group commit for the hot writes (storing and burning messages): callers
//! queue their write and wait; one task takes everything queued, runs it in
//! one transaction on the writer connection, commits once (one WAL sync
//! for the whole group), and only then answers each caller. Durability is
//! unchanged (nobody hears "stored" before the commit that stores it),
//! while the cost of a sync is shared by every write that arrived while the
//! previous one ran.
//!
//! A write that fails on its own terms (a full mailbox, a retry) is
//! answered as such and does not disturb the group; a database failure
//! aborts the whole transaction and every caller in it hears of it.

use sqlx::SqlitePool;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};
use wisp_proto::{MessageId, UserId};

use super::backend;
use super::mailbox::{id_from_row, id_to_row};
use crate::store::{Accepted, NewMessage, PutError, StoreError, UnixMillis};

/// Writes one transaction takes at most.
const MAX_GROUP: usize = 512;

/// Writes waiting at most (callers wait for room beyond that).
const QUEUE: usize = 8192;

struct Put {
    sender: UserId,
    recipient: UserId,
    client_msg_id: Vec<u8>,
    ciphertext: Vec<u8>,
    sent_at: UnixMillis,
    expires_at: UnixMillis,
    max_pending: u64,
    reply: oneshot::Sender<Result<Accepted, PutError>>,
}

struct Burn {
    recipient: UserId,
    ids: Vec<MessageId>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

enum Write {
    Put(Put),
    Burn(Burn),
}

enum Done {
    Put(Result<Accepted, PutError>),
    Burn(u64),
}

/// The queue in front of the writer. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Write>,
}

fn gone() -> StoreError {
    StoreError::Backend("the store is closed".into())
}

impl GroupCommit {
    /// Starts the committing task on `writer`; it ends when every handle
    /// is dropped.
    pub(super) fn start(writer: SqlitePool) -> Self {
        let (queue, writes) = mpsc::channel(QUEUE);
        tokio::spawn(run(writer, writes));
        Self { queue }
    }

    pub(super) async fn put(
        &self,
        message: NewMessage<'_>,
        max_pending: u64,
    ) -> Result<Accepted, PutError> {
        let (reply, answer) = oneshot::channel();
        let write = Write::Put(Put {
            sender: message.sender,
            recipient: message.recipient,
            client_msg_id: message.client_msg_id.to_vec(),
            ciphertext: message.ciphertext.to_vec(),
            sent_at: message.sent_at,
            expires_at: message.expires_at,
            max_pending,
            reply,
        });
        self.queue.send(write).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    pub(super) async fn burn(
        &self,
        recipient: UserId,
        ids: Vec<MessageId>,
    ) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        let write = Write::Burn(Burn {
            recipient,
            ids,
            reply,
        });
        self.queue.send(write).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn run(writer: SqlitePool, mut writes: mpsc::Receiver<Write>) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while writes.recv_many(&mut group, MAX_GROUP).await > 0 {
        metrics::histogram!("wisp_store_group_size").record(group.len() as f64);
        match commit(&writer, &group).await {
            Ok(done) => {
                for (write, done) in group.drain(..).zip(done) {
                    match (write, done) {
                        (Write::Put(put), Done::Put(result)) => {
                            let _ = put.reply.send(result);
                        }
                        (Write::Burn(burn), Done::Burn(n)) => {
                            let _ = burn.reply.send(Ok(n));
                        }
                        // `commit` answers each write with its own kind.
                        (Write::Put(put), Done::Burn(_)) => {
                            let _ = put.reply.send(Err(PutError::Store(gone())));
                        }
                        (Write::Burn(burn), Done::Put(_)) => {
                            let _ = burn.reply.send(Err(gone()));
                        }
                    }
                }
            }
            Err(error) => {
                tracing::warn!(%error, writes = group.len(), "group commit failed");
                for write in group.drain(..) {
                    let failed = StoreError::Backend(error.to_string());
                    match write {
                        Write::Put(put) => {
                            let _ = put.reply.send(Err(PutError::Store(failed)));
                        }
                        Write::Burn(burn) => {
                            let _ = burn.reply.send(Err(failed));
                        }
                    }
                }
            }
        }
    }
}

/// Runs every write of `group` in one transaction.
async fn commit(writer: &SqlitePool, group: &[Write]) -> Result<Vec<Done>, StoreError> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(backend)?;
    let mut done = Vec::with_capacity(group.len());
    for write in group {
        done.push(match write {
            Write::Put(put) => Done::Put(store(&mut tx, put).await?),
            Write::Burn(burn) => Done::Burn(delete(&mut tx, burn).await?),
        });
    }
    tx.commit().await.map_err(backend)?;
    Ok(done)
}

/// One put: a retry is answered with the first id; a full mailbox is
/// refused; otherwise the message and its retry record are stored.
async fn store(
    tx: &mut SqliteConnection,
    put: &Put,
) -> Result<Result<Accepted, PutError>, StoreError> {
    let earlier: Option<(i64, i64)> = sqlx::query_as(
        "SELECT message_id, expires_ms FROM sent_ids WHERE sender = ? AND client_msg_id = ?",
    )
    .bind(put.sender.as_bytes().as_slice())
    .bind(put.client_msg_id.as_slice())
    .fetch_optional(&mut *tx)
    .await
    .map_err(backend)?;
    if let Some((id, expires_at)) = earlier {
        return Ok(Ok(Accepted {
            id: id_from_row(id)?,
            expires_at,
            duplicate: true,
        }));
    }
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM messages WHERE recipient = ? AND sender = ? AND expires_ms > ?",
    )
    .bind(put.recipient.as_bytes().as_slice())
    .bind(put.sender.as_bytes().as_slice())
    .bind(put.sent_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    if u64::try_from(pending).unwrap_or(0) >= put.max_pending {
        return Ok(Err(PutError::MailboxFull));
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO messages (recipient, sender, ciphertext, sent_ms, expires_ms) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(put.recipient.as_bytes().as_slice())
    .bind(put.sender.as_bytes().as_slice())
    .bind(put.ciphertext.as_slice())
    .bind(put.sent_at)
    .bind(put.expires_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(backend)?;
    sqlx::query(
        "INSERT INTO sent_ids (sender, client_msg_id, message_id, expires_ms) VALUES (?, ?, ?, ?)",
    )
    .bind(put.sender.as_bytes().as_slice())
    .bind(put.client_msg_id.as_slice())
    .bind(id)
    .bind(put.expires_at)
    .execute(&mut *tx)
    .await
    .map_err(backend)?;
    Ok(Ok(Accepted {
        id: id_from_row(id)?,
        expires_at: put.expires_at,
        duplicate: false,
    }))
}

/// One burn: deletes the named messages of the recipient.
async fn delete(tx: &mut SqliteConnection, burn: &Burn) -> Result<u64, StoreError> {
    let mut burned = 0;
    for id in &burn.ids {
        burned += sqlx::query("DELETE FROM messages WHERE id = ? AND recipient = ?")
            .bind(id_to_row(*id))
            .bind(burn.recipient.as_bytes().as_slice())
            .execute(&mut *tx)
            .await
            .map_err(backend)?
            .rows_affected();
    }
    Ok(burned)
}
