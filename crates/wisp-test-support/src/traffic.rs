//! Many users chatting with their friends across several nodes while
//! something bad happens (a node killed, a Redis primary killed), then an
//! account of every message: acknowledged to its sender means received by
//! its recipient, and stored once.
//!
//! Users speak the wire protocol through the SDK's `Client` (end-to-end
//! encryption is not what is under test here, and skipping it keeps 200
//! users cheap): each message's ciphertext is a unique label. A user whose
//! connection breaks logs in again on the next node that answers and goes
//! on; a send that failed is retried with the same client message id (as
//! the `Messenger` does), so a retry can never store a second copy.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use wisp_client::{Client, ClientError, ClientMsgId, Events, Identity, ServerEvent as Event};
use wisp_proto::UserId;

const HOUR: Duration = Duration::from_secs(3600);

/// The shape of the traffic.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Users, spread over the nodes round-robin.
    pub users: usize,
    /// Each user befriends the next `friends_ahead` users (in a ring), so
    /// each has twice that many friends.
    pub friends_ahead: usize,
    /// Messages each user sends to each friend.
    pub rounds: usize,
    /// The disruption runs once this many sends were acknowledged.
    pub disrupt_after: usize,
    /// The least time between two sends of one user, so the traffic
    /// still runs while the disruption lands (on a fast machine an
    /// unpaced outbox is acknowledged whole before a killed process is
    /// even noticed).
    pub pace: Duration,
    /// How long the whole run may take.
    pub deadline: Duration,
}

/// What happened to the messages.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Sends the server acknowledged.
    pub acknowledged: usize,
    /// Acknowledged messages never received.
    pub lost: Vec<String>,
    /// Messages received under more than one server id (stored twice).
    pub stored_twice: Vec<String>,
    /// Deliveries of an id already received (a delivery whose burn did
    /// not land before its connection broke; the SDK drops these by id).
    pub redelivered: usize,
    /// Reconnections users made.
    pub reconnects: usize,
    /// Sends that failed and were retried.
    pub retried_sends: usize,
    /// Sends acknowledged when the disruption had happened: fewer than
    /// all of them, or it hit no traffic.
    pub acknowledged_before_disruption: usize,
}

#[derive(Default)]
struct Ledger {
    /// label → server id it was acknowledged with.
    acknowledged: HashMap<String, u64>,
    /// label → server ids it arrived under.
    received: HashMap<String, HashSet<u64>>,
    redelivered: usize,
    reconnects: usize,
    retried_sends: usize,
}

struct User {
    identity: Identity,
    home: usize,
}

/// Connects and logs in on the first node, from `first`, that takes it.
async fn log_in(
    urls: &[String],
    first: usize,
    identity: &Identity,
    name: &str,
    deadline: Instant,
) -> (Client, Events) {
    let mut attempt = 0;
    loop {
        let url = &urls[(first + attempt) % urls.len()];
        attempt += 1;
        if let Ok((mut client, events)) = Client::connect(url).await
            && client.login(identity, name).await.is_ok()
        {
            return (client, events);
        }
        assert!(
            Instant::now() < deadline,
            "no node took a login before the deadline"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Registers a user on `url` and befriends as the plan says.
async fn register(url: &str) -> (Identity, String) {
    let identity = Identity::generate();
    let (client, _) = Client::connect(url).await.expect("connect");
    client.register(&identity).await.expect("register");
    (identity, client.server_name().to_owned())
}

/// Runs `plan` over the nodes at `urls`, calling `disrupt` once midway.
pub async fn run<F>(urls: Vec<String>, plan: Plan, disrupt: F) -> Outcome
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let deadline = Instant::now() + plan.deadline;
    let mut users = Vec::with_capacity(plan.users);
    let mut name = String::new();
    for i in 0..plan.users {
        let (identity, server_name) = register(&urls[i % urls.len()]).await;
        name = server_name;
        users.push(User {
            identity,
            home: i % urls.len(),
        });
    }
    let ids: Vec<UserId> = users.iter().map(|u| u.identity.user_id()).collect();
    // Friendships, each requested on the requester's node and accepted on
    // the other's.
    let mut clients = Vec::with_capacity(plan.users);
    for user in &users {
        clients.push(log_in(&urls, user.home, &user.identity, &name, deadline).await);
    }
    let mut friends: Vec<Vec<UserId>> = vec![Vec::new(); plan.users];
    for i in 0..plan.users {
        for k in 1..=plan.friends_ahead {
            let j = (i + k) % plan.users;
            clients[i].0.request_friend(ids[j]).await.expect("request");
            clients[j].0.accept_friend(ids[i]).await.expect("accept");
            friends[i].push(ids[j]);
            friends[j].push(ids[i]);
        }
    }

    let ledger = Arc::new(std::sync::Mutex::new(Ledger::default()));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let senders_done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let urls = Arc::new(urls);
    let mut tasks = tokio::task::JoinSet::new();
    for (i, ((user, (client, events)), friends)) in
        users.into_iter().zip(clients).zip(friends).enumerate()
    {
        let mut outbox = VecDeque::new();
        for round in 0..plan.rounds {
            for to in &friends {
                outbox.push_back((
                    *to,
                    ClientMsgId(rand::random::<[u8; 16]>()),
                    format!("{i}>{to}#{round}"),
                ));
            }
        }
        tasks.spawn(chat(
            Chat {
                urls: Arc::clone(&urls),
                name: name.clone(),
                user,
                ledger: Arc::clone(&ledger),
                acknowledged: Arc::clone(&acknowledged),
                senders_done: Arc::clone(&senders_done),
                stop: stop.clone(),
                deadline,
                pace: plan.pace,
            },
            client,
            events,
            outbox,
        ));
    }

    // The disruption, once enough traffic is acknowledged.
    let total = plan.users * plan.friends_ahead * 2 * plan.rounds;
    while acknowledged.load(Ordering::SeqCst) < plan.disrupt_after.min(total) {
        assert!(
            Instant::now() < deadline,
            "traffic stalled before the disruption"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    disrupt.await;
    let acknowledged_before_disruption = acknowledged.load(Ordering::SeqCst);

    // Every sender finishes; then wait until everything acknowledged has
    // arrived (or the deadline).
    while senders_done.load(Ordering::SeqCst) < plan.users && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        senders_done.load(Ordering::SeqCst),
        plan.users,
        "every sender got all its messages acknowledged before the deadline"
    );
    loop {
        let missing = {
            let ledger = ledger.lock().unwrap();
            ledger
                .acknowledged
                .keys()
                .filter(|label| !ledger.received.contains_key(*label))
                .count()
        };
        if missing == 0 || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    while tasks.join_next().await.is_some() {}

    let ledger = ledger.lock().unwrap();
    let mut outcome = Outcome {
        acknowledged: ledger.acknowledged.len(),
        redelivered: ledger.redelivered,
        reconnects: ledger.reconnects,
        retried_sends: ledger.retried_sends,
        acknowledged_before_disruption,
        ..Outcome::default()
    };
    for label in ledger.acknowledged.keys() {
        if !ledger.received.contains_key(label) {
            outcome.lost.push(label.clone());
        }
    }
    for (label, ids) in &ledger.received {
        if ids.len() > 1 {
            outcome.stored_twice.push(label.clone());
        }
    }
    outcome
}

struct Chat {
    urls: Arc<Vec<String>>,
    name: String,
    user: User,
    ledger: Arc<std::sync::Mutex<Ledger>>,
    acknowledged: Arc<AtomicUsize>,
    senders_done: Arc<AtomicUsize>,
    stop: CancellationToken,
    deadline: Instant,
    pace: Duration,
}

/// One user: sends its outbox, receives and burns what arrives, comes back
/// on another node when its connection breaks.
async fn chat(
    chat: Chat,
    mut client: Client,
    mut events: Events,
    mut outbox: VecDeque<(UserId, ClientMsgId, String)>,
) {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut next_node = chat.user.home + 1;
    let mut done = false;
    let mut next_send = tokio::time::Instant::now();
    loop {
        if outbox.is_empty() && !done {
            done = true;
            chat.senders_done.fetch_add(1, Ordering::SeqCst);
        }
        let broken = tokio::select! {
            biased;
            () = chat.stop.cancelled() => return,
            event = events.next() => match event {
                Some(Event::Delivery(delivery)) => {
                    let label = String::from_utf8_lossy(&delivery.ciphertext).into_owned();
                    {
                        let mut ledger = chat.ledger.lock().unwrap();
                        if !seen.insert(delivery.message_id.0) {
                            ledger.redelivered += 1;
                        }
                        ledger.received.entry(label).or_default().insert(delivery.message_id.0);
                    }
                    // A burn lost with its connection is redelivered and
                    // recognised by id.
                    client.ack(vec![delivery.message_id]).await.is_err()
                }
                Some(Event::Disconnected { .. }) | None => true,
                Some(_) => false,
            },
            () = tokio::time::sleep_until(next_send), if !outbox.is_empty() => {
                let (to, client_msg_id, label) = outbox.front().cloned().unwrap();
                match client
                    .send_ciphertext(to, client_msg_id, label.clone().into_bytes(), HOUR)
                    .await
                {
                    Ok(ack) => {
                        outbox.pop_front();
                        next_send = tokio::time::Instant::now() + chat.pace;
                        let mut ledger = chat.ledger.lock().unwrap();
                        let previous = ledger.acknowledged.insert(label, ack.message_id.0);
                        assert!(previous.is_none(), "a label acknowledged twice");
                        chat.acknowledged.fetch_add(1, Ordering::SeqCst);
                        false
                    }
                    Err(ClientError::Closed(_) | ClientError::Timeout(_)) => {
                        chat.ledger.lock().unwrap().retried_sends += 1;
                        true
                    }
                    Err(error) => {
                        // The store could not make it safe (a failover in
                        // progress): not acknowledged; retry the same id.
                        assert!(
                            Instant::now() < chat.deadline,
                            "sends still failing at the deadline: {error}"
                        );
                        chat.ledger.lock().unwrap().retried_sends += 1;
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        false
                    }
                }
            }
        };
        if broken {
            chat.ledger.lock().unwrap().reconnects += 1;
            (client, events) = log_in(
                &chat.urls,
                next_node,
                &chat.user.identity,
                &chat.name,
                chat.deadline,
            )
            .await;
            next_node += 1;
        }
    }
}
