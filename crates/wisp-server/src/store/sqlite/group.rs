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

use std::collections::{HashMap, HashSet};

use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
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

/// Rows one statement carries at most (well under SQLite's limit on bound
/// values).
const ROWS_PER_STATEMENT: usize = 400;

/// Runs every write of `group` in one transaction, with a handful of
/// statements for the whole group rather than several per write: each
/// statement is a round trip to the database thread.
async fn commit(writer: &SqlitePool, group: &[Write]) -> Result<Vec<Done>, StoreError> {
    let mut tx = writer
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(backend)?;
    let mut done: Vec<Option<Done>> = (0..group.len()).map(|_| None).collect();
    let puts: Vec<(usize, &Put)> = group
        .iter()
        .enumerate()
        .filter_map(|(i, w)| match w {
            Write::Put(put) => Some((i, put)),
            Write::Burn(_) => None,
        })
        .collect();
    let burns: Vec<(usize, &Burn)> = group
        .iter()
        .enumerate()
        .filter_map(|(i, w)| match w {
            Write::Burn(burn) => Some((i, burn)),
            Write::Put(_) => None,
        })
        .collect();
    // Burns first: what they free counts toward the puts' quota (a put
    // cannot be burned in its own group: its recipient has not seen it).
    if !burns.is_empty() {
        delete_all(&mut tx, &burns, &mut done).await?;
    }
    if !puts.is_empty() {
        store_all(&mut tx, &puts, &mut done).await?;
    }
    tx.commit().await.map_err(backend)?;
    done.into_iter()
        .map(|d| d.ok_or_else(|| StoreError::Backend("a grouped write went unanswered".into())))
        .collect()
}

type Key = (Vec<u8>, Vec<u8>);

/// The puts of a group: retries are answered with their first id (also a
/// retry within the group), full mailboxes refused, the rest stored with
/// their retry records, ids handed out in arrival order.
async fn store_all(
    tx: &mut SqliteConnection,
    puts: &[(usize, &Put)],
    done: &mut [Option<Done>],
) -> Result<(), StoreError> {
    // Retries of earlier groups.
    let mut first: HashMap<Key, (i64, i64)> = HashMap::new();
    for chunk in puts.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT sender, client_msg_id, message_id, expires_ms FROM sent_ids \
             WHERE (sender, client_msg_id) IN (",
        );
        row_values(&mut query, chunk, |row, (_, put)| {
            row.push_bind(put.sender.as_bytes().as_slice())
                .push(", ")
                .push_bind(put.client_msg_id.as_slice());
        });
        query.push(")");
        let rows: Vec<(Vec<u8>, Vec<u8>, i64, i64)> = query
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        for (sender, client_msg_id, id, expires) in rows {
            first.insert((sender, client_msg_id), (id, expires));
        }
    }
    // What already waits per conversation.
    let oldest = puts.iter().map(|(_, p)| p.sent_at).min().unwrap_or(0);
    let mut waiting: HashMap<Key, u64> = HashMap::new();
    for chunk in puts.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "SELECT recipient, sender, count(*) FROM messages WHERE expires_ms > ",
        );
        query
            .push_bind(oldest)
            .push(" AND (recipient, sender) IN (");
        row_values(&mut query, chunk, |row, (_, put)| {
            row.push_bind(put.recipient.as_bytes().as_slice())
                .push(", ")
                .push_bind(put.sender.as_bytes().as_slice());
        });
        query.push(") GROUP BY recipient, sender");
        let rows: Vec<(Vec<u8>, Vec<u8>, i64)> = query
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        for (recipient, sender, n) in rows {
            waiting.insert((recipient, sender), u64::try_from(n).unwrap_or(0));
        }
    }
    // Ids continue the table's own sequence (AUTOINCREMENT: never reused,
    // so delivery cursors never skip).
    let last: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM sqlite_sequence WHERE name = 'messages'")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?;
    let mut next_id = last.unwrap_or(0);
    let mut stored: Vec<(i64, &Put)> = Vec::new();
    for (slot, put) in puts {
        let key = (put.sender.as_bytes().to_vec(), put.client_msg_id.clone());
        let outcome = if let Some(&(id, expires_at)) = first.get(&key) {
            Ok(Accepted {
                id: id_from_row(id)?,
                expires_at,
                duplicate: true,
            })
        } else {
            let conversation = (
                put.recipient.as_bytes().to_vec(),
                put.sender.as_bytes().to_vec(),
            );
            let pending = waiting.entry(conversation).or_default();
            if *pending >= put.max_pending {
                Err(PutError::MailboxFull)
            } else {
                *pending += 1;
                next_id += 1;
                first.insert(key, (next_id, put.expires_at));
                stored.push((next_id, put));
                Ok(Accepted {
                    id: id_from_row(next_id)?,
                    expires_at: put.expires_at,
                    duplicate: false,
                })
            }
        };
        done[*slot] = Some(Done::Put(outcome));
    }
    for chunk in stored.chunks(ROWS_PER_STATEMENT) {
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO messages (id, recipient, sender, ciphertext, sent_ms, expires_ms) ",
        );
        query.push_values(chunk, |mut row, (id, put)| {
            row.push_bind(*id)
                .push_bind(put.recipient.as_bytes().as_slice())
                .push_bind(put.sender.as_bytes().as_slice())
                .push_bind(put.ciphertext.as_slice())
                .push_bind(put.sent_at)
                .push_bind(put.expires_at);
        });
        query.build().execute(&mut *tx).await.map_err(backend)?;
        let mut query = QueryBuilder::<Sqlite>::new(
            "INSERT INTO sent_ids (sender, client_msg_id, message_id, expires_ms) ",
        );
        query.push_values(chunk, |mut row, (id, put)| {
            row.push_bind(put.sender.as_bytes().as_slice())
                .push_bind(put.client_msg_id.as_slice())
                .push_bind(*id)
                .push_bind(put.expires_at);
        });
        query.build().execute(&mut *tx).await.map_err(backend)?;
    }
    Ok(())
}

/// The burns of a group: each deletes the named messages of its recipient
/// and counts what it deleted.
async fn delete_all(
    tx: &mut SqliteConnection,
    burns: &[(usize, &Burn)],
    done: &mut [Option<Done>],
) -> Result<(), StoreError> {
    let pairs: Vec<(i64, &UserId)> = burns
        .iter()
        .flat_map(|(_, burn)| burn.ids.iter().map(|id| (id_to_row(*id), &burn.recipient)))
        .collect();
    let mut deleted: HashSet<(i64, Vec<u8>)> = HashSet::new();
    for chunk in pairs.chunks(ROWS_PER_STATEMENT) {
        let mut query =
            QueryBuilder::<Sqlite>::new("DELETE FROM messages WHERE (id, recipient) IN (");
        row_values(&mut query, chunk, |row, (id, recipient)| {
            row.push_bind(*id)
                .push(", ")
                .push_bind(recipient.as_bytes().as_slice());
        });
        query.push(") RETURNING id, recipient");
        let rows: Vec<(i64, Vec<u8>)> = query
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .map_err(backend)?;
        deleted.extend(rows);
    }
    // Each deleted message is credited once, to the first burn naming it.
    for (slot, burn) in burns {
        let mut mine = 0;
        for id in &burn.ids {
            if deleted.remove(&(id_to_row(*id), burn.recipient.as_bytes().to_vec())) {
                mine += 1;
            }
        }
        done[*slot] = Some(Done::Burn(mine));
    }
    Ok(())
}

/// Appends `VALUES (…), (…)` for `items` to `query` (each row's parts
/// written by `row`), for a row-value `IN`.
fn row_values<T>(
    query: &mut QueryBuilder<Sqlite>,
    items: &[T],
    mut row: impl FnMut(&mut QueryBuilder<Sqlite>, &T),
) {
    query.push("VALUES ");
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            query.push(", ");
        }
        query.push("(");
        row(query, item);
        query.push(")");
    }
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::{MailboxStore, NewMessage};
    use wisp_proto::UserId;

    #[tokio::test]
    async fn a_message_burned_twice_in_one_group_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let (a, b) = (
            UserId::from_ed25519(&[1; 32]),
            UserId::from_ed25519(&[2; 32]),
        );
        let now = 1_795_485_132_326;
        let put = |n: u8| {
            let store = store.clone();
            async move {
                store
                    .put(
                        NewMessage {
                            sender: a,
                            recipient: b,
                            client_msg_id: &[n; 16],
                            ciphertext: b"opaque",
                            sent_at: now,
                            expires_at: now + 60_000,
                        },
                        10,
                    )
                    .await
                    .unwrap()
            }
        };
        // Queued together, the two puts of one client id are one message.
        let (first, again) = tokio::join!(put(1), put(1));
        assert_eq!(first.id, again.id);
        assert!(first.duplicate != again.duplicate);
        // Two burns of it, and one naming it for the wrong recipient, in
        // one group: one message deleted, credited once.
        let ids = [first.id];
        let (x, y, z) = tokio::join!(
            store.burn(b, &ids),
            store.burn(b, &ids),
            store.burn(a, &ids)
        );
        assert_eq!(x.unwrap() + y.unwrap() + z.unwrap(), 1);
        assert_eq!(store.stored_count().await.unwrap(), 0);
        store.close().await;
    }
}
