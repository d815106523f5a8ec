//! The local delivery hub: which users have live connections on this node,
//! and how to reach each of them: push a frame, wake it to fetch from the
//! mailbox, or hand it a message just stored (a hint). The hub reports a
//! user's first arrival and last departure ([`Presence`]) to whoever links
//! nodes (the bus).
//!
//! A push never blocks and never drops silently: each connection has a
//! bounded outbound queue, and a connection whose queue is full is told to
//! close (it reconnects and fetches what it missed from the store). A hint
//! that does not fit becomes a wake-up.
//!
//! A connection's queues and its wake-up live in one [`Inbox`], small and
//! allocated once: most connections are idle most of the time, and two
//! channels per connection cost 1.6 KiB before anything is queued.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use futures_util::FutureExt;
use tokio::sync::futures::Notified;
use tokio::sync::{Notify, mpsc, oneshot};
use wisp_proto::limits::DELIVERY_WINDOW;
use wisp_proto::{ServerFrame, UserId};

use crate::store::StoredMessage;

/// Frames a connection may have queued before it counts as too slow.
pub(crate) const OUTBOUND_QUEUE: usize = 256;

/// A queue emptied with more room than this gives it back (after a burst),
/// so an idle connection keeps at most this much room per queue.
const KEPT_QUEUE_ROOM: usize = 8;

/// Why the hub closes a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its outbound queue was full: it fell too far behind.
    TooSlow,
    /// Its user logged in on more connections than allowed, and it is
    /// among the oldest (on this node or another).
    Superseded,
    /// Its account was deleted (on any node).
    AccountDeleted,
}

/// What the hub hands one logged-in connection: frames pushed to it, at
/// most [`OUTBOUND_QUEUE`]; messages just stored for its user (hints), at
/// most [`DELIVERY_WINDOW`]; wake-ups to look in the mailbox; and, once,
/// the word to close ([`Ending`]). A queue allocates nothing until
/// something is queued, and gives back room above [`KEPT_QUEUE_ROOM`] once
/// emptied.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    frames: Queue<Box<ServerFrame>>,
    hints: Queue<Arc<StoredMessage>>,
    /// Notified when the user's mailbox may hold something new; wake-ups
    /// coalesce.
    pub(crate) wake: Notify,
    /// Set once: the first reason given is the one the connection closes
    /// with.
    ending: Mutex<Option<Ending>>,
    ended: Notify,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every change is one push, pop or assignment: a panic cannot leave
    // what it guards torn.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One of an [`Inbox`]'s queues, and the waiter it wakes.
#[derive(Debug)]
struct Queue<T> {
    items: Mutex<VecDeque<T>>,
    queued: Notify,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Self {
            items: Mutex::default(),
            queued: Notify::new(),
        }
    }
}

impl<T> Queue<T> {
    /// Queues the item `make` makes unless `limit` items wait already (then
    /// nothing is made).
    fn push(&self, limit: usize, make: impl FnOnce() -> T) -> bool {
        {
            let mut items = lock(&self.items);
            if items.len() >= limit {
                return false;
            }
            items.push_back(make());
        }
        self.queued.notify_one();
        true
    }

    /// The oldest item, waiting for one if there is none. Cancel-safe: an
    /// item is taken only when this returns.
    async fn next(&self) -> T {
        loop {
            {
                let mut items = lock(&self.items);
                if let Some(item) = items.pop_front() {
                    if items.is_empty() && items.capacity() > KEPT_QUEUE_ROOM {
                        *items = VecDeque::new();
                    }
                    return item;
                }
            }
            // A queueing since the look above left a permit: this returns
            // at once, and the loop looks again.
            self.queued.notified().await;
        }
    }
}

impl Inbox {
    /// The next frame pushed to the connection. Cancel-safe: a frame is
    /// taken only when this returns.
    pub(crate) async fn next_frame(&self) -> Box<ServerFrame> {
        self.frames.next().await
    }

    /// The next message handed over as it was stored. Cancel-safe.
    pub(crate) async fn next_hint(&self) -> Arc<StoredMessage> {
        self.hints.next().await
    }

    /// Resolves when the mailbox may hold something new.
    pub(crate) fn woken(&self) -> Notified<'_> {
        self.wake.notified()
    }

    /// Tells the connection to close for `why`, unless it was told already;
    /// says whether this was the telling (what is counted).
    fn end(&self, why: Ending) -> bool {
        let mut ending = lock(&self.ending);
        if ending.is_some() {
            return false;
        }
        *ending = Some(why);
        drop(ending);
        self.ended.notify_one();
        true
    }

    /// Whether the connection was told to close.
    fn is_ending(&self) -> bool {
        lock(&self.ending).is_some()
    }

    /// Resolves once the connection is told to close, with why.
    pub(crate) async fn ended(&self) -> Ending {
        loop {
            if let Some(why) = *lock(&self.ending) {
                return why;
            }
            self.ended.notified().await;
        }
    }
}

/// A user's first connection arrived on this node, or its last one left:
/// what the hub tells whoever listens across nodes (the bus), which
/// subscribes to and unsubscribes from the user's channel accordingly.
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

#[derive(Debug)]
struct Subscriber {
    id: u64,
    /// Its queues, wake-up and ending. Hints (messages just stored for the
    /// user, handed over directly) may be refused: the connection still
    /// fetches when woken, so a hint that does not fit is replaced by a
    /// wake-up and nothing is lost.
    inbox: Arc<Inbox>,
    /// Resolves once the cross-node bus listens for the user; shared by
    /// all of the user's connections here (None on a node without a bus).
    listening: Option<Listening>,
}

/// The bus's answer to a user's arrival, for every connection that waits
/// on it.
type Listening = futures_util::future::Shared<oneshot::Receiver<()>>;

/// Live connections by user.
#[derive(Debug, Default)]
pub(crate) struct Hub {
    users: Mutex<HashMap<UserId, Vec<Subscriber>>>,
    next_id: AtomicU64,
    /// Told when a user's first connection arrives or last one leaves (the
    /// cross-node bus subscribes and unsubscribes accordingly).
    presence: Option<mpsc::UnboundedSender<Presence>>,
}

/// A connection's place in the hub; leaving the hub is dropping this.
#[derive(Debug)]
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
    /// Resolves when the cross-node bus listens for this user.
    listening: Option<Listening>,
    /// The session's place in the cross-node registry (cluster only);
    /// leaving the hub ends it there too.
    lease: Option<crate::sessions::Lease>,
}

impl Subscription {
    /// This connection's number on this node.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Keeps `lease` for as long as the connection stays in the hub.
    pub(crate) fn hold(&mut self, lease: crate::sessions::Lease) {
        self.lease = Some(lease);
    }

    /// Waits, at most `limit`, until the cross-node bus listens for this
    /// user: what another node publishes for them from then on (a friend
    /// request, say) reaches this connection. Messages stored meanwhile
    /// are fetched anyway; this is for what is only pushed. A later
    /// connection of the same user waits for the same answer (at once if
    /// it came); on a node without a bus nothing waits.
    pub(crate) async fn listening(&mut self, limit: std::time::Duration) {
        if let Some(listening) = self.listening.take()
            && tokio::time::timeout(limit, listening).await.is_err()
        {
            tracing::warn!("the notification bus did not subscribe in time; pushes may be late");
        }
    }
}

impl Hub {
    fn users(&self) -> MutexGuard<'_, HashMap<UserId, Vec<Subscriber>>> {
        lock(&self.users)
    }

    /// A hub that reports presence changes to `presence`.
    pub(crate) fn with_presence(presence: mpsc::UnboundedSender<Presence>) -> Self {
        Self {
            presence: Some(presence),
            ..Self::default()
        }
    }

    /// Users with a live connection here.
    pub(crate) fn online_users(&self) -> Vec<UserId> {
        self.users().keys().copied().collect()
    }

    /// Wakes every connection here.
    pub(crate) fn wake_all(&self) {
        for subscribers in self.users().values() {
            for subscriber in subscribers {
                subscriber.inbox.wake.notify_one();
            }
        }
    }

    /// Registers a logged-in connection, reached (and told to close)
    /// through `inbox`.
    pub(crate) fn subscribe(self: &Arc<Self>, user: UserId, inbox: Arc<Inbox>) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut users = self.users();
        let connections = users.entry(user).or_default();
        let listening = match connections.first() {
            Some(earlier) => earlier.listening.clone(),
            None => self.presence.as_ref().map(|presence| {
                let (tx, rx) = oneshot::channel();
                let _ = presence.send(Presence::Arrived {
                    user,
                    listening: tx,
                });
                rx.shared()
            }),
        };
        // Most users are on one connection: room for one, not Vec's
        // first four.
        connections.reserve_exact(1);
        connections.push(Subscriber {
            id,
            inbox,
            listening: listening.clone(),
        });
        drop(users);
        Subscription {
            hub: Arc::clone(self),
            user,
            id,
            listening,
            lease: None,
        }
    }

    /// Keeps at most `cap` of the user's connections here, counting the
    /// one `subscription` just added: the oldest beyond the cap
    /// (connections are kept in login order) are told to close, and leave
    /// the hub as they do.
    pub(crate) fn cap_sessions(&self, subscription: &Subscription, cap: usize) {
        let users = self.users();
        let Some(subscribers) = users.get(&subscription.user) else {
            return;
        };
        // Already told to close: they no longer count.
        let live: Vec<&Subscriber> = subscribers
            .iter()
            .filter(|s| !s.inbox.is_ending())
            .collect();
        let excess = live.len().saturating_sub(cap.max(1));
        for oldest in live.iter().take(excess) {
            if oldest.inbox.end(Ending::Superseded) {
                metrics::counter!("wisp_sessions_superseded_total").increment(1);
            }
        }
    }

    /// Closes every connection of `user` here: the account was deleted.
    pub(crate) fn close_account(&self, user: UserId) {
        if let Some(subscribers) = self.users().get(&user) {
            for subscriber in subscribers {
                let _ = subscriber.inbox.end(Ending::AccountDeleted);
            }
        }
    }

    /// Closes connection `id` of `user`, superseded by newer sessions of
    /// its account on another node.
    pub(crate) fn supersede(&self, user: UserId, id: u64) {
        if let Some(subscriber) = self
            .users()
            .get(&user)
            .and_then(|subscribers| subscribers.iter().find(|s| s.id == id))
            && subscriber.inbox.end(Ending::Superseded)
        {
            metrics::counter!("wisp_sessions_superseded_total").increment(1);
        }
    }

    /// Queues `frame` on every live connection of `user`; returns how many
    /// took it.
    pub(crate) fn push(&self, user: UserId, frame: &ServerFrame) -> usize {
        let users = self.users();
        let Some(subscribers) = users.get(&user) else {
            return 0;
        };
        let mut delivered = 0;
        for subscriber in subscribers {
            let inbox = &subscriber.inbox;
            if inbox
                .frames
                .push(OUTBOUND_QUEUE, || Box::new(frame.clone()))
            {
                delivered += 1;
            } else if inbox.end(Ending::TooSlow) {
                metrics::counter!("wisp_slow_connections_closed_total").increment(1);
            }
        }
        delivered
    }

    /// Tells every live connection of `user` to look in its mailbox. Wakes
    /// coalesce: many messages arriving at once cost one look each.
    pub(crate) fn wake(&self, user: UserId) {
        if let Some(subscribers) = self.users().get(&user) {
            for subscriber in subscribers {
                subscriber.inbox.wake.notify_one();
            }
        }
    }

    /// Hands a message just stored for `user` to each of its connections
    /// here; a connection whose hint queue is full is woken to fetch
    /// instead.
    pub(crate) fn offer(&self, user: UserId, message: &Arc<StoredMessage>) {
        if let Some(subscribers) = self.users().get(&user) {
            for subscriber in subscribers {
                let inbox = &subscriber.inbox;
                if !inbox.hints.push(DELIVERY_WINDOW, || Arc::clone(message)) {
                    inbox.wake.notify_one();
                }
            }
        }
    }

    /// Whether `user` has a live connection here.
    #[cfg(test)]
    pub(crate) fn is_online(&self, user: UserId) -> bool {
        self.users().contains_key(&user)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut users = self.hub.users();
        if let Some(subscribers) = users.get_mut(&self.user) {
            subscribers.retain(|s| s.id != self.id);
            if subscribers.is_empty() {
                users.remove(&self.user);
                if let Some(presence) = &self.hub.presence {
                    let _ = presence.send(Presence::Left(self.user));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_proto::frames::Pong;
    use wisp_proto::server_frame::Body;

    /// `future`'s output, or a failure (not a hang) after 5 s.
    async fn soon<F: std::future::Future>(future: F) -> F::Output {
        tokio::time::timeout(std::time::Duration::from_secs(5), future)
            .await
            .expect("within 5 s")
    }

    /// A connection of `user` on `hub`: its inbox, and its place in the hub.
    fn connect(hub: &Arc<Hub>, user: UserId) -> (Arc<Inbox>, Subscription) {
        let inbox = Arc::new(Inbox::default());
        let subscription = hub.subscribe(user, Arc::clone(&inbox));
        (inbox, subscription)
    }

    fn pong() -> ServerFrame {
        ServerFrame {
            request_id: 0,
            body: Some(Body::Pong(Pong {})),
        }
    }

    #[tokio::test]
    async fn pushes_reach_every_connection_and_stop_after_drop() {
        let hub = Arc::new(Hub::default());
        let user = UserId::from_ed25519(&[1; 32]);
        let (inbox1, s1) = connect(&hub, user);
        let (inbox2, s2) = connect(&hub, user);
        assert_eq!(hub.push(user, &pong()), 2);
        assert_eq!(*soon(inbox1.next_frame()).await, pong());
        assert_eq!(*soon(inbox2.next_frame()).await, pong());
        drop(s1);
        assert_eq!(hub.push(user, &pong()), 1);
        drop(s2);
        assert!(!hub.is_online(user));
        assert_eq!(hub.push(user, &pong()), 0);
    }

    /// A login waits for the bus to listen for its user: the first
    /// connection's wait ends when the bus says so, not before; another
    /// connection of the same user waits for the same answer, and not once
    /// it came; an unanswered wait ends at its limit.
    #[tokio::test]
    async fn a_first_connection_waits_until_the_bus_listens_for_its_user() {
        use std::time::Duration;

        let (presence_tx, mut presence) = mpsc::unbounded_channel();
        let hub = Arc::new(Hub::with_presence(presence_tx));
        let user = UserId::from_ed25519(&[3; 32]);
        let mut first = hub.subscribe(user, Arc::default());
        let Some(Presence::Arrived {
            user: arrived,
            listening,
        }) = presence.recv().await
        else {
            panic!("the bus is told of the arrival");
        };
        assert_eq!(arrived, user);
        // A second connection before the bus answered waits as well.
        let mut early = hub.subscribe(user, Arc::default());
        assert!(presence.try_recv().is_err(), "the bus is told once");
        {
            let mut wait = std::pin::pin!(early.listening(Duration::from_secs(60)));
            assert!((&mut wait).now_or_never().is_none(), "waits for the bus");
        }
        {
            let mut wait = std::pin::pin!(first.listening(Duration::from_secs(60)));
            assert!((&mut wait).now_or_never().is_none(), "waits for the bus");
            listening.send(()).unwrap();
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .expect("ends once the bus listens");
        }
        let mut second = hub.subscribe(user, Arc::default());
        assert!(presence.try_recv().is_err(), "the bus listens already");
        assert!(
            second
                .listening(Duration::from_secs(60))
                .now_or_never()
                .is_some()
        );

        let other = UserId::from_ed25519(&[4; 32]);
        let mut unanswered = hub.subscribe(other, Arc::default());
        let started = tokio::time::Instant::now();
        unanswered.listening(Duration::from_millis(50)).await;
        assert!(started.elapsed() >= Duration::from_millis(50));
    }

    /// Over the cap, the oldest connections are told to close, each once,
    /// and the newest stay.
    #[tokio::test]
    async fn the_oldest_sessions_beyond_the_cap_are_superseded() {
        let hub = Arc::new(Hub::default());
        let user = UserId::from_ed25519(&[5; 32]);
        let mut sessions = Vec::new();
        let mut inboxes = Vec::new();
        for _ in 0..4 {
            let (inbox, session) = connect(&hub, user);
            hub.cap_sessions(&session, 2);
            inboxes.push(inbox);
            sessions.push(session);
        }
        let ended = |inbox: &Inbox| inbox.ended().now_or_never();
        let endings: Vec<Option<Ending>> = inboxes.iter().map(|inbox| ended(inbox)).collect();
        let superseded = Some(Ending::Superseded);
        assert_eq!(endings, [superseded, superseded, None, None]);
        // One leaves: nobody else is closed for it.
        drop(sessions.remove(3));
        let (fifth, session) = connect(&hub, user);
        hub.cap_sessions(&session, 2);
        assert_eq!(ended(&fifth), None);
        assert_eq!(ended(&inboxes[2]), None);
        // A deleted account closes what is left, each with that reason;
        // one already told to close keeps its first reason.
        hub.close_account(user);
        assert_eq!(ended(&fifth), Some(Ending::AccountDeleted));
        assert_eq!(ended(&inboxes[2]), Some(Ending::AccountDeleted));
        assert_eq!(ended(&inboxes[0]), superseded);
    }

    #[tokio::test]
    async fn a_full_queue_kicks_the_connection_instead_of_dropping() {
        let hub = Arc::new(Hub::default());
        let user = UserId::from_ed25519(&[2; 32]);
        let (inbox, _s) = connect(&hub, user);
        for _ in 0..OUTBOUND_QUEUE {
            assert_eq!(hub.push(user, &pong()), 1);
        }
        assert!(!inbox.is_ending());
        assert_eq!(hub.push(user, &pong()), 0);
        assert_eq!(soon(inbox.ended()).await, Ending::TooSlow);
        // What was queued is still there, for the closing connection to
        // drop with it.
        assert_eq!(*soon(inbox.next_frame()).await, pong());
    }

    fn stored(id: u64) -> Arc<StoredMessage> {
        Arc::new(StoredMessage {
            id: wisp_proto::MessageId(id),
            sender: UserId::from_ed25519(&[7; 32]),
            ciphertext: vec![1],
            sent_at: wisp_proto::UnixMillis(0),
            expires_at: wisp_proto::UnixMillis(1),
        })
    }

    /// Hints come out in the order they were offered; one that does not
    /// fit (the window is full) is a wake-up instead, never a silent drop.
    #[tokio::test]
    async fn hints_that_do_not_fit_become_a_wake_up() {
        let hub = Arc::new(Hub::default());
        let user = UserId::from_ed25519(&[6; 32]);
        let (inbox, _s) = connect(&hub, user);
        let woken = |inbox: &Inbox| inbox.woken().now_or_never().is_some();
        for id in 1..=DELIVERY_WINDOW as u64 {
            hub.offer(user, &stored(id));
        }
        assert!(!woken(&inbox), "every hint fit");
        hub.offer(user, &stored(u64::MAX));
        assert!(
            woken(&inbox),
            "the hint that did not fit woke the connection"
        );
        for id in 1..=DELIVERY_WINDOW as u64 {
            assert_eq!(soon(inbox.next_hint()).await.id.0, id);
        }
        assert!(inbox.next_hint().now_or_never().is_none(), "nothing more");
    }

    /// A queue is waited on without losing what arrives meanwhile, and it
    /// gives its room back once a burst is over.
    #[tokio::test]
    async fn a_waiting_connection_gets_what_is_queued_and_idle_queues_hold_nothing() {
        let hub = Arc::new(Hub::default());
        let user = UserId::from_ed25519(&[8; 32]);
        let (inbox, _s) = connect(&hub, user);
        // Waiting (polled once, pending) before the hint arrives.
        let waiting = inbox.next_hint();
        tokio::pin!(waiting);
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        hub.offer(user, &stored(1));
        assert_eq!(soon(waiting).await.id.0, 1);

        for _ in 0..100 {
            hub.push(user, &pong());
        }
        assert!(lock(&inbox.frames.items).capacity() >= 100);
        for _ in 0..100 {
            soon(inbox.next_frame()).await;
        }
        assert_eq!(lock(&inbox.frames.items).capacity(), 0);
    }
}
