//! What every connection shares: stores, the hub, settings, limits.

use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::hub::Hub;
use crate::ratelimit::RateLimiter;
use crate::store::Stores;

/// Shared by all connections of one server.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) stores: Stores,
    pub(crate) hub: Arc<Hub>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The deployment's name, signed into registrations and logins.
    pub(crate) server_name: String,
    pub(crate) pow_difficulty: u32,
    pub(crate) register_limiter: RateLimiter,
    pub(crate) friend_op_limiter: RateLimiter<wisp_proto::UserId>,
    pub(crate) send_limiter: RateLimiter<wisp_proto::UserId>,
    pub(crate) ack_limiter: RateLimiter<wisp_proto::UserId>,
    pub(crate) key_op_limiter: RateLimiter<wisp_proto::UserId>,
    /// Set when messages were deleted since the last store maintenance.
    pub(crate) mailbox_dirty: std::sync::atomic::AtomicBool,
    pub(crate) connection_slots: Arc<Semaphore>,
    /// Cancelled when the server starts shutting down.
    pub(crate) shutdown: CancellationToken,
    /// Every live connection task, so shutdown can wait for them.
    pub(crate) connections: TaskTracker,
    /// Notifications to other nodes (cluster deployments only).
    pub(crate) bus: Option<crate::bus::Bus>,
}

impl AppState {
    /// Tells `user`'s connections, here and on every other node, to look in
    /// the mailbox.
    pub(crate) async fn wake(&self, user: wisp_proto::UserId) {
        self.hub.wake(user);
        if let Some(bus) = &self.bus {
            bus.wake(user).await;
        }
    }

    /// Pushes `frame` to `user`'s connections, here and on every other node.
    pub(crate) async fn push(&self, user: wisp_proto::UserId, frame: &wisp_proto::ServerFrame) {
        self.hub.push(user, frame);
        if let Some(bus) = &self.bus {
            bus.push(user, frame).await;
        }
    }
}
