//! The message lifecycle on the server: accept (checks, durable store with
//! its expiry), hand the message to the recipient's connections on this
//! node and wake those on others, hand out what is pending in order, burn on
//! acknowledgement, delete what expired. The server sees ciphertext and
//! routing fields only.

use std::time::Duration;

use wisp_proto::frames::Send;
use wisp_proto::limits::{MAX_ACK_BATCH, MAX_CIPHERTEXT_BYTES, MAX_MESSAGE_TTL};
use wisp_proto::{ErrorCode, MessageId, UserId};

use crate::error::WireError;
use crate::ratelimit::UserLimit;
use crate::state::AppState;
use crate::store::{Accepted, NewMessage, PutError, StoredMessage};
use wisp_proto::UnixMillis;

/// Length of a client message id.
pub(crate) const CLIENT_MSG_ID_BYTES: usize = 16;

fn refused(reason: &'static str, error: WireError) -> WireError {
    metrics::counter!("wisp_messages_refused_total", "reason" => reason).increment(1);
    error
}

/// Accepts a message from `me`: checks, stores it durably, wakes the
/// recipient. Returns once the message is safe.
pub(crate) async fn send(state: &AppState, me: UserId, send: Send) -> Result<Accepted, WireError> {
    let Valid { to, ttl } = validate(&send)?;
    if let Err(retry_after) = state.limits.user(UserLimit::Sends, me).await {
        return Err(refused(
            "rate_limited",
            WireError::rate_limited("messages", retry_after),
        ));
    }
    if !state.are_friends(me, to).await? {
        return Err(not_friends());
    }
    let now = state.clock.now_ms();
    // Other nodes are woken in the put's own round trip where the store
    // can (Redis), by the bus afterwards where not.
    let wake = state.wake_with_put(to);
    let accepted = store(state, me, to, &send, now, ttl, wake.as_ref()).await?;
    let others_woken = wake.is_some();
    if accepted.duplicate {
        metrics::counter!("wisp_messages_duplicate_total").increment(1);
        // The first attempt may have stored it without telling anyone (it
        // failed after the store); a fetch finds it in its place.
        state.wake_after_put(to, others_woken).await;
    } else {
        still_friends(state, me, to).await?;
        metrics::counter!("wisp_messages_sent_total").increment(1);
        // Shared by pointer: each connection's hint queue then costs a
        // pointer a slot, which matters for idle connections. The frame's
        // ciphertext moves in: no copy per message.
        let stored = std::sync::Arc::new(StoredMessage {
            id: accepted.id,
            sender: me,
            ciphertext: send.ciphertext,
            sent_at: now,
            expires_at: accepted.expires_at,
        });
        state.offer(to, &stored, others_woken).await;
    }
    Ok(accepted)
}

/// A `Send` that passed the checks that need no state.
struct Valid {
    to: UserId,
    ttl: Duration,
}

/// Checks what a `Send` says on its own: the recipient's id, the client
/// message id, the ciphertext's size and the lifetime asked for.
fn validate(send: &Send) -> Result<Valid, WireError> {
    let invalid = |message: &'static str| {
        refused(
            "invalid",
            WireError::new(ErrorCode::InvalidArgument, message),
        )
    };
    let to = UserId::from_bytes(&send.to).map_err(|e| {
        refused(
            "invalid",
            WireError::new(ErrorCode::InvalidArgument, e.to_string()),
        )
    })?;
    if send.client_msg_id.len() != CLIENT_MSG_ID_BYTES {
        return Err(invalid("client_msg_id must be 16 bytes"));
    }
    if send.ciphertext.is_empty() {
        return Err(invalid("a message needs a ciphertext"));
    }
    if send.ciphertext.len() > MAX_CIPHERTEXT_BYTES {
        return Err(refused(
            "too_large",
            WireError::new(
                ErrorCode::MessageTooLarge,
                format!(
                    "message of {} bytes is over the {MAX_CIPHERTEXT_BYTES}-byte limit",
                    send.ciphertext.len()
                ),
            ),
        ));
    }
    let ttl = Duration::from_secs(u64::from(send.ttl_seconds));
    if ttl.is_zero() {
        return Err(invalid("ttl_seconds must be at least 1"));
    }
    if ttl > MAX_MESSAGE_TTL {
        return Err(refused(
            "ttl",
            WireError::new(
                ErrorCode::TtlTooLong,
                format!(
                    "a message may live at most {} s, not {} s",
                    MAX_MESSAGE_TTL.as_secs(),
                    ttl.as_secs()
                ),
            ),
        ));
    }
    Ok(Valid { to, ttl })
}

/// Stores the message durably, sent at `now` and living `ttl`, and
/// publishes `wake` with it if given (see `AppState::wake_with_put`).
async fn store(
    state: &AppState,
    me: UserId,
    to: UserId,
    send: &Send,
    now: UnixMillis,
    ttl: Duration,
    wake: Option<&crate::store::Wake>,
) -> Result<Accepted, WireError> {
    let message = NewMessage {
        sender: me,
        recipient: to,
        client_msg_id: &send.client_msg_id,
        ciphertext: &send.ciphertext,
        sent_at: now,
        expires_at: now.plus(ttl),
    };
    let quota = state.mailbox_quota;
    let stored = state
        .stores
        .mailbox
        .put_and_wake(message, &quota, wake)
        .await;
    match stored {
        Ok(accepted) => Ok(accepted),
        Err(PutError::MailboxFull) => Err(refused(
            "mailbox_full",
            WireError::new(
                ErrorCode::MailboxFull,
                format!(
                    "{} of your messages wait unread for this friend; wait until they read some",
                    quota.per_conversation
                ),
            ),
        )),
        Err(PutError::MailboxBytes) => Err(refused(
            "mailbox_bytes",
            WireError::new(
                ErrorCode::MailboxFull,
                "this friend's mailbox is full of unread messages; wait until they read some",
            ),
        )),
        Err(PutError::OutboxBytes) => Err(refused(
            "outbox_bytes",
            WireError::new(
                ErrorCode::MailboxFull,
                format!(
                    "{} bytes of your messages wait unread; wait until your friends read some",
                    quota.outbox_bytes
                ),
            ),
        )),
        // Removed on another node a moment ago (this node's cache had not
        // heard yet).
        Err(PutError::Closed) => Err(not_friends()),
        Err(PutError::Store(error)) => {
            // The write may have landed all the same (a commit that
            // reported failure, a write short of its replicas): have the
            // recipient look, so it is not left behind later messages.
            state.wake(to).await;
            Err(error.into())
        }
    }
}

/// After a new message was stored: a removal that ran between the
/// friendship check and the store has already dropped the conversation and
/// forgotten the cached friendship; this takes the message back out too.
async fn still_friends(state: &AppState, me: UserId, to: UserId) -> Result<(), WireError> {
    match state.are_friends(me, to).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            state.stores.mailbox.drop_conversation(me, to).await?;
            Err(not_friends())
        }
        Err(error) => {
            state.wake(to).await;
            Err(error.into())
        }
    }
}

fn not_friends() -> WireError {
    refused(
        "not_friends",
        WireError::new(
            ErrorCode::NotFriends,
            "you can only send messages to friends",
        ),
    )
}

/// Burns messages `me` has read.
pub(crate) async fn ack(state: &AppState, me: UserId, ids: &[u64]) -> Result<u64, WireError> {
    if let Err(retry_after) = state.limits.user(UserLimit::Acks, me).await {
        return Err(WireError::rate_limited("acknowledgements", retry_after));
    }
    if ids.len() > MAX_ACK_BATCH {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("acknowledge at most {MAX_ACK_BATCH} messages at once"),
        ));
    }
    let ids: Vec<MessageId> = ids.iter().copied().map(MessageId).collect();
    let burned = state.stores.mailbox.burn(me, &ids).await?;
    metrics::counter!("wisp_messages_burned_total").increment(burned);
    if burned > 0 {
        state
            .mailbox_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(burned)
}

/// The next page of `me`'s messages after `after`, oldest first, none
/// expired.
pub(crate) async fn pending(
    state: &AppState,
    me: UserId,
    after: MessageId,
    limit: usize,
) -> Result<Vec<StoredMessage>, WireError> {
    let now = state.clock.now_ms();
    metrics::counter!("wisp_mailbox_fetches_total").increment(1);
    Ok(state.stores.mailbox.fetch(me, after, now, limit).await?)
}

/// How a message reached its recipient's connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Via {
    /// Read back from the mailbox.
    Fetch,
    /// Handed over as it was stored.
    Hint,
}

/// Counts a message going out to its recipient.
pub(crate) fn delivered(state: &AppState, message: &StoredMessage, via: Via) {
    let waited = state.clock.now_ms().since(message.sent_at);
    metrics::histogram!("wisp_delivery_latency_seconds").record(waited.as_secs_f64());
    let via = match via {
        Via::Fetch => "fetch",
        Via::Hint => "hint",
    };
    metrics::counter!("wisp_messages_delivered_total", "via" => via).increment(1);
}

/// Deletes what expired; run periodically by the reaper.
pub(crate) async fn reap(state: &AppState) -> Result<u64, WireError> {
    const BATCH: usize = 10_000;
    let now = state.clock.now_ms();
    let mut total = 0;
    loop {
        let purged = state.stores.mailbox.purge_expired(now, BATCH).await?;
        total += purged;
        if purged < BATCH as u64 {
            break;
        }
    }
    metrics::counter!("wisp_messages_expired_total").increment(total);
    if total > 0 {
        state
            .mailbox_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(total)
}
