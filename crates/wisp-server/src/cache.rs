//! The node's cache of what it reads on every message: whether two users
//! are friends (every send, every key claim) and users' identity keys
//! (every login, every key claim).
//!
//! Both are bounded `moka` caches: when full, they evict entries one by
//! one (by how often and how recently each was used), so a node with more
//! users than it can cache keeps serving most lookups from memory instead
//! of dropping everything at once.
//!
//! Identity keys never change (a user id is the hash of its signing key).
//! An id's answer is cached whether or not it is registered, and either
//! answer lives [`IDENTITY_TTL`] from when it was read: a login for an
//! unknown id then costs what one for a known id costs (a miss or a hit
//! alike), so timing does not tell who exists. A registration on this node
//! forgets the id's "unknown" at once; on another node it is forgotten
//! within [`IDENTITY_TTL`] (only the key's holder can know an id before it
//! is registered, so only its own early attempts can be answered stale).
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

/// How long an identity answer ("these keys" or "not registered") is kept.
pub(crate) const IDENTITY_TTL: Duration = Duration::from_secs(60);

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
    /// Each id's keys, or `None` for an id that was not registered when
    /// read.
    identities: moka::sync::Cache<UserId, Option<IdentityKeys>>,
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
            identities: moka::sync::Cache::builder()
                .max_capacity(capacity)
                .time_to_live(IDENTITY_TTL)
                .build(),
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
            return Ok(keys);
        }
        count_lookup("identity", Lookup::Miss);
        let keys = store.identity(user).await?;
        // Known or not, the answer is kept the same way.
        self.identities.insert(user, keys.clone());
        Ok(keys)
    }

    /// `user` was just registered: forgets that it was not.
    pub(crate) fn forget_identity(&self, user: UserId) {
        self.identities.invalidate(&user);
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
    async fn known_and_unknown_ids_are_cached_alike_until_registration() {
        let (_dir, store) = store().await;
        let cache = Cache::default();
        let known = crate::store::conformance::user(&store, 1).await;
        let unknown = UserId::from_ed25519(&[9; 32]);
        let keys = cache.identity(&store, known).await.unwrap();
        assert!(keys.is_some());
        assert_eq!(cache.identity(&store, unknown).await.unwrap(), None);
        store.close().await;
        // Both served from the cache with the store closed: neither answer
        // needs the store more than the other.
        assert_eq!(cache.identity(&store, known).await.unwrap(), keys);
        assert_eq!(cache.identity(&store, unknown).await.unwrap(), None);
        // Forgetting one (a registration here) goes back to the store.
        cache.forget_identity(unknown);
        assert!(cache.identity(&store, unknown).await.is_err());
    }
}
