//! Friend requests, the 20-friend circle, and blocks. The store enforces the
//! rules atomically; this service picks the operation, makes every node
//! forget its cached answer when a friendship begins or ends, drops what a
//! removed or blocked friend had not read, tells the other side what
//! happened (on whichever node they are connected), and counts. It also
//! lists friends and pending requests, and deletes expired requests.
//!
//! A friend request may carry the token of an invitation link the
//! recipient made ([`InvitationToken`]); when it verifies against the
//! recipient's registered identity key and has not expired, the request
//! gets past strangers who filled the recipient's pending requests. Whether
//! the recipient is registered shows nowhere: a request to an unknown id is
//! stored and answered like any other, and its token is checked (and fails)
//! by the same steps.

use wisp_proto::frames::{FriendAccepted, FriendRemoved, FriendRequestReceived};
use wisp_proto::server_frame::Body;
use wisp_proto::{ErrorCode, FriendAction, InvitationToken, ServerFrame, UserId};

use crate::error::WireError;
use crate::ratelimit::UserLimit;
use crate::services::accounts::{UNHELD_KEY, verify, verifying_key};
use crate::state::AppState;
use crate::store::{FriendEntry, Introduction, PendingRequests, RequestOutcome};
use wisp_proto::UnixMillis;

/// Runs one friend operation for `me`; returns whether the two are friends
/// afterwards.
pub(crate) async fn apply(
    state: &AppState,
    me: UserId,
    action: FriendAction,
    other: UserId,
    invitation: &[u8],
) -> Result<bool, WireError> {
    if let Err(retry_after) = state.limits.user(UserLimit::FriendOps, me).await {
        return Err(WireError::rate_limited("friend operations", retry_after));
    }
    let invitation = match (action, invitation.is_empty()) {
        (_, true) => None,
        (FriendAction::Request, false) => {
            Some(InvitationToken::from_bytes(invitation).map_err(|error| {
                WireError::new(
                    ErrorCode::InvalidArgument,
                    format!("the invitation is malformed: {error}"),
                )
            })?)
        }
        (_, false) => {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "only a friend request carries an invitation",
            ));
        }
    };
    let done = perform(state, me, action, other, invitation).await?;
    metrics::counter!("wisp_friend_operations_total", "action" => action.as_str_name())
        .increment(1);
    if let Some(body) = done.tell {
        let frame = ServerFrame {
            request_id: 0,
            body: Some(body),
        };
        state.push(other, &frame).await;
    }
    Ok(done.friends)
}

/// What a friend operation did.
struct Done {
    /// Whether the two are friends now.
    friends: bool,
    /// What the other side is told, if anything.
    tell: Option<Body>,
}

impl Done {
    fn quiet(friends: bool) -> Self {
        Self {
            friends,
            tell: None,
        }
    }
}

/// Carries out `action` in the store, and what must follow on every node.
async fn perform(
    state: &AppState,
    me: UserId,
    action: FriendAction,
    other: UserId,
    invitation: Option<InvitationToken>,
) -> Result<Done, WireError> {
    let store = &state.stores.friends;
    let now = state.clock.now_ms();
    let removed = || Body::FriendRemoved(FriendRemoved { by: me.to_vec() });
    let done = match action {
        FriendAction::Request => request(state, me, other, now, invitation).await?,
        FriendAction::Accept => {
            store.accept(me, other, now).await?;
            became_friends(state, me, other).await?;
            Done {
                friends: true,
                tell: Some(Body::FriendAccepted(FriendAccepted { by: me.to_vec() })),
            }
        }
        FriendAction::Decline => {
            store.decline(me, other).await?;
            Done::quiet(false)
        }
        FriendAction::Cancel => {
            store.cancel(me, other).await?;
            Done::quiet(false)
        }
        FriendAction::Remove => {
            store.remove(me, other).await?;
            state.friendship_changed(me, other).await;
            drop_undelivered(state, me, other).await?;
            Done {
                friends: false,
                tell: Some(removed()),
            }
        }
        FriendAction::Block => {
            let ended = store.block(me, other, now).await?;
            state.friendship_changed(me, other).await;
            drop_undelivered(state, me, other).await?;
            // The blocked side learns the friendship ended, not that it was
            // a block.
            Done {
                friends: false,
                tell: ended.then(removed),
            }
        }
        FriendAction::Unblock => {
            store.unblock(me, other).await?;
            Done::quiet(false)
        }
        FriendAction::Unspecified => {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "friend operation without an action",
            ));
        }
    };
    Ok(done)
}

/// A friend request from `me` to `other`: it waits for an answer, or, when
/// `other` had asked `me` already, they are friends now.
async fn request(
    state: &AppState,
    me: UserId,
    other: UserId,
    now: UnixMillis,
    invitation: Option<InvitationToken>,
) -> Result<Done, WireError> {
    let introduction = match invitation {
        Some(token) if invited_by(state, other, &token, now).await? => Introduction::Invited,
        _ => Introduction::Stranger,
    };
    let outcome = state
        .stores
        .friends
        .request_with(me, other, now, introduction)
        .await?;
    let done = match outcome {
        RequestOutcome::Sent => Done {
            friends: false,
            tell: Some(Body::FriendRequestReceived(FriendRequestReceived {
                from: me.to_vec(),
            })),
        },
        RequestOutcome::BecameFriends => {
            became_friends(state, me, other).await?;
            Done {
                friends: true,
                tell: Some(Body::FriendAccepted(FriendAccepted { by: me.to_vec() })),
            }
        }
        // Nothing new to tell anyone; a shadowed request looks sent.
        RequestOutcome::AlreadyPending | RequestOutcome::Shadowed => Done::quiet(false),
    };
    Ok(done)
}

/// Whether `token` is an unexpired invitation signed by `inviter`'s
/// registered identity key. An unknown inviter's token is checked against
/// a key no one holds, by the same steps, and fails.
async fn invited_by(
    state: &AppState,
    inviter: UserId,
    token: &InvitationToken,
    now: UnixMillis,
) -> Result<bool, WireError> {
    let keys = state.identity(inviter).await?;
    let (known, ed25519) = match &keys {
        Some(keys) => (true, keys.ed25519),
        None => (false, *UNHELD_KEY),
    };
    let signed = token.transcript(inviter);
    let valid = verifying_key(&ed25519).is_some_and(|key| verify(&key, &signed, &token.signature));
    let invited = valid && known && token.expires > now;
    let outcome = if invited { "valid" } else { "refused" };
    metrics::counter!("wisp_invitations_checked_total", "outcome" => outcome).increment(1);
    Ok(invited)
}

/// A new friendship: open the conversation, then let every node know.
async fn became_friends(state: &AppState, me: UserId, other: UserId) -> Result<(), WireError> {
    state.stores.mailbox.reopen_conversation(me, other).await?;
    state.friendship_changed(me, other).await;
    Ok(())
}

/// Removing or blocking a friend (after every node was told) drops what
/// they have not read yet, both ways.
async fn drop_undelivered(state: &AppState, me: UserId, other: UserId) -> Result<(), WireError> {
    let dropped = state.stores.mailbox.drop_conversation(me, other).await?;
    metrics::counter!("wisp_messages_dropped_total").increment(dropped);
    if dropped > 0 {
        state
            .mailbox_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}

/// `me`'s friends.
pub(crate) async fn list(state: &AppState, me: UserId) -> Result<Vec<FriendEntry>, WireError> {
    Ok(state.stores.friends.friends(me).await?)
}

/// Friend requests to and from `me`, and whom `me` blocked.
pub(crate) async fn pending(state: &AppState, me: UserId) -> Result<PendingRequests, WireError> {
    let now = state.clock.now_ms();
    Ok(state.stores.friends.pending(me, now).await?)
}

/// Deletes expired friend requests; run periodically by the reaper.
pub(crate) async fn reap(state: &AppState) -> Result<u64, WireError> {
    let expired = state
        .stores
        .friends
        .purge_expired_requests(state.clock.now_ms())
        .await?;
    metrics::counter!("wisp_friend_requests_expired_total").increment(expired);
    Ok(expired)
}
