//! Friends over the wire: requests, accept/decline/cancel/remove/block,
//! the 20-friend cap (including a race for the last places), and pushes.

use std::time::Duration;

use wisp_client::ServerEvent as Event;
use wisp_proto::ErrorCode;
use wisp_proto::limits::{MAX_FRIENDS, MAX_PENDING_INCOMING};
use wisp_proto::{InvitationToken, UnixMillis};
use wisp_test_support::{TestServer, TestUser, befriend, code_of};

/// The next friend-related event (mailbox events are not the subject here).
async fn next_event(user: &mut TestUser) -> Event {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), user.events.next())
            .await
            .expect("event within 10 s")
            .expect("connection open");
        if !matches!(event, Event::MailboxDrained | Event::KeysLow { .. }) {
            return event;
        }
    }
}

#[tokio::test]
async fn request_accept_list_with_pushes() {
    let server = TestServer::start().await;
    let mut alice = server.user().await;
    let mut bob = server.user().await;

    assert!(!alice.client.request_friend(bob.id()).await.unwrap());
    assert_eq!(
        next_event(&mut bob).await,
        Event::FriendRequest { from: alice.id() }
    );
    let pending = bob.client.friend_requests().await.unwrap();
    assert_eq!(pending.incoming.len(), 1);
    assert_eq!(pending.incoming[0].id, alice.id());
    assert_eq!(
        alice.client.friend_requests().await.unwrap().outgoing[0].id,
        bob.id()
    );

    bob.client.accept_friend(alice.id()).await.unwrap();
    assert_eq!(
        next_event(&mut alice).await,
        Event::FriendAccepted { by: bob.id() }
    );
    assert_eq!(alice.client.friends().await.unwrap()[0].id, bob.id());
    assert_eq!(bob.client.friends().await.unwrap()[0].id, alice.id());
    assert_eq!(
        code_of(alice.client.request_friend(bob.id()).await),
        ErrorCode::AlreadyFriends
    );

    bob.client.remove_friend(alice.id()).await.unwrap();
    assert_eq!(
        next_event(&mut alice).await,
        Event::FriendRemoved { by: bob.id() }
    );
    assert!(alice.client.friends().await.unwrap().is_empty());
}

#[tokio::test]
async fn decline_cancel_and_errors_name_what_happened() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let bob = server.user().await;
    alice.client.request_friend(bob.id()).await.unwrap();
    bob.client.decline_friend(alice.id()).await.unwrap();
    assert!(
        alice
            .client
            .friend_requests()
            .await
            .unwrap()
            .outgoing
            .is_empty()
    );
    assert_eq!(
        code_of(bob.client.accept_friend(alice.id()).await),
        ErrorCode::NoSuchRequest
    );
    alice.client.request_friend(bob.id()).await.unwrap();
    alice.client.cancel_friend_request(bob.id()).await.unwrap();
    assert!(
        bob.client
            .friend_requests()
            .await
            .unwrap()
            .incoming
            .is_empty()
    );
    assert_eq!(
        code_of(alice.client.remove_friend(bob.id()).await),
        ErrorCode::NotFriends
    );
    assert_eq!(
        code_of(alice.client.request_friend(alice.id()).await),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn crossing_requests_make_friends_at_once() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let bob = server.user().await;
    assert!(!alice.client.request_friend(bob.id()).await.unwrap());
    assert!(bob.client.request_friend(alice.id()).await.unwrap());
    assert_eq!(alice.client.friends().await.unwrap().len(), 1);
}

#[tokio::test]
async fn blocking_ends_the_friendship_and_drops_requests_silently() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let mut bob = server.user().await;
    befriend(&alice, &bob).await;
    // Drain Bob's events so far: the FriendRequest push.
    assert!(matches!(
        next_event(&mut bob).await,
        Event::FriendRequest { .. }
    ));

    alice.client.block(bob.id()).await.unwrap();
    assert_eq!(
        next_event(&mut bob).await,
        Event::FriendRemoved { by: alice.id() }
    );
    assert!(bob.client.friends().await.unwrap().is_empty());
    assert_eq!(
        alice.client.friend_requests().await.unwrap().blocked,
        vec![bob.id()]
    );

    // Bob's new request "succeeds" for Bob, and Alice never sees it.
    assert!(!bob.client.request_friend(alice.id()).await.unwrap());
    assert!(
        alice
            .client
            .friend_requests()
            .await
            .unwrap()
            .incoming
            .is_empty()
    );
    assert_eq!(
        code_of(alice.client.request_friend(bob.id()).await),
        ErrorCode::Blocked
    );
    alice.client.unblock(bob.id()).await.unwrap();
    alice.client.request_friend(bob.id()).await.unwrap();
}

#[tokio::test]
async fn a_21st_friend_is_refused_at_request_and_at_accept() {
    let server = TestServer::start().await;
    let popular = server.user().await;
    let early = server.user().await;
    // A request made while there was room...
    early.client.request_friend(popular.id()).await.unwrap();
    for _ in 0..MAX_FRIENDS {
        let friend = server.user().await;
        befriend(&friend, &popular).await;
    }
    // ...cannot be accepted once the circle is full.
    let refused = popular.client.accept_friend(early.id()).await;
    let error = refused.unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::FriendLimit));
    assert_eq!(
        error.to_string(),
        "friend limit reached (20); remove a friend first"
    );
    // And new requests are refused both ways.
    let late = server.user().await;
    assert_eq!(
        code_of(popular.client.request_friend(late.id()).await),
        ErrorCode::FriendLimit
    );
    assert_eq!(
        code_of(late.client.request_friend(popular.id()).await),
        ErrorCode::FriendLimit
    );
    assert_eq!(popular.client.friends().await.unwrap().len(), MAX_FRIENDS);
}

/// 30 users ask one user to be friends; the user's 30 accepts then race,
/// each on its own connection, for the 20 places. Exactly 20 win.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thirty_users_racing_for_one_circle_leave_exactly_twenty() {
    // Thirty sessions of one account, past the default cap of five.
    let server = TestServer::start_with(|config| config.max_sessions_per_user = 31).await;
    let popular = server.user().await;
    let mut askers = Vec::new();
    for _ in 0..30 {
        let asker = server.user().await;
        asker.client.request_friend(popular.id()).await.unwrap();
        askers.push(asker);
    }
    // One connection per accept, all logged in as the popular user.
    let mut connections = Vec::new();
    for _ in 0..30 {
        connections.push(server.login(clone_identity(&popular)).await);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(30));
    let mut tasks = tokio::task::JoinSet::new();
    for (connection, asker) in connections.into_iter().zip(&askers) {
        let asker = asker.id();
        let barrier = barrier.clone();
        tasks.spawn(async move {
            barrier.wait().await;
            connection.client.accept_friend(asker).await
        });
    }
    let (mut won, mut full) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => won += 1,
            Err(e) if e.code() == Some(ErrorCode::FriendLimit) => full += 1,
            Err(e) => panic!("unexpected: {e}"),
        }
    }
    assert_eq!((won, full), (20, 10));
    assert_eq!(popular.client.friends().await.unwrap().len(), 20);
    let mut with_popular = 0;
    for asker in &askers {
        let theirs = asker.client.friends().await.unwrap();
        assert!(theirs.len() <= 1);
        with_popular += theirs.len();
    }
    assert_eq!(with_popular, 20, "both sides agree");
}

/// The same identity on another connection (a second terminal, say).
fn clone_identity(user: &TestUser) -> wisp_client::Identity {
    user.identity.clone_for_tests()
}

/// Whether an id is registered shows to no one: a request to an id nobody
/// holds is answered exactly like one to a user who has not answered yet,
/// listed and cancelled alike. (Old code answered NO_SUCH_USER.)
#[tokio::test]
async fn a_request_to_an_unknown_id_looks_like_one_to_a_known_id() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let bob = server.user().await;
    let ghost = wisp_client::Identity::generate().user_id();
    let to_bob = alice.client.request_friend(bob.id()).await;
    let to_ghost = alice.client.request_friend(ghost).await;
    assert_eq!(format!("{to_bob:?}"), format!("{to_ghost:?}"));
    assert!(!to_ghost.unwrap());
    let again_bob = alice.client.request_friend(bob.id()).await;
    let again_ghost = alice.client.request_friend(ghost).await;
    assert_eq!(format!("{again_bob:?}"), format!("{again_ghost:?}"));
    let outgoing: Vec<_> = alice
        .client
        .friend_requests()
        .await
        .unwrap()
        .outgoing
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(outgoing.len(), 2);
    assert!(outgoing.contains(&bob.id()) && outgoing.contains(&ghost));
    alice.client.cancel_friend_request(ghost).await.unwrap();
    alice.client.cancel_friend_request(bob.id()).await.unwrap();
    // Blocking an unknown id is no different either.
    alice.client.block(ghost).await.unwrap();
    alice.client.unblock(ghost).await.unwrap();
}

/// Fifty throwaway accounts fill a user's pending requests: strangers get
/// PENDING_LIMIT, but a friend holding the user's invitation gets through.
/// A forged, expired or someone else's invitation does not. (Old code kept
/// the invited friend out too.)
#[tokio::test]
async fn strangers_filling_requests_cannot_lock_out_an_invited_friend() {
    let server = TestServer::start().await;
    let victim = server.user().await;
    for _ in 0..MAX_PENDING_INCOMING {
        let stranger = server.user().await;
        stranger.client.request_friend(victim.id()).await.unwrap();
    }
    let friend = server.user().await;
    assert_eq!(
        code_of(friend.client.request_friend(victim.id()).await),
        ErrorCode::PendingLimit
    );

    let later = UnixMillis(wisp_client::now_ms().0 + 3_600_000);
    let ask = |token: InvitationToken| wisp_client::Invitation {
        user: victim.id(),
        token: Some(token),
    };
    // Signed by someone else's key.
    let mallory = wisp_client::Identity::generate();
    let forged = mallory.sign_invitation(later).unwrap();
    // The victim's real signature, with the expiry pushed out.
    let genuine = victim.identity.sign_invitation(later).unwrap();
    let tampered = InvitationToken {
        expires: UnixMillis(later.0 + 1),
        ..genuine
    };
    // An invitation the victim made, but expired.
    let expired = victim
        .identity
        .sign_invitation(UnixMillis(wisp_client::now_ms().0 - 1))
        .unwrap();
    // An invitation another registered user made for themselves.
    let other = server.user().await;
    let others = other.identity.sign_invitation(later).unwrap();
    for (what, token) in [
        ("forged", forged),
        ("tampered", tampered),
        ("expired", expired),
        ("another user's", others),
    ] {
        assert_eq!(
            code_of(friend.client.request_friend_invited(&ask(token)).await),
            ErrorCode::PendingLimit,
            "{what} invitation let the request in"
        );
    }
    // A token that is not one at all is refused as such.
    let link = format!("{}/{}", wisp_client::invitation_link(victim.id()), "aa");
    assert!(wisp_client::parse_invitation_link(&link).is_err());

    let link = wisp_client::signed_invitation_link(victim.id(), &genuine);
    let invitation = wisp_client::parse_invitation_link(&link).unwrap();
    assert!(
        !friend
            .client
            .request_friend_invited(&invitation)
            .await
            .unwrap()
    );
    let incoming = victim.client.friend_requests().await.unwrap().incoming;
    assert_eq!(incoming.len(), MAX_PENDING_INCOMING + 1);
    victim.client.accept_friend(friend.id()).await.unwrap();
    assert_eq!(victim.client.friends().await.unwrap().len(), 1);
}
