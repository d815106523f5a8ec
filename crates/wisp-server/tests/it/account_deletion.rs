//! Deleting an account, on both backends: everything the server held about
//! it goes (keys, friendships on both sides, requests, blocks, messages
//! both ways, retry records), each friend is told, its other connections
//! close, and afterwards no table, file or key holds its id in any form;
//! the id never logs in or registers again.

use std::sync::Arc;
use std::time::Duration;

use wisp_client::{Client, ClientMsgId, ErrorCode, KeyStore, ServerEvent};
use wisp_server::clock::SystemClock;
use wisp_test_support::{Backend, TestServer, code_of, leftovers};

const HOUR: Duration = Duration::from_secs(3600);

fn cmid(n: u8) -> ClientMsgId {
    ClientMsgId([n; 16])
}

async fn a_deleted_account_leaves_nothing_and_never_returns(backend: Backend) {
    let Some(server) = TestServer::start_on(backend, |_| {}, Arc::new(SystemClock)).await else {
        return;
    };
    // Alice, the account to delete, with one-time keys on the server (a
    // device uploads them at login) and everything a user can leave.
    let alice = server.device().await;
    let me = alice.id();
    let alice_client = alice.messenger.client();
    let mut bob = server.user().await;
    let carol = server.user().await;
    let dave = server.user().await;
    let erin = server.user().await;
    let frank = server.user().await;
    alice_client.request_friend(bob.id()).await.unwrap();
    bob.client.accept_friend(me).await.unwrap();
    alice_client.request_friend(carol.id()).await.unwrap();
    dave.client.request_friend(me).await.unwrap();
    alice_client.block(erin.id()).await.unwrap();
    frank.client.block(me).await.unwrap();
    // Messages waiting both ways (opaque to the server), one retried.
    alice_client
        .send_ciphertext(bob.id(), cmid(1), b"from alice".to_vec(), HOUR)
        .await
        .unwrap();
    bob.client
        .send_ciphertext(me, cmid(2), b"to alice".to_vec(), HOUR)
        .await
        .unwrap();
    let retry = bob
        .client
        .send_ciphertext(me, cmid(2), b"to alice".to_vec(), HOUR)
        .await
        .unwrap();
    assert!(retry.duplicate);
    // A second connection of Alice's, which the deletion must close.
    let mut other = server
        .login(KeyStore::peek(alice.home.path(), "pw").unwrap().identity)
        .await;
    assert_eq!(server.stored().await, 2);

    alice_client.delete_account(me).await.unwrap();

    // Bob hears that the friendship ended; Alice's other connection closes.
    let removed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob.events.next().await {
                Some(ServerEvent::FriendRemoved { by }) => return by,
                Some(_) => {}
                None => panic!("Bob's connection closed"),
            }
        }
    })
    .await
    .expect("FriendRemoved within 10 s");
    assert_eq!(removed, me);
    tokio::time::timeout(Duration::from_secs(10), async {
        while other.events.next().await.is_some() {}
    })
    .await
    .expect("Alice's other connection closed within 10 s");
    // Nothing of Alice in anyone's lists, nothing waiting either way.
    assert!(bob.client.friends().await.unwrap().is_empty());
    assert!(
        carol
            .client
            .friend_requests()
            .await
            .unwrap()
            .incoming
            .is_empty()
    );
    assert!(
        dave.client
            .friend_requests()
            .await
            .unwrap()
            .outgoing
            .is_empty()
    );
    assert!(
        frank
            .client
            .friend_requests()
            .await
            .unwrap()
            .blocked
            .is_empty()
    );
    assert_eq!(server.stored().await, 0);

    // The id never logs in again, nor do its keys register again.
    let identity = KeyStore::peek(alice.home.path(), "pw").unwrap().identity;
    let (mut client, _events) = Client::connect(&server.url()).await.unwrap();
    assert_eq!(
        code_of(client.login(&identity, &server.name()).await),
        ErrorCode::AuthFailed
    );
    let (client, _events) = Client::connect(&server.url()).await.unwrap();
    assert_eq!(
        code_of(client.register(&identity).await),
        ErrorCode::AlreadyRegistered
    );

    // And no store holds the id in any form.
    match server.cluster() {
        None => {
            let mut left = Vec::new();
            // Deleted pages leave the WAL at the checkpoint the deletion
            // runs (retried by the reaper if a reader was in the way).
            for _ in 0..50 {
                left = leftovers::in_sqlite_files(&server.data_dir, me);
                if left.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(left.is_empty(), "the id is still in {left:?}");
        }
        Some(cluster) => {
            let rows = leftovers::in_postgres(cluster, me).await;
            assert!(rows.is_empty(), "the id is still in PostgreSQL: {rows:?}");
            let keys = leftovers::in_redis(cluster, me).await;
            assert!(keys.is_empty(), "the id is still in Redis: {keys:?}");
        }
    }
    // The other users are untouched.
    for user in [&bob, &carol, &dave, &erin, &frank] {
        user.client.ping().await.unwrap();
    }
}

async fn deleting_an_account_needs_its_own_id_and_a_login(backend: Backend) {
    let Some(server) = TestServer::start_on(backend, |_| {}, Arc::new(SystemClock)).await else {
        return;
    };
    let alice = server.user().await;
    let bob = server.user().await;
    // Someone else's id: refused, nothing happens.
    assert_eq!(
        code_of(alice.client.delete_account(bob.id()).await),
        ErrorCode::InvalidArgument
    );
    bob.client.ping().await.unwrap();
    alice.client.ping().await.unwrap();
    // Not logged in: refused.
    let (client, _events) = Client::connect(&server.url()).await.unwrap();
    assert_eq!(
        code_of(client.delete_account(bob.id()).await),
        ErrorCode::AuthRequired
    );
    let again = server.login(bob.identity.clone_for_tests()).await;
    again.client.ping().await.unwrap();
}

on_every_backend!(
    a_deleted_account_leaves_nothing_and_never_returns,
    deleting_an_account_needs_its_own_id_and_a_login,
);
