//! The behaviour every storage backend must show, as test functions each
//! backend's tests call with a freshly opened, empty store.

use std::sync::Arc;

use wisp_proto::UserId;
use wisp_proto::limits::{MAX_FRIENDS, MAX_PENDING_INCOMING, MAX_PENDING_OUTGOING};

use wisp_proto::MessageId;
use wisp_proto::limits::MAX_STORED_ONE_TIME_KEYS;

use std::time::Duration;

use wisp_proto::UnixMillis;

use super::{
    Accepted, AccountStore, CreateAccountError, FriendError, FriendStore, IdentityKeys,
    Introduction, MailboxStore, NewMessage, PreKeyStore, PutError, RequestEntry, RequestOutcome,
    Side, SignedKey, Stores,
};

/// When the friend tests list requests: soon after they were made (at
/// small made-up times), long before any expires.
const LISTED_AT: UnixMillis = UnixMillis(100);

/// The requests others sent `user`, as listed at [`LISTED_AT`].
async fn incoming(friends: &dyn FriendStore, user: UserId) -> Vec<RequestEntry> {
    friends.pending(user, LISTED_AT).await.unwrap().incoming
}

/// The requests `user` sent, as listed at [`LISTED_AT`].
async fn outgoing(friends: &dyn FriendStore, user: UserId) -> Vec<RequestEntry> {
    friends.pending(user, LISTED_AT).await.unwrap().outgoing
}
use crate::clock::{Clock, ManualClock, SystemClock};

/// The time the mailbox suite runs in, as a server would inject it.
pub(crate) enum SuiteTime {
    /// For a backend that knows only the times it is told (SQLite): time
    /// moves when the suite says so, at once.
    Manual(ManualClock),
    /// For a backend that also expires data by its own clock (Redis): the
    /// system clock, where letting time pass means waiting.
    System(SystemClock),
}

impl SuiteTime {
    fn now(&self) -> UnixMillis {
        match self {
            Self::Manual(clock) => clock.now_ms(),
            Self::System(clock) => clock.now_ms(),
        }
    }

    async fn pass(&self, by: Duration) {
        match self {
            Self::Manual(clock) => clock.advance(by),
            Self::System(_) => tokio::time::sleep(by).await,
        }
    }
}

/// A registered user with made-up keys; `n` makes it distinct.
pub(crate) async fn user(accounts: &dyn AccountStore, n: u32) -> UserId {
    let mut ed25519 = [0u8; 32];
    ed25519[..4].copy_from_slice(&n.to_be_bytes());
    ed25519[31] = 0xed;
    let keys = IdentityKeys {
        ed25519,
        curve25519: [0xcu8; 32],
        curve25519_signature: vec![0x5; 64],
    };
    let id = UserId::from_ed25519(&ed25519);
    accounts
        .create_account(id, &keys, UnixMillis(1))
        .await
        .unwrap();
    id
}

pub(crate) async fn run_all(stores: &Stores, time: &SuiteTime) {
    run_relational(&*stores.accounts, &*stores.friends, &*stores.prekeys).await;
    mailbox_lifecycle(&*stores.accounts, &*stores.mailbox, time).await;
    mailbox_rules(&*stores.accounts, &*stores.mailbox, time).await;
}

/// The mailbox rules beyond the lifecycle: what counts as a retry, the
/// byte quotas, and ids that say nothing of other mailboxes. Leaves the
/// mailbox as it found it.
pub(crate) async fn mailbox_rules(
    accounts: &dyn AccountStore,
    mailbox: &dyn MailboxStore,
    time: &SuiteTime,
) {
    retries_are_per_sender_and_recipient(accounts, mailbox, time).await;
    byte_quotas(accounts, mailbox, time).await;
    ids_are_per_mailbox(accounts, mailbox, time).await;
    a_user_is_erased(accounts, mailbox, time).await;
}

/// Erasing a user (account deletion) takes its mailbox, what it sent, and
/// the retry records either way; other conversations stay.
async fn a_user_is_erased(
    accounts: &dyn AccountStore,
    mailbox: &dyn MailboxStore,
    time: &SuiteTime,
) {
    let a = user(accounts, 970).await;
    let b = user(accounts, 971).await;
    let c = user(accounts, 972).await;
    let now = time.now();
    let [one, two, three] = [[0x71; 16], [0x72; 16], [0x73; 16]];
    mailbox
        .put_unlimited(sized(a, b, &one, 10, now))
        .await
        .unwrap();
    mailbox
        .put_unlimited(sized(b, a, &two, 10, now))
        .await
        .unwrap();
    mailbox
        .put_unlimited(sized(c, a, &two, 10, now))
        .await
        .unwrap();
    let kept = mailbox
        .put_unlimited(sized(c, b, &three, 10, now))
        .await
        .unwrap();

    assert_eq!(mailbox.erase_user(a).await.unwrap(), 3);

    let left = mailbox.fetch(b, MessageId(0), now, 10).await.unwrap();
    assert_eq!(left.iter().map(|m| m.id).collect::<Vec<_>>(), vec![kept.id]);
    assert!(
        mailbox
            .fetch(a, MessageId(0), now, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(mailbox.pending_between(a, b, now).await.unwrap(), 0);
    // The retry records went too: the same client id is a new message.
    let again = mailbox
        .put_unlimited(sized(b, a, &two, 10, now))
        .await
        .unwrap();
    assert!(!again.duplicate);
    assert_eq!(mailbox.erase_user(a).await.unwrap(), 1);
    assert_eq!(mailbox.erase_user(a).await.unwrap(), 0);
    mailbox.drop_conversation(c, b).await.unwrap();
}

/// A message of `size` bytes from `from` to `to` with client id `n`, alive
/// for a minute from `now`.
fn sized(from: UserId, to: UserId, id: &[u8; 16], size: usize, now: UnixMillis) -> NewMessage<'_> {
    static CIPHERTEXT: [u8; 4096] = [0x5a; 4096];
    NewMessage {
        sender: from,
        recipient: to,
        client_msg_id: id,
        ciphertext: &CIPHERTEXT[..size],
        sent_at: now,
        expires_at: now.plus(Duration::from_secs(60)),
    }
}

async fn retries_are_per_sender_and_recipient(
    accounts: &dyn AccountStore,
    mailbox: &dyn MailboxStore,
    time: &SuiteTime,
) {
    let a = user(accounts, 910).await;
    let b = user(accounts, 911).await;
    let c = user(accounts, 912).await;
    let now = time.now();
    let id = [0x42; 16];
    let to_b = mailbox
        .put_unlimited(sized(a, b, &id, 10, now))
        .await
        .unwrap();
    // The same client id to another recipient is another message...
    let to_c = mailbox
        .put_unlimited(sized(a, c, &id, 10, now))
        .await
        .unwrap();
    assert!(!to_b.duplicate && !to_c.duplicate, "{to_b:?} {to_c:?}");
    assert_eq!(
        mailbox.fetch(c, MessageId(0), now, 10).await.unwrap().len(),
        1
    );
    // ...and so is the same client id from another sender.
    let from_c = mailbox
        .put_unlimited(sized(c, b, &id, 10, now))
        .await
        .unwrap();
    assert!(!from_c.duplicate);
    // A retry to the same recipient is still one.
    let again = mailbox
        .put_unlimited(sized(a, b, &id, 10, now))
        .await
        .unwrap();
    assert_eq!((again.id, again.duplicate), (to_b.id, true));
    assert_eq!(
        mailbox.fetch(b, MessageId(0), now, 10).await.unwrap().len(),
        2
    );
    mailbox.drop_conversation(a, b).await.unwrap();
    mailbox.drop_conversation(a, c).await.unwrap();
    mailbox.drop_conversation(c, b).await.unwrap();
}

async fn byte_quotas(accounts: &dyn AccountStore, mailbox: &dyn MailboxStore, time: &SuiteTime) {
    let a = user(accounts, 920).await;
    let b = user(accounts, 921).await;
    let c = user(accounts, 922).await;
    let d = user(accounts, 923).await;
    let now = time.now();
    let quota = super::Quota {
        per_conversation: 100,
        mailbox_bytes: 1000,
        outbox_bytes: 700,
    };
    let put = |from, to, n: u8, size| async move {
        mailbox
            .put(sized(from, to, &[n; 16], size, now), &quota)
            .await
    };
    // b's mailbox: 600 from a, then 400 from c fills it exactly; one byte
    // more, from anyone, is refused, and nothing is stored.
    let first = put(a, b, 1, 600).await.unwrap();
    put(c, b, 2, 400).await.unwrap();
    assert!(matches!(put(d, b, 3, 1).await, Err(PutError::MailboxBytes)));
    assert!(matches!(put(a, b, 4, 1).await, Err(PutError::MailboxBytes)));
    assert_eq!(mailbox.pending_between(d, b, now).await.unwrap(), 0);
    // A retry is still answered.
    assert_eq!(put(a, b, 1, 600).await.unwrap().id, first.id);
    // a's outbox: 600 waiting, so 100 more fit and 101 do not, anywhere.
    assert!(matches!(
        put(a, c, 5, 101).await,
        Err(PutError::OutboxBytes)
    ));
    assert!(matches!(
        put(a, d, 6, 101).await,
        Err(PutError::OutboxBytes)
    ));
    assert_eq!(
        mailbox.fetch(c, MessageId(0), now, 10).await.unwrap().len(),
        0
    );
    put(a, c, 7, 100).await.unwrap();
    assert!(matches!(put(a, d, 8, 1).await, Err(PutError::OutboxBytes)));
    assert_eq!(
        put(a, b, 1, 600).await.unwrap().id,
        first.id,
        "a retry, even when full"
    );
    // A burn frees both: b's mailbox and a's outbox.
    assert_eq!(mailbox.burn(b, &[first.id]).await.unwrap(), 1);
    put(d, b, 9, 600).await.unwrap();
    put(a, d, 10, 600).await.unwrap();
    assert!(matches!(put(a, d, 11, 1).await, Err(PutError::OutboxBytes)));
    // So does dropping a conversation.
    mailbox.drop_conversation(a, d).await.unwrap();
    mailbox.reopen_conversation(a, d).await.unwrap();
    put(a, d, 12, 600).await.unwrap();
    // And what expired waits no longer: with time past the minute, the
    // same quotas take as much again.
    time.pass(Duration::ZERO).await;
    let later = now.plus(Duration::from_secs(61));
    mailbox.purge_expired(later, 1000).await.unwrap();
    let fresh = |from, to, n: u8, size| async move {
        mailbox
            .put(sized(from, to, &[n; 16], size, later), &quota)
            .await
    };
    if matches!(time, SuiteTime::Manual(_)) {
        fresh(c, b, 13, 700).await.unwrap();
        fresh(d, b, 14, 300).await.unwrap();
        fresh(a, c, 15, 700).await.unwrap();
    }
    for (x, y) in [(a, b), (c, b), (d, b), (a, c), (a, d)] {
        mailbox.drop_conversation(x, y).await.unwrap();
    }
}

/// Ids count per mailbox: messages to others between two of `b`'s leave no
/// gap in `b`'s ids. (A backend may jump ahead now and then, as Redis does
/// at a second's turn; three tries, one must show no gap.)
async fn ids_are_per_mailbox(
    accounts: &dyn AccountStore,
    mailbox: &dyn MailboxStore,
    time: &SuiteTime,
) {
    let a = user(accounts, 930).await;
    let b = user(accounts, 931).await;
    let c = user(accounts, 932).await;
    let d = user(accounts, 933).await;
    let now = time.now();
    let mut n = 0u16;
    let mut next = || {
        n += 1;
        let mut id = [0u8; 16];
        id[..2].copy_from_slice(&n.to_be_bytes());
        id
    };
    let mut gaps = Vec::new();
    for _ in 0..3 {
        let first = mailbox
            .put_unlimited(sized(a, b, &next(), 1, now))
            .await
            .unwrap();
        for _ in 0..20 {
            mailbox
                .put_unlimited(sized(c, d, &next(), 1, now))
                .await
                .unwrap();
            mailbox
                .put_unlimited(sized(a, c, &next(), 1, now))
                .await
                .unwrap();
        }
        let second = mailbox
            .put_unlimited(sized(a, b, &next(), 1, now))
            .await
            .unwrap();
        gaps.push(second.id.0 - first.id.0);
        if second.id.0 == first.id.0 + 1 {
            break;
        }
    }
    assert_eq!(
        gaps.last(),
        Some(&1),
        "40 messages to others between two of b's: gaps {gaps:?}"
    );
    for (x, y) in [(a, b), (c, d), (a, c)] {
        mailbox.drop_conversation(x, y).await.unwrap();
    }
}

/// Accounts, friends and keys: what the relational store of every backend
/// must do.
pub(crate) async fn run_relational(
    accounts: &dyn AccountStore,
    friends: &dyn FriendStore,
    prekeys: &dyn PreKeyStore,
) {
    accounts_are_unique(accounts).await;
    request_accept_list(accounts, friends).await;
    decline_cancel_remove(accounts, friends).await;
    blocking(accounts, friends).await;
    friend_limit_at_request_and_accept(accounts, friends).await;
    pending_limit(accounts, friends).await;
    invited_requests_pass_strangers(accounts, friends).await;
    requests_expire(accounts, friends).await;
    one_time_keys(accounts, prekeys).await;
    accounts_are_deleted(accounts, friends, prekeys).await;
}

/// Deleting an account takes everything of it from both sides, and its
/// keys never register again.
async fn accounts_are_deleted(
    accounts: &dyn AccountStore,
    friends: &dyn FriendStore,
    prekeys: &dyn PreKeyStore,
) {
    let [a, b, c, d, e, f] = [
        user(accounts, 960).await,
        user(accounts, 961).await,
        user(accounts, 962).await,
        user(accounts, 963).await,
        user(accounts, 964).await,
        user(accounts, 965).await,
    ];
    friends.request(a, b, LISTED_AT).await.unwrap();
    friends.accept(b, a, LISTED_AT).await.unwrap();
    friends.request(a, c, LISTED_AT).await.unwrap();
    friends.request(d, a, LISTED_AT).await.unwrap();
    friends.block(a, e, LISTED_AT).await.unwrap();
    friends.block(f, a, LISTED_AT).await.unwrap();
    prekeys
        .add_keys(a, &[signed(1), signed(2)], Some(&signed(3)))
        .await
        .unwrap();

    assert_eq!(accounts.delete_account(a).await.unwrap(), vec![b]);

    assert!(accounts.identity(a).await.unwrap().is_none());
    assert!(friends.friends(b).await.unwrap().is_empty());
    assert!(!friends.are_friends(a, b).await.unwrap());
    assert!(incoming(friends, c).await.is_empty());
    assert!(outgoing(friends, d).await.is_empty());
    assert!(
        friends
            .pending(f, LISTED_AT)
            .await
            .unwrap()
            .blocked
            .is_empty()
    );
    let left = friends.pending(a, LISTED_AT).await.unwrap();
    assert_eq!(left, super::PendingRequests::default());
    assert_eq!(prekeys.one_time_key_count(a).await.unwrap(), 0);
    assert!(prekeys.claim(a).await.unwrap().is_none());
    // The same keys never register again; deleting again does nothing.
    let keys = IdentityKeys {
        ed25519: [0; 32],
        curve25519: [0xc; 32],
        curve25519_signature: vec![5; 64],
    };
    assert!(matches!(
        accounts.create_account(a, &keys, LISTED_AT).await,
        Err(CreateAccountError::Deleted)
    ));
    assert!(accounts.delete_account(a).await.unwrap().is_empty());
    // The others carry on: Bob's circle has room, Carol can ask Dave.
    friends.request(b, c, LISTED_AT).await.unwrap();
    friends.accept(c, b, LISTED_AT).await.unwrap();
    assert_eq!(friends.friends(b).await.unwrap().len(), 1);
    friends.remove(b, c).await.unwrap();
}

fn signed(n: u8) -> SignedKey {
    SignedKey {
        public_key: [n; 32],
        signature: vec![n; 64],
    }
}

async fn one_time_keys(accounts: &dyn AccountStore, prekeys: &dyn PreKeyStore) {
    let owner = user(accounts, 800).await;
    assert_eq!(prekeys.claim(owner).await.unwrap(), None);
    let added = prekeys
        .add_keys(owner, &[signed(1), signed(2), signed(3)], Some(&signed(9)))
        .await
        .unwrap();
    assert_eq!(added, 3);
    // Uploading a key twice stores it once.
    assert_eq!(
        prekeys.add_keys(owner, &[signed(3)], None).await.unwrap(),
        3
    );
    // Oldest first, each handed out once.
    for n in 1..=3 {
        let claimed = prekeys.claim(owner).await.unwrap().unwrap();
        assert_eq!(claimed.key, signed(n));
        assert!(!claimed.fallback);
        assert_eq!(
            prekeys.one_time_key_count(owner).await.unwrap(),
            3 - n as usize
        );
    }
    // Then the fallback key, as often as needed.
    for _ in 0..2 {
        let claimed = prekeys.claim(owner).await.unwrap().unwrap();
        assert_eq!(claimed.key, signed(9));
        assert!(claimed.fallback);
    }
    // A new fallback replaces the old.
    prekeys
        .add_keys(owner, &[], Some(&signed(10)))
        .await
        .unwrap();
    assert_eq!(prekeys.claim(owner).await.unwrap().unwrap().key, signed(10));
    // The store keeps at most MAX_STORED_ONE_TIME_KEYS, and the count an
    // upload answers is the count asked for later.
    let many: Vec<SignedKey> = (0..=255u8).map(signed).collect();
    let stored = prekeys.add_keys(owner, &many, None).await.unwrap();
    assert_eq!(stored, MAX_STORED_ONE_TIME_KEYS);
    assert_eq!(prekeys.one_time_key_count(owner).await.unwrap(), stored);
    assert_eq!(prekeys.add_keys(owner, &many, None).await.unwrap(), stored);

    // Concurrent claims never hand out the same key.
    let racer = user(accounts, 801).await;
    let keys: Vec<SignedKey> = (100..120u8).map(signed).collect();
    assert_eq!(
        prekeys
            .add_keys(racer, &keys, Some(&signed(99)))
            .await
            .unwrap(),
        20
    );
    let claims = futures_util::future::join_all((0..10).map(|_| prekeys.claim(racer))).await;
    let mut claimed: Vec<[u8; 32]> = claims
        .into_iter()
        .map(|claim| {
            let claim = claim.unwrap().unwrap();
            assert!(!claim.fallback, "one-time keys were left");
            claim.key.public_key
        })
        .collect();
    claimed.sort_unstable();
    claimed.dedup();
    assert_eq!(claimed.len(), 10, "each claim took a key of its own");
    assert_eq!(prekeys.one_time_key_count(racer).await.unwrap(), 10);
}

pub(crate) async fn mailbox_lifecycle(
    accounts: &dyn AccountStore,
    mailbox: &dyn MailboxStore,
    time: &SuiteTime,
) {
    let a = user(accounts, 900).await;
    let b = user(accounts, 901).await;
    let c = user(accounts, 902).await;
    let t0 = time.now();
    let after = |ms: i64| UnixMillis(t0.0 + ms);
    let message = |id: u8, to: UserId, expires_at: UnixMillis| NewMessage {
        sender: a,
        recipient: to,
        client_msg_id: CLIENT_IDS[id as usize],
        ciphertext: b"opaque",
        sent_at: t0,
        expires_at,
    };
    let short = mailbox
        .put_unlimited(message(0, b, after(SHORT_LIFE_MS)))
        .await
        .unwrap();
    assert!(!short.duplicate);
    let second = mailbox
        .put_unlimited(message(1, b, after(60_000)))
        .await
        .unwrap();
    assert!(second.id > short.id);
    // A retry is recognised, and nothing new is stored.
    let retry = mailbox
        .put_unlimited(message(1, b, after(99_000)))
        .await
        .unwrap();
    assert_eq!(
        (retry.id, retry.duplicate, retry.expires_at),
        (second.id, true, after(60_000))
    );
    mailbox
        .put_unlimited(message(2, c, after(60_000)))
        .await
        .unwrap();
    assert_eq!(mailbox.stored_count().await.unwrap(), 3);
    assert_eq!(mailbox.pending_between(a, b, t0).await.unwrap(), 2);
    assert_eq!(mailbox.pending_between(b, a, t0).await.unwrap(), 0);
    // The quota is checked in the same step: two waiting, cap two, refused;
    // a retry is still answered.
    assert!(matches!(
        mailbox
            .put(message(5, b, after(60_000)), &super::Quota::messages(2))
            .await,
        Err(PutError::MailboxFull)
    ));
    assert!(
        mailbox
            .put(message(1, b, after(60_000)), &super::Quota::messages(2))
            .await
            .unwrap()
            .duplicate
    );
    assert_eq!(mailbox.stored_count().await.unwrap(), 3);

    // Oldest first, only the recipient's, only after the cursor.
    let all = mailbox.fetch(b, MessageId(0), t0, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![short.id, second.id]
    );
    assert_eq!(all[0].sender, a);
    assert_eq!(all[0].ciphertext, b"opaque");
    assert_eq!(mailbox.fetch(b, short.id, t0, 10).await.unwrap().len(), 1);
    assert_eq!(
        mailbox.fetch(b, MessageId(0), t0, 1).await.unwrap().len(),
        1
    );
    // Nothing is handed out once expired, purged or not.
    let late = mailbox
        .fetch(b, MessageId(0), after(SHORT_LIFE_MS), 10)
        .await
        .unwrap();
    assert_eq!(
        late.iter().map(|m| m.id).collect::<Vec<_>>(),
        vec![second.id]
    );

    // Burning is the recipient's alone.
    assert_eq!(mailbox.burn(c, &[second.id]).await.unwrap(), 0);
    assert_eq!(mailbox.burn(b, &[second.id, second.id]).await.unwrap(), 1);
    assert_eq!(mailbox.burn(b, &[second.id]).await.unwrap(), 0);

    // Once the short one's time is up, the reaper (or the backend's own
    // expiry) removes it and its retry record...
    time.pass(after(SHORT_LIFE_MS + 100).since(time.now()))
        .await;
    mailbox.purge_expired(time.now(), 100).await.unwrap();
    mailbox.maintain().await.unwrap();
    assert_eq!(
        mailbox.stored_count().await.unwrap(),
        1,
        "only c's message is left"
    );
    let again = mailbox
        .put_unlimited(message(0, b, after(60_000)))
        .await
        .unwrap();
    assert!(!again.duplicate);
    // ...and ids are never reused, even after the newest was deleted.
    assert!(again.id > second.id);

    // Dropping a conversation empties it both ways, and nothing else.
    mailbox
        .put_unlimited(NewMessage {
            sender: b,
            recipient: a,
            client_msg_id: CLIENT_IDS[3],
            ciphertext: b"x",
            sent_at: t0,
            expires_at: after(60_000),
        })
        .await
        .unwrap();
    mailbox
        .put_unlimited(message(4, c, after(60_000)))
        .await
        .unwrap();
    assert_eq!(mailbox.drop_conversation(b, a).await.unwrap(), 2);
    assert_eq!(mailbox.stored_count().await.unwrap(), 2);
    assert_eq!(
        mailbox.fetch(c, MessageId(0), t0, 10).await.unwrap().len(),
        2
    );
    assert_eq!(mailbox.pending_between(a, b, t0).await.unwrap(), 0);
    mailbox.drop_conversation(a, c).await.unwrap();
    assert_eq!(mailbox.stored_count().await.unwrap(), 0);
}

/// How long the short-lived message of [`mailbox_lifecycle`] lives, in
/// real time: every check that needs it still stored must fit in it, on a
/// slow machine too.
const SHORT_LIFE_MS: i64 = 4_000;

const CLIENT_IDS: [&[u8]; 6] = [&[0; 16], &[1; 16], &[2; 16], &[3; 16], &[4; 16], &[5; 16]];

/// `put` with no quota, for the steps that are not about it.
#[async_trait::async_trait]
trait PutUnlimited {
    async fn put_unlimited(&self, message: NewMessage<'_>) -> Result<Accepted, PutError>;
}

#[async_trait::async_trait]
impl<M: MailboxStore + ?Sized> PutUnlimited for M {
    async fn put_unlimited(&self, message: NewMessage<'_>) -> Result<Accepted, PutError> {
        self.put(message, &super::Quota::messages(u64::MAX)).await
    }
}

async fn accounts_are_unique(accounts: &dyn AccountStore) {
    let id = user(accounts, 1_000_000).await;
    let keys = accounts.identity(id).await.unwrap().unwrap();
    assert!(id.is_of_key(&keys.ed25519));
    let again = accounts.create_account(id, &keys, UnixMillis(2)).await;
    assert!(matches!(again, Err(CreateAccountError::AlreadyRegistered)));
    let stranger = UserId::from_ed25519(&[0x55; 32]);
    assert_eq!(accounts.identity(stranger).await.unwrap(), None);
}

async fn request_accept_list(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let a = user(accounts, 1).await;
    let b = user(accounts, 2).await;
    // An id nobody registered is asked like anyone who never answers: the
    // request is stored, listed and cancellable, so nothing tells the
    // requester who exists.
    let ghost = UserId::from_ed25519(&[0x66; 32]);
    assert_eq!(
        friends.request(a, ghost, UnixMillis(10)).await.unwrap(),
        RequestOutcome::Sent
    );
    assert_eq!(
        friends.request(a, ghost, UnixMillis(11)).await.unwrap(),
        RequestOutcome::AlreadyPending
    );
    assert_eq!(outgoing(friends, a).await[0].user, ghost);
    friends.cancel(a, ghost).await.unwrap();
    assert!(outgoing(friends, a).await.is_empty());
    // Blocking one works alike, and so does lifting it.
    assert!(!friends.block(a, ghost, UnixMillis(10)).await.unwrap());
    friends.unblock(a, ghost).await.unwrap();
    assert!(matches!(
        friends.request(a, a, UnixMillis(10)).await,
        Err(FriendError::SelfTarget)
    ));
    assert_eq!(
        friends.request(a, b, UnixMillis(10)).await.unwrap(),
        RequestOutcome::Sent
    );
    // Asking twice changes nothing.
    assert_eq!(
        friends.request(a, b, UnixMillis(11)).await.unwrap(),
        RequestOutcome::AlreadyPending
    );
    let pending_b = friends.pending(b, LISTED_AT).await.unwrap();
    assert_eq!(pending_b.incoming.len(), 1);
    assert_eq!(pending_b.incoming[0].user, a);
    assert_eq!(outgoing(friends, a).await[0].user, b);
    assert!(!friends.are_friends(a, b).await.unwrap());
    // Only the recipient can accept.
    assert!(matches!(
        friends.accept(a, b, UnixMillis(12)).await,
        Err(FriendError::NoSuchRequest)
    ));
    friends.accept(b, a, UnixMillis(12)).await.unwrap();
    assert!(friends.are_friends(a, b).await.unwrap());
    assert!(friends.are_friends(b, a).await.unwrap());
    assert_eq!(friends.friends(a).await.unwrap()[0].user, b);
    assert_eq!(friends.friends(b).await.unwrap()[0].user, a);
    assert_eq!(friends.friends(b).await.unwrap()[0].since, UnixMillis(12));
    assert!(outgoing(friends, a).await.is_empty());
    assert!(incoming(friends, b).await.is_empty());
    assert!(matches!(
        friends.request(b, a, UnixMillis(13)).await,
        Err(FriendError::AlreadyFriends)
    ));

    // Crossing requests make friends at once.
    let c = user(accounts, 3).await;
    assert_eq!(
        friends.request(a, c, UnixMillis(20)).await.unwrap(),
        RequestOutcome::Sent
    );
    assert_eq!(
        friends.request(c, a, UnixMillis(21)).await.unwrap(),
        RequestOutcome::BecameFriends
    );
    assert!(friends.are_friends(a, c).await.unwrap());
    assert!(outgoing(friends, a).await.is_empty());
}

async fn decline_cancel_remove(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let a = user(accounts, 101).await;
    let b = user(accounts, 102).await;
    friends.request(a, b, UnixMillis(1)).await.unwrap();
    friends.decline(b, a).await.unwrap();
    assert!(incoming(friends, b).await.is_empty());
    assert!(matches!(
        friends.decline(b, a).await,
        Err(FriendError::NoSuchRequest)
    ));
    assert!(matches!(
        friends.accept(b, a, UnixMillis(2)).await,
        Err(FriendError::NoSuchRequest)
    ));

    friends.request(a, b, UnixMillis(3)).await.unwrap();
    friends.cancel(a, b).await.unwrap();
    assert!(incoming(friends, b).await.is_empty());
    assert!(matches!(
        friends.cancel(a, b).await,
        Err(FriendError::NoSuchRequest)
    ));

    assert!(matches!(
        friends.remove(a, b).await,
        Err(FriendError::NotFriends)
    ));
    friends.request(a, b, UnixMillis(4)).await.unwrap();
    friends.accept(b, a, UnixMillis(5)).await.unwrap();
    friends.remove(b, a).await.unwrap();
    assert!(!friends.are_friends(a, b).await.unwrap());
    assert!(!friends.are_friends(b, a).await.unwrap());
    assert!(friends.friends(a).await.unwrap().is_empty());
}

async fn blocking(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let a = user(accounts, 201).await;
    let b = user(accounts, 202).await;
    friends.request(a, b, UnixMillis(1)).await.unwrap();
    friends.accept(b, a, UnixMillis(2)).await.unwrap();
    // Blocking ends the friendship.
    assert!(friends.block(b, a, UnixMillis(3)).await.unwrap());
    assert!(!friends.are_friends(a, b).await.unwrap());
    assert_eq!(
        friends.pending(b, LISTED_AT).await.unwrap().blocked,
        vec![a]
    );
    // The blocked user's request looks sent to them, and the blocker never
    // sees it: not listed, not acceptable.
    assert_eq!(
        friends.request(a, b, UnixMillis(4)).await.unwrap(),
        RequestOutcome::Shadowed
    );
    assert_eq!(outgoing(friends, a).await[0].user, b);
    assert!(incoming(friends, b).await.is_empty());
    assert!(matches!(
        friends.accept(b, a, UnixMillis(4)).await,
        Err(FriendError::NoSuchRequest)
    ));
    // The blocker must unblock before asking.
    assert!(matches!(
        friends.request(b, a, UnixMillis(5)).await,
        Err(FriendError::Blocked)
    ));
    friends.unblock(b, a).await.unwrap();
    assert!(matches!(
        friends.unblock(b, a).await,
        Err(FriendError::NotBlocked)
    ));
    // Lifting the block forgets what was sent meanwhile.
    assert!(outgoing(friends, a).await.is_empty());
    assert!(incoming(friends, b).await.is_empty());
    assert_eq!(
        friends.request(a, b, UnixMillis(6)).await.unwrap(),
        RequestOutcome::Sent
    );
    // Blocking drops pending requests both ways.
    assert!(!friends.block(b, a, UnixMillis(7)).await.unwrap());
    assert!(incoming(friends, b).await.is_empty());
    assert!(matches!(
        friends.block(a, a, UnixMillis(8)).await,
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
        friends.request(other, hub, UnixMillis(1)).await.unwrap();
        friends.accept(hub, other, UnixMillis(2)).await.unwrap();
    }
    assert_eq!(friends.friends(hub).await.unwrap().len(), MAX_FRIENDS);
    let late = user(accounts, 399).await;
    // Refused at request, both ways round.
    assert!(matches!(
        friends.request(hub, late, UnixMillis(3)).await,
        Err(FriendError::FriendLimit(Side::Me))
    ));
    assert!(matches!(
        friends.request(late, hub, UnixMillis(3)).await,
        Err(FriendError::FriendLimit(Side::Them))
    ));
    // Refused at accept: a request made before the 20th friend was accepted.
    let early = user(accounts, 398).await;
    let hub2 = user(accounts, 397).await;
    friends.request(early, hub2, UnixMillis(1)).await.unwrap();
    for n in 0..MAX_FRIENDS as u32 {
        let other = user(accounts, 400 + n).await;
        friends.request(other, hub2, UnixMillis(1)).await.unwrap();
        friends.accept(hub2, other, UnixMillis(2)).await.unwrap();
    }
    assert!(matches!(
        friends.accept(hub2, early, UnixMillis(3)).await,
        Err(FriendError::FriendLimit(Side::Me))
    ));
    // The request stays pending so it can be accepted once there is room.
    assert_eq!(
        friends
            .pending(hub2, LISTED_AT)
            .await
            .unwrap()
            .incoming
            .len(),
        1
    );
    assert_eq!(friends.friends(hub2).await.unwrap().len(), MAX_FRIENDS);
    let first = friends.friends(hub2).await.unwrap()[0].user;
    friends.remove(hub2, first).await.unwrap();
    friends.accept(hub2, early, UnixMillis(4)).await.unwrap();
    assert_eq!(friends.friends(hub2).await.unwrap().len(), MAX_FRIENDS);
}

async fn pending_limit(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let asker = user(accounts, 500).await;
    for n in 0..MAX_PENDING_OUTGOING as u32 {
        let other = user(accounts, 501 + n).await;
        friends.request(asker, other, UnixMillis(1)).await.unwrap();
    }
    let one_more = user(accounts, 599).await;
    assert!(matches!(
        friends.request(asker, one_more, UnixMillis(2)).await,
        Err(FriendError::PendingLimit(Side::Me))
    ));

    // Incoming: a user can have MAX_PENDING_INCOMING requests waiting.
    let target = user(accounts, 600).await;
    for n in 0..MAX_PENDING_INCOMING as u32 {
        let other = user(accounts, 601 + n).await;
        friends.request(other, target, UnixMillis(1)).await.unwrap();
    }
    let late = user(accounts, 699).await;
    assert!(matches!(
        friends.request(late, target, UnixMillis(2)).await,
        Err(FriendError::PendingLimit(Side::Them))
    ));
    // Requests from blocked users take none of the room: blocking one of
    // the askers (which drops its request) frees a place.
    let first = incoming(friends, target).await[0].user;
    friends.block(target, first, UnixMillis(3)).await.unwrap();
    assert_eq!(
        friends.request(late, target, UnixMillis(4)).await.unwrap(),
        RequestOutcome::Sent
    );
    // The blocked asker sees exactly what anyone else would: first that
    // the target is full...
    assert!(matches!(
        friends.request(first, target, UnixMillis(5)).await,
        Err(FriendError::PendingLimit(Side::Them))
    ));
    // ...then, once there is room, a request that looks sent but is shadowed
    // and takes none of the room.
    friends.decline(target, late).await.unwrap();
    assert_eq!(
        friends.request(first, target, UnixMillis(6)).await.unwrap(),
        RequestOutcome::Shadowed
    );
    assert_eq!(
        friends
            .pending(target, LISTED_AT)
            .await
            .unwrap()
            .incoming
            .len(),
        MAX_PENDING_INCOMING - 1
    );
    assert_eq!(
        friends.request(late, target, UnixMillis(7)).await.unwrap(),
        RequestOutcome::Sent
    );
}

/// Strangers who fill a user's pending requests lock out strangers, never
/// someone the user invited.
async fn invited_requests_pass_strangers(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    let target = user(accounts, 1_000).await;
    for n in 0..MAX_PENDING_INCOMING as u32 {
        let stranger = user(accounts, 1_001 + n).await;
        friends
            .request(stranger, target, UnixMillis(1))
            .await
            .unwrap();
    }
    let late = user(accounts, 1_098).await;
    assert!(matches!(
        friends.request(late, target, UnixMillis(2)).await,
        Err(FriendError::PendingLimit(Side::Them))
    ));
    let friend = user(accounts, 1_099).await;
    assert_eq!(
        friends
            .request_with(friend, target, UnixMillis(2), Introduction::Invited)
            .await
            .unwrap(),
        RequestOutcome::Sent
    );
    let listed = incoming(friends, target).await;
    assert_eq!(listed.len(), MAX_PENDING_INCOMING + 1);
    assert!(listed.iter().any(|r| r.user == friend));
    friends.accept(target, friend, UnixMillis(3)).await.unwrap();
    assert!(friends.are_friends(target, friend).await.unwrap());
    // Still full for strangers.
    assert!(matches!(
        friends.request(late, target, UnixMillis(4)).await,
        Err(FriendError::PendingLimit(Side::Them))
    ));
}

/// Unanswered requests expire after `FRIEND_REQUEST_LIFETIME`: not listed,
/// not counted, not acceptable, and purged.
async fn requests_expire(accounts: &dyn AccountStore, friends: &dyn FriendStore) {
    use wisp_proto::limits::FRIEND_REQUEST_LIFETIME;
    let lifetime = i64::try_from(FRIEND_REQUEST_LIFETIME.as_millis()).unwrap();
    let start = UnixMillis(1_000_000);
    let expired = UnixMillis(start.0 + lifetime);
    let target = user(accounts, 2_000).await;
    let mut strangers = Vec::new();
    for n in 0..MAX_PENDING_INCOMING as u32 {
        let stranger = user(accounts, 2_001 + n).await;
        friends.request(stranger, target, start).await.unwrap();
        strangers.push(stranger);
    }
    let late = user(accounts, 2_099).await;
    let just_before = UnixMillis(expired.0 - 1);
    assert!(matches!(
        friends.request(late, target, just_before).await,
        Err(FriendError::PendingLimit(Side::Them))
    ));
    assert_eq!(
        friends
            .pending(target, just_before)
            .await
            .unwrap()
            .incoming
            .len(),
        MAX_PENDING_INCOMING
    );
    // Expired: not listed on either side...
    let pending = friends.pending(target, expired).await.unwrap();
    assert!(pending.incoming.is_empty());
    assert!(
        friends
            .pending(strangers[0], expired)
            .await
            .unwrap()
            .outgoing
            .is_empty()
    );
    // ...not acceptable...
    assert!(matches!(
        friends.accept(target, strangers[0], expired).await,
        Err(FriendError::NoSuchRequest)
    ));
    // ...and taking no room: a new request gets in.
    assert_eq!(
        friends.request(late, target, expired).await.unwrap(),
        RequestOutcome::Sent
    );
    // The purge deletes what expired and keeps what did not.
    let other = user(accounts, 2_098).await;
    friends.request(strangers[1], other, start).await.unwrap();
    assert!(friends.purge_expired_requests(expired).await.unwrap() >= 1);
    assert_eq!(friends.purge_expired_requests(expired).await.unwrap(), 0);
    let listed = friends.pending(target, expired).await.unwrap().incoming;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].user, late);
    // Expired requests can be made again.
    assert_eq!(
        friends.request(strangers[1], other, expired).await.unwrap(),
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
        friends
            .request(asker, popular, UnixMillis(1))
            .await
            .unwrap();
        askers.push(asker);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for asker in askers {
        let friends = Arc::clone(&friends);
        tasks.spawn(async move { friends.accept(popular, asker, UnixMillis(2)).await });
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
