//! Group commit for the mailbox writes (storing and burning messages, and
//! the rarer purges and conversation drops): "group" as in one commit for a
//! group of writes, nothing to do with group chats. Callers queue their
//! write on [`GroupCommit`] and wait; one thread ([`CommitThread`]) takes
//! everything queued (a [`CommitGroup`]), runs it in one transaction on a
//! connection of its own, commits once (one WAL sync for the whole group),
//! and only then answers each caller. Durability is unchanged (nobody hears
//! "stored" before the commit that stores it), while the cost of a sync is
//! shared by every write that arrived while the previous one ran. Under
//! load (a group of [`BUSY_GROUP`] writes or more), groups start at most
//! every [`GATHER`], so each gathers more writes: fewer syncs and fewer
//! pages written, for at most that much latency.
//!
//! The thread drives SQLite directly (rusqlite, statements prepared once
//! and cached): a group is one hand-over in and one answer per caller out,
//! not a round trip to a database thread per statement. Every change to
//! the `messages`, `sent_ids` and `mailbox_sequences` tables goes through
//! it, so it also keeps in memory each mailbox's last id and the bytes
//! waiting per recipient and per sender (the byte quotas), loaded from the
//! tables when first needed and again after a failed group. The other writes (accounts, friendships,
//! keys) go through the store's one-connection writer pool; SQLite's write
//! lock (`BEGIN IMMEDIATE` or a single writing statement, with a busy
//! timeout) keeps the two writers apart.
//!
//! A write that fails on its own terms (a full mailbox, a retry) is
//! answered as such and does not disturb the group; a database failure
//! aborts the whole transaction and every caller in it hears of it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};
use wisp_proto::{MessageId, UnixMillis, UserId};

use super::mailbox::{id_from_row, id_to_row};
use super::{BUSY_TIMEOUT, CONNECTION_PRAGMAS};
use crate::store::{Accepted, NewMessage, PutError, Quota, StoreError};

/// Writes one transaction takes at most.
const MAX_GROUP: usize = 512;

/// Writes waiting at most (callers wait for room beyond that).
const QUEUE: usize = 8192;

/// Under load, groups start at most this often.
const GATHER: std::time::Duration = std::time::Duration::from_millis(2);

/// A group this large means load.
const BUSY_GROUP: usize = 8;

/// How long a WAL truncation waits for readers to leave it.
const MAINTAIN_WAIT: std::time::Duration = std::time::Duration::from_millis(20);

struct Put {
    sender: UserId,
    recipient: UserId,
    client_msg_id: Vec<u8>,
    ciphertext: Vec<u8>,
    sent_at: UnixMillis,
    expires_at: UnixMillis,
    quota: Quota,
    reply: oneshot::Sender<Result<Accepted, PutError>>,
}

/// A write answered with a count of what it deleted.
struct Delete {
    what: Deletion,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

enum Deletion {
    /// A recipient's burn of the named messages.
    Burn {
        recipient: UserId,
        ids: Vec<MessageId>,
    },
    /// Up to `limit` expired messages, and as many expired retry records.
    Expired { now: UnixMillis, limit: usize },
    /// Everything waiting between two users, either way.
    Conversation { a: UserId, b: UserId },
    /// Everything naming one user (account deletion): messages and retry
    /// records either way, and its mailbox's id counter.
    User(UserId),
}

enum Write {
    Put(Put),
    Delete(Delete),
    /// Checkpoint and truncate the WAL (see [`GroupCommit::maintain`]).
    Maintain(oneshot::Sender<Result<bool, StoreError>>),
    /// Commit what is queued, checkpoint, close the connection and end
    /// the thread (see [`GroupCommit::close`]).
    Close(oneshot::Sender<()>),
}

/// The queue in front of the commit thread. Cheap to clone; the thread
/// ends when every handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct GroupCommit {
    queue: mpsc::Sender<Write>,
}

/// One error for each of the callers a failure reaches, each holding the
/// same rusqlite error as its source.
fn shared(error: &Arc<rusqlite::Error>) -> StoreError {
    StoreError::Sql(Box::new(Arc::clone(error)))
}

impl GroupCommit {
    /// Opens the commit thread's connection to the database at `path` (whose
    /// schema is already up to date) and starts its thread.
    pub(super) async fn start(path: &Path) -> Result<Self, StoreError> {
        let (queue, writes) = mpsc::channel(QUEUE);
        let (opened, open_result) = oneshot::channel();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("wisp-group-commit".into())
            .spawn(move || match CommitThread::open(&path) {
                Ok(writer) => {
                    let _ = opened.send(Ok(()));
                    writer.run(writes);
                }
                Err(error) => {
                    let _ = opened.send(Err(StoreError::from(error)));
                }
            })
            .map_err(|e| StoreError::Sql(Box::new(e)))?;
        open_result.await.map_err(|_| StoreError::Closed)??;
        Ok(Self { queue })
    }

    pub(super) async fn put(
        &self,
        message: NewMessage<'_>,
        quota: &Quota,
    ) -> Result<Accepted, PutError> {
        let (reply, answer) = oneshot::channel();
        let write = Write::Put(Put {
            sender: message.sender,
            recipient: message.recipient,
            client_msg_id: message.client_msg_id.to_vec(),
            ciphertext: message.ciphertext.to_vec(),
            sent_at: message.sent_at,
            expires_at: message.expires_at,
            quota: *quota,
            reply,
        });
        self.queue
            .send(write)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Deletes what `what` names and says how much that was.
    async fn delete(&self, what: Deletion) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Write::Delete(Delete { what, reply }))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub(super) async fn burn(
        &self,
        recipient: UserId,
        ids: Vec<MessageId>,
    ) -> Result<u64, StoreError> {
        self.delete(Deletion::Burn { recipient, ids }).await
    }

    pub(super) async fn purge_expired(
        &self,
        now: UnixMillis,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.delete(Deletion::Expired { now, limit }).await
    }

    pub(super) async fn drop_conversation(&self, a: UserId, b: UserId) -> Result<u64, StoreError> {
        self.delete(Deletion::Conversation { a, b }).await
    }

    pub(super) async fn erase_user(&self, user: UserId) -> Result<u64, StoreError> {
        self.delete(Deletion::User(user)).await
    }

    /// Commits what is queued, copies the WAL into the database, closes
    /// the commit thread's connection and ends its thread; later writes are
    /// refused as "closed". Returns once the connection is closed.
    pub(super) async fn close(&self) {
        let (reply, closed) = oneshot::channel();
        if self.queue.send(Write::Close(reply)).await.is_ok() {
            let _ = closed.await;
        }
    }

    /// Copies the WAL into the database and truncates it, so page images
    /// from before a delete leave the disk; false when readers kept it
    /// from finishing (try again later). It runs on the commit thread,
    /// between groups: from another connection it would have to wait for
    /// the write lock, and the commit thread for it, each sleeping in SQLite's
    /// busy handler.
    pub(super) async fn maintain(&self) -> Result<bool, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Write::Maintain(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// Mailboxes whose last id the commit thread remembers at most (beyond,
/// it forgets them all and reads them back as needed).
const MAX_REMEMBERED_SEQUENCES: usize = 100_000;

/// The commit thread's connection and what it remembers between groups:
/// each mailbox's last id (read from `mailbox_sequences` when missing),
/// and the bytes waiting (`None`: count them again, as after a failed
/// group).
struct CommitThread {
    db: Connection,
    last_ids: HashMap<UserId, i64>,
    bytes: Option<Bytes>,
}

/// Ciphertext bytes stored (expired or not, until purged) per recipient
/// and per sender; users with none are left out.
#[derive(Default)]
struct Bytes {
    mailbox: HashMap<UserId, u64>,
    outbox: HashMap<UserId, u64>,
}

impl Bytes {
    /// Counts everything stored.
    fn load(tx: &Connection) -> rusqlite::Result<Self> {
        let mut bytes = Self::default();
        let mut rows = tx.prepare("SELECT recipient, sender, length(ciphertext) FROM messages")?;
        let mut rows = rows.query([])?;
        while let Some(row) = rows.next()? {
            let recipient = user(&row.get::<_, Vec<u8>>(0)?)?;
            let sender = user(&row.get::<_, Vec<u8>>(1)?)?;
            bytes.add(recipient, sender, size(row.get(2)?));
        }
        Ok(bytes)
    }

    fn add(&mut self, recipient: UserId, sender: UserId, n: u64) {
        *self.mailbox.entry(recipient).or_default() += n;
        *self.outbox.entry(sender).or_default() += n;
    }

    fn remove(&mut self, recipient: UserId, sender: UserId, n: u64) {
        for (map, user) in [(&mut self.mailbox, recipient), (&mut self.outbox, sender)] {
            if let Entry::Occupied(mut entry) = map.entry(user) {
                *entry.get_mut() = entry.get().saturating_sub(n);
                if *entry.get() == 0 {
                    entry.remove();
                }
            }
        }
    }
}

/// A length read back from the database.
fn size(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A user id read back from the database.
fn user(bytes: &[u8]) -> rusqlite::Result<UserId> {
    UserId::from_bytes(bytes).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Blob, Box::new(e))
    })
}

impl CommitThread {
    fn open(path: &Path) -> rusqlite::Result<Self> {
        let db = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        db.busy_timeout(BUSY_TIMEOUT)?;
        for (name, value) in CONNECTION_PRAGMAS {
            db.pragma_update(None, name, value)?;
        }
        db.set_prepared_statement_cache_capacity(32);
        // SQLite's default, said outright: small, frequent checkpoints. Every
        // 10,000 pages made each one a stall of tens of ms (p99.9 at 2,000
        // msgs/s 24 ms against 7 ms).
        db.pragma_update(None, "wal_autocheckpoint", 1000)?;
        Ok(Self {
            db,
            last_ids: HashMap::new(),
            bytes: None,
        })
    }

    fn run(mut self, mut writes: mpsc::Receiver<Write>) {
        let mut group = CommitGroup::default();
        let mut maintain = Vec::new();
        let mut closing = None;
        let mut busy = false;
        let mut last_start = Instant::now();
        while let Some(first) = writes.blocking_recv() {
            // Under load, let a group gather for a moment: one sync and one
            // set of pages written for more writes.
            if busy {
                let since = last_start.elapsed();
                if since < GATHER {
                    std::thread::sleep(GATHER - since);
                }
            }
            last_start = Instant::now();
            let mut next = Some(first);
            while let Some(write) = next.take() {
                match write {
                    Write::Put(put) => group.puts.push(put),
                    Write::Delete(delete) => group.deletes.push(delete),
                    Write::Maintain(reply) => maintain.push(reply),
                    Write::Close(reply) => closing = Some(reply),
                }
                if group.len() < MAX_GROUP && closing.is_none() {
                    next = writes.try_recv().ok();
                }
            }
            busy = group.len() >= BUSY_GROUP;
            if group.len() > 0 {
                self.commit_group(&mut group);
            }
            if !maintain.is_empty() {
                let done = self.checkpoint().map_err(Arc::new);
                for reply in maintain.drain(..) {
                    let _ = reply.send(match &done {
                        Ok(finished) => Ok(*finished),
                        Err(error) => Err(shared(error)),
                    });
                }
            }
            if let Some(reply) = closing.take() {
                // Writes queued after the close are refused ("closed") as
                // the receiver goes; the WAL is copied in and emptied.
                writes.close();
                while let Ok(write) = writes.try_recv() {
                    refuse(write);
                }
                if let Err(error) = self.checkpoint() {
                    tracing::warn!(%error, "could not checkpoint the WAL at close");
                }
                drop(self);
                let _ = reply.send(());
                return;
            }
        }
    }

    /// Truncating needs no reader in the WAL: it waits for them a moment
    /// only, then reports "not now".
    fn checkpoint(&self) -> rusqlite::Result<bool> {
        let outcome = self.db.busy_timeout(MAINTAIN_WAIT).and_then(|()| {
            self.db
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                })
        });
        self.db.busy_timeout(BUSY_TIMEOUT)?;
        match outcome {
            Ok(busy) => Ok(busy == 0),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                Ok(false)
            }
            Err(error) => Err(error),
        }
    }

    /// Commits `group` and answers each of its writes; leaves it empty.
    fn commit_group(&mut self, group: &mut CommitGroup) {
        metrics::histogram!("wisp_store_group_size").record(group.len() as f64);
        let started = Instant::now();
        let committed = self.commit(group);
        metrics::histogram!("wisp_store_group_seconds").record(started.elapsed().as_secs_f64());
        match committed {
            Ok((deleted, stored)) => {
                for (delete, n) in group.deletes.drain(..).zip(deleted) {
                    let _ = delete.reply.send(Ok(n));
                }
                for (put, outcome) in group.puts.drain(..).zip(stored) {
                    let _ = put.reply.send(outcome);
                }
            }
            Err(error) => {
                self.last_ids.clear();
                self.bytes = None;
                tracing::warn!(%error, writes = group.len(), "group commit failed");
                let error = Arc::new(error);
                for delete in group.deletes.drain(..) {
                    let _ = delete.reply.send(Err(shared(&error)));
                }
                for put in group.puts.drain(..) {
                    let _ = put.reply.send(Err(PutError::Store(shared(&error))));
                }
            }
        }
    }

    /// Runs every write of `group` in one transaction: deletions first
    /// (what a burn frees counts toward the puts' quota; a put cannot be
    /// burned in its own group, its recipient has not seen it), then the
    /// puts in arrival order. Returns each deletion's count and each put's
    /// outcome, in the group's order.
    fn commit(&mut self, group: &CommitGroup) -> rusqlite::Result<Committed> {
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut bytes = match self.bytes.take() {
            Some(bytes) => bytes,
            None => Bytes::load(&tx)?,
        };
        let deleted = group
            .deletes
            .iter()
            .map(|delete| delete_one(&tx, &delete.what, &mut bytes))
            .collect::<rusqlite::Result<Vec<u64>>>()?;
        for delete in &group.deletes {
            if let Deletion::User(user) = &delete.what {
                self.last_ids.remove(user);
            }
        }
        if self.last_ids.len() > MAX_REMEMBERED_SEQUENCES {
            self.last_ids.clear();
        }
        let mut ids = Sequences {
            last: &mut self.last_ids,
            used: HashMap::new(),
        };
        let mut waiting = HashMap::new();
        let stored = group
            .puts
            .iter()
            .map(|put| store_one(&tx, put, &mut waiting, &mut ids, &mut bytes))
            .collect::<rusqlite::Result<Vec<_>>>()?;
        for (recipient, last_id) in &ids.used {
            tx.prepare_cached(
                "INSERT INTO mailbox_sequences (recipient, last_id) VALUES (?1, ?2) \
                 ON CONFLICT (recipient) DO UPDATE SET last_id = excluded.last_id",
            )?
            .execute(params![recipient.as_bytes().as_slice(), last_id])?;
        }
        let syncing = Instant::now();
        tx.commit()?;
        metrics::histogram!("wisp_store_commit_seconds").record(syncing.elapsed().as_secs_f64());
        self.bytes = Some(bytes);
        Ok((deleted, stored))
    }
}

/// Each mailbox's last id: what the thread remembers (updated as ids are
/// handed out; a failed group clears it), and what this group handed out
/// (written back to `mailbox_sequences` in the same transaction).
struct Sequences<'a> {
    last: &'a mut HashMap<UserId, i64>,
    used: HashMap<UserId, i64>,
}

impl Sequences<'_> {
    /// The next id of `recipient`'s mailbox.
    fn next(&mut self, tx: &Connection, recipient: UserId) -> rusqlite::Result<i64> {
        let last = match self.last.get(&recipient) {
            Some(id) => *id,
            None => tx
                .prepare_cached("SELECT last_id FROM mailbox_sequences WHERE recipient = ?1")?
                .query_row(params![recipient.as_bytes().as_slice()], |row| row.get(0))
                .optional()?
                .unwrap_or(0),
        };
        let id = last + 1;
        self.last.insert(recipient, id);
        self.used.insert(recipient, id);
        Ok(id)
    }
}

/// What one group's transaction did: a count per deletion, an outcome per
/// put.
type Committed = (Vec<u64>, Vec<Result<Accepted, PutError>>);

/// The writes of one transaction, by kind, each kind in arrival order.
#[derive(Default)]
struct CommitGroup {
    deletes: Vec<Delete>,
    puts: Vec<Put>,
}

impl CommitGroup {
    fn len(&self) -> usize {
        self.deletes.len() + self.puts.len()
    }
}

/// Answers a write that came after the close.
fn refuse(write: Write) {
    match write {
        Write::Put(put) => {
            let _ = put.reply.send(Err(PutError::Store(StoreError::Closed)));
        }
        Write::Delete(delete) => {
            let _ = delete.reply.send(Err(StoreError::Closed));
        }
        Write::Maintain(reply) => {
            let _ = reply.send(Err(StoreError::Closed));
        }
        Write::Close(reply) => {
            let _ = reply.send(());
        }
    }
}

/// One put: a retry (also of a put earlier in this group, whose record
/// this transaction already holds) is answered with its first id; a put
/// past its quota is refused; anything else is stored with its retry record
/// under its mailbox's next id (ids are never reused, so delivery cursors
/// never skip).
fn store_one(
    tx: &Connection,
    put: &Put,
    waiting: &mut HashMap<(UserId, UserId), u64>,
    ids: &mut Sequences<'_>,
    bytes: &mut Bytes,
) -> rusqlite::Result<Result<Accepted, PutError>> {
    let sender = put.sender.as_bytes().as_slice();
    let recipient = put.recipient.as_bytes().as_slice();
    let first: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT message_id, expires_ms FROM sent_ids \
             WHERE client_msg_id = ?1 AND sender = ?2 AND recipient = ?3",
        )?
        .query_row(params![put.client_msg_id, sender, recipient], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    if let Some((id, expires_at)) = first {
        return Ok(accepted(id, UnixMillis(expires_at), true));
    }
    // What already waits in this conversation, counted once per group.
    let pending = match waiting.entry((put.recipient, put.sender)) {
        Entry::Occupied(entry) => entry.into_mut(),
        Entry::Vacant(entry) => {
            let n: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM messages \
                     WHERE recipient = ?1 AND sender = ?2 AND expires_ms > ?3",
                )?
                .query_row(params![recipient, sender, put.sent_at.0], |row| row.get(0))?;
            entry.insert(u64::try_from(n).unwrap_or(0))
        }
    };
    if *pending >= put.quota.per_conversation {
        return Ok(Err(PutError::MailboxFull));
    }
    let size = put.ciphertext.len() as u64;
    let over = |map: &HashMap<UserId, u64>, user: UserId, cap: u64| {
        map.get(&user).copied().unwrap_or(0).saturating_add(size) > cap
    };
    if over(&bytes.mailbox, put.recipient, put.quota.mailbox_bytes) {
        return Ok(Err(PutError::MailboxBytes));
    }
    if over(&bytes.outbox, put.sender, put.quota.outbox_bytes) {
        return Ok(Err(PutError::OutboxBytes));
    }
    let id = ids.next(tx, put.recipient)?;
    tx.prepare_cached(
        "INSERT INTO messages (id, recipient, sender, ciphertext, sent_ms, expires_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        id,
        recipient,
        sender,
        put.ciphertext,
        put.sent_at.0,
        put.expires_at.0
    ])?;
    tx.prepare_cached(
        "INSERT INTO sent_ids (client_msg_id, sender, recipient, message_id, expires_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        put.client_msg_id,
        sender,
        recipient,
        id,
        put.expires_at.0
    ])?;
    *pending += 1;
    bytes.add(put.recipient, put.sender, size);
    Ok(accepted(id, put.expires_at, false))
}

fn accepted(id: i64, expires_at: UnixMillis, duplicate: bool) -> Result<Accepted, PutError> {
    Ok(Accepted {
        id: id_from_row(id)?,
        expires_at,
        duplicate,
    })
}

/// One deletion. A message deleted twice in a group counts once, for the
/// first deletion that names it.
/// Every deletion names the rows it deleted (`RETURNING`), so the byte
/// counts follow.
fn delete_one(tx: &Connection, what: &Deletion, bytes: &mut Bytes) -> rusqlite::Result<u64> {
    let mut n = 0;
    let mut gone = |row: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
        let recipient = user(&row.get::<_, Vec<u8>>(0)?)?;
        let sender = user(&row.get::<_, Vec<u8>>(1)?)?;
        bytes.remove(recipient, sender, size(row.get(2)?));
        n += 1;
        Ok(())
    };
    match what {
        Deletion::Burn { recipient, ids } => {
            let mut delete = tx.prepare_cached(
                "DELETE FROM messages WHERE recipient = ?1 AND id = ?2 \
                 RETURNING recipient, sender, length(ciphertext)",
            )?;
            for id in ids {
                let mut rows =
                    delete.query(params![recipient.as_bytes().as_slice(), id_to_row(*id)])?;
                while let Some(row) = rows.next()? {
                    gone(row)?;
                }
            }
        }
        Deletion::Expired { now, limit } => {
            let limit = i64::try_from(*limit).unwrap_or(i64::MAX);
            let mut delete = tx.prepare_cached(
                "DELETE FROM messages WHERE rowid IN \
                 (SELECT rowid FROM messages WHERE expires_ms <= ?1 LIMIT CAST(?2 AS INTEGER)) \
                 RETURNING recipient, sender, length(ciphertext)",
            )?;
            let mut rows = delete.query(params![now.0, limit])?;
            while let Some(row) = rows.next()? {
                gone(row)?;
            }
            tx.prepare_cached(
                "DELETE FROM sent_ids WHERE (client_msg_id, sender, recipient) IN \
                 (SELECT client_msg_id, sender, recipient FROM sent_ids \
                  WHERE expires_ms <= ?1 LIMIT CAST(?2 AS INTEGER))",
            )?
            .execute(params![now.0, limit])?;
        }
        Deletion::Conversation { a, b } => {
            let mut delete = tx.prepare_cached(
                "DELETE FROM messages WHERE (recipient = ?1 AND sender = ?2) \
                 OR (recipient = ?2 AND sender = ?1) \
                 RETURNING recipient, sender, length(ciphertext)",
            )?;
            let mut rows =
                delete.query(params![a.as_bytes().as_slice(), b.as_bytes().as_slice()])?;
            while let Some(row) = rows.next()? {
                gone(row)?;
            }
        }
        Deletion::User(user) => {
            let user = user.as_bytes().as_slice();
            for sql in [
                "DELETE FROM messages WHERE recipient = ?1 \
                 RETURNING recipient, sender, length(ciphertext)",
                "DELETE FROM messages WHERE sender = ?1 \
                 RETURNING recipient, sender, length(ciphertext)",
            ] {
                let mut delete = tx.prepare_cached(sql)?;
                let mut rows = delete.query(params![user])?;
                while let Some(row) = rows.next()? {
                    gone(row)?;
                }
            }
            for sql in [
                "DELETE FROM sent_ids WHERE sender = ?1",
                "DELETE FROM sent_ids WHERE recipient = ?1",
                "DELETE FROM mailbox_sequences WHERE recipient = ?1",
            ] {
                tx.prepare_cached(sql)?.execute(params![user])?;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::SqliteStore;
    use crate::store::{MailboxStore, NewMessage, Quota};
    use wisp_proto::{UnixMillis, UserId};

    const NOW: UnixMillis = UnixMillis(1_795_485_132_326);

    fn users() -> (UserId, UserId) {
        (
            UserId::from_ed25519(&[1; 32]),
            UserId::from_ed25519(&[2; 32]),
        )
    }

    /// A message from the first user to the second, alive for a minute.
    fn message(client_msg_id: &[u8]) -> NewMessage<'_> {
        let (sender, recipient) = users();
        NewMessage {
            sender,
            recipient,
            client_msg_id,
            ciphertext: b"opaque",
            sent_at: NOW,
            expires_at: NOW.plus(std::time::Duration::from_secs(60)),
        }
    }

    #[tokio::test]
    async fn a_message_burned_twice_in_one_group_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let (a, b) = users();
        let put = |n: u8| {
            let store = store.clone();
            async move {
                store
                    .put(message(&[n; 16]), &Quota::messages(10))
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

    /// A mailbox page is fetched by one prepared statement, whatever page
    /// size is bound; with a bare `LIMIT ?` SQLite prepares it again on
    /// every binding (which the second half shows, so this can fail).
    #[tokio::test]
    async fn fetching_pages_of_any_size_prepares_the_statement_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let db = rusqlite::Connection::open(store.path()).unwrap();
        let reprepared = |sql: &str| {
            let mut statement = db.prepare(sql).unwrap();
            for limit in [256_i64, 255, 17, 256] {
                statement
                    .raw_bind_parameter(1, [2_u8; 20].as_slice())
                    .unwrap();
                statement.raw_bind_parameter(2, 0_i64).unwrap();
                statement.raw_bind_parameter(3, NOW.0).unwrap();
                statement.raw_bind_parameter(4, limit).unwrap();
                let mut rows = statement.raw_query();
                while rows.next().unwrap().is_some() {}
            }
            statement.get_status(rusqlite::StatementStatus::RePrepare)
        };
        assert_eq!(reprepared(super::super::mailbox::FETCH), 0);
        let bare = super::super::mailbox::FETCH.replace("LIMIT CAST(? AS INTEGER)", "LIMIT ?");
        assert!(reprepared(&bare) >= 3, "a bare LIMIT ? is prepared again");
        store.close().await;
    }

    #[tokio::test]
    async fn close_commits_checkpoints_and_refuses_later_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        store
            .put(message(&[1; 16]), &Quota::messages(10))
            .await
            .unwrap();
        let wal = store.path().with_extension("sqlite3-wal");
        assert!(
            std::fs::metadata(&wal).unwrap().len() > 0,
            "written to the WAL"
        );
        // The commit thread alone: the pools still hold the file open, so only the
        // commit thread's own checkpoint can have emptied the WAL.
        store.group_commit.close().await;
        assert_eq!(
            std::fs::metadata(&wal).unwrap().len(),
            0,
            "the WAL was copied in and emptied"
        );
        let refused = store.put(message(&[2; 16]), &Quota::messages(10)).await;
        assert!(
            matches!(&refused, Err(crate::store::PutError::Store(e)) if e.to_string().contains("closed")),
            "{refused:?}"
        );
        store.close().await;
        // What was acknowledged before the close is in the file.
        let reopened = SqliteStore::open(dir.path()).await.unwrap();
        assert_eq!(reopened.stored_count().await.unwrap(), 1);
        reopened.close().await;
    }
}
