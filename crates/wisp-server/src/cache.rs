//! The node's cache of what it reads on every message: whether two users
//! are friends (every send, every key claim) and users' identity keys
//! (every login, every key claim).
//!
//! Identity keys never change (a user id is the hash of its signing key),
//! so they are cached without expiry; only keys that exist are cached, as a
//! missing account may be registered a moment later.
//!
//! Friendships change. A node that changes one invalidates its own entry
//! before it answers and tells every other node (see `bus`); a node that
//! lost its notification connection clears the whole cache when it is back.
//! Entries also expire after [`FRIENDSHIP_TTL`]. What makes a removal
//! effective on every node *at once*, even in the instant before another
//! node hears of it, is the store: the cluster mailbox refuses messages
//! between two users for a while after their conversation was dropped
//! (longer than an entry can live), and the message service rechecks the
//! friendship after storing.
//!
//! A read that raced an invalidation does not put its (possibly stale)
//! answer back: every invalidation moves an epoch, and a fill is kept only
//! if the epoch did not move while it read.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wisp_proto::UserId;

use crate::store::{AccountStore, FriendStore, IdentityKeys, StoreError};

/// How long a friendship answer is trusted without hearing of a change, at
/// most.
pub(crate) const FRIENDSHIP_TTL: Duration = Duration::from_secs(60);

/// An entry lives between three quarters of [`FRIENDSHIP_TTL`] and all of
/// it, drawn at random: entries filled together (every friend of a crowd
/// that logged in at once) do not all expire, and go back to the store,
/// in the same instant.
fn friendship_deadline() -> Instant {
    use rand::RngExt;
    Instant::now() + rand::rng().random_range(FRIENDSHIP_TTL * 3 / 4..=FRIENDSHIP_TTL)
}

/// Entries each cache holds at most (a full cache drops what expired, and
/// starts over when nothing had).
const CAPACITY: usize = 200_000;

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    }
}

#[derive(Debug, Default)]
struct Friendships {
    /// Whether friends, and until when that is trusted.
    entries: HashMap<(UserId, UserId), (bool, Instant)>,
    /// Moves on every invalidation.
    epoch: u64,
}

/// A node's caches.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    friendships: Mutex<Friendships>,
    identities: Mutex<HashMap<UserId, IdentityKeys>>,
}

fn hit(cache: &'static str, hit: bool) {
    let outcome = if hit { "hit" } else { "miss" };
    metrics::counter!("wisp_cache_lookups_total", "cache" => cache, "outcome" => outcome)
        .increment(1);
}

impl Cache {
    fn friendships(&self) -> std::sync::MutexGuard<'_, Friendships> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is one insert or remove), so poisoning is ignored.
        self.friendships
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn identities(&self) -> std::sync::MutexGuard<'_, HashMap<UserId, IdentityKeys>> {
        self.identities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `a` and `b` are friends, from the cache or else `store`.
    pub(crate) async fn are_friends(
        &self,
        store: &dyn FriendStore,
        a: UserId,
        b: UserId,
    ) -> Result<bool, StoreError> {
        let key = pair(a, b);
        let epoch = {
            let friendships = self.friendships();
            if let Some((friends, until)) = friendships.entries.get(&key)
                && Instant::now() < *until
            {
                hit("friendship", true);
                return Ok(*friends);
            }
            friendships.epoch
        };
        hit("friendship", false);
        let friends = store.are_friends(a, b).await?;
        let mut friendships = self.friendships();
        if friendships.epoch == epoch {
            if friendships.entries.len() >= CAPACITY {
                let now = Instant::now();
                friendships.entries.retain(|_, (_, until)| now < *until);
                if friendships.entries.len() >= CAPACITY {
                    friendships.entries.clear();
                }
            }
            friendships
                .entries
                .insert(key, (friends, friendship_deadline()));
        }
        Ok(friends)
    }

    /// Forgets whether `a` and `b` are friends (it just changed).
    pub(crate) fn forget_friendship(&self, a: UserId, b: UserId) {
        let mut friendships = self.friendships();
        friendships.epoch = friendships.epoch.wrapping_add(1);
        friendships.entries.remove(&pair(a, b));
    }

    /// Forgets every friendship (changes may have been missed).
    pub(crate) fn forget_friendships(&self) {
        let mut friendships = self.friendships();
        friendships.epoch = friendships.epoch.wrapping_add(1);
        friendships.entries.clear();
    }

    /// `user`'s identity keys, from the cache or else `store`.
    pub(crate) async fn identity(
        &self,
        store: &dyn AccountStore,
        user: UserId,
    ) -> Result<Option<IdentityKeys>, StoreError> {
        let cached = self.identities().get(&user).cloned();
        hit("identity", cached.is_some());
        if cached.is_some() {
            return Ok(cached);
        }
        let keys = store.identity(user).await?;
        if let Some(keys) = &keys {
            let mut identities = self.identities();
            if identities.len() >= CAPACITY {
                identities.clear();
            }
            identities.insert(user, keys.clone());
        }
        Ok(keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    async fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn a_cached_friendship_is_served_until_forgotten() {
        let (_dir, store) = store().await;
        let a = crate::store::conformance::user(&store, 1).await;
        let b = crate::store::conformance::user(&store, 2).await;
        let cache = Cache::default();
        assert!(!cache.are_friends(&store, a, b).await.unwrap());
        store
            .request(a, b, wisp_proto::UnixMillis(1))
            .await
            .unwrap();
        store.accept(b, a, wisp_proto::UnixMillis(2)).await.unwrap();
        // Cached "no" until told.
        assert!(!cache.are_friends(&store, b, a).await.unwrap());
        cache.forget_friendship(b, a);
        assert!(cache.are_friends(&store, a, b).await.unwrap());
        store.remove(a, b).await.unwrap();
        cache.forget_friendships();
        assert!(!cache.are_friends(&store, a, b).await.unwrap());
    }

    #[test]
    fn friendship_entries_expire_spread_over_the_last_quarter_of_the_ttl() {
        let before = Instant::now();
        let deadlines: Vec<Instant> = (0..200).map(|_| friendship_deadline()).collect();
        let after = Instant::now();
        for deadline in &deadlines {
            assert!(*deadline >= before + FRIENDSHIP_TTL * 3 / 4);
            assert!(*deadline <= after + FRIENDSHIP_TTL);
        }
        let distinct: std::collections::HashSet<_> = deadlines.iter().collect();
        assert!(distinct.len() > 100, "deadlines are not spread");
    }

    #[tokio::test]
    async fn identities_are_cached_only_once_they_exist() {
        let (_dir, store) = store().await;
        let cache = Cache::default();
        let nobody = UserId::from_ed25519(&[9; 32]);
        assert_eq!(cache.identity(&store, nobody).await.unwrap(), None);
        let user = crate::store::conformance::user(&store, 1).await;
        let keys = cache.identity(&store, user).await.unwrap();
        assert!(keys.is_some());
        store.close().await;
        // Served from the cache with the store closed.
        assert_eq!(cache.identity(&store, user).await.unwrap(), keys);
    }
}
