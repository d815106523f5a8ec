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
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wisp_proto::{ServerFrame, UserId, decode_server_frame, encode};

use crate::cache::Cache;
use crate::hub::{Hub, Presence};
use crate::sessions::{Evicted, Lease, Registry};
use crate::store::redis_link::RedisLink;
use crate::store::{StoreError, Wake};

const WAKE: u8 = 0;
const PUSH: u8 = 1;
const FRIENDSHIP: u8 = 2;
const KICK: u8 = 3;
const ACCOUNT_DELETED: u8 = 4;
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// The publishing half, shared by all connections of a node.
#[derive(Clone)]
pub(crate) struct Bus {
    publisher: RedisLink,
    prefix: String,
    node: u64,
    /// Every node's sessions, for the sessions cap.
    sessions: Arc<Registry>,
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
        let receiving = Subscriber {
            link: publisher.clone(),
            prefix: prefix.to_owned(),
            node,
            hub,
            cache,
        };
        let sessions = Arc::new(Registry::new(publisher.clone(), prefix, node));
        tokio::spawn(crate::sessions::renew(
            Arc::clone(&sessions),
            shutdown.clone(),
        ));
        tokio::spawn(subscriber(receiving, presence, shutdown));
        Ok(Self {
            publisher,
            prefix: prefix.to_owned(),
            node,
            sessions,
        })
    }

    async fn publish(&self, user: UserId, kind: u8, body: &[u8]) {
        self.publish_on(channel(&self.prefix, user), kind, body)
            .await;
    }

    /// What this node publishes: its id, the kind, the body.
    fn payload(&self, kind: u8, body: &[u8]) -> Vec<u8> {
        let mut payload = Vec::with_capacity(9 + body.len());
        payload.extend_from_slice(&self.node.to_be_bytes());
        payload.push(kind);
        payload.extend_from_slice(body);
        payload
    }

    async fn publish_on(&self, channel: String, kind: u8, body: &[u8]) {
        let payload = self.payload(kind, body);
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

    /// The wake-up [`Bus::wake`] publishes, for a mailbox store to publish
    /// in the round trip of the put it is about
    /// ([`MailboxStore::put_and_wake`](crate::store::MailboxStore::put_and_wake)).
    pub(crate) fn wake_for(&self, user: UserId) -> Wake {
        Wake {
            channel: channel(&self.prefix, user),
            payload: self.payload(WAKE, &[]),
        }
    }

    /// Hands `frame` to `user`'s connections on other nodes.
    pub(crate) async fn push(&self, user: UserId, frame: &ServerFrame) {
        self.publish(user, PUSH, &encode(frame)).await;
    }

    /// Registers connection `connection` of `user` (on this node) among
    /// the account's sessions everywhere, and closes the oldest beyond
    /// `cap`, here through `hub` or on their nodes; the lease ends the
    /// session in the registry when dropped. `None` if Redis did not
    /// answer (the node's own cap still holds).
    pub(crate) async fn session_started(
        &self,
        hub: &Hub,
        user: UserId,
        connection: u64,
        cap: usize,
    ) -> Option<Lease> {
        let (lease, evicted) = match self.sessions.start(user, connection, cap).await {
            Ok(started) => started,
            Err(error) => {
                tracing::warn!(%error, "cannot register the session across nodes; the node's own cap applies");
                return None;
            }
        };
        for Evicted { node, connection } in evicted {
            if node == self.node {
                hub.supersede(user, connection);
            } else {
                let mut body = node.to_be_bytes().to_vec();
                body.extend_from_slice(&connection.to_be_bytes());
                self.publish(user, KICK, &body).await;
            }
        }
        Some(lease)
    }

    /// Tells other nodes whether `a` and `b` are friends just changed.
    pub(crate) async fn friendship_changed(&self, a: UserId, b: UserId) {
        let mut body = a.to_vec();
        body.extend_from_slice(b.as_bytes());
        self.publish_on(friendships_channel(&self.prefix), FRIENDSHIP, &body)
            .await;
    }
}

impl Bus {
    /// Tells every node that `user`'s account was deleted: each forgets
    /// its identity and closes its connections. On the channel every node
    /// follows, since the account may be cached where it is not connected.
    pub(crate) async fn account_deleted(&self, user: UserId) {
        self.publish_on(
            friendships_channel(&self.prefix),
            ACCOUNT_DELETED,
            user.as_bytes(),
        )
        .await;
    }
}

/// What the subscriber task holds: the link to Redis, and what it feeds.
struct Subscriber {
    link: RedisLink,
    prefix: String,
    /// This node's id, to skip its own publications.
    node: u64,
    hub: Arc<Hub>,
    cache: Arc<Cache>,
}

/// Why the subscriber stopped listening.
enum Stopped {
    /// The server is shutting down (or the hub is gone): the task ends.
    ForGood,
    /// The connection to Redis failed: connect again.
    Lost,
}

impl Subscriber {
    /// Subscribes for everyone connected here and for friendship changes,
    /// then wakes everyone here and forgets every cached friendship: what
    /// was stored or changed while nobody listened is fetched now.
    async fn resubscribe(&self, sink: &mut PubSubSink) -> redis::RedisResult<()> {
        sink.subscribe(friendships_channel(&self.prefix)).await?;
        for user in self.hub.online_users() {
            sink.subscribe(channel(&self.prefix, user)).await?;
        }
        self.cache.forget_friendships();
        self.hub.wake_all();
        Ok(())
    }

    /// Follows presence changes and hands on what other nodes publish,
    /// until the connection fails or the server shuts down.
    async fn listen(
        &self,
        mut sink: PubSubSink,
        mut stream: PubSubStream,
        presence: &mut mpsc::UnboundedReceiver<Presence>,
        shutdown: &CancellationToken,
    ) -> Stopped {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Stopped::ForGood,
                change = presence.recv() => {
                    let Some(change) = change else { return Stopped::ForGood };
                    if self.follow(&mut sink, change).await.is_err() {
                        return Stopped::Lost;
                    }
                }
                message = stream.next() => {
                    let Some(message) = message else { return Stopped::Lost };
                    self.hand_on(&message);
                }
            }
        }
    }

    /// Subscribes to a user who arrived here, unsubscribes from one who
    /// left.
    async fn follow(&self, sink: &mut PubSubSink, change: Presence) -> redis::RedisResult<()> {
        match change {
            Presence::Arrived { user, listening } => {
                let done = sink.subscribe(channel(&self.prefix, user)).await;
                // Anything published before the subscription took effect is
                // fetched by this wake.
                self.hub.wake(user);
                if done.is_ok() {
                    let _ = listening.send(());
                }
                done
            }
            Presence::Left(user) => sink.unsubscribe(channel(&self.prefix, user)).await,
        }
    }

    /// Hands a publication from another node to the hub or the cache.
    fn hand_on(&self, message: &redis::Msg) {
        let payload = message.get_payload_bytes();
        if payload.len() < 9 || payload[..8] == self.node.to_be_bytes() {
            return;
        }
        if payload[8] == FRIENDSHIP {
            self.friendship_changed(&payload[9..]);
            return;
        }
        if payload[8] == ACCOUNT_DELETED {
            if let Ok(user) = UserId::from_bytes(&payload[9..]) {
                self.cache.forget_identity(user);
                self.hub.close_account(user);
            }
            return;
        }
        let Some(user) = user_of(&self.prefix, message.get_channel_name()) else {
            return;
        };
        match payload[8] {
            WAKE => self.hub.wake(user),
            KICK => {
                let body = &payload[9..];
                if body.len() == 16 && body[..8] == self.node.to_be_bytes() {
                    let mut connection = [0; 8];
                    connection.copy_from_slice(&body[8..]);
                    self.hub.supersede(user, u64::from_be_bytes(connection));
                }
            }
            PUSH => {
                if let Ok(frame) = decode_server_frame(&payload[9..]) {
                    self.hub.push(user, &frame);
                }
            }
            _ => {}
        }
    }

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

/// The subscriber task: connects, (re)subscribes, listens, and starts over
/// whenever the connection fails, until shutdown.
async fn subscriber(
    subscriber: Subscriber,
    mut presence: mpsc::UnboundedReceiver<Presence>,
    shutdown: CancellationToken,
) {
    let mut attempt = 0usize;
    loop {
        attempt = attempt.wrapping_add(1);
        let pubsub = tokio::select! {
            () = shutdown.cancelled() => return,
            connected = async {
                subscriber.link.pubsub_client(attempt).await?.get_async_pubsub().await
            } => connected,
        };
        let (mut sink, stream) = match pubsub {
            Ok(pubsub) => pubsub.split(),
            Err(error) => {
                tracing::warn!(%error, "cannot reach Redis for notifications; retrying");
                tokio::time::sleep(RECONNECT_DELAY).await;
                continue;
            }
        };
        if subscriber.resubscribe(&mut sink).await.is_err() {
            tokio::time::sleep(RECONNECT_DELAY).await;
            continue;
        }
        let listened = subscriber.listen(sink, stream, &mut presence, &shutdown);
        if let Stopped::ForGood = listened.await {
            return;
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
