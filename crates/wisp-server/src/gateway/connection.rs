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
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, close_code};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::Notify;
use wisp_proto::frames::{Deliver, MailboxDrained};
use wisp_proto::limits::DELIVERY_WINDOW;
use wisp_proto::server_frame::Body;
use wisp_proto::{MessageId, UserId};
use wisp_proto::{ServerFrame, encode};

use super::session::{Close, Outcome, Session};
use crate::hub::{Ending, Inbox, Subscription};
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

/// How a connection is closed when its user logged in on more connections
/// than `--max-sessions-per-user` allows and it is the oldest: policy
/// violation (1008), with a reason a client can show.
/// The account was deleted (on this connection or another).
pub(crate) const ACCOUNT_DELETED: Close = Close {
    code: close_code::NORMAL,
    reason: "account deleted",
};

pub(crate) const SUPERSEDED: Close = Close {
    code: close_code::POLICY,
    reason: "too many sessions for this account; the oldest was closed",
};

/// Messages fetched and delivered at a time.
const DELIVERY_PAGE: usize = 256;

/// Hints delivered before a regular fetch (which catches any message that
/// was stored without a hint or wake-up reaching this connection).
const HINTS_PER_FETCH: u32 = 32;

/// After a store failure, delivery is retried this much later.
const DELIVERY_RETRY: Duration = Duration::from_millis(200);

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

/// Runs the connection until it ends; returns how to close it, if the
/// server is the one closing.
async fn run<S>(socket: &mut S, state: &Arc<AppState>, peer: IpAddr) -> Option<Close>
where
    S: Stream<Item = Result<Message, axum::Error>> + Sink<Message> + Unpin + Send,
{
    // Where the hub reaches this connection once it logs in.
    let inbox: Arc<Inbox> = Arc::default();
    let wake = &inbox.wake;
    let mut session = Session::new(Arc::clone(state), peer);
    let mut subscription: Option<Subscription> = None;
    let mut delivery: Option<Delivery> = None;
    // Boxed and dropped at login: a logged-in connection holds no timer.
    let mut login_deadline = Some(Box::pin(tokio::time::sleep(LOGIN_DEADLINE)));
    // Made once, not on every turn of the loop (each registers a waiter).
    let shutdown = state.shutdown.cancelled();
    tokio::pin!(shutdown);
    let ended = inbox.ended();
    tokio::pin!(ended);

    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => {
                return Some(Close { code: close_code::AWAY, reason: "server shutting down" });
            }
            ending = &mut ended => {
                return Some(match ending {
                    Ending::TooSlow => Close {
                        code: close_code::AGAIN,
                        reason: "connection fell too far behind; reconnect",
                    },
                    Ending::Superseded => SUPERSEDED,
                    Ending::AccountDeleted => ACCOUNT_DELETED,
                });
            }
            () = expiry(&mut login_deadline), if login_deadline.is_some() => {
                return Some(Close { code: close_code::POLICY, reason: "log in sooner" });
            }
            frame = inbox.next_frame() => {
                if send(socket, &frame).await.is_err() {
                    return None;
                }
            }
            // The work an event starts (a fetch, a hint, a frame handled
            // and answered) runs boxed: the loop, which every idle
            // connection holds for as long as it lives, keeps room only for
            // waiting, not for the largest of these (the handling of a
            // `Send`, 1.3 KB).
            () = inbox.woken(), if delivery.is_some() => {
                if let Some(delivery) = delivery.as_mut()
                    && Box::pin(deliver(socket, state, delivery, wake)).await.is_err()
                {
                    return None;
                }
            }
            // After wake-ups: a pending fetch goes first, so a hint never
            // overtakes an earlier message that is waiting to be fetched.
            message = inbox.next_hint(), if delivery.is_some() => {
                if let Some(delivery) = delivery.as_mut()
                    && Box::pin(deliver_hint(socket, state, delivery, message, wake)).await.is_err()
                {
                    return None;
                }
            }
            incoming = socket.next() => {
                let frame = match incoming {
                    Some(Ok(Message::Binary(bytes))) => Some(bytes),
                    Some(Ok(Message::Text(_))) => None,
                    // The transport queued a pong: it must leave before
                    // more is read, or a client that pings and never reads
                    // would keep the connection (and its pongs) forever.
                    Some(Ok(Message::Ping(_))) => {
                        if flush(socket).await.is_err() {
                            return None;
                        }
                        continue;
                    }
                    Some(Ok(Message::Pong(_))) => continue,
                    Some(Err(error)) => return transport_close(error),
                    Some(Ok(Message::Close(_))) | None => return None,
                };
                let answered = Box::pin(async {
                    let outcome = match frame {
                        Some(bytes) => session.handle(&bytes).await,
                        None => session.handle_text(),
                    };
                    answer(socket, state, &inbox, outcome, &mut subscription, &mut delivery).await
                });
                if let ControlFlow::Break(close) = answered.await {
                    return close;
                }
                if session.is_logged_in() {
                    login_deadline = None;
                }
            }
        }
    }
}

/// Resolves when `deadline` passes; never, without one.
async fn expiry(deadline: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match deadline {
        Some(deadline) => deadline.await,
        None => std::future::pending().await,
    }
}

/// How to close after the transport refused what the peer sent: a frame
/// or message over the size limit with 1009 (too big), a broken frame
/// (unmasked, reserved bits or opcode, a bad close frame) with 1002
/// (protocol error), text that is not UTF-8 with 1007. Anything else (the peer went away, an I/O error)
/// leaves nobody to tell.
fn transport_close(error: axum::Error) -> Option<Close> {
    let error = error.into_inner().downcast::<tungstenite::Error>().ok()?;
    match *error {
        tungstenite::Error::Capacity(_) => Some(Close {
            code: close_code::SIZE,
            reason: "frame too large",
        }),
        tungstenite::Error::Protocol(_) => Some(Close {
            code: close_code::PROTOCOL,
            reason: "WebSocket protocol violation",
        }),
        tungstenite::Error::Utf8(_) => Some(Close {
            code: close_code::INVALID,
            reason: "text frame is not UTF-8",
        }),
        _ => None,
    }
}

/// Acts on what the session made of a frame: joins the hub when it logged
/// in, lets acknowledged messages leave the window, sends the reply. Breaks
/// when the connection ends (with how to close it, if the server closes).
async fn answer<S>(
    socket: &mut S,
    state: &AppState,
    inbox: &Arc<Inbox>,
    outcome: Outcome,
    subscription: &mut Option<Subscription>,
    delivery: &mut Option<Delivery>,
) -> ControlFlow<Option<Close>>
where
    S: Sink<Message> + Unpin,
{
    if let Some(user) = outcome.logged_in {
        // Once a connection: boxed, so idle connections do not hold room
        // for it (see `Session::logged_in`).
        let (subscribed, fresh) = Box::pin(log_in(state, inbox, user)).await;
        *subscription = Some(subscribed);
        *delivery = Some(fresh);
    }
    if let Some(delivery) = delivery.as_mut() {
        delivery.acknowledged(&outcome.acked, &inbox.wake);
    }
    if send(socket, &outcome.reply).await.is_err() {
        return ControlFlow::Break(None);
    }
    match outcome.close {
        Some(close) => ControlFlow::Break(Some(close)),
        None => ControlFlow::Continue(()),
    }
}

/// Joins the hub as `user`, reached through `inbox` (pushed frames, hints,
/// wake-ups, and the word to close: too slow, superseded by newer sessions
/// of its user, or its account deleted); dropping the subscription leaves
/// it. Starts delivery from the beginning of the mailbox.
async fn log_in(state: &AppState, inbox: &Arc<Inbox>, user: UserId) -> (Subscription, Delivery) {
    let mut subscription = state.hub.subscribe(user, Arc::clone(inbox));
    state
        .hub
        .cap_sessions(&subscription, state.max_sessions_per_user);
    // The login is answered once pushes from other nodes reach this
    // connection (at once on a single node).
    subscription.listening(LISTEN_WAIT).await;
    // Registered across nodes once this node listens for the account,
    // so a kick another node publishes for this session from then on
    // is heard.
    if let Some(bus) = &state.bus
        && let Some(lease) = bus
            .session_started(
                &state.hub,
                user,
                subscription.id(),
                state.max_sessions_per_user,
            )
            .await
    {
        subscription.hold(lease);
    }
    let delivery = Delivery {
        user,
        cursor: MessageId(0),
        drained_announced: false,
        in_flight: HashSet::new(),
        behind: true,
        hints_since_fetch: 0,
    };
    // Subscribed first, then woken: a message stored from now on wakes
    // us again, one stored before is fetched now.
    inbox.wake.notify_one();
    (subscription, delivery)
}

impl Delivery {
    /// The client acknowledged `ids`: they leave the window, and a window
    /// that was full has room again.
    fn acknowledged(&mut self, ids: &[u64], wake: &Notify) {
        if ids.is_empty() {
            return;
        }
        let was_full = self.in_flight.len() >= DELIVERY_WINDOW;
        for id in ids {
            self.in_flight.remove(id);
        }
        if was_full && self.in_flight.len() < DELIVERY_WINDOW {
            wake.notify_one();
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

/// Writes out what the transport holds (the pongs it queued), within
/// [`SEND_TIMEOUT`]: a peer that does not read by then is closed.
async fn flush<S>(socket: &mut S) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    match tokio::time::timeout(SEND_TIMEOUT, socket.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(()),
        Err(_) => {
            metrics::counter!("wisp_slow_connections_closed_total").increment(1);
            Err(())
        }
    }
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

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::sync::mpsc;
    use wisp_proto::frames::Hello;
    use wisp_proto::{ClientFrame, PROTOCOL_VERSION, client_frame, decode_server_frame};

    use super::*;

    /// The server's end of an in-memory WebSocket: what the test sends
    /// comes out of the stream, what the connection sends goes to the test.
    struct Duplex {
        incoming: mpsc::UnboundedReceiver<Message>,
        outgoing: mpsc::UnboundedSender<Message>,
    }

    impl Stream for Duplex {
        type Item = Result<Message, axum::Error>;

        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.incoming.poll_recv(cx).map(|message| message.map(Ok))
        }
    }

    impl Sink<Message> for Duplex {
        type Error = mpsc::error::SendError<Message>;

        fn poll_ready(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn start_send(self: Pin<&mut Self>, message: Message) -> Result<(), Self::Error> {
            self.outgoing.send(message)
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }
    }

    async fn reply(from_server: &mut mpsc::UnboundedReceiver<Message>) -> ServerFrame {
        match from_server.recv().await {
            Some(Message::Binary(bytes)) => decode_server_frame(&bytes).unwrap(),
            other => panic!("expected a binary frame, got {other:?}"),
        }
    }

    /// A connection that never logs in is closed at the deadline, with a
    /// reason, and the loop ends.
    #[tokio::test]
    async fn a_connection_that_never_logs_in_is_closed_at_the_deadline() {
        let (_dir, state) = crate::state::tests::state().await;
        let (_to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, mut from_server) = mpsc::unbounded_channel();
        tokio::time::pause();
        let started = tokio::time::Instant::now();
        let serving = tokio::spawn(serve(
            Duplex { incoming, outgoing },
            Arc::clone(&state),
            "127.0.0.1".parse().unwrap(),
        ));
        let closed = tokio::time::timeout(2 * LOGIN_DEADLINE, from_server.recv()).await;
        match closed.expect("no close frame by twice the deadline") {
            Some(Message::Close(Some(close))) => {
                assert_eq!(close.code, close_code::POLICY);
                assert_eq!(close.reason, "log in sooner");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        assert!(started.elapsed() >= LOGIN_DEADLINE);
        serving.await.unwrap();
    }

    /// A connection that logged in outlives the login deadline: the
    /// deadline is dropped with the login, not merely ignored.
    #[tokio::test]
    async fn a_logged_in_connection_outlives_the_login_deadline() {
        use wisp_client::Identity;
        use wisp_proto::frames::{
            Login, LoginChallengeRequest, Ping, Register, RegisterChallengeRequest,
        };

        let (_dir, state) = crate::state::tests::state().await;
        let (to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, mut from_server) = mpsc::unbounded_channel();
        let serving = tokio::spawn(serve(
            Duplex { incoming, outgoing },
            Arc::clone(&state),
            "127.0.0.1".parse().unwrap(),
        ));
        let mut request_id = 0;
        let mut ask = |body: client_frame::Body| {
            request_id += 1;
            let frame = ClientFrame {
                request_id,
                body: Some(body),
            };
            to_server
                .send(Message::Binary(encode(&frame).into()))
                .unwrap();
        };
        ask(client_frame::Body::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            client: "test".into(),
        }));
        assert!(matches!(
            reply(&mut from_server).await.body,
            Some(Body::HelloOk(_))
        ));

        let identity = Identity::generate();
        ask(client_frame::Body::RegisterChallenge(
            RegisterChallengeRequest {},
        ));
        let Some(Body::RegisterPuzzle(puzzle)) = reply(&mut from_server).await.body else {
            panic!("expected a registration puzzle");
        };
        let key = identity.ed25519_key();
        ask(client_frame::Body::Register(Register {
            ed25519_key: key.to_vec(),
            curve25519_key: identity.curve25519_key().to_vec(),
            signature: identity
                .sign_registration(&state.server_name, &puzzle.nonce)
                .to_vec(),
            pow_solution: wisp_proto::pow::solve(
                &puzzle.nonce,
                &key,
                puzzle.difficulty_bits,
                1 << 20,
            )
            .unwrap(),
            identity_signature: identity.sign_identity_key().to_vec(),
        }));
        let registered = reply(&mut from_server).await;
        assert!(
            matches!(registered.body, Some(Body::Registered(_))),
            "{registered:?}"
        );
        ask(client_frame::Body::LoginChallenge(LoginChallengeRequest {
            user_id: identity.user_id().to_vec(),
        }));
        let Some(Body::LoginChallenge(challenge)) = reply(&mut from_server).await.body else {
            panic!("expected a login challenge");
        };
        ask(client_frame::Body::Login(Login {
            signature: identity
                .sign_login(&state.server_name, &challenge.nonce)
                .to_vec(),
        }));
        let logged_in = reply(&mut from_server).await;
        assert!(
            matches!(logged_in.body, Some(Body::LoggedIn(_))),
            "{logged_in:?}"
        );
        // The first fetch of the (empty) mailbox is done: nothing touches
        // the database from here on, so the clock can be moved.
        let drained = reply(&mut from_server).await;
        assert!(
            matches!(drained.body, Some(Body::MailboxDrained(_))),
            "{drained:?}"
        );

        tokio::time::pause();
        tokio::time::advance(2 * LOGIN_DEADLINE).await;
        ask(client_frame::Body::Ping(Ping {}));
        let answer = tokio::time::timeout(SEND_TIMEOUT, from_server.recv())
            .await
            .expect("no answer to the ping");
        match answer {
            Some(Message::Binary(bytes)) => {
                let pong = decode_server_frame(&bytes).unwrap();
                assert!(matches!(pong.body, Some(Body::Pong(_))), "{pong:?}");
            }
            other => panic!("expected the pong, got {other:?}"),
        }
        state.shutdown.cancel();
        serving.await.unwrap();
    }

    /// Every idle connection holds its loop for as long as it lives, so
    /// the loop keeps room only for waiting: the work an event starts runs
    /// boxed. With the handling of a frame inline, the loop was 2,272 bytes
    /// here (a debug build over this in-memory socket), 1,208 without it (1,304
    /// with the login deadline's timer held after login).
    #[tokio::test]
    async fn an_idle_connection_holds_no_room_for_handling_a_frame() {
        let (_dir, state) = crate::state::tests::state().await;
        let (_to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, _from_server) = mpsc::unbounded_channel();
        let peer = "127.0.0.1".parse().unwrap();
        let serving = serve(Duplex { incoming, outgoing }, Arc::clone(&state), peer);
        let mut session = Session::new(Arc::clone(&state), peer);
        let handling = session.handle(&[]);
        let (loop_bytes, handling_bytes) = (size_of_val(&serving), size_of_val(&handling));
        assert!(
            loop_bytes < handling_bytes + 512,
            "the connection loop is {loop_bytes} bytes and handling a frame {handling_bytes}: \
             box the work that made the loop grow"
        );
        assert!(
            loop_bytes <= 1280,
            "the connection loop grew to {loop_bytes} bytes"
        );
    }

    /// The loop needs no socket: a stream and a sink in memory carry a
    /// whole conversation, down to the close frame.
    #[tokio::test]
    async fn a_connection_runs_over_any_stream_and_sink() {
        let (_dir, state) = crate::state::tests::state().await;
        let (to_server, incoming) = mpsc::unbounded_channel();
        let (outgoing, mut from_server) = mpsc::unbounded_channel();
        let peer = "127.0.0.1".parse().unwrap();
        let serving = tokio::spawn(serve(
            Duplex { incoming, outgoing },
            Arc::clone(&state),
            peer,
        ));

        let hello = ClientFrame {
            request_id: 7,
            body: Some(client_frame::Body::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client: "test".into(),
            })),
        };
        to_server
            .send(Message::Binary(encode(&hello).into()))
            .unwrap();
        let answer = reply(&mut from_server).await;
        assert_eq!(answer.request_id, 7);
        assert!(matches!(answer.body, Some(Body::HelloOk(_))), "{answer:?}");

        // Text is not part of the protocol: a typed error, not a close.
        to_server.send(Message::Text("hi".into())).unwrap();
        let answer = reply(&mut from_server).await;
        assert!(matches!(answer.body, Some(Body::Error(_))), "{answer:?}");

        // Shutdown closes the connection with "going away".
        state.shutdown.cancel();
        match from_server.recv().await {
            Some(Message::Close(Some(close))) => {
                assert_eq!(close.code, close_code::AWAY);
                assert_eq!(close.reason, "server shutting down");
            }
            other => panic!("expected a close frame, got {other:?}"),
        }
        serving.await.unwrap();
    }
}
