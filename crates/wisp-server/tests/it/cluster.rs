//! Several stateless nodes on one PostgreSQL and one Redis (the real local
//! ones; each test in a schema and key prefix of its own): users on
//! different nodes befriend and message each other, pushed across nodes,
//! and a removal on one node takes effect on another at once.

use std::time::Duration;

use wisp_client::Event;
use wisp_proto::ErrorCode;
use wisp_server::Server;
use wisp_test_support::{ClusterBackend, Device, befriend_devices, code_of, device_at};

const HOUR: Duration = Duration::from_secs(3600);

/// Nodes sharing one test's PostgreSQL schema and Redis prefix.
struct Cluster {
    backend: ClusterBackend,
    nodes: Vec<Server>,
}

impl Cluster {
    async fn start(nodes: usize) -> Option<Self> {
        let backend = ClusterBackend::create().await?;
        let mut cluster = Self {
            backend,
            nodes: Vec::new(),
        };
        for _ in 0..nodes {
            let node = cluster.backend.start_node().await;
            cluster.nodes.push(node);
        }
        Some(cluster)
    }

    fn url(&self, node: usize) -> String {
        self.nodes[node].ws_url()
    }

    async fn stop(self) {
        for node in self.nodes {
            node.shutdown().await;
        }
    }
}

/// Befriends, lets `bob` send once (so his node caches the friendship),
/// has `alice` remove him, and checks his next send is refused.
async fn removal_refuses_the_next_send(alice: &Device, bob: &mut Device) {
    befriend_devices(alice, bob).await;
    bob.messenger
        .send_text(alice.id(), "hello", HOUR, None)
        .await
        .unwrap();
    alice
        .messenger
        .client()
        .remove_friend(bob.id())
        .await
        .unwrap();
    let refused = bob
        .messenger
        .send_text(alice.id(), "still there?", HOUR, None)
        .await;
    assert_eq!(code_of(refused), ErrorCode::NotFriends);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_on_different_nodes_talk_pushed_across_nodes() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let mut alice = device_at(&cluster.url(0)).await;
    let mut bob = device_at(&cluster.url(1)).await;
    // Both online and idle: whatever arrives now is pushed, not fetched at
    // login.
    assert!(alice.read_all().await.is_empty());
    assert!(bob.read_all().await.is_empty());

    alice
        .messenger
        .client()
        .request_friend(bob.id())
        .await
        .unwrap();
    loop {
        if let Event::FriendRequest { from } = bob.event().await {
            assert_eq!(from, alice.id());
            break;
        }
    }
    bob.messenger
        .client()
        .accept_friend(alice.id())
        .await
        .unwrap();

    for n in 0..20 {
        alice
            .messenger
            .send_text(bob.id(), &format!("across {n}"), HOUR, None)
            .await
            .unwrap();
        let received = tokio::time::timeout(Duration::from_secs(5), bob.next_text())
            .await
            .expect("pushed to the other node within 5 s");
        assert_eq!(received, format!("across {n}"));
    }
    bob.messenger
        .send_text(alice.id(), "and back", HOUR, None)
        .await
        .unwrap();
    assert_eq!(alice.next_text().await, "and back");
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_on_one_node_blocks_a_send_through_another_at_once() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let alice = device_at(&cluster.url(0)).await;
    let mut bob = device_at(&cluster.url(1)).await;
    removal_refuses_the_next_send(&alice, &mut bob).await;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reconnecting_to_another_node_gets_what_is_pending() {
    let Some(cluster) = Cluster::start(3).await else {
        return;
    };
    let mut alice = device_at(&cluster.url(0)).await;
    let bob = device_at(&cluster.url(1)).await;
    befriend_devices(&alice, &bob).await;
    let b = bob.id();
    let home = bob.home;
    drop(bob.messenger);
    for text in ["one", "two", "three"] {
        alice
            .messenger
            .send_text(b, text, HOUR, None)
            .await
            .unwrap();
    }
    // Bob comes back through the third node.
    let mut bob = wisp_test_support::reopen_at(&cluster.url(2), home).await;
    assert_eq!(bob.read_all().await, vec!["one", "two", "three"]);
    let _ = &mut alice;
    cluster.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_again_after_a_removal_talk_at_once_across_nodes() {
    let Some(cluster) = Cluster::start(2).await else {
        return;
    };
    let mut alice = device_at(&cluster.url(0)).await;
    let bob = device_at(&cluster.url(1)).await;
    befriend_devices(&alice, &bob).await;
    let mut bob = bob;
    bob.messenger
        .send_text(alice.id(), "one", HOUR, None)
        .await
        .unwrap();
    assert_eq!(alice.next_text().await, "one");
    alice
        .messenger
        .client()
        .remove_friend(bob.id())
        .await
        .unwrap();
    let refused = bob
        .messenger
        .send_text(alice.id(), "refused", HOUR, None)
        .await;
    assert_eq!(code_of(refused), ErrorCode::NotFriends);
    // Friends again: node B forgets its cached "no", and the conversation
    // the removal closed is open again.
    alice
        .messenger
        .client()
        .request_friend(bob.id())
        .await
        .unwrap();
    bob.messenger
        .client()
        .accept_friend(alice.id())
        .await
        .unwrap();
    bob.messenger
        .send_text(alice.id(), "two", HOUR, None)
        .await
        .unwrap();
    assert_eq!(alice.next_text().await, "two");
    cluster.stop().await;
}

/// A node that never hears of a removal made on another (no notification
/// bus at all, so its cached "friends" stays stale) still cannot store a
/// message across it: the removal closed the conversation in Redis.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_cache_cannot_slip_a_message_past_a_removal() {
    let Some(cluster) = Cluster::start(1).await else {
        return;
    };
    // Same stores, but no Redis URL: no bus, no invalidations.
    let deaf = cluster
        .backend
        .start_node_with(|config| config.redis_url = None)
        .await;
    let alice = device_at(&cluster.url(0)).await;
    let mut bob = device_at(&deaf.ws_url()).await;
    removal_refuses_the_next_send(&alice, &mut bob).await;
    assert_eq!(deaf.stored_message_count().await.unwrap(), 0);
    deaf.shutdown().await;
    cluster.stop().await;
}

/// A registered identity logged in on `url`.
async fn logged_in(url: &str, identity: &wisp_client::Identity) -> wisp_client::Client {
    let (mut client, _events) = wisp_client::Client::connect(url).await.unwrap();
    let name = client.server_name().to_owned();
    client.login(identity, &name).await.unwrap();
    client
}

/// Sends message `n` to `to`.
async fn send(
    client: &wisp_client::Client,
    to: wisp_proto::UserId,
    n: u32,
) -> Result<wisp_client::Accepted, wisp_client::ClientError> {
    client
        .send_ciphertext(
            to,
            wisp_client::ClientMsgId(rand::random()),
            format!("message {n}").into_bytes(),
            HOUR,
        )
        .await
}

/// Every per-user and per-address limit is one allowance for the whole
/// deployment: one user logged in on two nodes, and one address
/// registering through both, get what one node would give them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_hold_across_nodes() {
    use wisp_client::{Client, Identity};
    const SENDS: u32 = 6;
    const REGISTRATIONS: u32 = 6;
    let Some(backend) = ClusterBackend::create().await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(
            backend
                .start_node_with(|c| {
                    c.send_limit = SENDS;
                    c.register_limit = REGISTRATIONS;
                })
                .await,
        );
    }
    let urls: Vec<String> = nodes.iter().map(Server::ws_url).collect();

    // Registrations from one address, alternating between the nodes.
    let mut identities = Vec::new();
    for i in 0..REGISTRATIONS as usize {
        let identity = Identity::generate();
        let (client, _) = Client::connect(&urls[i % 2]).await.unwrap();
        client.register(&identity).await.unwrap();
        identities.push(identity);
    }
    for url in &urls {
        let (client, _) = Client::connect(url).await.unwrap();
        assert_eq!(
            code_of(client.register(&Identity::generate()).await),
            ErrorCode::RateLimited,
            "a registration past the shared allowance on {url}"
        );
    }

    // One user, logged in on both nodes, sending to a friend.
    let (alice, bob) = (&identities[0], &identities[1]);
    let on_first = logged_in(&urls[0], alice).await;
    let on_second = logged_in(&urls[1], alice).await;
    let bob_client = logged_in(&urls[1], bob).await;
    on_first.request_friend(bob.user_id()).await.unwrap();
    bob_client.accept_friend(alice.user_id()).await.unwrap();
    for n in 0..SENDS {
        let client = if n % 2 == 0 { &on_first } else { &on_second };
        send(client, bob.user_id(), n).await.unwrap();
    }
    for client in [&on_first, &on_second] {
        assert_eq!(
            code_of(send(client, bob.user_id(), SENDS).await),
            ErrorCode::RateLimited,
            "a send past the shared allowance"
        );
    }
    for node in nodes {
        node.shutdown().await;
    }
}
