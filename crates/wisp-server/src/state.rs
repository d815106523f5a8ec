//! What every connection shares: stores, the hub, the cache, the bus,
//! settings and limits; and the few acts that reach this node and every
//! other one (waking a user, pushing to them, a friendship change).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::Cache;
use crate::clock::Clock;
use crate::hub::Hub;
use crate::ratelimit::Limits;
use crate::store::{IdentityKeys, StoreError, Stores};
use wisp_proto::UserId;

/// Shared by all connections of one server.
///
/// The acts below that reach other nodes box the bus's part: its Redis
/// futures are large, and every connection's future would otherwise hold
/// room for them, cluster or not (a single node has no bus and allocates
/// nothing).
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) stores: Stores,
    pub(crate) hub: Arc<Hub>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The deployment's name, signed into registrations and logins.
    pub(crate) server_name: String,
    pub(crate) pow_difficulty: u32,
    pub(crate) limits: Limits,
    /// What may wait unread (messages per conversation, bytes per mailbox
    /// and per sender).
    pub(crate) mailbox_quota: crate::store::Quota,
    /// Set when messages were deleted since the last store maintenance.
    pub(crate) mailbox_dirty: std::sync::atomic::AtomicBool,
    /// Connections per client address: the listener counts direct peers
    /// at accept, the upgrade counts clients behind trusted proxies.
    pub(crate) per_address: Arc<crate::listener::AddressCounts>,
    /// Connections refused (at accept, and per forwarded client at the
    /// upgrade): counted and logged in one place.
    pub(crate) refusals: Arc<crate::listener::Refusals>,
    /// Cancelled when the server starts shutting down.
    pub(crate) shutdown: CancellationToken,
    /// Every live connection task, so shutdown can wait for them.
    pub(crate) connections: TaskTracker,
    /// Notifications to other nodes (cluster deployments only).
    pub(crate) bus: Option<crate::bus::Bus>,
    /// What this node reads on every message.
    pub(crate) cache: Arc<Cache>,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// Connections one user may have logged in at once (on this node).
    pub(crate) max_sessions_per_user: usize,
}

impl AppState {
    /// Whether `a` and `b` are friends (cached).
    pub(crate) async fn are_friends(&self, a: UserId, b: UserId) -> Result<bool, StoreError> {
        self.cache
            .are_friends(self.stores.friends.as_ref(), a, b)
            .await
    }

    /// `user`'s identity keys (cached).
    pub(crate) async fn identity(&self, user: UserId) -> Result<Option<IdentityKeys>, StoreError> {
        self.cache
            .identity(self.stores.accounts.as_ref(), user)
            .await
    }

    /// Whether `a` and `b` are friends just changed: forget it here and on
    /// every other node.
    pub(crate) async fn friendship_changed(&self, a: UserId, b: UserId) {
        self.cache.forget_friendship(a, b);
        if let Some(bus) = &self.bus {
            Box::pin(bus.friendship_changed(a, b)).await;
        }
    }

    /// `user`'s account was just deleted: its identity is forgotten and
    /// its connections closed, here and on every other node.
    pub(crate) async fn account_deleted(&self, user: UserId) {
        self.cache.forget_identity(user);
        self.hub.close_account(user);
        if let Some(bus) = &self.bus {
            Box::pin(bus.account_deleted(user)).await;
        }
    }

    /// Tells `user`'s connections, here and on every other node, to look in
    /// the mailbox.
    pub(crate) async fn wake(&self, user: UserId) {
        self.wake_after_put(user, false).await;
    }

    /// As [`AppState::wake`], after a put: other nodes are left out when
    /// the mailbox store woke them with the put (`others_woken`, see
    /// [`AppState::wake_with_put`]).
    pub(crate) async fn wake_after_put(&self, user: UserId, others_woken: bool) {
        self.hub.wake(user);
        if !others_woken && let Some(bus) = &self.bus {
            Box::pin(bus.wake(user)).await;
        }
    }

    /// A message was just stored for `user`: handed to the user's
    /// connections here directly, and other nodes are told to look (unless
    /// the store already told them: `others_woken`).
    pub(crate) async fn offer(
        &self,
        user: UserId,
        message: &Arc<crate::store::StoredMessage>,
        others_woken: bool,
    ) {
        self.hub.offer(user, message);
        if !others_woken && let Some(bus) = &self.bus {
            Box::pin(bus.wake(user)).await;
        }
    }

    /// The wake-up for `user` the mailbox store publishes with a put, if
    /// there are other nodes and the store publishes wake-ups.
    pub(crate) fn wake_with_put(&self, user: UserId) -> Option<crate::store::Wake> {
        let bus = self.bus.as_ref()?;
        self.stores
            .mailbox
            .publishes_wakes()
            .then(|| bus.wake_for(user))
    }

    /// Pushes `frame` to `user`'s connections, here and on every other node.
    pub(crate) async fn push(&self, user: UserId, frame: &wisp_proto::ServerFrame) {
        self.hub.push(user, frame);
        if let Some(bus) = &self.bus {
            Box::pin(bus.push(user, frame)).await;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;

    /// A node's shared state on a fresh embedded store, with the default
    /// settings and no other nodes.
    pub(crate) async fn state() -> (tempfile::TempDir, Arc<AppState>) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let config = crate::config::Config::default();
        let state = AppState {
            stores: Stores {
                accounts: Arc::new(store.clone()),
                friends: Arc::new(store.clone()),
                prekeys: Arc::new(store.clone()),
                mailbox: Arc::new(store),
                limits: None,
            },
            hub: Arc::new(Hub::default()),
            clock: Arc::new(crate::clock::SystemClock),
            server_name: "test".to_owned(),
            pow_difficulty: 0,
            limits: Limits::new(&config, None),
            mailbox_quota: crate::store::Quota::of(&config),
            mailbox_dirty: std::sync::atomic::AtomicBool::new(false),
            per_address: crate::listener::AddressCounts::new(config.max_connections_per_address),
            refusals: Arc::default(),
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            bus: None,
            cache: Arc::new(Cache::default()),
            trusted_proxies: Vec::new(),
            max_sessions_per_user: config.max_sessions_per_user,
        };
        (dir, Arc::new(state))
    }
}
