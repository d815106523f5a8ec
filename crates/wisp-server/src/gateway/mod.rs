//! The WebSocket gateway: accepts connections, enforces the connection cap,
//! and runs each connection's loop.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use wisp_proto::MAX_FRAME_BYTES;

use crate::state::AppState;

pub(crate) mod connection;
pub(crate) mod session;

/// The transport accepts messages up to this size, so that frames a little
/// over [`MAX_FRAME_BYTES`] get a typed FRAME_TOO_LARGE reply; anything
/// larger closes the connection (1009, message too big).
const TRANSPORT_MAX_MESSAGE: usize = 2 * MAX_FRAME_BYTES;

pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ws: WebSocketUpgrade,
) -> Response {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down\n").into_response();
    }
    let Ok(slot) = Arc::clone(&state.connection_slots).try_acquire_owned() else {
        metrics::counter!("wisp_connections_refused_total").increment(1);
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "server is at its connection limit; try again later\n",
        )
            .into_response();
    };
    let tracker = state.connections.clone();
    ws.max_message_size(TRANSPORT_MAX_MESSAGE)
        .max_frame_size(TRANSPORT_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                connection::serve(socket, state, peer.ip()).await;
                drop(slot);
            })
        })
}
