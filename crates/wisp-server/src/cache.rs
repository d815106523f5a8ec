//! The node's cache of what it reads on every message: whether two users
//! are friends (every send, every key claim) and users' identity keys
//! (every login, every key claim).
//!
//! Both are bounded `moka` caches: when full, they evict entries one by
//! one (by how often and how recently each was used), so a node with more
//! users than it can cache keeps serving most lookups from memory instead
//! of dropping everything at once.
//!
//! Identity keys never change (a user id is the hash of its signing key),
//! so they are cached without expiry; only keys that exist are cached, as a
//! missing account may be registered a moment later.
//!
//! Friendships change. A node that changes one invalidates its own entry
//! before it answers and tells every other node (see `bus`); a node that
//! lost its notification connection clears the whole cache when it is back.
//! Entries also expire after [`FRIENDSHIP_TTL`] at most. What makes a
//! removal effective on every node *at once*, even in the instant before
//! another node hears of it, is the store: the cluster mailbox refuses
//! messages between two users for a while after their conversation was
//! dropped (longer than an entry can live), and the message service
//! rechecks the friendship after storing.
//!
//! A read that raced an invalidation does not put its (possibly stale)
//! answer back: every invalidation moves an epoch, and a fill is kept only
//! if the epoch did not move while it read.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use wisp_proto::UserId;

use crate::store::{AccountStore, FriendStore, IdentityKeys, StoreError};

/// How long a friendship answer is trusted without hearing of a change, at
/// most.
pub(crate) const FRIENDSHIP_TTL: Duration = Duration::from_secs(60);

/// How long a friendship entry lives: between three quarters of
/// [`FRIENDSHIP_TTL`] and all of it, drawn at random, so entries filled
/// together (every friend of a crowd that logged in at once) do not all
/// expire, and go back to the store, in the same instant.
fn friendship_lifetime() -> Duration {
    use rand::RngExt;
    rand::rng().random_range(FRIENDSHIP_TTL * 3 / 4..=FRIENDSHIP_TTL)
}

/// Gives every friendship entry its own [`friendship_lifetime`], from when
/// it was (last) filled.
struct FriendshipExpiry;

impl moka::Expiry<(UserId, UserId), bool> for FriendshipExpiry {
    fn expire_after_create(
        &self,
        _pair: &(UserId, UserId),
        _friends: &bool,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(friendship_lifetime())
    }

    fn expire_after_update(
        &self,
        _pair: &(UserId, UserId),
        _friends: &bool,
        _updated_at: Instant,
        _until_expiry: Option<Duration>,
    ) -> Option<Duration> {
        Some(friendship_lifetime())
    }
}

/// Entries each cache holds at most.
const CAPACITY: u64 = 200_000;

fn pair(a: UserId, b: UserId) -> (UserId, UserId) {
    if a.as_bytes() <= b.as_bytes() {
        (a, b)
    } else {
        (b, a)
    }
}

/// A node's caches.
pub(crate) struct Cache {
    /// Whether two users (the pair in order) are friends.
    friendships: moka::sync::Cache<(UserId, UserId), bool>,
    /// Moves on every friendship invalidation. Locked while a fill is put
    /// in and while an invalidation runs, so no stale fill lands after an
    /// invalidation; lookups that hit never take it.
    friendship_epoch: Mutex<u64>,
    identities: moka::sync::Cache<UserId, IdentityKeys>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Counts only: moka's own Debug would list every entry.
        f.debug_struct("Cache")
            .field("friendships", &self.friendships.entry_count())
            .field("identities", &self.identities.entry_count())
            .finish_non_exhaustive()
    }
}

impl Default for Cache {
    fn default() -> Self {
        Self::with_capacity(CAPACITY)
    }
}

/// What a cache lookup found.
#[derive(Debug, Clone, Copy)]
enum Lookup {
    Hit,
    Miss,
}

fn count_lookup(cache: &'static str, lookup: Lookup) {
    let outcome = match lookup {
        Lookup::Hit => "hit",
        Lookup::Miss => "miss",
    };
    metrics::counter!("wisp_cache_lookups_total", "cache" => cache, "outcome" => outcome)
        .increment(1);
}

impl Cache {
    /// Caches holding at most `capacity` entries each.
    fn with_capacity(capacity: u64) -> Self {
        Self {
            friendships: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(FriendshipExpiry)
                .build(),
            friendship_epoch: Mutex::new(0),
            identities: moka::sync::Cache::new(capacity),
        }
    }

    fn friendship_epoch(&self) -> MutexGuard<'_, u64> {
        // A panic while holding the lock cannot leave the epoch
        // inconsistent (every update is one increment), so poisoning is
        // ignored.
        self.friendship_epoch
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
        if let Some(friends) = self.friendships.get(&key) {
            count_lookup("friendship", Lookup::Hit);
            return Ok(friends);
        }
        count_lookup("friendship", Lookup::Miss);
        let epoch = *self.friendship_epoch();
        let friends = store.are_friends(a, b).await?;
        let current = self.friendship_epoch();
        if *current == epoch {
            self.friendships.insert(key, friends);
        }
        Ok(friends)
    }

    /// Forgets whether `a` and `b` are friends (it just changed).
    pub(crate) fn forget_friendship(&self, a: UserId, b: UserId) {
        let mut epoch = self.friendship_epoch();
        *epoch = epoch.wrapping_add(1);
        self.friendships.invalidate(&pair(a, b));
    }

    /// Forgets every friendship (changes may have been missed).
    pub(crate) fn forget_friendships(&self) {
        let mut epoch = self.friendship_epoch();
        *epoch = epoch.wrapping_add(1);
        self.friendships.invalidate_all();
    }

    /// `user`'s identity keys, from the cache or else `store`.
    pub(crate) async fn identity(
        &self,
        store: &dyn AccountStore,
        user: UserId,
    ) -> Result<Option<IdentityKeys>, StoreError> {
        if let Some(keys) = self.identities.get(&user) {
            count_lookup("identity", Lookup::Hit);
            return Ok(Some(keys));
        }
        count_lookup("identity", Lookup::Miss);
        let keys = store.identity(user).await?;
        if let Some(keys) = &keys {
            self.identities.insert(user, keys.clone());
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
        let lifetimes: Vec<Duration> = (0..200).map(|_| friendship_lifetime()).collect();
        for lifetime in &lifetimes {
            assert!(*lifetime >= FRIENDSHIP_TTL * 3 / 4);
            assert!(*lifetime <= FRIENDSHIP_TTL);
        }
        let distinct: std::collections::HashSet<_> = lifetimes.iter().collect();
        assert!(distinct.len() > 100, "lifetimes are not spread");
    }

    /// A full cache makes room one entry at a time: adding more keeps most
    /// of what it held (the old cache dropped everything at once).
    #[tokio::test]
    async fn a_full_cache_keeps_most_of_its_entries_when_more_are_added() {
        let (_dir, store) = store().await;
        let cache = Cache::with_capacity(500);
        let someone = |i: u32| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            UserId::from_ed25519(&key)
        };
        let me = someone(u32::MAX);
        for i in 0..500 {
            assert!(!cache.are_friends(&store, me, someone(i)).await.unwrap());
        }
        cache.friendships.run_pending_tasks();
        assert_eq!(cache.friendships.entry_count(), 500);
        for i in 500..600 {
            assert!(!cache.are_friends(&store, me, someone(i)).await.unwrap());
        }
        cache.friendships.run_pending_tasks();
        assert!(cache.friendships.entry_count() <= 500, "stays bounded");
        let kept = (0..500)
            .filter(|&i| cache.friendships.contains_key(&pair(me, someone(i))))
            .count();
        assert!(kept >= 400, "only {kept} of 500 entries kept");
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
