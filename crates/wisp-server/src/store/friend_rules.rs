//! The friend rules, written once for every backend.
//!
//! [`FriendTx`] is the primitive reads and writes of friendships, requests
//! and blocks, run inside one transaction in which the two users' rows
//! cannot change underneath (SQLite: `BEGIN IMMEDIATE`, which holds the
//! database's write lock; PostgreSQL: both accounts locked `FOR UPDATE` in
//! id order). Its one implementation, shared by both SQL backends, is in
//! `sql`. The functions here decide; the backends only store.

use async_trait::async_trait;
use wisp_proto::limits::{
    FRIEND_REQUEST_LIFETIME, MAX_BLOCKS, MAX_FRIENDS, MAX_PENDING_INCOMING, MAX_PENDING_OUTGOING,
};
use wisp_proto::{UnixMillis, UserId};

use super::{FriendError, Introduction, RequestOutcome, Side, StoreError};

/// Requests created at or before this time have expired by `now`.
pub(crate) fn request_cutoff(now: UnixMillis) -> UnixMillis {
    let lifetime = i64::try_from(FRIEND_REQUEST_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    UnixMillis(now.0.saturating_sub(lifetime))
}

/// Primitive operations on one transaction.
#[async_trait]
pub(crate) trait FriendTx: Send {
    /// Deletes the requests to and from `user` created at or before
    /// `cutoff` (expired ones), so no rule below ever counts or accepts one.
    async fn delete_expired_requests(
        &mut self,
        user: UserId,
        cutoff: UnixMillis,
    ) -> Result<(), StoreError>;
    async fn has_blocked(&mut self, owner: UserId, other: UserId) -> Result<bool, StoreError>;
    async fn are_friends(&mut self, a: UserId, b: UserId) -> Result<bool, StoreError>;
    async fn has_request(&mut self, from: UserId, to: UserId) -> Result<bool, StoreError>;
    async fn friend_count(&mut self, user: UserId) -> Result<usize, StoreError>;
    async fn outgoing_count(&mut self, user: UserId) -> Result<usize, StoreError>;
    /// Requests to `user`, leaving out those from users it blocked.
    async fn visible_incoming_count(&mut self, user: UserId) -> Result<usize, StoreError>;
    async fn block_count(&mut self, user: UserId) -> Result<usize, StoreError>;
    async fn insert_request(
        &mut self,
        from: UserId,
        to: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError>;
    /// Deletes the request `from` → `to`; returns whether there was one.
    async fn delete_request(&mut self, from: UserId, to: UserId) -> Result<bool, StoreError>;
    /// Stores the friendship, one row per side.
    async fn insert_friendship(
        &mut self,
        a: UserId,
        b: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError>;
    /// Deletes the friendship; returns whether there was one.
    async fn delete_friendship(&mut self, a: UserId, b: UserId) -> Result<bool, StoreError>;
    async fn insert_block(
        &mut self,
        owner: UserId,
        other: UserId,
        now: UnixMillis,
    ) -> Result<(), StoreError>;
    /// Deletes a block; returns whether there was one.
    async fn delete_block(&mut self, owner: UserId, other: UserId) -> Result<bool, StoreError>;
}

/// See [`super::FriendStore::request_with`].
///
/// Whether `to` is registered is never asked: a request to an id nobody
/// holds takes exactly the steps of one to a user who never answers, and
/// is stored (listed, cancellable, expiring) like one, so its reply and
/// its work tell a stranger nothing about who exists.
pub(crate) async fn request<T: FriendTx>(
    tx: &mut T,
    from: UserId,
    to: UserId,
    now: UnixMillis,
    introduction: Introduction,
) -> Result<RequestOutcome, FriendError> {
    if from == to {
        return Err(FriendError::SelfTarget);
    }
    let cutoff = request_cutoff(now);
    tx.delete_expired_requests(from, cutoff).await?;
    tx.delete_expired_requests(to, cutoff).await?;
    if tx.has_blocked(from, to).await? {
        return Err(FriendError::Blocked);
    }
    if tx.are_friends(from, to).await? {
        return Err(FriendError::AlreadyFriends);
    }
    if tx.has_request(to, from).await? {
        befriend(tx, from, to, now).await?;
        return Ok(RequestOutcome::BecameFriends);
    }
    if tx.has_request(from, to).await? {
        return Ok(RequestOutcome::AlreadyPending);
    }
    if tx.friend_count(from).await? >= MAX_FRIENDS {
        return Err(FriendError::FriendLimit(Side::Me));
    }
    if tx.friend_count(to).await? >= MAX_FRIENDS {
        return Err(FriendError::FriendLimit(Side::Them));
    }
    if tx.outgoing_count(from).await? >= MAX_PENDING_OUTGOING {
        return Err(FriendError::PendingLimit(Side::Me));
    }
    // Requests from users `to` blocked are invisible to `to` and take none
    // of its room. Someone `to` invited is never kept out by strangers
    // filling it (the count is made either way, so both take the same
    // steps).
    let full = tx.visible_incoming_count(to).await? >= MAX_PENDING_INCOMING;
    if full && introduction == Introduction::Stranger {
        return Err(FriendError::PendingLimit(Side::Them));
    }
    tx.insert_request(from, to, now).await?;
    if tx.has_blocked(to, from).await? {
        Ok(RequestOutcome::Shadowed)
    } else {
        Ok(RequestOutcome::Sent)
    }
}

/// See [`super::FriendStore::accept`].
pub(crate) async fn accept<T: FriendTx>(
    tx: &mut T,
    me: UserId,
    from: UserId,
    now: UnixMillis,
) -> Result<(), FriendError> {
    tx.delete_expired_requests(me, request_cutoff(now)).await?;
    if !tx.has_request(from, me).await? || tx.has_blocked(me, from).await? {
        return Err(FriendError::NoSuchRequest);
    }
    befriend(tx, me, from, now).await
}

/// Makes `a` and `b` friends if both have room, clearing requests both ways.
async fn befriend<T: FriendTx>(
    tx: &mut T,
    a: UserId,
    b: UserId,
    now: UnixMillis,
) -> Result<(), FriendError> {
    if tx.friend_count(a).await? >= MAX_FRIENDS {
        return Err(FriendError::FriendLimit(Side::Me));
    }
    if tx.friend_count(b).await? >= MAX_FRIENDS {
        return Err(FriendError::FriendLimit(Side::Them));
    }
    tx.insert_friendship(a, b, now).await?;
    tx.delete_request(a, b).await?;
    tx.delete_request(b, a).await?;
    Ok(())
}

/// `me` declines `from`'s request (see [`super::FriendStore::decline`]).
pub(crate) async fn decline<T: FriendTx>(
    tx: &mut T,
    me: UserId,
    from: UserId,
) -> Result<(), FriendError> {
    if !tx.delete_request(from, me).await? {
        return Err(FriendError::NoSuchRequest);
    }
    Ok(())
}

/// See [`super::FriendStore::remove`].
pub(crate) async fn remove<T: FriendTx>(
    tx: &mut T,
    me: UserId,
    other: UserId,
) -> Result<(), FriendError> {
    if me == other {
        return Err(FriendError::SelfTarget);
    }
    if !tx.delete_friendship(me, other).await? {
        return Err(FriendError::NotFriends);
    }
    Ok(())
}

/// See [`super::FriendStore::block`].
pub(crate) async fn block<T: FriendTx>(
    tx: &mut T,
    me: UserId,
    other: UserId,
    now: UnixMillis,
) -> Result<bool, FriendError> {
    if me == other {
        return Err(FriendError::SelfTarget);
    }
    // Any id can be blocked, registered or not: a refusal would tell who
    // exists.
    if !tx.has_blocked(me, other).await? && tx.block_count(me).await? >= MAX_BLOCKS {
        return Err(FriendError::BlockLimit);
    }
    let ended = tx.delete_friendship(me, other).await?;
    tx.delete_request(me, other).await?;
    tx.delete_request(other, me).await?;
    tx.insert_block(me, other, now).await?;
    Ok(ended)
}

/// See [`super::FriendStore::unblock`].
pub(crate) async fn unblock<T: FriendTx>(
    tx: &mut T,
    me: UserId,
    other: UserId,
) -> Result<(), FriendError> {
    if !tx.delete_block(me, other).await? {
        return Err(FriendError::NotBlocked);
    }
    // Requests sent while blocked were never seen; they are forgotten.
    tx.delete_request(other, me).await?;
    Ok(())
}
