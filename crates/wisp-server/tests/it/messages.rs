//! The message lifecycle end to end, against a real server on a real SQLite
//! file with real SDK devices: encrypt, store, deliver, burn; exactly once,
//! in order; expiry; refusals; retries; renewal after a failure.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use wisp_client::{ClientMsgId, Event, ServerEvent};
use wisp_proto::ErrorCode;
use wisp_proto::limits::MAX_CIPHERTEXT_BYTES;
use wisp_proto::{MessageId, UserId};
use wisp_server::clock::{Clock, ManualClock, SystemClock};
use wisp_server::store::{
    Accepted, MailboxStore, NewMessage, PutError, StoreError, StoredMessage, Stores,
};
use wisp_test_support::{
    Backend, Device, TestServer, befriend, befriend_devices, code_of, friends_one_offline, http_get,
};

const HOUR: Duration = Duration::from_secs(3600);

/// A server on `backend` (None: its services are missing, skipped) and two
/// devices on it, Alice and Bob, befriended.
async fn two_friends(backend: Backend) -> Option<(TestServer, Device, Device)> {
    let server = TestServer::start_on(backend, |_| {}, Arc::new(SystemClock)).await?;
    let alice = server.device().await;
    let bob = server.device().await;
    befriend_devices(&alice, &bob).await;
    Some((server, alice, bob))
}

/// Receives `n` messages, reading each, and returns their texts in order.
async fn receive(device: &mut Device, n: usize) -> Vec<String> {
    let mut texts = Vec::with_capacity(n);
    while texts.len() < n {
        if let Event::Message(message) = device.event().await {
            texts.push(message.text.to_string());
        }
    }
    // Shown: let the device persist and acknowledge (burn) them.
    device.messenger.confirm().await.unwrap();
    texts
}

/// Up to `n` raw deliveries: waits up to `first_wait` for the first, and
/// stops after 500 ms with nothing new.
async fn deliveries(
    events: &mut wisp_client::Events,
    n: usize,
    first_wait: Duration,
) -> Vec<MessageId> {
    let mut ids = Vec::new();
    let mut patience = first_wait;
    while ids.len() < n {
        match tokio::time::timeout(patience, events.next()).await {
            Ok(Some(ServerEvent::Delivery(d))) => {
                ids.push(d.message_id);
                patience = Duration::from_millis(500);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    ids
}

/// Waits (at most 10 s) until the server stores `n` messages.
async fn stored_becomes(server: &TestServer, n: u64) {
    for _ in 0..200 {
        if server.stored().await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the server still stores {} messages, not {n}",
        server.stored().await
    );
}

async fn a_thousand_messages_arrive_once_each_in_order_and_nothing_stays(backend: Backend) {
    let Some((server, mut alice, mut bob)) = two_friends(backend).await else {
        return;
    };
    let b = bob.id();

    let receiving = tokio::spawn(async move {
        let texts = receive(&mut bob, 1000).await;
        (bob, texts)
    });
    for n in 0..1000 {
        alice
            .messenger
            .send_text(b, &format!("message {n}"), HOUR, None)
            .await
            .unwrap();
    }
    let (mut bob, texts) = tokio::time::timeout(Duration::from_secs(120), receiving)
        .await
        .expect("all delivered within 2 minutes")
        .unwrap();
    let expected: Vec<String> = (0..1000).map(|n| format!("message {n}")).collect();
    assert_eq!(texts, expected, "each exactly once, in order");
    stored_becomes(&server, 0).await;
    // Nothing more comes: a ping round trip after any stray delivery.
    bob.messenger.client().ping().await.unwrap();
    let extra = tokio::time::timeout(Duration::from_millis(300), bob.messenger.next_event()).await;
    assert!(
        !matches!(extra, Ok(Some(Event::Message(_)))),
        "no duplicate: {extra:?}"
    );
}

async fn an_offline_recipient_gets_its_messages_at_login_oldest_first(backend: Backend) {
    let Some(server) = TestServer::start_on(backend, |_| {}, Arc::new(SystemClock)).await else {
        return;
    };
    let (mut alice, b, bob_home) = friends_one_offline(&server.url()).await;

    for text in ["one", "two", "three"] {
        alice
            .messenger
            .send_text(b, text, HOUR, None)
            .await
            .unwrap();
    }
    assert_eq!(server.stored().await, 3);

    let mut bob = server.reopen(bob_home).await;
    assert_eq!(bob.read_all().await, vec!["one", "two", "three"]);
    stored_becomes(&server, 3).await; // the three read receipts, for Alice
    assert_eq!(
        alice_reads(&mut alice, 3).await,
        3,
        "Alice's device learns each message was read"
    );
    stored_becomes(&server, 0).await;
}

/// Counts read receipts until `n` arrived.
async fn alice_reads(alice: &mut Device, n: usize) -> usize {
    let mut reads = 0;
    while reads < n {
        if let Event::Read { .. } = alice.event().await {
            reads += 1;
        }
    }
    alice.messenger.confirm().await.unwrap();
    reads
}

async fn an_expired_message_is_never_delivered_and_the_reaper_removes_it(backend: Backend) {
    let clock = Arc::new(ManualClock::starting_now());
    let Some(server) = TestServer::start_on(backend, |_| {}, clock.clone() as Arc<dyn Clock>).await
    else {
        return;
    };
    let (mut alice, b, bob_home) = friends_one_offline(&server.url()).await;

    alice
        .messenger
        .send_text(b, "short-lived", Duration::from_secs(4), None)
        .await
        .unwrap();
    alice
        .messenger
        .send_text(b, "long-lived", HOUR, None)
        .await
        .unwrap();
    // Redis expires by its own (real) clock: 4 s leaves a slow machine time
    // to count both.
    assert_eq!(server.stored().await, 2);

    // Bob comes back 5 s later (server time). Looking at the raw frames
    // (no client-side filtering): only the long-lived message is delivered.
    clock.advance(Duration::from_secs(5));
    let (raw, mut events) = server.raw_login(&bob_home).await;
    let mut delivered = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
        {
            ServerEvent::Delivery(d) => delivered.push(d),
            ServerEvent::MailboxDrained => break,
            _ => {}
        }
    }
    assert_eq!(delivered.len(), 1, "the expired message is not delivered");
    assert!(delivered[0].expires_unix_ms > clock.now_ms());
    drop((raw, events));
    let mut bob = server.reopen(bob_home).await;
    assert_eq!(bob.read_all().await, vec!["long-lived"]);
    // The reaper (every 500 ms) has removed the expired one; the read one
    // burned; the read receipt for Alice is all that is left.
    stored_becomes(&server, 1).await;
}

async fn the_sender_learns_a_message_expired_unread(backend: Backend) {
    let Some((_server, mut alice, bob)) = two_friends(backend).await else {
        return;
    };
    let sent = alice
        .messenger
        .send_text(bob.id(), "nobody reads this", Duration::from_secs(1), None)
        .await
        .unwrap();
    loop {
        match alice.event().await {
            Event::ExpiredUnread { to, client_msg_id } => {
                assert_eq!((to, client_msg_id), (bob.id(), sent.client_msg_id));
                break;
            }
            Event::Read { .. } => panic!("nobody read it"),
            _ => {}
        }
    }
}

async fn refused_messages_get_their_typed_error_and_store_nothing(backend: Backend) {
    let Some(server) = TestServer::start_on(backend, |_| {}, Arc::new(SystemClock)).await else {
        return;
    };
    let mut alice = server.device().await;
    let mut bob = server.device().await;
    let stranger = server.device().await;
    befriend_devices(&alice, &bob).await;
    let client = alice.messenger.client();

    // To a stranger.
    let result = client
        .send_ciphertext(stranger.id(), ClientMsgId([1; 16]), vec![1, 2, 3], HOUR)
        .await;
    assert_eq!(code_of(result), ErrorCode::NotFriends);
    // Keys are friends-only too.
    assert_eq!(
        code_of(client.claim_keys(stranger.id()).await),
        ErrorCode::NotFriends
    );
    // A TTL over an hour.
    let result = client
        .send_ciphertext(
            bob.id(),
            ClientMsgId([2; 16]),
            vec![1, 2, 3],
            Duration::from_secs(3601),
        )
        .await;
    assert_eq!(code_of(result), ErrorCode::TtlTooLong);
    // Over the size limit.
    let result = client
        .send_ciphertext(
            bob.id(),
            ClientMsgId([3; 16]),
            vec![0; MAX_CIPHERTEXT_BYTES + 1],
            HOUR,
        )
        .await;
    assert_eq!(code_of(result), ErrorCode::MessageTooLarge);
    // The SDK refuses a long TTL itself, before anything is encrypted.
    let result = alice
        .messenger
        .send_text(bob.id(), "x", Duration::from_secs(4000), None)
        .await;
    assert_eq!(code_of(result), ErrorCode::TtlTooLong);
    assert_eq!(server.stored().await, 0);

    // To a removed friend: refused, and what was waiting is dropped.
    bob.messenger.client().ping().await.unwrap();
    let b = bob.id();
    let bob_home = bob.home;
    drop(bob.messenger);
    alice
        .messenger
        .send_text(b, "before", HOUR, None)
        .await
        .unwrap();
    assert_eq!(server.stored().await, 1);
    alice.messenger.client().remove_friend(b).await.unwrap();
    assert_eq!(
        server.stored().await,
        0,
        "removal drops undelivered messages"
    );
    let result = alice.messenger.send_text(b, "after", HOUR, None).await;
    assert_eq!(code_of(result), ErrorCode::NotFriends);
    assert_eq!(server.stored().await, 0);
    bob = server.reopen(bob_home).await;
    assert!(bob.read_all().await.is_empty());
}

async fn a_retried_client_message_id_is_stored_and_delivered_once(backend: Backend) {
    let Some((server, alice, bob)) = two_friends(backend).await else {
        return;
    };
    let b = bob.id();
    drop(bob.messenger);

    // The sender's first attempt is stored, then its connection drops
    // before it sees the acknowledgement; it retries on a new connection.
    let first = alice
        .messenger
        .client()
        .send_ciphertext(b, ClientMsgId([7; 16]), b"ciphertext".to_vec(), HOUR)
        .await
        .unwrap();
    let again = server.login_same(&alice).await;
    let retry = again
        .send_ciphertext(b, ClientMsgId([7; 16]), b"ciphertext".to_vec(), HOUR)
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(retry.duplicate);
    assert_eq!(retry.message_id, first.message_id);
    assert_eq!(server.stored().await, 1);

    // The recipient sees exactly one delivery.
    let (client, mut events) = server.raw_login(&bob.home).await;
    let mut deliveries = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .unwrap()
            .unwrap()
        {
            ServerEvent::Delivery(d) => {
                deliveries += 1;
                client.ack(vec![d.message_id]).await.unwrap();
            }
            ServerEvent::MailboxDrained => break,
            _ => {}
        }
    }
    assert_eq!(deliveries, 1);
    assert_eq!(server.stored().await, 0);
    // Even after the burn, a late retry is recognised, not stored anew.
    let late = again
        .send_ciphertext(b, ClientMsgId([7; 16]), b"ciphertext".to_vec(), HOUR)
        .await
        .unwrap();
    assert!(late.duplicate);
    assert_eq!(server.stored().await, 0);
}

async fn an_undecryptable_message_is_reported_and_the_session_recovers(backend: Backend) {
    let Some((server, mut alice, bob)) = two_friends(backend).await else {
        return;
    };
    let (a, b) = (alice.id(), bob.id());
    // A copy of Bob's key store from before any session: what a restore
    // from an old backup brings back.
    let store_file = wisp_client::KeyStore::path_in(bob.home.path());
    let backup = std::fs::read(&store_file).unwrap();
    let mut bob = bob;

    alice
        .messenger
        .send_text(b, "first", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut bob, 1).await, vec!["first"]);
    bob.messenger
        .send_text(a, "got it", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut alice, 1).await, vec!["got it"]);

    // Bob's device loses its session state.
    let home = bob.home;
    drop(bob.messenger);
    std::fs::write(&store_file, &backup).unwrap();
    let mut bob = server.reopen(home).await;

    // Alice's next message rides the old session: Bob cannot read it, and
    // is told so rather than left in silence.
    alice
        .messenger
        .send_text(b, "lost", HOUR, None)
        .await
        .unwrap();
    loop {
        match bob.event().await {
            Event::Undecryptable { from, .. } => {
                assert_eq!(from, a);
                break;
            }
            Event::Message(m) => panic!("unexpected message {m:?}"),
            _ => {}
        }
    }
    // Bob's device set up a fresh session and told Alice's with a renewal,
    // which shows no event: it has been taken in once it waits to be
    // confirmed. From then on her messages get through again, and his.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while alice.messenger.unconfirmed_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Alice's device never took in Bob's session renewal"
        );
        let event = tokio::time::timeout(Duration::from_millis(50), alice.messenger.next_event());
        if let Ok(event) = event.await {
            assert!(!matches!(event, Some(Event::Message(_))), "{event:?}");
        }
    }
    alice
        .messenger
        .send_text(b, "after renewal", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut bob, 1).await, vec!["after renewal"]);
    bob.messenger
        .send_text(a, "reply", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut alice, 1).await, vec!["reply"]);
}

async fn a_flooded_mailbox_refuses_more_and_delivers_in_windows(backend: Backend) {
    let Some(server) = TestServer::start_on(backend, |_| {}, Arc::new(SystemClock)).await else {
        return;
    };
    let (alice, b, bob_home) = friends_one_offline(&server.url()).await;
    let client = alice.messenger.client();
    // Raw ciphertexts: this is about the server's limits, not encryption.
    for n in 0..wisp_proto::limits::MAX_PENDING_PER_CONVERSATION {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&n.to_be_bytes());
        client
            .send_ciphertext(b, ClientMsgId(id), vec![1; 32], HOUR)
            .await
            .unwrap();
    }
    let full = client
        .send_ciphertext(b, ClientMsgId([0xff; 16]), vec![1; 32], HOUR)
        .await;
    assert_eq!(code_of(full), ErrorCode::MailboxFull);

    // Bob is handed a window's worth, and no more until he acknowledges.
    let (raw, mut events) = server.raw_login(&bob_home).await;
    let window = wisp_proto::limits::DELIVERY_WINDOW;
    let (soon, quiet) = (Duration::from_secs(10), Duration::from_millis(500));
    let delivered = deliveries(&mut events, window, soon).await;
    assert_eq!(delivered.len(), window);
    assert!(
        deliveries(&mut events, 1, quiet).await.is_empty(),
        "the window is full"
    );
    raw.ack(delivered[..10].to_vec()).await.unwrap();
    assert_eq!(
        deliveries(&mut events, 10, soon).await.len(),
        10,
        "ten acknowledged, ten more delivered"
    );
    assert!(
        deliveries(&mut events, 1, quiet).await.is_empty(),
        "and not one more"
    );
}

/// One sender cannot pin more than `--max-outbox-bytes` of unread
/// ciphertext, whatever the per-conversation count allows; what its friend
/// reads makes room again.
async fn an_outbox_past_its_bytes_is_refused_until_read(backend: Backend) {
    const CAP: u64 = 4 * MAX_CIPHERTEXT_BYTES as u64;
    let configure = |config: &mut wisp_server::config::Config| config.max_outbox_bytes = CAP;
    let Some(server) = TestServer::start_on(backend, configure, Arc::new(SystemClock)).await else {
        return;
    };
    let (alice, b, bob_home) = friends_one_offline(&server.url()).await;
    let client = alice.messenger.client();
    let send = |n: u8| {
        client.send_ciphertext(b, ClientMsgId([n; 16]), vec![1; MAX_CIPHERTEXT_BYTES], HOUR)
    };
    for n in 0..4 {
        send(n).await.unwrap();
    }
    let full = send(4).await;
    let why = full
        .as_ref()
        .map_or_else(ToString::to_string, |_| String::new());
    assert_eq!(code_of(full), ErrorCode::MailboxFull);
    assert!(why.contains("wait unread"), "{why}");
    // A retry of a stored message is still answered.
    send(3).await.unwrap();
    // Bob reads (acknowledges) one: room for one more, not two.
    let (raw, mut events) = server.raw_login(&bob_home).await;
    let delivered = deliveries(&mut events, 4, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 4);
    raw.ack(delivered[..1].to_vec()).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while send(4).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burn made no room"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code_of(send(5).await), ErrorCode::MailboxFull);
}

async fn a_reinstalled_friend_is_a_new_identity_and_can_talk_again(backend: Backend) {
    let Some((server, mut alice, bob)) = two_friends(backend).await else {
        return;
    };
    alice
        .messenger
        .send_text(bob.id(), "to the old phone", HOUR, None)
        .await
        .unwrap();
    // Bob reinstalls: everything local is gone, he is a new identity.
    let old_bob = bob.id();
    drop(bob);
    let mut new_bob = server.device().await;
    assert_ne!(new_bob.id(), old_bob);
    befriend_devices(&new_bob, &alice).await;
    alice
        .messenger
        .client()
        .remove_friend(old_bob)
        .await
        .unwrap();
    assert_eq!(
        server.stored().await,
        0,
        "the old identity's mail is dropped"
    );
    alice
        .messenger
        .send_text(new_bob.id(), "hello again", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut new_bob, 1).await, vec!["hello again"]);
    new_bob
        .messenger
        .send_text(alice.id(), "hi", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut alice, 1).await, vec!["hi"]);
}

/// The real SQLite mailbox, except that acknowledgements get lost on the
/// way: every message stays stored and comes again at the next login.
struct LostAcks(wisp_server::store::sqlite::SqliteStore);

#[async_trait::async_trait]
impl MailboxStore for LostAcks {
    async fn put(
        &self,
        m: NewMessage<'_>,
        quota: &wisp_server::store::Quota,
    ) -> Result<Accepted, PutError> {
        self.0.put(m, quota).await
    }
    async fn fetch(
        &self,
        r: UserId,
        after: MessageId,
        now: wisp_proto::UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        self.0.fetch(r, after, now, limit).await
    }
    async fn burn(&self, _: UserId, _: &[MessageId]) -> Result<u64, StoreError> {
        Ok(0)
    }
    async fn purge_expired(
        &self,
        now: wisp_proto::UnixMillis,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.0.purge_expired(now, limit).await
    }
    async fn drop_conversation(&self, a: UserId, b: UserId) -> Result<u64, StoreError> {
        self.0.drop_conversation(a, b).await
    }
    async fn erase_user(&self, user: UserId) -> Result<u64, StoreError> {
        self.0.erase_user(user).await
    }
    async fn stored_count(&self) -> Result<u64, StoreError> {
        self.0.stored_count().await
    }
    async fn pending_between(
        &self,
        s: UserId,
        r: UserId,
        now: wisp_proto::UnixMillis,
    ) -> Result<u64, StoreError> {
        self.0.pending_between(s, r, now).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_after_a_lost_acknowledgement_is_not_shown_twice() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = wisp_server::store::sqlite::SqliteStore::open(dir.path())
        .await
        .unwrap();
    let stores = Stores {
        accounts: Arc::new(sqlite.clone()),
        friends: Arc::new(sqlite.clone()),
        prekeys: Arc::new(sqlite.clone()),
        mailbox: Arc::new(LostAcks(sqlite)),
        limits: None,
    };
    let server = TestServer::start_over(stores, dir).await;
    let (mut alice, b, home) = friends_one_offline(&server.url()).await;
    alice
        .messenger
        .send_text(b, "once", HOUR, None)
        .await
        .unwrap();

    let mut bob = server.reopen(home).await;
    assert_eq!(bob.read_all().await, vec!["once"]);
    assert!(server.stored().await >= 1, "the ack was lost");
    // Bob's device restarts; the server delivers the message again.
    let home = bob.home;
    drop(bob.messenger);
    let mut bob = server.reopen(home).await;
    loop {
        match bob.event().await {
            Event::MailboxDrained => break,
            Event::Message(_) => panic!("shown twice"),
            Event::Undecryptable { .. } => panic!("a handled message reported as undecryptable"),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_messenger_reconnects_by_itself_after_the_server_restarts() {
    let first = TestServer::start().await;
    let mut alice = first.device().await;
    let mut bob = first.device().await;
    befriend_devices(&alice, &bob).await;
    assert!(bob.read_all().await.is_empty());

    // Shut down; the same server comes back on the same address and data.
    let stopped = first.stop().await;
    loop {
        if let Event::Disconnected { .. } = bob.event().await {
            break;
        }
    }
    let second = stopped.start_again().await;
    // Bob's next call reconnects, backing off until the server is there.
    match tokio::time::timeout(Duration::from_secs(30), bob.messenger.next_event()).await {
        Ok(Some(Event::Reconnected { attempts })) => assert!(attempts >= 1),
        other => panic!("expected a reconnect, got {other:?}"),
    }
    // Alice's messenger, told of the drop too, reconnects as it sends.
    while !matches!(alice.event().await, Event::Disconnected { .. }) {}
    alice
        .messenger
        .send_text(bob.id(), "after the restart", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut bob, 1).await, vec!["after the restart"]);
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lifecycle_is_counted_in_metrics() {
    let server = TestServer::start().await;
    let mut alice = server.device().await;
    let mut bob = server.device().await;
    befriend_devices(&alice, &bob).await;
    alice
        .messenger
        .send_text(bob.id(), "counted", HOUR, None)
        .await
        .unwrap();
    assert_eq!(receive(&mut bob, 1).await, vec!["counted"]);
    let refused = alice
        .messenger
        .client()
        .send_ciphertext(
            bob.id(),
            ClientMsgId([4; 16]),
            vec![1],
            Duration::from_secs(7200),
        )
        .await;
    assert_eq!(code_of(refused), ErrorCode::TtlTooLong);
    tokio::time::sleep(Duration::from_millis(600)).await; // a reaper pass

    let addr = server.server.local_addr();
    let metrics = tokio::task::spawn_blocking(move || http_get(addr, "/metrics"))
        .await
        .unwrap();
    for name in [
        "wisp_messages_sent_total",
        "wisp_messages_delivered_total{via=",
        "wisp_mailbox_fetches_total",
        "wisp_messages_burned_total",
        "wisp_messages_expired_total",
        "wisp_messages_refused_total{reason=\"ttl\"}",
        "wisp_delivery_latency_seconds_bucket",
    ] {
        assert!(metrics.contains(name), "{name} in /metrics");
    }
}

async fn a_confirmation_cut_off_by_a_timeout_is_made_again(backend: Backend) {
    let Some((server, mut alice, mut bob)) = two_friends(backend).await else {
        return;
    };
    let b = bob.id();
    for n in 0..3 {
        alice
            .messenger
            .send_text(b, &format!("m{n}"), HOUR, None)
            .await
            .unwrap();
    }
    let mut shown = 0;
    while shown < 3 {
        if let Event::Message(_) = bob.event().await {
            shown += 1;
        }
    }
    // The message handed out last is not confirmed yet: the next call
    // starts by confirming it. That call is polled once, so it gets as far
    // as waiting for the server's answer to the ack, and is then dropped
    // (as a timeout around it, like `wisp recv --wait 0`, would). The test
    // runs on one thread, so nothing else (the server, the connection's
    // reader) moves during that poll and the answer cannot beat the cut.
    let held = bob.messenger.unconfirmed_count();
    assert!(held >= 1, "the last message shown is not confirmed yet");
    let cut = bob.messenger.next_event().now_or_never();
    assert!(cut.is_none(), "cut off while waiting for the ack: {cut:?}");
    assert_eq!(
        bob.messenger.unconfirmed_count(),
        held,
        "a confirmation cut off forgets nothing"
    );
    // Whatever the cut-off call got as far as, this one finishes the job.
    bob.messenger.confirm().await.unwrap();
    assert_eq!(
        server.stored().await,
        0,
        "all three burned once confirm returned"
    );
}

// Every lifecycle test above runs on both backends.
on_every_backend!(
    a_thousand_messages_arrive_once_each_in_order_and_nothing_stays,
    an_offline_recipient_gets_its_messages_at_login_oldest_first,
    an_expired_message_is_never_delivered_and_the_reaper_removes_it,
    the_sender_learns_a_message_expired_unread,
    refused_messages_get_their_typed_error_and_store_nothing,
    a_retried_client_message_id_is_stored_and_delivered_once,
    an_undecryptable_message_is_reported_and_the_session_recovers,
    a_flooded_mailbox_refuses_more_and_delivers_in_windows,
    an_outbox_past_its_bytes_is_refused_until_read,
    a_reinstalled_friend_is_a_new_identity_and_can_talk_again,
);

/// On both backends too, but on a runtime of one thread: see the test.
mod on_one_thread {
    #[tokio::test(flavor = "current_thread")]
    async fn sqlite_a_confirmation_cut_off_by_a_timeout_is_made_again() {
        super::a_confirmation_cut_off_by_a_timeout_is_made_again(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn cluster_a_confirmation_cut_off_by_a_timeout_is_made_again() {
        super::a_confirmation_cut_off_by_a_timeout_is_made_again(super::Backend::Cluster).await;
    }
}

/// A message that reached the store without any hint or wake-up for its
/// recipient (as when a cross-node notification is lost) is still delivered
/// while the recipient stays online and later messages arrive as hints: the
/// connection fetches regularly between hints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_stored_without_a_wake_up_is_not_left_behind_by_hints() {
    let dir = tempfile::tempdir().unwrap();
    let store = wisp_server::store::sqlite::SqliteStore::open(&dir.path().join("data"))
        .await
        .unwrap();
    let stores = Stores {
        accounts: Arc::new(store.clone()),
        friends: Arc::new(store.clone()),
        prekeys: Arc::new(store.clone()),
        mailbox: Arc::new(store.clone()),
        limits: None,
    };
    let server = TestServer::start_over(stores, dir).await;
    let alice = server.user().await;
    let mut bob = server.user().await;
    befriend(&alice, &bob).await;
    let now = SystemClock.now_ms();
    // Straight into the store: nobody is told.
    let silent = store
        .put(
            NewMessage {
                sender: alice.id(),
                recipient: bob.id(),
                client_msg_id: &[0xee; 16],
                ciphertext: b"silent",
                sent_at: now,
                expires_at: now.plus(Duration::from_secs(600)),
            },
            &wisp_server::store::Quota::messages(1000),
        )
        .await
        .unwrap();
    for n in 0..40u8 {
        alice
            .client
            .send_ciphertext(bob.id(), ClientMsgId([n; 16]), vec![n; 8], HOUR)
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    while seen.len() < 41 {
        let event = tokio::time::timeout(Duration::from_secs(5), bob.events.next())
            .await
            .expect("every message within 5 s while online")
            .expect("connection open");
        if let ServerEvent::Delivery(delivery) = event {
            bob.client.ack(vec![delivery.message_id]).await.unwrap();
            seen.push(delivery.message_id);
        }
    }
    assert!(seen.contains(&silent.id), "the silent message came too");
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 41, "each exactly once");
}
