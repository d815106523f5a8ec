//! One connection's loop: reads frames, hands them to the [`Session`],
//! writes replies and pushed events, delivers the mailbox, and closes with a
//! reason. Written against `Stream + Sink` so tests can drive it without a
//! socket.
//!
//! Delivery: once logged in, the connection keeps a cursor (the last message
//! id it delivered) and, whenever it is woken (at login, and whenever a
//! message for its user is stored), fetches what is stored after the cursor,
//! oldest first. The store hands out ids in storing order, so nothing is
//! skipped and each conversation stays in order; the push is only a wake-up,
//! so a busy connection loses nothing, it just fetches more at once. After a
//! reconnect the cursor starts again from zero: what was delivered but not
//! acknowledged comes again, and the client recognises it.
//!
//! A message stored through this node is also handed to the connection
//! directly (a hint), which spares the fetch: it is delivered at once if the
//! window has room and it is not already delivered. Hints never move the
//! cursor, and a fetch skips what hints delivered (they are in flight), so
//! however hints and fetches interleave, each message goes out once; a hint
//! that is dropped (queue full, window full) is fetched later.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use wisp_proto::frames::{Deliver, MailboxDrained};
use wisp_proto::limits::DELIVERY_WINDOW;
use wisp_proto::server_frame::Body;
use wisp_proto::{MessageId, UserId};
use wisp_proto::{ServerFrame, encode};

use super::session::{Close, Session};
use crate::hub::{OUTBOUND_QUEUE, Subscription};
use crate::services::messages;
use crate::state::AppState;
use crate::store::StoredMessage;

/// A connection must log in within this time or be closed (registration's
/// proof-of-work takes well under a second).
const LOGIN_DEADLINE: Duration = Duration::from_secs(30);

/// A peer that does not take a frame within this time is gone or stalling.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a login waits for the cross-node bus to listen for the user
/// before it is answered anyway (Redis slow or away: the bus subscribes
/// everyone again when it is back).
const LISTEN_WAIT: Duration = Duration::from_secs(2);

/// Messages fetched and delivered at a time.
const DELIVERY_PAGE: usize = 256;

/// Hints delivered before a regular fetch (which catches any message that
/// was stored without a hint or wake-up reaching this connection).
const HINTS_PER_FETCH: u32 = 32;

/// After a store failure, delivery is retried this much later.
const DELIVERY_RETRY: Duration = Duration::from_millis(200);

const GOING_AWAY: u16 = 1001;

/// Where a logged-in connection is in its user's mailbox.
#[derive(Debug)]
struct Delivery {
    user: UserId,
    cursor: MessageId,
    drained_announced: bool,
    /// Delivered here and not yet acknowledged; at most [`DELIVERY_WINDOW`],
    /// so a flood waits on the server, not in the client's memory.
    in_flight: HashSet<u64>,
    /// Messages may wait in the store that were not delivered (before the
    /// first fetch, after a full page, a failed fetch, or a hint turned
    /// away): hints wait until a fetch catches up, or they would overtake.
    behind: bool,
    /// Hints delivered since the last fetch.
    hints_since_fetch: u32,
}
const TRY_AGAIN_LATER: u16 = 1013;

pub(crate) async fn serve<S>(mut socket: S, state: Arc<AppState>, peer: IpAddr)
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin + Send,
{
    metrics::gauge!("wisp_connections").increment(1.0);
    metrics::counter!("wisp_connections_opened_total").increment(1);
    let close = run(&mut socket, &state, peer).await;
    if let Some(close) = close {
        let frame = CloseFrame {
            code: close.code,
            reason: close.reason.into(),
        };
        // The peer may be gone already; there is nobody left to tell.
        let _ = tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
    }
    metrics::gauge!("wisp_connections").decrement(1.0);
}

async fn run<S>(socket: &mut S, state: &Arc<AppState>, peer: IpAddr) -> Option<Close>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin + Send,
{
    let (outbound_tx, mut outbound) = mpsc::channel::<Box<ServerFrame>>(OUTBOUND_QUEUE);
    let (hints_tx, mut hints) = mpsc::channel::<Arc<StoredMessage>>(DELIVERY_WINDOW);
    let kick = CancellationToken::new();
    let mut session = Session::new(Arc::clone(state), peer);
    let mut subscription: Option<Subscription> = None;
    let wake = Arc::new(Notify::new());
    let mut delivery: Option<Delivery> = None;
    let login_deadline = tokio::time::sleep(LOGIN_DEADLINE);
    tokio::pin!(login_deadline);
    // Made once, not on every turn of the loop (each registers a waiter).
    let shutdown = state.shutdown.cancelled();
    tokio::pin!(shutdown);
    let kicked = kick.cancelled();
    tokio::pin!(kicked);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                return Some(Close { code: GOING_AWAY, reason: "server shutting down" });
            }
            () = &mut kicked => {
                return Some(Close {
                    code: TRY_AGAIN_LATER,
                    reason: "connection fell too far behind; reconnect",
                });
            }
            () = &mut login_deadline, if !session.is_logged_in() => {
                return Some(Close { code: Close::POLICY, reason: "log in sooner" });
            }
            Some(frame) = outbound.recv() => {
                if send(socket, &frame).await.is_err() {
                    return None;
                }
            }
            () = wake.notified(), if delivery.is_some() => {
                if let Some(delivery) = delivery.as_mut()
                    && deliver(socket, state, delivery, &wake).await.is_err()
                {
                    return None;
                }
            }
            // After wake-ups: a pending fetch goes first, so a hint never
            // overtakes an earlier message that is waiting to be fetched.
            Some(message) = hints.recv(), if delivery.is_some() => {
                if let Some(delivery) = delivery.as_mut()
                    && deliver_hint(socket, state, delivery, message, &wake).await.is_err()
                {
                    return None;
                }
            }
            incoming = socket.next() => {
                let outcome = match incoming {
                    Some(Ok(Message::Binary(bytes))) => session.handle(&bytes).await,
                    Some(Ok(Message::Text(_))) => session.handle_text(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                };
                if let Some(user) = outcome.logged_in {
                    let subscribed = subscription.insert(state.hub.subscribe(
                        user,
                        outbound_tx.clone(),
                        kick.clone(),
                        Arc::clone(&wake),
                        Some(hints_tx.clone()),
                    ));
                    // The login is answered once pushes from other nodes
                    // reach this connection (at once on a single node).
                    subscribed.listening(LISTEN_WAIT).await;
                    delivery = Some(Delivery {
                        user,
                        cursor: MessageId(0),
                        drained_announced: false,
                        in_flight: HashSet::new(),
                        behind: true,
                        hints_since_fetch: 0,
                    });
                    // Subscribed first, then woken: a message stored from now
                    // on wakes us again, one stored before is fetched now.
                    wake.notify_one();
                }
                if let Some(delivery) = delivery.as_mut()
                    && !outcome.acked.is_empty()
                {
                    let was_full = delivery.in_flight.len() >= DELIVERY_WINDOW;
                    for id in &outcome.acked {
                        delivery.in_flight.remove(id);
                    }
                    if was_full && delivery.in_flight.len() < DELIVERY_WINDOW {
                        wake.notify_one();
                    }
                }
                if send(socket, &outcome.reply).await.is_err() {
                    return None;
                }
                if outcome.close.is_some() {
                    return outcome.close;
                }
            }
        }
    }
}

/// Delivers the next page of the mailbox; wakes itself again if there may
/// be more, and says when the mailbox has been emptied for the first time.
async fn deliver<S>(
    socket: &mut S,
    state: &AppState,
    delivery: &mut Delivery,
    wake: &Notify,
) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    let room = DELIVERY_WINDOW.saturating_sub(delivery.in_flight.len());
    if room == 0 {
        // Acknowledgements reopen the window and wake us.
        delivery.behind = true;
        return Ok(());
    }
    let limit = room.min(DELIVERY_PAGE);
    let page = match messages::pending(state, delivery.user, delivery.cursor, limit).await {
        Ok(page) => page,
        Err(error) => {
            tracing::warn!(code = ?error.code, "delivery failed; retrying");
            delivery.behind = true;
            tokio::time::sleep(DELIVERY_RETRY).await;
            wake.notify_one();
            return Ok(());
        }
    };
    let full = page.len() == limit;
    delivery.behind = full;
    delivery.hints_since_fetch = 0;
    for message in page {
        delivery.cursor = message.id;
        // Already delivered from a hint.
        if !delivery.in_flight.insert(message.id.0) {
            continue;
        }
        messages::delivered(state, &message, messages::Via::Fetch);
        send(socket, &deliver_frame(message)).await?;
    }
    if full {
        wake.notify_one();
    } else if !delivery.drained_announced {
        delivery.drained_announced = true;
        let frame = ServerFrame {
            request_id: 0,
            body: Some(Body::MailboxDrained(MailboxDrained {})),
        };
        send(socket, &frame).await?;
    }
    Ok(())
}

fn deliver_frame(message: StoredMessage) -> ServerFrame {
    ServerFrame {
        request_id: 0,
        body: Some(Body::Deliver(Deliver {
            message_id: message.id.0,
            from: message.sender.to_vec(),
            ciphertext: message.ciphertext,
            sent_unix_ms: message.sent_at.0,
            expires_unix_ms: message.expires_at.0,
        })),
    }
}

/// Delivers a message handed over as it was stored, unless a fetch already
/// did (its id is at or below the cursor, or it is in flight), a fetch must
/// come first (`behind`), the window is full (a fetch gets it once
/// acknowledgements make room), or it expired.
async fn deliver_hint<S>(
    socket: &mut S,
    state: &AppState,
    delivery: &mut Delivery,
    message: Arc<StoredMessage>,
    wake: &Notify,
) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    if delivery.in_flight.len() >= DELIVERY_WINDOW {
        delivery.behind = true;
    }
    if delivery.behind
        || message.id <= delivery.cursor
        || message.expires_at <= state.clock.now_ms()
        || delivery.in_flight.contains(&message.id.0)
    {
        return Ok(());
    }
    // A removal or block that ran since the store dropped the message; the
    // cached friendship was forgotten before the drop.
    match state.are_friends(message.sender, delivery.user).await {
        Ok(true) => {}
        Ok(false) => return Ok(()),
        Err(_) => {
            // Cannot tell now: leave it to a fetch.
            delivery.behind = true;
            wake.notify_one();
            return Ok(());
        }
    }
    delivery.in_flight.insert(message.id.0);
    // A message stored without a hint or wake-up (cross-node, or a failed
    // notification) is fetched by this regular look, so later hints cannot
    // hold it back for long.
    delivery.hints_since_fetch += 1;
    if delivery.hints_since_fetch >= HINTS_PER_FETCH {
        wake.notify_one();
    }
    messages::delivered(state, &message, messages::Via::Hint);
    let message = Arc::try_unwrap(message).unwrap_or_else(|shared| (*shared).clone());
    send(socket, &deliver_frame(message)).await
}

async fn send<S>(socket: &mut S, frame: &ServerFrame) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    // A send that completes at once costs no timer: tokio's timeout polls
    // the send first and registers its sleep only if it has to wait.
    let sending = socket.send(Message::Binary(encode(frame).into()));
    match tokio::time::timeout(SEND_TIMEOUT, sending).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}
