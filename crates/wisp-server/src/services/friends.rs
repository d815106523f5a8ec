//! Friend requests, the 20-friend circle, and blocks. The store enforces the
//! rules atomically; this service picks the operation, tells the other side
//! what happened (when it is online), and counts.

use wisp_proto::frames::{FriendAccepted, FriendRemoved, FriendRequestReceived};
use wisp_proto::server_frame::Body;
use wisp_proto::{ErrorCode, FriendAction, ServerFrame, UserId};

use crate::error::WireError;
use crate::state::AppState;
use crate::store::{FriendEntry, PendingRequests, RequestOutcome};

/// Runs one friend operation for `me`; returns whether the two are friends
/// afterwards.
pub(crate) async fn apply(
    state: &AppState,
    me: UserId,
    action: FriendAction,
    other: UserId,
) -> Result<bool, WireError> {
    if let Err(retry_after) = state.friend_op_limiter.check(me) {
        return Err(WireError::rate_limited("friend operations", retry_after));
    }
    let store = &state.stores.friends;
    let now = state.clock.now_ms();
    let (friends, event) = match action {
        FriendAction::Request => match store.request(me, other, now).await? {
            RequestOutcome::Sent => (
                false,
                Some(Body::FriendRequestReceived(FriendRequestReceived {
                    from: me.to_vec(),
                })),
            ),
            RequestOutcome::BecameFriends => {
                became_friends(state, me, other).await?;
                (
                    true,
                    Some(Body::FriendAccepted(FriendAccepted { by: me.to_vec() })),
                )
            }
            // Nothing new to tell anyone; a shadowed request looks sent.
            RequestOutcome::AlreadyPending | RequestOutcome::Shadowed => (false, None),
        },
        FriendAction::Accept => {
            store.accept(me, other, now).await?;
            became_friends(state, me, other).await?;
            (
                true,
                Some(Body::FriendAccepted(FriendAccepted { by: me.to_vec() })),
            )
        }
        FriendAction::Decline => {
            store.decline(me, other).await?;
            (false, None)
        }
        FriendAction::Cancel => {
            store.cancel(me, other).await?;
            (false, None)
        }
        FriendAction::Remove => {
            store.remove(me, other).await?;
            state.friendship_changed(me, other).await;
            drop_undelivered(state, me, other).await?;
            (
                false,
                Some(Body::FriendRemoved(FriendRemoved { by: me.to_vec() })),
            )
        }
        FriendAction::Block => {
            let ended = store.block(me, other, now).await?;
            state.friendship_changed(me, other).await;
            drop_undelivered(state, me, other).await?;
            // The blocked side learns the friendship ended, not that it was
            // a block.
            let event = ended.then(|| Body::FriendRemoved(FriendRemoved { by: me.to_vec() }));
            (false, event)
        }
        FriendAction::Unblock => {
            store.unblock(me, other).await?;
            (false, None)
        }
        FriendAction::Unspecified => {
            return Err(WireError::new(
                ErrorCode::InvalidArgument,
                "friend operation without an action",
            ));
        }
    };
    metrics::counter!("wisp_friend_operations_total", "action" => action.as_str_name())
        .increment(1);
    if let Some(body) = event {
        state
            .push(
                other,
                &ServerFrame {
                    request_id: 0,
                    body: Some(body),
                },
            )
            .await;
    }
    Ok(friends)
}

/// A new friendship: open the conversation, then let every node know.
async fn became_friends(state: &AppState, me: UserId, other: UserId) -> Result<(), WireError> {
    state.stores.mailbox.reopen_conversation(me, other).await?;
    state.friendship_changed(me, other).await;
    Ok(())
}

/// Removing or blocking a friend (after every node was told) drops what they have not read yet, both ways.
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

pub(crate) async fn list(state: &AppState, me: UserId) -> Result<Vec<FriendEntry>, WireError> {
    Ok(state.stores.friends.friends(me).await?)
}

pub(crate) async fn pending(state: &AppState, me: UserId) -> Result<PendingRequests, WireError> {
    Ok(state.stores.friends.pending(me).await?)
}
