//! Cross-node notifications over Redis pub/sub, for deployments of many
//! nodes. A message stored through node B must wake its recipient's
//! connection on node A; a friend event likewise.
//!
//! Each node subscribes to the channel of every user connected to it
//! (`<prefix>:user:<id>`) and unsubscribes when the last connection leaves.
//! Publishing carries the sending node's id, so a node skips its own
//! publications (it already delivered locally). Pub/sub is only a wake-up:
//! the message itself is in the mailbox, so a lost notification delays a
//! delivery until the next wake or reconnect, and never loses it. After the
//! subscription connection drops, the bus reconnects, resubscribes, and wakes
//! every local user to fetch whatever was stored meanwhile.
//!
//! Every node also listens on `<prefix>:friendships`, where a node that
//! changed a friendship names the two users, so each node forgets its cached
//! answer (see `cache`). A node that was not listening for a while forgets
//! every cached friendship when it is back.
//!
//! With Sentinel the bus follows the primary: when the subscription drops,
//! it asks the Sentinels again. In a Redis Cluster it subscribes on any
//! reachable node (a publication reaches every node of a cluster).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::AsyncCommands;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use wisp_proto::{ServerFrame, UserId, decode_server_frame, encode};

use crate::cache::Cache;
use crate::hub::Hub;
use crate::store::StoreError;
use crate::store::redis_link::RedisLink;

const WAKE: u8 = 0;
const PUSH: u8 = 1;
const FRIENDSHIP: u8 = 2;
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// A user's first connection arrived on this node, or its last one left.
#[derive(Debug)]
pub(crate) enum Presence {
    /// Told on `listening` once the node is subscribed to the user's
    /// channel, so the login is answered only when nothing published for
    /// the user from then on can be missed.
    Arrived {
        user: UserId,
        listening: oneshot::Sender<()>,
    },
    Left(UserId),
}

/// The publishing half, shared by all connections of a node.
#[derive(Clone)]
pub(crate) struct Bus {
    publisher: RedisLink,
    prefix: String,
    node: u64,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("prefix", &self.prefix)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

fn channel(prefix: &str, user: UserId) -> String {
    format!(
        "{prefix}:user:{}",
        data_encoding::HEXLOWER.encode(user.as_bytes())
    )
}

fn friendships_channel(prefix: &str) -> String {
    format!("{prefix}:friendships")
}

fn user_of(prefix: &str, channel: &str) -> Option<UserId> {
    let hex = channel.strip_prefix(prefix)?.strip_prefix(":user:")?;
    let bytes = data_encoding::HEXLOWER.decode(hex.as_bytes()).ok()?;
    UserId::from_bytes(&bytes).ok()
}

impl Bus {
    /// Connects to Redis and starts the subscriber task, which feeds `hub`
    /// and `cache` and follows `presence` until `shutdown`.
    pub(crate) async fn start(
        url: &str,
        prefix: &str,
        hub: Arc<Hub>,
        cache: Arc<Cache>,
        presence: mpsc::UnboundedReceiver<Presence>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let publisher = RedisLink::connect(url).await?;
        let node = rand::random::<u64>();
        tokio::spawn(subscriber(
            publisher.clone(),
            prefix.to_owned(),
            node,
            Receivers { hub, cache },
            presence,
            shutdown,
        ));
        Ok(Self {
            publisher,
            prefix: prefix.to_owned(),
            node,
        })
    }

    async fn publish(&self, user: UserId, kind: u8, body: &[u8]) {
        self.publish_on(channel(&self.prefix, user), kind, body)
            .await;
    }

    async fn publish_on(&self, channel: String, kind: u8, body: &[u8]) {
        let mut payload = Vec::with_capacity(9 + body.len());
        payload.extend_from_slice(&self.node.to_be_bytes());
        payload.push(kind);
        payload.extend_from_slice(body);
        let sent: Result<i64, _> = self.publisher.clone().publish(channel, payload).await;
        if let Err(error) = sent {
            // The mailbox holds the message; the recipient gets it at its
            // next wake-up or reconnect.
            metrics::counter!("wisp_bus_publish_failures_total").increment(1);
            tracing::warn!(%error, "cross-node notification failed");
        }
    }

    /// Tells other nodes `user`'s mailbox may hold something new.
    pub(crate) async fn wake(&self, user: UserId) {
        self.publish(user, WAKE, &[]).await;
    }

    /// Hands `frame` to `user`'s connections on other nodes.
    pub(crate) async fn push(&self, user: UserId, frame: &ServerFrame) {
        self.publish(user, PUSH, &encode(frame)).await;
    }

    /// Tells other nodes whether `a` and `b` are friends just changed.
    pub(crate) async fn friendship_changed(&self, a: UserId, b: UserId) {
        let mut body = a.to_vec();
        body.extend_from_slice(b.as_bytes());
        self.publish_on(friendships_channel(&self.prefix), FRIENDSHIP, &body)
            .await;
    }
}

/// What the subscriber feeds.
struct Receivers {
    hub: Arc<Hub>,
    cache: Arc<Cache>,
}

impl Receivers {
    fn friendship_changed(&self, body: &[u8]) {
        let half = body.len() / 2;
        if let (Ok(a), Ok(b)) = (
            UserId::from_bytes(&body[..half]),
            UserId::from_bytes(&body[half..]),
        ) {
            self.cache.forget_friendship(a, b);
        }
    }
}

async fn subscriber(
    link: RedisLink,
    prefix: String,
    node: u64,
    receivers: Receivers,
    mut presence: mpsc::UnboundedReceiver<Presence>,
    shutdown: CancellationToken,
) {
    let Receivers { hub, cache } = &receivers;
    let mut attempt = 0usize;
    loop {
        attempt = attempt.wrapping_add(1);
        let pubsub = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = async {
                link.pubsub_client(attempt).await?.get_async_pubsub().await
            } => connected,
        };
        let (mut sink, mut stream) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(error) => {
                tracing::warn!(%error, "cannot reach Redis for notifications; retrying");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        // (Re)subscribe for everyone connected here, then wake them all:
        // anything stored while we were not listening is fetched now.
        let mut healthy = sink.subscribe(friendships_channel(&prefix)).await.is_ok();
        for user in hub.online_users() {
            if sink.subscribe(channel(&prefix, user)).await.is_err() {
                healthy = false;
                break;
            }
        }
        if !healthy {
            tokio::time::sleep(RECONNECT_DELAY).await;
            continue;
        }
        // Friendship changes may have been missed too.
        cache.forget_friendships();
        hub.wake_all();
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                change = presence.recv() => {
                    let result = match change {
                        Some(Presence::Arrived { user, listening }) => {
                            let done = sink.subscribe(channel(&prefix, user)).await;
                            // Anything published before the subscription took
                            // effect is fetched by this wake.
                            hub.wake(user);
                            if done.is_ok() {
                                let _ = listening.send(());
                            }
                            done
                        }
                        Some(Presence::Left(user)) => sink.unsubscribe(channel(&prefix, user)).await,
                        None => return,
                    };
                    if result.is_err() {
                        break;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let payload = message.get_payload_bytes();
                    if payload.len() < 9 || payload[..8] == node.to_be_bytes() {
                        continue;
                    }
                    if payload[8] == FRIENDSHIP {
                        receivers.friendship_changed(&payload[9..]);
                        continue;
                    }
                    let Some(user) = user_of(&prefix, message.get_channel_name()) else {
                        continue;
                    };
                    match payload[8] {
                        WAKE => hub.wake(user),
                        PUSH => {
                            if let Ok(frame) = decode_server_frame(&payload[9..]) {
                                hub.push(user, &frame);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        tracing::warn!("notification connection to Redis lost; reconnecting");
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_name_users_and_back() {
        let user = UserId::from_ed25519(&[3; 32]);
        let name = channel("wisp", user);
        assert_eq!(user_of("wisp", &name), Some(user));
        assert_eq!(user_of("other", &name), None);
    }
}
