//! The behaviour every storage backend must show, as test functions each
//! backend's tests call with a freshly opened, empty store.

use std::sync::Arc;

use wisp_proto::UserId;
use wisp_proto::limits::{MAX_FRIENDS, MAX_PENDING_INCOMING, MAX_PENDING_OUTGOING};

use super::{
    AccountStore, CreateAccountError, FriendError, FriendStore, IdentityKeys, RequestOutcome, Side,
};

/// A registered user with made-up keys; `n` makes it distinct.
pub(crate) async fn user(accounts: &dyn AccountStore, n: u32) -> UserId {
    let mut ed25519 = [0u8; 32];
    ed25519[..4].copy_from_slice(&n.to_be_bytes());
    ed25519[31] = 0xed;
    let keys = IdentityKeys {
        ed25519,
        curve25519: [0xcu8; 32],
    };
    let id = UserId::from_ed25519(&ed25519);
    accounts.create_account(id, &keys, 1).await.unwrap();
    id
}

pub(crate) async fn run_all(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    accounts_are_unique(accounts).await;
    request_accept_list(accounts, friends).await;
    decline_cancel_remove(accounts, friends).await;
    blocking(accounts, friends).await;
    friend_limit_at_request_and_accept(accounts, friends).await;
    pending_limit(accounts, friends).await;
}

async fn accounts_are_unique(accounts: &dyn AccountStore) {
    let id = user(accounts, 1_000_000).await;
    let keys = accounts.identity(id).await.unwrap().unwrap();
    assert!(id.is_of_key(&keys.ed25519));
    let again = accounts.create_account(id, &keys, 2).await;
    assert!(matches!(again, Err(CreateAccountError::AlreadyRegistered)));
    let stranger = UserId::from_ed25519(&[0x55; 32]);
    assert_eq!(accounts.identity(stranger).await.unwrap(), None);
}

async fn request_accept_list(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let a = user(accounts, 1).await;
    let b = user(accounts, 2).await;
    let ghost = UserId::from_ed25519(&[0x66; 32]);
    assert!(matches!(
        friends.request(a, ghost, 10).await,
        Err(FriendError::NoSuchUser)
    ));
    assert!(matches!(
        friends.request(a, a, 10).await,
        Err(FriendError::SelfTarget)
    ));
    assert_eq!(
        friends.request(a, b, 10).await.unwrap(),
        RequestOutcome::Sent
    );
    // Asking twice changes nothing.
    assert_eq!(
        friends.request(a, b, 11).await.unwrap(),
        RequestOutcome::AlreadyPending
    );
    let pending_b = friends.pending(b).await.unwrap();
    assert_eq!(pending_b.incoming.len(), 1);
    assert_eq!(pending_b.incoming[0].user, a);
    assert_eq!(friends.pending(a).await.unwrap().outgoing[0].user, b);
    assert!(!friends.are_friends(a, b).await.unwrap());
    // Only the recipient can accept.
    assert!(matches!(
        friends.accept(a, b, 12).await,
        Err(FriendError::NoSuchRequest)
    ));
    friends.accept(b, a, 12).await.unwrap();
    assert!(friends.are_friends(a, b).await.unwrap());
    assert!(friends.are_friends(b, a).await.unwrap());
    assert_eq!(friends.friends(a).await.unwrap()[0].user, b);
    assert_eq!(friends.friends(b).await.unwrap()[0].user, a);
    assert_eq!(friends.friends(b).await.unwrap()[0].since, 12);
    assert!(friends.pending(a).await.unwrap().outgoing.is_empty());
    assert!(friends.pending(b).await.unwrap().incoming.is_empty());
    assert!(matches!(
        friends.request(b, a, 13).await,
        Err(FriendError::AlreadyFriends)
    ));

    // Crossing requests make friends at once.
    let c = user(accounts, 3).await;
    assert_eq!(
        friends.request(a, c, 20).await.unwrap(),
        RequestOutcome::Sent
    );
    assert_eq!(
        friends.request(c, a, 21).await.unwrap(),
        RequestOutcome::BecameFriends
    );
    assert!(friends.are_friends(a, c).await.unwrap());
    assert!(friends.pending(a).await.unwrap().outgoing.is_empty());
}

async fn decline_cancel_remove(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let a = user(accounts, 101).await;
    let b = user(accounts, 102).await;
    friends.request(a, b, 1).await.unwrap();
    friends.decline(b, a).await.unwrap();
    assert!(friends.pending(b).await.unwrap().incoming.is_empty());
    assert!(matches!(
        friends.decline(b, a).await,
        Err(FriendError::NoSuchRequest)
    ));
    assert!(matches!(
        friends.accept(b, a, 2).await,
        Err(FriendError::NoSuchRequest)
    ));

    friends.request(a, b, 3).await.unwrap();
    friends.cancel(a, b).await.unwrap();
    assert!(friends.pending(b).await.unwrap().incoming.is_empty());
    assert!(matches!(
        friends.cancel(a, b).await,
        Err(FriendError::NoSuchRequest)
    ));

    assert!(matches!(
        friends.remove(a, b).await,
        Err(FriendError::NotFriends)
    ));
    friends.request(a, b, 4).await.unwrap();
    friends.accept(b, a, 5).await.unwrap();
    friends.remove(b, a).await.unwrap();
    assert!(!friends.are_friends(a, b).await.unwrap());
    assert!(!friends.are_friends(b, a).await.unwrap());
    assert!(friends.friends(a).await.unwrap().is_empty());
}

async fn blocking(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let a = user(accounts, 201).await;
    let b = user(accounts, 202).await;
    friends.request(a, b, 1).await.unwrap();
    friends.accept(b, a, 2).await.unwrap();
    // Blocking ends the friendship.
    assert!(friends.block(b, a, 3).await.unwrap());
    assert!(!friends.are_friends(a, b).await.unwrap());
    assert_eq!(friends.pending(b).await.unwrap().blocked, vec![a]);
    // The blocked user's request looks sent to them, and the blocker never
    // sees it: not listed, not acceptable.
    assert_eq!(
        friends.request(a, b, 4).await.unwrap(),
        RequestOutcome::Shadowed
    );
    assert_eq!(friends.pending(a).await.unwrap().outgoing[0].user, b);
    assert!(friends.pending(b).await.unwrap().incoming.is_empty());
    assert!(matches!(
        friends.accept(b, a, 4).await,
        Err(FriendError::NoSuchRequest)
    ));
    // The blocker must unblock before asking.
    assert!(matches!(
        friends.request(b, a, 5).await,
        Err(FriendError::Blocked)
    ));
    friends.unblock(b, a).await.unwrap();
    assert!(matches!(
        friends.unblock(b, a).await,
        Err(FriendError::NotBlocked)
    ));
    // Lifting the block forgets what was sent meanwhile.
    assert!(friends.pending(a).await.unwrap().outgoing.is_empty());
    assert!(friends.pending(b).await.unwrap().incoming.is_empty());
    assert_eq!(
        friends.request(a, b, 6).await.unwrap(),
        RequestOutcome::Sent
    );
    // Blocking drops pending requests both ways.
    assert!(!friends.block(b, a, 7).await.unwrap());
    assert!(friends.pending(b).await.unwrap().incoming.is_empty());
    assert!(matches!(
        friends.block(a, a, 8).await,
        Err(FriendError::SelfTarget)
    ));
}

async fn friend_limit_at_request_and_accept(
    accounts: &dyn AccountStore,
    friends: &dyn FriendStore,
) {
    let hub = user(accounts, 300).await;
    for n in 0..MAX_FRIENDS as u32 {
        let other = user(accounts, 301 + n).await;
        friends.request(other, hub, 1).await.unwrap();
        friends.accept(hub, other, 2).await.unwrap();
    }
    assert_eq!(friends.friends(hub).await.unwrap().len(), MAX_FRIENDS);
    let late = user(accounts, 399).await;
    // Refused at request, both ways round.
    assert!(matches!(
        friends.request(hub, late, 3).await,
        Err(FriendError::FriendLimit(Side::Me))
    ));
    assert!(matches!(
        friends.request(late, hub, 3).await,
        Err(FriendError::FriendLimit(Side::Them))
    ));
    // Refused at accept: a request made before the 20th friend was accepted.
    let early = user(accounts, 398).await;
    let hub2 = user(accounts, 397).await;
    friends.request(early, hub2, 1).await.unwrap();
    for n in 0..MAX_FRIENDS as u32 {
        let other = user(accounts, 400 + n).await;
        friends.request(other, hub2, 1).await.unwrap();
        friends.accept(hub2, other, 2).await.unwrap();
    }
    assert!(matches!(
        friends.accept(hub2, early, 3).await,
        Err(FriendError::FriendLimit(Side::Me))
    ));
    // The request stays pending so it can be accepted once there is room.
    assert_eq!(friends.pending(hub2).await.unwrap().incoming.len(), 1);
    assert_eq!(friends.friends(hub2).await.unwrap().len(), MAX_FRIENDS);
    let first = friends.friends(hub2).await.unwrap()[0].user;
    friends.remove(hub2, first).await.unwrap();
    friends.accept(hub2, early, 4).await.unwrap();
    assert_eq!(friends.friends(hub2).await.unwrap().len(), MAX_FRIENDS);
}

async fn pending_limit(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let asker = user(accounts, 500).await;
    for n in 0..MAX_PENDING_OUTGOING as u32 {
        let other = user(accounts, 501 + n).await;
        friends.request(asker, other, 1).await.unwrap();
    }
    let one_more = user(accounts, 599).await;
    assert!(matches!(
        friends.request(asker, one_more, 2).await,
        Err(FriendError::PendingLimit(Side::Me))
    ));

    // Incoming: a user can have MAX_PENDING_INCOMING requests waiting.
    let target = user(accounts, 600).await;
    for n in 0..MAX_PENDING_INCOMING as u32 {
        let other = user(accounts, 601 + n).await;
        friends.request(other, target, 1).await.unwrap();
    }
    let late = user(accounts, 699).await;
    assert!(matches!(
        friends.request(late, target, 2).await,
        Err(FriendError::PendingLimit(Side::Them))
    ));
    // Requests from blocked users take none of the room: blocking one of
    // the askers (which drops its request) frees a place.
    let first = friends.pending(target).await.unwrap().incoming[0].user;
    friends.block(target, first, 3).await.unwrap();
    assert_eq!(
        friends.request(late, target, 4).await.unwrap(),
        RequestOutcome::Sent
    );
    // The blocked asker sees exactly what anyone else would: first that
    // the target is full...
    assert!(matches!(
        friends.request(first, target, 5).await,
        Err(FriendError::PendingLimit(Side::Them))
    ));
    // ...then, once there is room, a request that looks sent but is shadowed
    // and takes none of the room.
    friends.decline(target, late).await.unwrap();
    assert_eq!(
        friends.request(first, target, 6).await.unwrap(),
        RequestOutcome::Shadowed
    );
    assert_eq!(
        friends.pending(target).await.unwrap().incoming.len(),
        MAX_PENDING_INCOMING - 1
    );
    assert_eq!(
        friends.request(late, target, 7).await.unwrap(),
        RequestOutcome::Sent
    );
}

/// 30 users have asked one user to be friends; 30 accepts race for the 20
/// places. Exactly 20 win, whatever the interleaving.
pub(crate) async fn friend_cap_race(friends: Arc<dyn FriendStore>, accounts: &dyn AccountStore) {
    let popular = user(accounts, 9_000).await;
    let mut askers = Vec::new();
    for n in 0..30 {
        let asker = user(accounts, 9_001 + n).await;
        friends.request(asker, popular, 1).await.unwrap();
        askers.push(asker);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for asker in askers {
        let friends = Arc::clone(&friends);
        tasks.spawn(async move { friends.accept(popular, asker, 2).await });
    }
    let (mut won, mut refused) = (0, 0);
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(()) => won += 1,
            Err(FriendError::FriendLimit(Side::Me)) => refused += 1,
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!((won, refused), (MAX_FRIENDS, 30 - MAX_FRIENDS));
    assert_eq!(friends.friends(popular).await.unwrap().len(), MAX_FRIENDS);
}
