//! Storage behind one trait per concern, so services never see a backend.
//!
//! - [`AccountStore`]: registered identities (public keys only) and the
//!   deployment's name.
//! - [`FriendStore`]: friendships, pending requests and blocks, with the
//!   20-friend cap enforced atomically inside the backend.
//! - [`PreKeyStore`]: one-time and fallback keys for end-to-end sessions.
//! - [`MailboxStore`]: ciphertext waiting for its recipient, with expiry.
//!
//! Backends live in their own modules with their own migrations:
//! [`sqlite`] is the embedded default (all four traits in one file);
//! the cluster backend is [`postgres`] (accounts, friends, keys) with
//! [`redis_mailbox`] (mailboxes). The two SQL backends share one body of
//! SQL (`sql`) and one set of friend rules (`friend_rules`); `redis_link`
//! is the Redis connection (server, Sentinel or Cluster) the mailbox and
//! the cross-node bus share. Every backend must pass the shared
//! conformance suite (`conformance`), which is what "behind the same
//! traits" means in practice.

use std::sync::Arc;

use async_trait::async_trait;
use wisp_proto::{MessageId, UnixMillis, UserId};

mod friend_rules;
pub(crate) mod lua;
pub mod postgres;
pub mod redis_limits;
pub mod redis_link;
pub mod redis_mailbox;
mod sql;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

/// A backend's own error, kept whole for operators' logs.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A backend failed. Carries no user data; its text and sources are for
/// operators' logs and never reach a client (`error.rs` answers
/// "internal error").
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The SQL database (SQLite or PostgreSQL) could not be reached or
    /// refused the query; the source says why.
    #[error("the SQL database failed")]
    Sql(#[source] BackendError),
    /// Redis could not be reached or refused the command; the source says
    /// why.
    #[error("Redis failed")]
    Redis(#[source] BackendError),
    /// A schema migration failed; nothing of it was applied.
    #[error("schema migration {version} ({name}) failed")]
    Migration {
        /// The migration's number.
        version: i64,
        /// The migration's name.
        name: &'static str,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// The data directory could not be created.
    #[error("cannot create data directory {}", .path.display())]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The store was closed and takes no more work.
    #[error("the store is closed")]
    Closed,
    /// A write reached fewer Redis replicas than required in time; it may
    /// be on the primary, and repeating it is safe.
    #[error("a write reached {reached} of {wanted} Redis replicas within {waited_ms} ms")]
    Unreplicated {
        /// How many replicas acknowledged it.
        reached: u32,
        /// How many were required.
        wanted: u32,
        /// How long the write waited for them.
        waited_ms: u64,
    },
    /// The store's settings cannot work (a malformed Redis URL, an option
    /// the backend does not support).
    #[error("{0}")]
    Config(String),
    /// The stored data does not have the shape this version expects.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sql(Box::new(error))
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Sql(Box::new(error))
    }
}

impl From<redis::RedisError> for StoreError {
    fn from(error: redis::RedisError) -> Self {
        Self::Redis(Box::new(error))
    }
}

/// A user's public identity keys as registered. Public keys only: the
/// server never holds a private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityKeys {
    /// Ed25519 signing key; the user id is its hash.
    pub ed25519: [u8; 32],
    /// Curve25519 key for end-to-end sessions, signed by the Ed25519 key.
    pub curve25519: [u8; 32],
    /// The Ed25519 signature over the Curve25519 key (identity-key
    /// transcript), for clients to check.
    pub curve25519_signature: Vec<u8>,
}

/// A public one-time (or fallback) key with its owner's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedKey {
    /// Curve25519 public key.
    pub public_key: [u8; 32],
    /// Ed25519 signature over the one-time-key transcript.
    pub signature: Vec<u8>,
}

/// A claimed key: a one-time key (now deleted), or the fallback key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKey {
    /// The key.
    pub key: SignedKey,
    /// True when no one-time key was left and this is the fallback key.
    pub fallback: bool,
}

/// One-time and fallback keys for starting end-to-end sessions.
#[async_trait]
pub trait PreKeyStore: Send + Sync + 'static {
    /// Adds one-time keys (keys already stored are skipped; the total is
    /// capped at [`wisp_proto::limits::MAX_STORED_ONE_TIME_KEYS`], extra
    /// keys are not stored) and replaces the fallback key if one is given.
    /// Returns how many one-time keys the owner now has.
    async fn add_keys(
        &self,
        owner: UserId,
        one_time: &[SignedKey],
        fallback: Option<&SignedKey>,
    ) -> Result<usize, StoreError>;

    /// Takes one of `owner`'s one-time keys (oldest first, deleted as it is
    /// handed out), or else its fallback key; `None` when it has neither.
    async fn claim(&self, owner: UserId) -> Result<Option<ClaimedKey>, StoreError>;

    /// How many one-time keys `owner` has left.
    async fn one_time_key_count(&self, owner: UserId) -> Result<usize, StoreError>;
}

/// A message to store.
#[derive(Debug, Clone, Copy)]
pub struct NewMessage<'a> {
    /// Who sent it.
    pub sender: UserId,
    /// Whose mailbox it goes to.
    pub recipient: UserId,
    /// The sender's id for it; a second message with the same id from the
    /// same sender is a retry.
    pub client_msg_id: &'a [u8],
    /// Opaque end-to-end ciphertext.
    pub ciphertext: &'a [u8],
    /// When the server accepted it.
    pub sent_at: UnixMillis,
    /// When it must be gone, delivered or not.
    pub expires_at: UnixMillis,
}

/// A cross-node wake-up for a recipient: what the bus publishes, and
/// where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    /// The recipient's pub/sub channel.
    pub channel: String,
    /// The bus's message on it.
    pub payload: Vec<u8>,
}

/// The outcome of storing a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// Its id.
    pub id: MessageId,
    /// When it expires.
    pub expires_at: UnixMillis,
    /// True when this was a retry of a message stored before (nothing new
    /// was stored).
    pub duplicate: bool,
}

/// How much may wait, checked by every put in the same atomic step as the
/// store. Only unexpired messages count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Messages of one sender waiting in one recipient's mailbox.
    pub per_conversation: u64,
    /// Ciphertext bytes waiting in one recipient's mailbox, from anyone.
    pub mailbox_bytes: u64,
    /// Ciphertext bytes one sender has waiting, in every mailbox.
    pub outbox_bytes: u64,
}

impl Quota {
    /// The server's quota: [`wisp_proto::limits::MAX_PENDING_PER_CONVERSATION`]
    /// and the configured byte caps.
    pub fn of(config: &crate::config::Config) -> Self {
        Self {
            per_conversation: wisp_proto::limits::MAX_PENDING_PER_CONVERSATION,
            mailbox_bytes: config.max_mailbox_bytes,
            outbox_bytes: config.max_outbox_bytes,
        }
    }

    /// Only the per-conversation count (bytes unlimited).
    pub const fn messages(per_conversation: u64) -> Self {
        Self {
            per_conversation,
            mailbox_bytes: u64::MAX,
            outbox_bytes: u64::MAX,
        }
    }
}

/// Why a message was not stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PutError {
    /// The sender already has the most messages allowed waiting there.
    #[error("mailbox full")]
    MailboxFull,
    /// The recipient's mailbox holds [`Quota::mailbox_bytes`] already (with
    /// this message it would hold more).
    #[error("recipient's mailbox full")]
    MailboxBytes,
    /// The sender has [`Quota::outbox_bytes`] waiting already (with this
    /// message it would have more).
    #[error("sender's outbox full")]
    OutboxBytes,
    /// The conversation was closed (a removal or block) and not reopened;
    /// see [`MailboxStore::drop_conversation`].
    #[error("conversation closed")]
    Closed,
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A stored message, as delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its id.
    pub id: MessageId,
    /// Who sent it.
    pub sender: UserId,
    /// Opaque ciphertext.
    pub ciphertext: Vec<u8>,
    /// When the server accepted it.
    pub sent_at: UnixMillis,
    /// When it expires.
    pub expires_at: UnixMillis,
}

/// Mailboxes of short-lived ciphertext.
///
/// Ids increase in the order messages become visible to `fetch`, so a
/// reader that remembers the last id it saw never misses one. Ids are
/// counted per recipient: they say nothing about other mailboxes.
///
/// A retry is recognised by sender, recipient and client message id: the
/// same client id sent to another recipient is another message.
#[async_trait]
pub trait MailboxStore: Send + Sync + 'static {
    /// Stores a message durably, or recognises a retry. Refuses it when
    /// it would go past `quota` (checked in the same atomic step, after the
    /// retry check: a retry is always answered). Returns only once the
    /// message would survive a crash.
    async fn put(&self, message: NewMessage<'_>, quota: &Quota) -> Result<Accepted, PutError>;

    /// Whether [`MailboxStore::put_and_wake`] publishes its wake-up itself
    /// (a Redis mailbox: in the put's own round trip); a store that does
    /// not leaves it to the caller.
    fn publishes_wakes(&self) -> bool {
        false
    }

    /// [`MailboxStore::put`], and, where the store
    /// [publishes wakes](MailboxStore::publishes_wakes), the cross-node
    /// wake-up `wake` (a pub/sub channel and payload) published after it in
    /// the same round trip (also when the put is refused or a retry: a
    /// wake-up is only a hint to look).
    async fn put_and_wake(
        &self,
        message: NewMessage<'_>,
        quota: &Quota,
        wake: Option<&Wake>,
    ) -> Result<Accepted, PutError> {
        let _ = wake;
        self.put(message, quota).await
    }

    /// Up to `limit` of `recipient`'s messages with ids after `after`,
    /// oldest first, leaving out any that expired by `now`.
    async fn fetch(
        &self,
        recipient: UserId,
        after: MessageId,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;

    /// Deletes read messages from `recipient`'s mailbox (burn); ids that are
    /// not there (already burned, expired, someone else's) are ignored.
    /// Returns how many were deleted.
    async fn burn(&self, recipient: UserId, ids: &[MessageId]) -> Result<u64, StoreError>;

    /// Deletes up to `limit` messages (and retry records) that expired by
    /// `now`; returns how many messages went.
    async fn purge_expired(&self, now: UnixMillis, limit: usize) -> Result<u64, StoreError>;

    /// Deletes every undelivered message between `a` and `b`, both ways.
    ///
    /// A mailbox shared by many nodes also closes the conversation: for
    /// longer than a node caches a friendship (`cache::FRIENDSHIP_TTL`), a
    /// put between the two fails with [`PutError::Closed`] until
    /// [`MailboxStore::reopen_conversation`]. That is what stops a node that
    /// has not yet heard of a removal made on another. (A single node hears
    /// of its own removals before it answers them, so the embedded store
    /// does not need to.)
    async fn drop_conversation(&self, a: UserId, b: UserId) -> Result<u64, StoreError>;

    /// `a` and `b` became friends (again): lets puts between them through.
    /// Default: nothing was closed.
    async fn reopen_conversation(&self, _a: UserId, _b: UserId) -> Result<(), StoreError> {
        Ok(())
    }

    /// How many messages are stored in all (for tests and metrics).
    #[cfg(any(test, feature = "test-support"))]
    async fn stored_count(&self) -> Result<u64, StoreError>;

    /// How many of `sender`'s messages wait in `recipient`'s mailbox,
    /// leaving out any that expired by `now`.
    #[cfg(any(test, feature = "test-support"))]
    async fn pending_between(
        &self,
        sender: UserId,
        recipient: UserId,
        now: UnixMillis,
    ) -> Result<u64, StoreError>;

    /// Deletes everything waiting that concerns `user` (account deletion):
    /// its mailbox with its id counter, every message it sent that waits
    /// in another mailbox (with the sender's byte count), and every retry
    /// record naming it, either way. Returns how many messages went.
    async fn erase_user(&self, user: UserId) -> Result<u64, StoreError>;

    /// Housekeeping after deletions, so deleted ciphertext leaves the disk
    /// (SQLite: checkpoint and truncate the WAL). Returns false when it could
    /// not finish now and should be tried again. Default: nothing to do.
    async fn maintain(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

/// What the SQL stores keep of a deleted account: SHA-256 over a label and
/// the id. It names no one (the id is not in it, nor derivable from it);
/// it only answers "was this id deleted?" for someone who already knows
/// the id, which is what refusing its keys a second registration needs.
pub fn tombstone(user: UserId) -> [u8; 32] {
    use sha2::Digest;
    let mut digest = sha2::Sha256::new();
    digest.update(b"wisp-deleted-account-v1");
    digest.update(user.as_bytes());
    digest.finalize().into()
}

/// Why an account was not created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateAccountError {
    /// An account with this id (hence these keys) exists.
    #[error("already registered")]
    AlreadyRegistered,
    /// These keys belonged to an account that was deleted: they can never
    /// register again.
    #[error("account deleted")]
    Deleted,
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registered identities.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Stores a new account; refuses one whose id exists.
    async fn create_account(
        &self,
        user: UserId,
        keys: &IdentityKeys,
        now: UnixMillis,
    ) -> Result<(), CreateAccountError>;

    /// The identity keys of a registered user.
    async fn identity(&self, user: UserId) -> Result<Option<IdentityKeys>, StoreError>;

    /// Deletes `user`'s account for good, in one transaction: identity
    /// keys, one-time and fallback keys, friendships (both sides), friend
    /// requests either way, blocks it placed and blocks placed on it. What
    /// remains is the id's [`tombstone`], so the same keys can never
    /// register again. Returns the friends it had (none when the id was
    /// deleted already: doing it again changes nothing).
    async fn delete_account(&self, user: UserId) -> Result<Vec<UserId>, StoreError>;

    /// The deployment's name, signed into every login. The first caller's
    /// `proposed` name is stored and every later call returns the stored one,
    /// so all nodes of a deployment agree.
    async fn server_name(&self, proposed: &str) -> Result<String, StoreError>;

    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Which side of a friend operation hit a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The user who asked for the operation.
    Me,
    /// The other user.
    Them,
}

/// Why a friend operation was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FriendError {
    /// Too many users blocked.
    #[error("block limit reached")]
    BlockLimit,
    /// A user cannot befriend, block or remove themselves.
    #[error("that is your own id")]
    SelfTarget,
    /// The two are friends already.
    #[error("already friends")]
    AlreadyFriends,
    /// The two are not friends.
    #[error("not friends")]
    NotFriends,
    /// Someone already has the maximum number of friends.
    #[error("friend limit reached")]
    FriendLimit(Side),
    /// Someone has too many pending requests.
    #[error("pending request limit reached")]
    PendingLimit(Side),
    /// There is no such pending request.
    #[error("no such friend request")]
    NoSuchRequest,
    /// The asking user has blocked the other one.
    #[error("you have blocked this user")]
    Blocked,
    /// There is no block to lift.
    #[error("this user is not blocked")]
    NotBlocked,
    /// The backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a friend request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A new request waits for the other side.
    Sent,
    /// The same request was pending already; nothing changed.
    AlreadyPending,
    /// The other side had already asked: the two are now friends.
    BecameFriends,
    /// The other side has blocked the requester. The request is stored so
    /// the requester sees exactly what any request looks like (listed,
    /// cancellable, same limits), but the blocker never sees it: it is not
    /// listed, counted or acceptable, and is deleted if the block is lifted.
    Shadowed,
}

/// How a friend request reaches its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Introduction {
    /// A request like any other: refused when the recipient already has
    /// [`wisp_proto::limits::MAX_PENDING_INCOMING`] requests waiting.
    Stranger,
    /// The requester holds an invitation the recipient signed (checked by
    /// the caller): let in even when strangers filled the recipient's
    /// requests, so nobody can lock a genuine friend out.
    Invited,
}

/// A friend, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendEntry {
    /// Their id.
    pub user: UserId,
    /// When the friendship began.
    pub since: UnixMillis,
}

/// A pending request, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestEntry {
    /// The other side of the request.
    pub user: UserId,
    /// When it was sent.
    pub created: UnixMillis,
}

/// Everything pending for one user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingRequests {
    /// Requests others sent this user, oldest first.
    pub incoming: Vec<RequestEntry>,
    /// Requests this user sent, oldest first.
    pub outgoing: Vec<RequestEntry>,
    /// Users this user has blocked.
    pub blocked: Vec<UserId>,
}

/// Friendships, requests and blocks.
///
/// Every mutating method is atomic, and the limits in
/// [`wisp_proto::limits`] hold under any interleaving of concurrent calls:
/// no one ever has more than [`wisp_proto::limits::MAX_FRIENDS`] friends.
#[async_trait]
pub trait FriendStore: Send + Sync + 'static {
    /// `from` asks `to` to be friends. If `to` had already asked `from`, the
    /// two become friends at once. Refused when either side is at the friend
    /// limit, `from` has too many outgoing or (unless
    /// [invited](Introduction::Invited)) `to` too many incoming requests, or
    /// `from` has blocked `to`. When `to` has blocked `from` the request is
    /// [shadowed](RequestOutcome::Shadowed): `from` cannot tell. Asking
    /// again while a request is pending succeeds and changes nothing.
    ///
    /// `to` need not be registered: a request to an unknown id is stored and
    /// answered exactly like one to a user who never answers, so replies
    /// tell no one who exists.
    ///
    /// A request expires [`wisp_proto::limits::FRIEND_REQUEST_LIFETIME`]
    /// after it was made: from then on it is not listed, counted or
    /// acceptable, and it is deleted (by the next request touching either
    /// user, or [`FriendStore::purge_expired_requests`]).
    async fn request_with(
        &self,
        from: UserId,
        to: UserId,
        now: UnixMillis,
        introduction: Introduction,
    ) -> Result<RequestOutcome, FriendError>;

    /// [`FriendStore::request_with`] from a stranger.
    async fn request(
        &self,
        from: UserId,
        to: UserId,
        now: UnixMillis,
    ) -> Result<RequestOutcome, FriendError> {
        self.request_with(from, to, now, Introduction::Stranger)
            .await
    }

    /// Deletes every request that expired by `now`; returns how many.
    async fn purge_expired_requests(&self, now: UnixMillis) -> Result<u64, StoreError>;

    /// `me` accepts `from`'s pending request. Refused when either side is at
    /// the friend limit; the request then stays pending.
    async fn accept(&self, me: UserId, from: UserId, now: UnixMillis) -> Result<(), FriendError>;

    /// `me` declines `from`'s pending request.
    async fn decline(&self, me: UserId, from: UserId) -> Result<(), FriendError>;

    /// `me` withdraws the request it sent `to`.
    async fn cancel(&self, me: UserId, to: UserId) -> Result<(), FriendError>;

    /// Ends a friendship, for both sides.
    async fn remove(&self, me: UserId, other: UserId) -> Result<(), FriendError>;

    /// Blocks `other` (any id, registered or not): ends any friendship and drops
    /// pending requests both ways. Returns whether a friendship ended.
    /// Refused past [`wisp_proto::limits::MAX_BLOCKS`].
    async fn block(&self, me: UserId, other: UserId, now: UnixMillis) -> Result<bool, FriendError>;

    /// Lifts a block, and forgets requests `other` sent while blocked.
    /// Refused when there is none.
    async fn unblock(&self, me: UserId, other: UserId) -> Result<(), FriendError>;

    /// `me`'s friends, oldest friendship first.
    async fn friends(&self, me: UserId) -> Result<Vec<FriendEntry>, StoreError>;

    /// `me`'s pending requests (those not expired by `now`) and blocks.
    async fn pending(&self, me: UserId, now: UnixMillis) -> Result<PendingRequests, StoreError>;

    /// Whether the two are friends (the check every friends-only operation
    /// makes).
    async fn are_friends(&self, a: UserId, b: UserId) -> Result<bool, StoreError>;
}

/// Rate limits counted once for the whole deployment, whichever node an
/// event reaches.
#[async_trait]
pub trait LimitStore: Send + Sync + std::fmt::Debug {
    /// Counts one event of `key` (a user or an address) against the limit
    /// named `limit`: `per_minute` events with bursts up to the same,
    /// refilled continuously; 0 is no limit. `None` if it passes, or how
    /// long until one would; a refused event does not count.
    async fn take(
        &self,
        limit: &str,
        key: &str,
        per_minute: u32,
    ) -> Result<Option<std::time::Duration>, StoreError>;
}

/// The set of stores a server runs on.
#[derive(Clone)]
pub struct Stores {
    /// Identities.
    pub accounts: Arc<dyn AccountStore>,
    /// Friendships.
    pub friends: Arc<dyn FriendStore>,
    /// One-time and fallback keys.
    pub prekeys: Arc<dyn PreKeyStore>,
    /// Mailboxes.
    pub mailbox: Arc<dyn MailboxStore>,
    /// Rate limits shared by every node; `None` where each node counts
    /// alone (the embedded backend runs one node).
    pub limits: Option<Arc<dyn LimitStore>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores").finish_non_exhaustive()
    }
}
