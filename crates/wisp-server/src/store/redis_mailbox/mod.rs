//! Mailboxes in Redis: the short-lived half of the cluster backend.
//!
//! Every key of one recipient shares the hash tag `{<recipient>}`, so a
//! mailbox lives on one Redis Cluster slot and each write to it (put, burn,
//! drop) is one atomic Lua script: `put.lua`, `burn.lua` and `drop.lua`
//! beside this file, each opening by naming its `KEYS` and `ARGV`, and so
//! is a fetch (`fetch.lua`). Per recipient:
//! - `…:seq`: the id counter, per mailbox (ids only grow, so delivery
//!   cursors never skip, and say nothing of other mailboxes);
//! - `…:sz` and `…:bytes`: each waiting message's size, scored by expiry,
//!   and their sum: the mailbox's byte quota, checked inside `put.lua`;
//! - `…:ids`: sorted set of waiting message ids;
//! - `…:m:<id>`: the message (sender, ciphertext, times), with Redis expiry
//!   at the message's own `expires_at`: Redis itself deletes what expired;
//! - `…:p:<sender>`: that sender's waiting ids, scored by expiry (quota,
//!   dropping a conversation);
//! - `…:c:<sender>:<client id>`: the retry record, expiring with the message;
//! - `…:x:<sender>`: present for [`CLOSED_FOR`] after the conversation was
//!   dropped (a removal or block): puts from that sender are refused, so a
//!   node whose cache has not yet heard of the removal cannot slip one in.
//!
//! A sender's outbox (the bytes it has waiting in every mailbox, for its
//! byte quota) lives under the sender's own hash tag,
//! `<prefix>:ob:{<sender>}`: entries scored by expiry, and their sum; its
//! logic is `outbox_lib.lua`, sent ahead of the scripts that use it. On
//! one Redis server (or a Sentinel set's primary) `put.lua` reserves the
//! message's room there and `burn.lua` releases it, in the same script:
//! one round trip per put and per burn. On a Redis Cluster it is on another
//! slot than the mailbox, so a put first reserves room there (`outbox.lua`,
//! atomic on its own), then stores; a put that stores nothing new releases
//! what it reserved, and burns and drops release their messages' entries. A
//! node that dies between the two steps leaves a reservation that lapses at
//! the message's expiry: the quota errs on the strict side. (Drops, which
//! are rare, release with `outbox.lua` on either.)
//!
//! A fetch is one script too (`fetch.lua`: the page of ids and their
//! messages in one round trip). It never returns an expired message: Redis
//! does not serve expired keys, and expiry times are checked again.
//!
//! With replicas configured ([`RedisMailbox::with_replicas`]), every write
//! (put, burn, drop) is followed, in the same round trip, by `WAIT`: a put is
//! acknowledged to its sender only once that many replicas hold it, so a
//! failover cannot lose it; a burn or drop is confirmed only once replicated,
//! so a failover cannot bring a burned message back. A write that reached
//! too few replicas in time is reported as a failure; repeating it is safe.
//!
//! Message ids are `max(counter + 1, Redis TIME in seconds × 2^20)`: after a
//! failover that lost the newest unreplicated (hence unacknowledged) puts
//! (a failover takes seconds), new ids still lie beyond every id handed out
//! before, so no id is reused; within a second a mailbox's ids run on by
//! one, whatever other mailboxes receive. (The floor is above the
//! microsecond floor of earlier versions, so ids keep growing across the
//! upgrade.)

use std::time::Duration;

use async_trait::async_trait;
use redis::{AsyncCommands, Cmd, FromRedisValue};
use wisp_proto::{MessageId, UnixMillis, UserId};

use super::lua::{self, Lua, LuaCall};
use super::redis_link::RedisLink;

use super::{Accepted, MailboxStore, NewMessage, PutError, Quota, StoreError, StoredMessage, Wake};

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// How long a write waits for its replicas.
const REPLICATION_WAIT: Duration = Duration::from_secs(1);

/// [`REPLICATION_WAIT`] as Redis takes it.
fn replication_wait_ms() -> u64 {
    u64::try_from(REPLICATION_WAIT.as_millis()).unwrap_or(u64::MAX)
}

/// How long a dropped conversation stays closed to puts unless reopened:
/// well beyond how long a node trusts a cached friendship.
const CLOSED_FOR: Duration = Duration::from_secs(600);

/// The mailbox's Lua scripts, one file each beside this one; each opens
/// by naming its `KEYS` and `ARGV`.
struct Scripts {
    put: Lua,
    burn: Lua,
    drop: Lua,
    outbox: Lua,
    fetch: Lua,
}

/// The outbox's functions (`outbox_lib.lua`), which `put.lua`,
/// `burn.lua` and `outbox.lua` are sent after.
const OUTBOX_LIB: &str = include_str!("outbox_lib.lua");

static SCRIPTS: std::sync::LazyLock<Scripts> = std::sync::LazyLock::new(|| Scripts {
    put: Lua::new(&[OUTBOX_LIB, include_str!("put.lua")].concat()),
    burn: Lua::new(&[OUTBOX_LIB, include_str!("burn.lua")].concat()),
    drop: Lua::new(include_str!("drop.lua")),
    outbox: Lua::new(&[OUTBOX_LIB, include_str!("outbox.lua")].concat()),
    fetch: Lua::new(include_str!("fetch.lua")),
});

/// The Redis mailbox store. Cheap to clone; reconnects by itself and
/// follows a Sentinel failover.
#[derive(Clone)]
pub struct RedisMailbox {
    redis: RedisLink,
    /// Prefix of every key (tests isolate themselves with their own).
    prefix: String,
    /// Replicas each write must reach before it counts as done.
    replicas: u32,
}

impl std::fmt::Debug for RedisMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMailbox")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisMailbox {
    /// Connects to the Redis `url` names: a server
    /// (`redis://127.0.0.1:6379`), a Sentinel set
    /// (`redis+sentinel://host:26379,host:26379/service`) or a Redis Cluster
    /// (`redis+cluster://host:7000,host:7001`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_prefix(url, "wisp").await
    }

    /// Connects, keeping every key under `prefix`.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self {
            redis: RedisLink::connect(url).await?,
            prefix: prefix.to_owned(),
            replicas: 0,
        })
    }

    /// The connection to Redis (for tests of what shares it).
    #[cfg(test)]
    pub(crate) fn link(&self) -> RedisLink {
        self.redis.clone()
    }

    /// The deployment's shared rate limits, on this store's connection and
    /// under its prefix.
    pub fn limits(&self) -> super::redis_limits::RedisLimits {
        super::redis_limits::RedisLimits::on(self.redis.clone(), &self.prefix)
    }

    /// Makes every write wait until `replicas` replicas hold it (Redis
    /// `WAIT`); 0, the default, waits for none.
    ///
    /// # Errors
    /// A Redis Cluster with replicas to wait for is refused: `WAIT` there
    /// would need the write's own node connection, which this store does
    /// not pin.
    pub fn with_replicas(mut self, replicas: u32) -> Result<Self, StoreError> {
        if replicas > 0 && self.redis.is_cluster() {
            return Err(StoreError::Config(
                "waiting for replicas (--redis-replicas) is supported with a Redis server or a Sentinel set, not with a Redis Cluster".into(),
            ));
        }
        self.replicas = replicas;
        Ok(self)
    }

    /// Runs a write script (by hash, whole if Redis does not hold it), then
    /// (when replicas are configured) waits, in the same round trip, until
    /// enough replicas hold the write, then publishes `wake` if given (a
    /// wake-up after a write that did not take is only a needless look).
    async fn write<T: FromRedisValue>(
        &self,
        script: LuaCall,
        wake: Option<&Wake>,
    ) -> Result<T, StoreError> {
        if self.replicas == 0 && wake.is_none() {
            return script.query(&self.redis).await.map_err(StoreError::from);
        }
        // The `EVALSHA` (the ciphertext among its arguments) moves into
        // the pipeline; only an `EVAL` after `NOSCRIPT` copies it.
        let (lua, hashed) = script.into_parts();
        let by_hash = self.followed(hashed, wake);
        let by_hash = &by_hash;
        lua::by_hash(|whole| async move {
            if !whole {
                return self.run(by_hash).await;
            }
            let Some(hashed) = by_hash.cmd_iter().next() else {
                return Err(StoreError::from(redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "a write pipeline without its script",
                ))));
            };
            self.run(&self.followed(lua.whole(hashed), wake)).await
        })
        .await
    }

    /// Runs a write command that is not a script (by the same rules as
    /// [`RedisMailbox::write`], without a wake-up).
    async fn write_command<T: FromRedisValue>(&self, command: Cmd) -> Result<T, StoreError> {
        if self.replicas == 0 {
            let mut redis = self.redis.clone();
            return command
                .query_async(&mut redis)
                .await
                .map_err(StoreError::from);
        }
        self.run(&self.followed(command, None)).await
    }

    /// `command`, then `WAIT` for the replicas (when configured), then the
    /// `PUBLISH` of `wake` (if given): one round trip.
    fn followed(&self, command: Cmd, wake: Option<&Wake>) -> redis::Pipeline {
        let mut pipe = redis::pipe();
        pipe.add_command(command);
        if self.replicas > 0 {
            pipe.cmd("WAIT")
                .arg(self.replicas)
                .arg(replication_wait_ms());
        }
        if let Some(wake) = wake {
            pipe.cmd("PUBLISH")
                .arg(&wake.channel)
                .arg(&wake.payload)
                .ignore();
        }
        pipe
    }

    /// Runs a pipeline [`RedisMailbox::followed`] made: the command's
    /// reply, once the replicas (if any) hold it.
    async fn run<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, StoreError> {
        let mut redis = self.redis.clone();
        if self.replicas == 0 {
            let (value,): (T,) = pipe.query_async(&mut redis).await?;
            return Ok(value);
        }
        let (value, reached): (T, u32) = pipe.query_async(&mut redis).await?;
        self.replicated(reached, replication_wait_ms())?;
        Ok(value)
    }

    /// Whether `WAIT` (for `wait_ms`) saw enough replicas: `reached`.
    fn replicated(&self, reached: u32, wait_ms: u64) -> Result<(), StoreError> {
        if reached < self.replicas {
            metrics::counter!("wisp_redis_unreplicated_writes_total").increment(1);
            return Err(StoreError::Unreplicated {
                reached,
                wanted: self.replicas,
                waited_ms: wait_ms,
            });
        }
        Ok(())
    }

    /// The key prefix of `recipient`'s mailbox, with its hash tag.
    fn mailbox(&self, recipient: UserId) -> String {
        format!("{}:mb:{{{}}}", self.prefix, hex(recipient.as_bytes()))
    }

    /// The key that closes `recipient`'s mailbox to `sender`'s puts while
    /// present (see [`CLOSED_FOR`]).
    fn closure(&self, recipient: UserId, sender: UserId) -> String {
        format!("{}:x:{}", self.mailbox(recipient), hex(sender.as_bytes()))
    }

    /// The keys of `sender`'s outbox (with its hash tag) start with this.
    fn outbox(&self, sender: &str) -> String {
        format!("{}:ob:{{{sender}}}", self.prefix)
    }

    /// Whether the outbox is kept by the mailbox's own scripts (one Redis
    /// server, or a Sentinel set's primary: every key on one server), not
    /// by `outbox.lua` in a round trip of its own (a Redis Cluster, where
    /// the outbox lives on another slot).
    fn outbox_inline(&self) -> bool {
        !self.redis.is_cluster()
    }

    /// `outbox.lua` on `sender`'s outbox: `action` with its arguments.
    fn outbox_script(&self, sender: &str, now: UnixMillis, action: &str) -> LuaCall {
        let outbox = self.outbox(sender);
        let mut script = SCRIPTS.outbox.call(2);
        script
            .arg(format!("{outbox}:e"))
            .arg(format!("{outbox}:b"))
            .arg(now.0)
            .arg(action);
        script
    }

    /// Releases outbox entries of messages that were deleted: `deleted` is
    /// `(sender, entry)` pairs as the burn and drop scripts return them.
    async fn release(&self, deleted: Vec<(String, String)>) -> Result<(), StoreError> {
        let mut by_sender: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for (sender, entry) in deleted {
            if !entry.is_empty() {
                by_sender.entry(sender).or_default().push(entry);
            }
        }
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        for (sender, entries) in by_sender {
            let mut script = self.outbox_script(&sender, now, "release");
            for entry in entries {
                script.arg(entry);
            }
            let _: u64 = script.query(&self.redis).await.map_err(StoreError::from)?;
        }
        Ok(())
    }
}

/// A mailbox field that holds text (a hex id, a number).
fn field_text(bytes: &[u8]) -> Result<&str, StoreError> {
    std::str::from_utf8(bytes)
        .map_err(|_| StoreError::Corrupt("a mailbox field is not text".into()))
}

fn parse_accepted(reply: &str, duplicate: bool) -> Result<Accepted, StoreError> {
    let (id, expires) = reply
        .split_once(':')
        .ok_or_else(|| StoreError::Corrupt(format!("put reply {reply}")))?;
    Ok(Accepted {
        id: MessageId(
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("message id {id}")))?,
        ),
        expires_at: UnixMillis(
            expires
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("expiry {expires}")))?,
        ),
        duplicate,
    })
}

impl RedisMailbox {
    /// `put.lua`: the message into its mailbox, with the mailbox's checks,
    /// and (on one Redis server, see [`RedisMailbox::outbox_inline`]) its
    /// room in the sender's outbox reserved in the same script; then
    /// `wake` published, in the same round trip.
    async fn store(
        &self,
        mb: &str,
        sender: &str,
        entry: &str,
        message: NewMessage<'_>,
        quota: &Quota,
        wake: Option<&Wake>,
    ) -> Result<Accepted, PutError> {
        let outbox_inline = self.outbox_inline();
        let mut script = SCRIPTS.put.call(if outbox_inline { 9 } else { 7 });
        script
            .arg(format!("{mb}:seq"))
            .arg(format!("{mb}:ids"))
            .arg(format!("{mb}:c:{sender}:{}", hex(message.client_msg_id)))
            .arg(format!("{mb}:p:{sender}"))
            .arg(format!("{mb}:x:{sender}"))
            .arg(format!("{mb}:sz"))
            .arg(format!("{mb}:bytes"));
        if outbox_inline {
            let outbox = self.outbox(sender);
            script.arg(format!("{outbox}:e")).arg(format!("{outbox}:b"));
        }
        script
            .arg(sender)
            .arg(message.ciphertext)
            .arg(message.sent_at.0)
            .arg(message.expires_at.0)
            .arg(format!("{mb}:m:"))
            .arg(quota.per_conversation)
            .arg(quota.mailbox_bytes)
            .arg(entry)
            .arg(quota.outbox_bytes);
        // The script's outcome (see put.lua): 0 stored, 1 a retry of a
        // stored message, 2 the sender's quota is full, 3 closed, 4 the
        // mailbox's bytes are full, 5 the sender's outbox is full.
        let (outcome, reply): (i64, String) = self.write(script, wake).await?;
        match outcome {
            0 | 1 => Ok(parse_accepted(&reply, outcome == 1)?),
            2 => Err(PutError::MailboxFull),
            3 => Err(PutError::Closed),
            4 => Err(PutError::MailboxBytes),
            5 => Err(PutError::OutboxBytes),
            other => Err(StoreError::Corrupt(format!("put.lua answered {other}")).into()),
        }
    }
}

#[async_trait]
impl MailboxStore for RedisMailbox {
    async fn put(&self, message: NewMessage<'_>, quota: &Quota) -> Result<Accepted, PutError> {
        self.put_and_wake(message, quota, None).await
    }

    /// On one Redis server or a Sentinel primary (as the outbox, see
    /// [`RedisMailbox::outbox_inline`]); a Redis Cluster routes a keyless
    /// `PUBLISH` apart from the put, so the bus publishes there.
    fn publishes_wakes(&self) -> bool {
        self.outbox_inline()
    }

    async fn put_and_wake(
        &self,
        message: NewMessage<'_>,
        quota: &Quota,
        wake: Option<&Wake>,
    ) -> Result<Accepted, PutError> {
        let mb = self.mailbox(message.recipient);
        let sender = hex(message.sender.as_bytes());
        let entry = format!(
            "{}:{}:{}",
            hex(message.recipient.as_bytes()),
            hex(message.client_msg_id),
            message.ciphertext.len()
        );
        if self.outbox_inline() {
            return self.store(&mb, &sender, &entry, message, quota, wake).await;
        }
        // The outbox first: room for this message, or a refusal.
        let mut reserve = self.outbox_script(&sender, message.sent_at, "reserve");
        reserve
            .arg(&entry)
            .arg(message.expires_at.0)
            .arg(quota.outbox_bytes);
        // 2 reserved now, 1 held already (a retry), 0 full (see outbox.lua).
        // Not waited for on replicas: a reservation a failover loses only
        // loosens the quota a moment.
        let reserved: i64 = reserve.query(&self.redis).await.map_err(StoreError::from)?;
        if reserved == 0 {
            // A retry of a stored message is still answered as such.
            let retry: Option<String> = self
                .redis
                .clone()
                .get(format!("{mb}:c:{sender}:{}", hex(message.client_msg_id)))
                .await
                .map_err(StoreError::from)?;
            return match retry {
                Some(first) => Ok(parse_accepted(&first, true)?),
                None => Err(PutError::OutboxBytes),
            };
        }
        let stored = self.store(&mb, &sender, &entry, message, quota, None).await;
        let keep = match &stored {
            Ok(accepted) => !accepted.duplicate || reserved == 1,
            // The write may have landed: keep the reservation (it lapses
            // with the message).
            Err(PutError::Store(_)) => true,
            Err(_) => false,
        };
        if !keep && reserved == 2 {
            self.release(vec![(sender, entry)]).await?;
        }
        stored
    }

    async fn fetch(
        &self,
        recipient: UserId,
        after: MessageId,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mb = self.mailbox(recipient);
        // A put is acknowledged only once replicated, but it is readable on
        // the primary before that: delivered from there and then lost in a
        // failover, its sender's retry would store it a second time under
        // another id. So with replicas nothing read here is handed out
        // before they hold it: the script writes a fence after its reads,
        // which lies after every put they saw in the replication stream,
        // and `WAIT` (see `write`) for it covers them all.
        let fence_ms = if self.replicas == 0 {
            0
        } else {
            replication_wait_ms()
        };
        let mut script = SCRIPTS.fetch.call(3);
        script
            .arg(format!("{mb}:ids"))
            .arg(format!("{mb}:m:"))
            .arg(format!("{mb}:fence"))
            .arg(after.0)
            .arg(limit)
            .arg(fence_ms);
        let page: Vec<Vec<u8>> = self.write(script, None).await?;
        let number = |bytes: &[u8]| -> Result<i64, StoreError> {
            let text = field_text(bytes)?;
            text.parse()
                .map_err(|_| StoreError::Corrupt(format!("number {text}")))
        };
        let mut messages = Vec::with_capacity(page.len() / 5);
        // Five fields a message; the ciphertext is moved, not copied.
        let mut fields = page.into_iter();
        while let (Some(id), Some(sender), Some(ciphertext), Some(sent_at), Some(expires_at)) = (
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
            fields.next(),
        ) {
            let expires_at = number(&expires_at)?;
            if expires_at <= now.0 {
                continue;
            }
            let sender = field_text(&sender)?;
            let sender = data_encoding::HEXLOWER
                .decode(sender.as_bytes())
                .ok()
                .and_then(|bytes| UserId::from_bytes(&bytes).ok())
                .ok_or_else(|| StoreError::Corrupt(format!("sender {sender}")))?;
            messages.push(StoredMessage {
                id: MessageId(
                    u64::try_from(number(&id)?)
                        .map_err(|_| StoreError::Corrupt("negative message id".into()))?,
                ),
                sender,
                ciphertext,
                sent_at: UnixMillis(number(&sent_at)?),
                expires_at: UnixMillis(expires_at),
            });
        }
        Ok(messages)
    }

    async fn burn(&self, recipient: UserId, ids: &[MessageId]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mb = self.mailbox(recipient);
        let mut script = SCRIPTS.burn.call(5);
        script
            .arg(format!("{mb}:ids"))
            .arg(format!("{mb}:m:"))
            .arg(format!("{mb}:p:"))
            .arg(format!("{mb}:sz"))
            .arg(format!("{mb}:bytes"));
        // The outboxes' key prefix, for the script to release the burned
        // messages' entries itself (on one Redis server).
        let outboxes = if self.outbox_inline() {
            format!("{}:ob:", self.prefix)
        } else {
            String::new()
        };
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        script.arg(outboxes).arg(now.0);
        for id in ids {
            script.arg(id.0);
        }
        // Sender and outbox entry of each message burned (the entry '' if
        // the script released it).
        let burned: Vec<(String, String)> = self.write(script, None).await?;
        let n = burned.len() as u64;
        self.release(burned).await?;
        Ok(n)
    }

    async fn purge_expired(&self, _now: UnixMillis, _limit: usize) -> Result<u64, StoreError> {
        // Redis deletes each message at its own expiry; ids left behind in
        // the sorted sets are dropped lazily by `fetch`.
        Ok(0)
    }

    async fn drop_conversation(&self, a: UserId, b: UserId) -> Result<u64, StoreError> {
        let mut dropped = 0;
        for (recipient, sender) in [(a, b), (b, a)] {
            let mb = self.mailbox(recipient);
            let sender = hex(sender.as_bytes());
            let mut script = SCRIPTS.drop.call(6);
            script
                .arg(format!("{mb}:p:{sender}"))
                .arg(format!("{mb}:ids"))
                .arg(format!("{mb}:m:"))
                .arg(format!("{mb}:x:{sender}"))
                .arg(format!("{mb}:sz"))
                .arg(format!("{mb}:bytes"))
                .arg(u64::try_from(CLOSED_FOR.as_millis()).unwrap_or(u64::MAX));
            // The outbox entry of each message dropped.
            let entries: Vec<String> = self.write(script, None).await?;
            dropped += entries.len() as u64;
            self.release(entries.into_iter().map(|e| (sender.clone(), e)).collect())
                .await?;
        }
        Ok(dropped)
    }

    async fn reopen_conversation(&self, a: UserId, b: UserId) -> Result<(), StoreError> {
        for (recipient, sender) in [(a, b), (b, a)] {
            let mut command = redis::cmd("DEL");
            command.arg(self.closure(recipient, sender));
            let _: u64 = self.write_command(command).await?;
        }
        Ok(())
    }

    async fn erase_user(&self, user: UserId) -> Result<u64, StoreError> {
        // Every key naming the user: its mailbox and outbox (its hash tag),
        // and in other mailboxes its pending set, retry records and
        // closures; its rate limits and sessions share the prefix.
        let me = hex(user.as_bytes());
        let pattern = format!("{}:*{me}*", self.prefix);
        let keys = self.redis.all_keys(&pattern).await?;
        // Conversations with messages waiting either way are dropped
        // first, by the script that keeps counts and outboxes right.
        let own_pending = format!("{}:p:", self.mailbox(user));
        let mailboxes = format!("{}:mb:{{", self.prefix);
        let sent_pending = format!("}}:p:{me}");
        let mut others = std::collections::BTreeSet::new();
        for key in &keys {
            let other = match key.strip_prefix(&own_pending) {
                Some(sender) => Some(sender),
                None => key
                    .strip_prefix(&mailboxes)
                    .and_then(|rest| rest.strip_suffix(&sent_pending)),
            };
            let other = other
                .and_then(|other| data_encoding::HEXLOWER.decode(other.as_bytes()).ok())
                .and_then(|bytes| UserId::from_bytes(&bytes).ok());
            if let Some(other) = other {
                others.insert(other);
            }
        }
        let mut erased = 0;
        for &other in &others {
            erased += self.drop_conversation(user, other).await?;
        }
        // Then whatever is left, the closures that dropping just set
        // included (the account is gone: nothing may be put for it again,
        // and the service deletes what a stale node slips in later).
        let mut leftovers: std::collections::BTreeSet<String> = keys.into_iter().collect();
        for &other in &others {
            leftovers.insert(self.closure(other, user));
            leftovers.insert(self.closure(user, other));
        }
        // One key per command: keys of other mailboxes live on other
        // slots of a Redis Cluster.
        for key in leftovers {
            let mut unlink = redis::cmd("UNLINK");
            unlink.arg(key);
            let _: u64 = self.write_command(unlink).await?;
        }
        Ok(erased)
    }

    #[cfg(any(test, feature = "test-support"))]
    async fn stored_count(&self) -> Result<u64, StoreError> {
        let keys = self
            .redis
            .all_keys(&format!("{}:mb:*:m:*", self.prefix))
            .await?;
        Ok(keys.len() as u64)
    }

    #[cfg(any(test, feature = "test-support"))]
    async fn pending_between(
        &self,
        sender: UserId,
        recipient: UserId,
        now: UnixMillis,
    ) -> Result<u64, StoreError> {
        let mb = self.mailbox(recipient);
        self.redis
            .clone()
            .zcount(
                format!("{mb}:p:{}", hex(sender.as_bytes())),
                format!("({now}"),
                "+inf",
            )
            .await
            .map_err(StoreError::from)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The Redis the tests use: `WISP_TEST_REDIS_URL`, or the local server.
    /// Each test keeps its keys under a prefix of its own.
    pub(crate) async fn open() -> Option<RedisMailbox> {
        let url = std::env::var("WISP_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let prefix = format!("wisp-test-{:016x}", rand::random::<u64>());
        let connected = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            RedisMailbox::connect_with_prefix(&url, &prefix),
        )
        .await;
        let why = match connected {
            Ok(Ok(store)) => return Some(store),
            Ok(Err(error)) => error.to_string(),
            Err(_) => "timed out".to_owned(),
        };
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "no Redis at {url} ({why}), and CI=true: the cluster backend must be tested in CI"
            );
        }
        eprintln!("skipped: no Redis at {url} ({why})");
        None
    }

    /// Puts a message for a recipient with a wake-up on `channel`: the put
    /// lands, the wake-up is heard, and the message is fetchable.
    async fn put_lands_and_its_wake_up_is_heard(store: &RedisMailbox, channel: String) {
        use futures_util::StreamExt;
        let mut listener = store
            .redis
            .pubsub_client(0)
            .await
            .unwrap()
            .get_async_pubsub()
            .await
            .unwrap();
        listener.subscribe(&channel).await.unwrap();
        let (sender, recipient) = (
            UserId::from_ed25519(&[1; 32]),
            UserId::from_ed25519(&[2; 32]),
        );
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let wake = Wake {
            channel: channel.clone(),
            payload: b"wake".to_vec(),
        };
        let accepted = store
            .put_and_wake(
                NewMessage {
                    sender,
                    recipient,
                    client_msg_id: &[9; 16],
                    ciphertext: b"opaque",
                    sent_at: now,
                    expires_at: now.plus(Duration::from_secs(60)),
                },
                &Quota::messages(10),
                Some(&wake),
            )
            .await
            .unwrap();
        assert!(!accepted.duplicate);
        let heard = tokio::time::timeout(Duration::from_secs(5), listener.on_message().next())
            .await
            .expect("the wake-up within 5 s")
            .unwrap();
        assert_eq!(heard.get_channel_name(), channel);
        assert_eq!(heard.get_payload_bytes(), b"wake");
        let waiting = store.fetch(recipient, MessageId(0), now, 10).await.unwrap();
        assert_eq!(waiting.len(), 1);
        assert_eq!(waiting[0].id, accepted.id);
    }

    /// A put given a wake-up publishes it in its own round trip, after
    /// the message is stored (one Redis server: the local one).
    #[tokio::test]
    async fn a_put_publishes_its_wake_up_with_it() {
        let Some(store) = open().await else { return };
        assert!(store.publishes_wakes());
        put_lands_and_its_wake_up_is_heard(&store, format!("{}:user:test", store.prefix)).await;
        cleanup(&store).await;
    }

    /// A Redis that holds none of the scripts (restarted, or a promoted
    /// replica) gets a put whole once, in the same pipeline as its wake-up:
    /// the put lands, the wake-up is heard, and the script is known from
    /// then on. A Redis of the test's own, started empty.
    #[tokio::test]
    async fn a_redis_without_the_put_script_is_sent_it_whole_with_the_wake_up() {
        let Some(binary) = wisp_test_support::redis_set::redis_server() else {
            eprintln!("skipped: no redis-server");
            return;
        };
        let redis = wisp_test_support::redis_set::SingleRedis::start(&binary);
        let store = RedisMailbox::connect_with_prefix(&redis.url(), "wisp-test")
            .await
            .unwrap();
        let mut scripts = redis::Client::open(redis.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        assert!(!crate::store::lua::tests::cached(&mut scripts, &SCRIPTS.put).await);
        put_lands_and_its_wake_up_is_heard(&store, "wisp-test:user:test".to_owned()).await;
        assert!(
            crate::store::lua::tests::cached(&mut scripts, &SCRIPTS.put).await,
            "sent whole, and cached by it"
        );
    }

    pub(crate) async fn cleanup(store: &RedisMailbox) {
        let keys = store
            .redis
            .all_keys(&format!("{}:*", store.prefix))
            .await
            .expect("scan");
        for key in keys {
            // One by one: in a cluster, keys live in different slots.
            let _: () = store.redis.clone().del(key).await.expect("cleanup");
        }
    }

    /// A mailbox on the test Redis and three users (from a scratch SQLite
    /// store: the mailbox needs accounts only to make user ids).
    async fn mailbox_and_users() -> Option<(RedisMailbox, [UserId; 3])> {
        let mailbox = open().await?;
        let dir = tempfile::tempdir().unwrap();
        let accounts = crate::store::sqlite::SqliteStore::open(dir.path())
            .await
            .unwrap();
        let mut users = Vec::new();
        for n in 1..=3 {
            users.push(crate::store::conformance::user(&accounts, n).await);
        }
        accounts.close().await;
        Some((mailbox, [users[0], users[1], users[2]]))
    }

    #[test]
    fn scripts_name_their_keys_and_arguments_up_front() {
        for source in [
            include_str!("put.lua"),
            include_str!("burn.lua"),
            include_str!("drop.lua"),
            include_str!("outbox.lua"),
            include_str!("outbox_lib.lua"),
            include_str!("fetch.lua"),
        ] {
            for line in source.lines() {
                let code = line.split_once("--").map_or(line, |(code, _)| code);
                if code.contains("KEYS[") || code.contains("ARGV[") {
                    assert!(code.starts_with("local "), "named up front: {line}");
                }
            }
            let sent = Lua::new(source);
            assert!(
                !sent.source().contains("--") && sent.source().contains("return"),
                "{sent:?}"
            );
        }
    }

    #[tokio::test]
    async fn conformance() {
        let Some(mailbox) = open().await else {
            return;
        };
        // The mailbox suite needs accounts only to make user ids.
        let dir = tempfile::tempdir().unwrap();
        let accounts = crate::store::sqlite::SqliteStore::open(dir.path())
            .await
            .unwrap();
        // Redis expires messages by its own clock: the suite runs in real time.
        let time = crate::store::conformance::SuiteTime::System(crate::clock::SystemClock);
        crate::store::conformance::mailbox_lifecycle(&accounts, &mailbox, &time).await;
        crate::store::conformance::mailbox_rules(&accounts, &mailbox, &time).await;
        cleanup(&mailbox).await;
    }

    #[tokio::test]
    async fn a_dropped_conversation_refuses_puts_until_reopened() {
        let Some((mailbox, [a, b, c])) = mailbox_and_users().await else {
            return;
        };
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock); // Redis expires by real time.
        let put = |sender, recipient, n: u8| {
            let mailbox = mailbox.clone();
            async move {
                mailbox
                    .put(
                        NewMessage {
                            sender,
                            recipient,
                            client_msg_id: &[n; 16],
                            ciphertext: b"opaque",
                            sent_at: now,
                            expires_at: now.plus(Duration::from_secs(60)),
                        },
                        &Quota::messages(10),
                    )
                    .await
            }
        };
        let first = put(a, b, 1).await.unwrap();
        assert_eq!(mailbox.drop_conversation(a, b).await.unwrap(), 1);
        // Both ways closed; a retry of the dropped message is still answered
        // (as the id it had), and other conversations are untouched.
        assert!(matches!(put(a, b, 2).await, Err(PutError::Closed)));
        assert!(matches!(put(b, a, 3).await, Err(PutError::Closed)));
        assert_eq!(put(a, b, 1).await.unwrap().id, first.id);
        put(a, c, 4).await.unwrap();
        mailbox.reopen_conversation(b, a).await.unwrap();
        let later = put(a, b, 5).await.unwrap();
        assert!(later.id > first.id);
        put(b, a, 6).await.unwrap();
        cleanup(&mailbox).await;
    }

    /// A sender's outbox gives back the room of a message that expired
    /// unread: the put that comes after the expiry finds it and drops it
    /// (Redis's own expiry only removes the message, not the outbox entry).
    /// The conformance suite cannot reach past the expiry here: it runs on
    /// Redis's real clock.
    #[tokio::test]
    async fn an_expired_message_gives_its_outbox_room_back() {
        let Some((mailbox, [a, b, c])) = mailbox_and_users().await else {
            return;
        };
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let quota = Quota {
            per_conversation: 10,
            mailbox_bytes: 10_000,
            outbox_bytes: 600,
        };
        let ciphertext = [7u8; 600];
        let put = |recipient, n: u8, size: usize, sent_at: UnixMillis| {
            let mailbox = mailbox.clone();
            async move {
                mailbox
                    .put(
                        NewMessage {
                            sender: a,
                            recipient,
                            client_msg_id: &[n; 16],
                            ciphertext: &ciphertext[..size],
                            sent_at,
                            expires_at: sent_at.plus(Duration::from_secs(60)),
                        },
                        &quota,
                    )
                    .await
            }
        };
        put(b, 1, 600, now).await.unwrap();
        // Full while the first waits, to any recipient.
        assert!(matches!(
            put(c, 2, 1, now).await,
            Err(PutError::OutboxBytes)
        ));
        // Past its expiry, its room is free again: all of it.
        let later = now.plus(Duration::from_secs(61));
        put(c, 3, 600, later).await.unwrap();
        assert!(matches!(
            put(c, 4, 1, later).await,
            Err(PutError::OutboxBytes)
        ));
        cleanup(&mailbox).await;
    }

    #[tokio::test]
    async fn waiting_for_more_replicas_than_exist_refuses_to_acknowledge() {
        let Some((mailbox, [a, b, _])) = mailbox_and_users().await else {
            return;
        };
        // The test server has no replicas: a write asking for one is done on
        // the primary but reported as not safe, and repeating it later is
        // recognised as the same message.
        let strict = mailbox.clone().with_replicas(1).unwrap();
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock); // Redis expires by real time.
        let message = NewMessage {
            sender: a,
            recipient: b,
            client_msg_id: &[7; 16],
            ciphertext: b"opaque",
            sent_at: now,
            expires_at: now.plus(Duration::from_secs(60)),
        };
        let refused = strict
            .put(message, &Quota::messages(10))
            .await
            .unwrap_err()
            .to_string();
        assert!(refused.contains("0 of 1 Redis replicas"), "{refused}");
        let retried = mailbox.put(message, &Quota::messages(10)).await.unwrap();
        assert!(retried.duplicate);
        cleanup(&mailbox).await;
    }
}
