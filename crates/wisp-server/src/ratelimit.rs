//! Rate limits: [`Limits`] holds every limiter a server applies. Each is
//! `per_minute` events per key with bursts up to the same number, refilled
//! continuously; a limit of 0 turns it off; a refusal says how long until
//! the next event would pass (the client is told, as `retry_after`).
//!
//! Per-user limits (sends, acknowledgements, friend and key operations)
//! are on every request of a logged-in user, so they are governor's keyed
//! GCRA ([`UserLimiter`]): one atomic state per user in a sharded map.
//! Registrations are limited per source address by a small token bucket of
//! our own ([`AddressLimiter`]), because that table needs a hard memory cap
//! (see there). IPv6 addresses are limited per /64, the block one
//! subscriber gets.
//!
//! On the cluster backend every node counts against one allowance, kept in
//! Redis ([`crate::store::LimitStore`]); a user or an address spread over
//! many nodes gets no more than on one. Should Redis fail to answer, a node
//! falls back to its own limiters (so an outage loosens a limit by the
//! number of nodes for its duration, and never blocks everyone).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use wisp_proto::UserId;

use crate::config::Config;
use crate::store::LimitStore;

/// Key uploads and claims one user may make per minute.
const KEY_OPS_PER_MINUTE: u32 = 60;

/// Friend operations one user may make per minute.
const FRIEND_OPS_PER_MINUTE: u32 = 120;

/// Addresses the registration limiter tracks at most.
const MAX_TRACKED_ADDRESSES: usize = 100_000;

/// Users a per-user limiter holds before it first forgets idle ones.
const SWEEP_AT: usize = 100_000;

/// Every limiter of a server.
#[derive(Debug)]
pub(crate) struct Limits {
    /// Registrations per source address.
    registrations: AddressLimiter,
    friend_ops: UserLimiter,
    sends: UserLimiter,
    /// Acknowledgements follow deliveries, so they get ten times the send
    /// allowance (and are unlimited when sends are).
    acks: UserLimiter,
    key_ops: UserLimiter,
    /// The allowances every node shares, on the cluster backend.
    shared: Option<Arc<dyn LimitStore>>,
}

/// What a per-user limit counts.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UserLimit {
    FriendOps,
    Sends,
    Acks,
    KeyOps,
}

impl UserLimit {
    /// The limit's name in the shared store.
    fn name(self) -> &'static str {
        match self {
            Self::FriendOps => "friend_ops",
            Self::Sends => "sends",
            Self::Acks => "acks",
            Self::KeyOps => "key_ops",
        }
    }
}

impl Limits {
    pub(crate) fn new(config: &Config, shared: Option<Arc<dyn LimitStore>>) -> Self {
        Self {
            registrations: AddressLimiter::per_minute(config.register_limit),
            friend_ops: UserLimiter::per_minute(FRIEND_OPS_PER_MINUTE),
            sends: UserLimiter::per_minute(config.send_limit),
            acks: UserLimiter::per_minute(config.send_limit.saturating_mul(10)),
            key_ops: UserLimiter::per_minute(KEY_OPS_PER_MINUTE),
            shared,
        }
    }

    /// Counts one event of `limit` for `user`, or says how long until one
    /// would pass.
    pub(crate) async fn user(&self, limit: UserLimit, user: UserId) -> Result<(), Duration> {
        let local = match limit {
            UserLimit::FriendOps => &self.friend_ops,
            UserLimit::Sends => &self.sends,
            UserLimit::Acks => &self.acks,
            UserLimit::KeyOps => &self.key_ops,
        };
        if local.per_minute == 0 {
            return Ok(());
        }
        let key = || data_encoding::HEXLOWER.encode(user.as_bytes());
        match self.take_shared(limit.name(), key, local.per_minute).await {
            Some(verdict) => verdict,
            None => local.check(user),
        }
    }

    /// Counts one registration from `addr` (its /64 for IPv6), or says how
    /// long until one would pass.
    pub(crate) async fn registration(&self, addr: IpAddr) -> Result<(), Duration> {
        let per_minute = self.registrations.per_minute;
        if per_minute == 0 {
            return Ok(());
        }
        let key = || address_key(addr).to_string();
        match self.take_shared("registrations", key, per_minute).await {
            Some(verdict) => verdict,
            None => self.registrations.check(addr),
        }
    }

    /// The shared store's verdict, or `None` when there is no shared store
    /// or it did not answer (the caller then asks its own limiter).
    async fn take_shared(
        &self,
        limit: &str,
        key: impl FnOnce() -> String,
        per_minute: u32,
    ) -> Option<Result<(), Duration>> {
        let shared = self.shared.as_ref()?;
        match shared.take(limit, &key(), per_minute).await {
            Ok(None) => Some(Ok(())),
            Ok(Some(wait)) => Some(Err(wait)),
            Err(error) => {
                metrics::counter!("wisp_shared_limit_fallbacks_total").increment(1);
                tracing::debug!(%error, limit, "shared limit unavailable; counting on this node");
                None
            }
        }
    }

    /// Forgets users whose limits are back to a fresh state, in the
    /// limiters that have grown large; run periodically (by the reaper).
    pub(crate) fn forget_idle(&self) {
        for limiter in [&self.friend_ops, &self.sends, &self.acks, &self.key_ops] {
            limiter.forget_idle();
        }
    }
}

/// Governor's keyed GCRA, one state per user in a sharded map.
type KeyedGcra<C> =
    RateLimiter<UserId, DashMapStateStore<UserId>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A per-user limit on governor's keyed GCRA.
///
/// Governor's keyed state grows until `retain_recent` drops the users whose
/// state is as good as fresh. [`Limits::forget_idle`] does that, off the
/// hot path, once a limiter holds [`SWEEP_AT`] users, and again each time
/// it has doubled since the last sweep (so sweeps cost O(1) per user
/// added). The table thus holds at most [`SWEEP_AT`] users or twice those
/// still recently active at the last sweep (a user is forgotten once their
/// allowance has refilled). That bound is enough here, unlike for
/// addresses: every key is a logged-in user, an identity that cost a
/// proof-of-work and a registration under the per-address limit, not a
/// value a stranger picks.
pub(crate) struct UserLimiter<C: Clock = DefaultClock> {
    /// Events per minute; 0 is no limit.
    per_minute: u32,
    /// None when the limit is off.
    limiter: Option<KeyedGcra<C>>,
    /// The size of the first sweep, and the least of any later one.
    first_sweep: usize,
    /// The size at which the next sweep runs.
    sweep_at: AtomicUsize,
}

impl<C: Clock> std::fmt::Debug for UserLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserLimiter")
            .field("users", &self.limiter.as_ref().map(|l| l.len()))
            .field("sweep_at", &self.sweep_at)
            .finish()
    }
}

impl UserLimiter {
    /// `per_minute` events per user, bursts up to the same; 0 is no limit.
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        Self::with_clock(per_minute, DefaultClock::default(), SWEEP_AT)
    }
}

impl<C: Clock> UserLimiter<C> {
    fn with_clock(per_minute: u32, clock: C, first_sweep: usize) -> Self {
        let limiter = NonZeroU32::new(per_minute)
            .map(|n| RateLimiter::new(Quota::per_minute(n), DashMapStateStore::default(), clock));
        Self {
            per_minute,
            limiter,
            first_sweep,
            sweep_at: AtomicUsize::new(first_sweep),
        }
    }

    /// Counts one event for `user`, or says how long until one would pass.
    pub(crate) fn check(&self, user: UserId) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&user)
            .map_err(|not_until| not_until.wait_time_from(limiter.clock().now()))
    }

    /// Forgets users whose state is as good as fresh, if the table has
    /// reached its sweep size; the next sweep waits until it doubled.
    fn forget_idle(&self) {
        let Some(limiter) = &self.limiter else {
            return;
        };
        let sweep_at = self.sweep_at.load(Ordering::Relaxed);
        if limiter.len() < sweep_at {
            return;
        }
        limiter.retain_recent();
        limiter.shrink_to_fit();
        let next = limiter.len().saturating_mul(2).max(self.first_sweep);
        self.sweep_at.store(next, Ordering::Relaxed);
    }
}

/// The per-address registration limit: a token bucket per address, in a
/// table with a hard cap.
///
/// Written by hand rather than on governor because its memory must have a
/// hard cap: its keys are source addresses, checked before any
/// proof-of-work, and someone holding a routed IPv6 prefix can connect from
/// as many /64s as they like (a /48 alone has 65 536). Governor's keyed
/// store only shrinks by dropping keys that are as good as fresh, and a
/// stream of new addresses never is: it would grow without bound. This
/// table, when full, forgets buckets that have refilled completely (they
/// carry no information), and if that is not enough the oldest-touched
/// tenth. It is consulted once per registration, far off the hot path.
#[derive(Debug)]
pub(crate) struct AddressLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The key an address is limited under: itself for IPv4, its /64 for IPv6.
fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl AddressLimiter {
    /// `per_minute` events per address, bursts up to the same; 0 is no
    /// limit.
    pub(crate) fn per_minute(per_minute: u32) -> Self {
        Self {
            per_minute,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `addr` (its /64 for IPv6), or says how long
    /// until one is free.
    pub(crate) fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        self.check_at(address_key(addr), Instant::now())
    }

    fn check_at(&self, key: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let per_second = capacity / 60.0;
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&key) {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.updated).as_secs_f64() * per_second < capacity
            });
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                let mut ages: Vec<Instant> = buckets.values().map(|b| b.updated).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 10];
                buckets.retain(|_, b| b.updated > cutoff);
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let refill = now.duration_since(bucket.updated).as_secs_f64() * per_second;
        bucket.tokens = (bucket.tokens + refill).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn allows_the_burst_then_refuses_then_refills() {
        let limiter = AddressLimiter::per_minute(3);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check_at(a, t0).is_ok());
        }
        let wait = limiter.check_at(a, t0).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        // Other addresses are not affected.
        assert!(limiter.check_at(b, t0).is_ok());
        // One token comes back every 20 s.
        assert!(limiter.check_at(a, t0 + Duration::from_secs(21)).is_ok());
        assert!(limiter.check_at(a, t0 + Duration::from_secs(22)).is_err());
    }

    /// The per-user limiter (governor) keeps the same semantics as the
    /// address limiter: the same burst, wait and refill.
    #[test]
    fn a_user_gets_the_burst_then_is_refused_then_refilled() {
        let clock = FakeRelativeClock::default();
        let limiter = UserLimiter::with_clock(3, clock.clone(), SWEEP_AT);
        let a = UserId::from_ed25519(&[1; 32]);
        let b = UserId::from_ed25519(&[2; 32]);
        for _ in 0..3 {
            assert!(limiter.check(a).is_ok());
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::from_secs(19) && wait <= Duration::from_secs(20));
        // Other users are not affected.
        assert!(limiter.check(b).is_ok());
        // One event comes back every 20 s.
        clock.advance(Duration::from_secs(21));
        assert!(limiter.check(a).is_ok());
        clock.advance(Duration::from_secs(1));
        assert!(limiter.check(a).is_err());
    }

    #[test]
    fn idle_users_are_forgotten_once_the_table_is_large() {
        let clock = FakeRelativeClock::default();
        let limiter = UserLimiter::with_clock(60, clock.clone(), 10);
        let len = |l: &UserLimiter<FakeRelativeClock>| l.limiter.as_ref().unwrap().len();
        for i in 0..5u8 {
            limiter.check(UserId::from_ed25519(&[i; 32])).unwrap();
        }
        // Below the sweep size: nothing is looked at.
        limiter.forget_idle();
        assert_eq!(len(&limiter), 5);
        for i in 5..50u8 {
            limiter.check(UserId::from_ed25519(&[i; 32])).unwrap();
        }
        // Large, but everyone was just active: everyone stays.
        limiter.forget_idle();
        assert_eq!(len(&limiter), 50);
        clock.advance(Duration::from_secs(120));
        limiter.check(UserId::from_ed25519(&[0; 32])).unwrap();
        // Large again (50 >= 2 * 50 is not, so the table waits)...
        limiter.forget_idle();
        assert_eq!(len(&limiter), 50);
        for i in 50..100u8 {
            limiter.check(UserId::from_ed25519(&[i; 32])).unwrap();
        }
        // ...until it doubled: then the idle ones go.
        limiter.forget_idle();
        assert_eq!(len(&limiter), 51);
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), "127.0.0.1".parse::<IpAddr>().unwrap());
        // The limiter applies it.
        let limiter = AddressLimiter::per_minute(1);
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(b).is_err());
        assert!(limiter.check(c).is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = AddressLimiter::per_minute(0);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        for _ in 0..10_000 {
            assert!(limiter.check(a).is_ok());
        }
        let limiter = UserLimiter::per_minute(0);
        let user = UserId::from_ed25519(&[1; 32]);
        for _ in 0..10_000 {
            assert!(limiter.check(user).is_ok());
        }
    }
}
