//! Mailboxes in Redis: the short-lived half of the cluster backend.
//!
//! Every key of one recipient shares the hash tag `{<recipient>}`, so a
//! mailbox lives on one Redis Cluster slot and each operation is one atomic
//! Lua script. Per recipient:
//! - `…:seq`: the id counter (ids only grow, so delivery cursors never skip);
//! - `…:ids`: sorted set of waiting message ids;
//! - `…:m:<id>`: the message (sender, ciphertext, times), with Redis expiry
//!   at the message's own `expires_at`: Redis itself deletes what expired;
//! - `…:p:<sender>`: that sender's waiting ids, scored by expiry (quota,
//!   dropping a conversation);
//! - `…:c:<sender>:<client id>`: the retry record, expiring with the message.
//!
//! A fetch never returns an expired message: Redis does not serve expired
//! keys, and expiry times are checked again.

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use wisp_proto::{MessageId, UserId};

use super::{Accepted, MailboxStore, NewMessage, PutError, StoreError, StoredMessage, UnixMillis};

fn backend(error: redis::RedisError) -> StoreError {
    StoreError::Backend(error.to_string())
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

const PUT: &str = r#"
local dup = redis.call('GET', KEYS[3])
if dup then return {1, dup} end
if redis.call('ZCOUNT', KEYS[4], '(' .. ARGV[3], '+inf') >= tonumber(ARGV[6]) then
  return {2, ''}
end
local id = redis.call('INCR', KEYS[1])
local mk = ARGV[5] .. id
redis.call('HSET', mk, 's', ARGV[1], 'c', ARGV[2], 't', ARGV[3], 'e', ARGV[4])
redis.call('PEXPIREAT', mk, ARGV[4])
redis.call('ZADD', KEYS[2], id, id)
redis.call('ZADD', KEYS[4], ARGV[4], id)
redis.call('SET', KEYS[3], id .. ':' .. ARGV[4], 'PXAT', ARGV[4])
return {0, id .. ':' .. ARGV[4]}
"#;

const BURN: &str = r#"
local burned = 0
for i, id in ipairs(ARGV) do
  local mk = KEYS[2] .. id
  local sender = redis.call('HGET', mk, 's')
  redis.call('ZREM', KEYS[1], id)
  if sender then
    redis.call('DEL', mk)
    redis.call('ZREM', KEYS[3] .. sender, id)
    burned = burned + 1
  end
end
return burned
"#;

const DROP: &str = r#"
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local dropped = 0
for i, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  dropped = dropped + redis.call('DEL', KEYS[3] .. id)
end
redis.call('DEL', KEYS[1])
return dropped
"#;

/// The Redis mailbox store. Cheap to clone; reconnects by itself.
#[derive(Clone)]
pub struct RedisMailbox {
    redis: ConnectionManager,
    /// Prefix of every key (tests isolate themselves with their own).
    prefix: String,
    put: Script,
    burn: Script,
    drop: Script,
}

impl std::fmt::Debug for RedisMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisMailbox")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisMailbox {
    /// Connects to the Redis at `url` (e.g. `redis://127.0.0.1:6379`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_prefix(url, "wisp").await
    }

    /// Connects, keeping every key under `prefix`.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(backend)?;
        let redis = client.get_connection_manager().await.map_err(backend)?;
        Ok(Self {
            redis,
            prefix: prefix.to_owned(),
            put: Script::new(PUT),
            burn: Script::new(BURN),
            drop: Script::new(DROP),
        })
    }

    /// The key prefix of `recipient`'s mailbox, with its hash tag.
    fn mailbox(&self, recipient: UserId) -> String {
        format!("{}:mb:{{{}}}", self.prefix, hex(recipient.as_bytes()))
    }
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
        expires_at: expires
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("expiry {expires}")))?,
        duplicate,
    })
}

#[async_trait]
impl MailboxStore for RedisMailbox {
    async fn put(&self, message: NewMessage<'_>, max_pending: u64) -> Result<Accepted, PutError> {
        let mb = self.mailbox(message.recipient);
        let sender = hex(message.sender.as_bytes());
        let (duplicate, reply): (i64, String) = self
            .put
            .key(format!("{mb}:seq"))
            .key(format!("{mb}:ids"))
            .key(format!("{mb}:c:{sender}:{}", hex(message.client_msg_id)))
            .key(format!("{mb}:p:{sender}"))
            .arg(&sender)
            .arg(message.ciphertext)
            .arg(message.sent_at)
            .arg(message.expires_at)
            .arg(format!("{mb}:m:"))
            .arg(max_pending)
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(backend)?;
        if duplicate == 2 {
            return Err(PutError::MailboxFull);
        }
        Ok(parse_accepted(&reply, duplicate == 1)?)
    }

    async fn fetch(
        &self,
        recipient: UserId,
        after: MessageId,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        let mb = self.mailbox(recipient);
        let mut redis = self.redis.clone();
        let ids: Vec<u64> = redis
            .zrangebyscore_limit(
                format!("{mb}:ids"),
                format!("({}", after.0),
                "+inf",
                0,
                isize::try_from(limit).unwrap_or(isize::MAX),
            )
            .await
            .map_err(backend)?;
        if ids.is_empty() {
            // (An empty pipeline would wait for replies that never come.)
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.cmd("HMGET")
                .arg(format!("{mb}:m:{id}"))
                .arg(&["s", "c", "t", "e"]);
        }
        type Row = (Option<String>, Option<Vec<u8>>, Option<i64>, Option<i64>);
        let rows: Vec<Row> = pipe.query_async(&mut redis).await.map_err(backend)?;
        let mut messages = Vec::with_capacity(ids.len());
        let mut gone = Vec::new();
        for (id, row) in ids.into_iter().zip(rows) {
            match row {
                (Some(sender), Some(ciphertext), Some(sent_at), Some(expires_at))
                    if expires_at > now =>
                {
                    let sender = data_encoding::HEXLOWER
                        .decode(sender.as_bytes())
                        .ok()
                        .and_then(|bytes| UserId::from_bytes(&bytes).ok())
                        .ok_or_else(|| StoreError::Corrupt(format!("sender {sender}")))?;
                    messages.push(StoredMessage {
                        id: MessageId(id),
                        sender,
                        ciphertext,
                        sent_at,
                        expires_at,
                    });
                }
                (None, ..) => gone.push(id),
                _ => {}
            }
        }
        if !gone.is_empty() {
            // Expired by Redis: forget the ids too.
            let _: () = redis
                .zrem(format!("{mb}:ids"), gone)
                .await
                .map_err(backend)?;
        }
        Ok(messages)
    }

    async fn burn(&self, recipient: UserId, ids: &[MessageId]) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mb = self.mailbox(recipient);
        let mut invocation = self.burn.prepare_invoke();
        invocation
            .key(format!("{mb}:ids"))
            .key(format!("{mb}:m:"))
            .key(format!("{mb}:p:"));
        for id in ids {
            invocation.arg(id.0);
        }
        invocation
            .invoke_async(&mut self.redis.clone())
            .await
            .map_err(backend)
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
            let n: u64 = self
                .drop
                .key(format!("{mb}:p:{}", hex(sender.as_bytes())))
                .key(format!("{mb}:ids"))
                .key(format!("{mb}:m:"))
                .invoke_async(&mut self.redis.clone())
                .await
                .map_err(backend)?;
            dropped += n;
        }
        Ok(dropped)
    }

    async fn stored_count(&self) -> Result<u64, StoreError> {
        let mut redis = self.redis.clone();
        let mut iter: redis::AsyncIter<'_, String> = redis
            .scan_match(format!("{}:mb:*:m:*", self.prefix))
            .await
            .map_err(backend)?;
        let mut n = 0;
        while let Some(item) = iter.next_item().await {
            item.map_err(backend)?;
            n += 1;
        }
        Ok(n)
    }

    async fn pending_between(&self, sender: UserId, recipient: UserId) -> Result<u64, StoreError> {
        let mb = self.mailbox(recipient);
        let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        self.redis
            .clone()
            .zcount(
                format!("{mb}:p:{}", hex(sender.as_bytes())),
                format!("({now}"),
                "+inf",
            )
            .await
            .map_err(backend)
    }
}

#[cfg(test)]
mod tests {
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

    async fn cleanup(store: &RedisMailbox) {
        let mut redis = store.redis.clone();
        let keys: Vec<String> = {
            let mut iter: redis::AsyncIter<'_, String> = redis
                .scan_match(format!("{}:*", store.prefix))
                .await
                .expect("scan");
            let mut keys = Vec::new();
            while let Some(Ok(key)) = iter.next_item().await {
                keys.push(key);
            }
            keys
        };
        if !keys.is_empty() {
            let _: () = redis.del(keys).await.expect("cleanup");
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
        crate::store::conformance::mailbox_lifecycle(&accounts, &mailbox).await;
        cleanup(&mailbox).await;
    }
}
