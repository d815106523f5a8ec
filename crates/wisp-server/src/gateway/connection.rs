//! One connection's loop: reads frames, hands them to the [`Session`],
//! writes replies and pushed events, and closes with a reason. Written
//! against `Stream + Sink` so tests can drive it without a socket.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wisp_proto::{ServerFrame, encode};

use super::session::{Close, Session};
use crate::hub::{OUTBOUND_QUEUE, Subscription};
use crate::state::AppState;

/// A connection must log in within this time or be closed (registration's
/// proof-of-work takes well under a second).
const LOGIN_DEADLINE: Duration = Duration::from_secs(30);

/// A peer that does not take a frame within this time is gone or stalling.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

const GOING_AWAY: u16 = 1001;
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
    let (outbound_tx, mut outbound) = mpsc::channel::<ServerFrame>(OUTBOUND_QUEUE);
    let kick = CancellationToken::new();
    let mut session = Session::new(Arc::clone(state), peer);
    let mut _subscription: Option<Subscription> = None;
    let login_deadline = tokio::time::sleep(LOGIN_DEADLINE);
    tokio::pin!(login_deadline);

    loop {
        tokio::select! {
            biased;
            () = state.shutdown.cancelled() => {
                return Some(Close { code: GOING_AWAY, reason: "server shutting down" });
            }
            () = kick.cancelled() => {
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
            incoming = socket.next() => {
                let outcome = match incoming {
                    Some(Ok(Message::Binary(bytes))) => session.handle(&bytes).await,
                    Some(Ok(Message::Text(_))) => session.handle_text(),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                };
                if let Some(user) = outcome.logged_in {
                    _subscription =
                        Some(state.hub.subscribe(user, outbound_tx.clone(), kick.clone()));
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

async fn send<S>(socket: &mut S, frame: &ServerFrame) -> Result<(), ()>
where
    S: Sink<Message> + Unpin,
{
    match tokio::time::timeout(
        SEND_TIMEOUT,
        socket.send(Message::Binary(encode(frame).into())),
    )
    .await
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}
