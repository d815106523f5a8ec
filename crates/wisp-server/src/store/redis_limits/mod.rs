//! Rate limits shared by every node of a cluster deployment, in Redis.
//!
//! Each limit is GCRA (`gcra.lua`) on one key per limited user or address,
//! `<prefix>:rl:<limit>:{<key>}`, with the same semantics as the embedded
//! server's own limiters: `per_minute` events with bursts up to the same
//! number, refilled continuously. The script reads the Redis server's
//! clock, so nodes whose clocks differ still count against one allowance.
//! A key lives only while its allowance is not whole again (at most a
//! minute), so the store holds one small string per recently active user.
//!
//! A failover that loses the newest increments only gives a few events
//! back: limits are not acknowledged writes and do not wait for replicas.

use std::time::Duration;

use async_trait::async_trait;

use super::lua::Lua;
use super::redis_link::RedisLink;
use super::{LimitStore, StoreError};

/// The shared limits on a Redis deployment. Cheap to clone.
#[derive(Clone)]
pub struct RedisLimits {
    redis: RedisLink,
    prefix: String,
}

impl std::fmt::Debug for RedisLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimits")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// The rate limit's script.
static GCRA: std::sync::LazyLock<Lua> =
    std::sync::LazyLock::new(|| Lua::new(include_str!("gcra.lua")));

impl RedisLimits {
    /// Connects to the Redis `url` names (see [`RedisLink`]), keeping every
    /// key under `prefix`.
    pub async fn connect_with_prefix(url: &str, prefix: &str) -> Result<Self, StoreError> {
        Ok(Self::on(RedisLink::connect(url).await?, prefix))
    }

    pub(crate) fn on(redis: RedisLink, prefix: &str) -> Self {
        Self {
            redis,
            prefix: prefix.to_owned(),
        }
    }
}

#[async_trait]
impl LimitStore for RedisLimits {
    async fn take(
        &self,
        limit: &str,
        key: &str,
        per_minute: u32,
    ) -> Result<Option<Duration>, StoreError> {
        if per_minute == 0 {
            return Ok(None);
        }
        let interval = 60_000_000 / u64::from(per_minute);
        let tolerance = interval * u64::from(per_minute - 1);
        let wait_us: u64 = GCRA
            .call(1)
            .arg(format!("{}:rl:{limit}:{{{key}}}", self.prefix))
            .arg(interval)
            .arg(tolerance)
            .query(&self.redis)
            .await
            .map_err(StoreError::from)?;
        Ok((wait_us > 0).then(|| Duration::from_micros(wait_us)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn limits() -> Option<RedisLimits> {
        Some(crate::store::redis_mailbox::tests::open().await?.limits())
    }

    #[tokio::test]
    async fn two_nodes_share_one_allowance() {
        let Some(one) = limits().await else { return };
        // A second node: its own connection, the same keys.
        let url = std::env::var("WISP_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let two = RedisLimits::connect_with_prefix(&url, &one.prefix)
            .await
            .unwrap();
        for i in 0..6 {
            let node = if i % 2 == 0 { &one } else { &two };
            assert_eq!(
                node.take("sends", "alice", 6).await.unwrap(),
                None,
                "event {i}"
            );
        }
        let wait = two
            .take("sends", "alice", 6)
            .await
            .unwrap()
            .expect("the seventh is refused");
        assert!(
            wait > Duration::from_secs(9) && wait <= Duration::from_secs(10),
            "{wait:?}"
        );
        assert!(one.take("sends", "alice", 6).await.unwrap().is_some());
        // Other keys and other limits have their own allowance.
        assert_eq!(one.take("sends", "bob", 6).await.unwrap(), None);
        assert_eq!(one.take("acks", "alice", 6).await.unwrap(), None);
        // Refusals do not count: the wait does not grow.
        let again = one.take("sends", "alice", 6).await.unwrap().unwrap();
        assert!(again <= wait);
    }

    #[tokio::test]
    async fn the_allowance_refills_and_its_key_expires() {
        let Some(limits) = limits().await else { return };
        // 120 a minute: one event back every 500 ms.
        for _ in 0..120 {
            assert_eq!(limits.take("sends", "carol", 120).await.unwrap(), None);
        }
        let wait = limits.take("sends", "carol", 120).await.unwrap().unwrap();
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        assert_eq!(limits.take("sends", "carol", 120).await.unwrap(), None);
        assert!(limits.take("sends", "carol", 120).await.unwrap().is_some());
        // Whole again after a minute at most: the key is then gone. One
        // event at 60,000 a minute holds it for about a millisecond.
        assert_eq!(limits.take("quick", "dave", 60_000).await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let keys = limits
            .redis
            .all_keys(&format!("{}:rl:quick:*", limits.prefix))
            .await
            .unwrap();
        assert!(keys.is_empty(), "{keys:?}");
        // Zero is no limit.
        for _ in 0..100 {
            assert_eq!(limits.take("off", "erin", 0).await.unwrap(), None);
        }
        let keys = limits
            .redis
            .all_keys(&format!("{}:rl:*", limits.prefix))
            .await
            .unwrap();
        for key in keys {
            let _: () = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut limits.redis.clone())
                .await
                .unwrap();
        }
    }
}
