//! The WebSocket gateway: upgrades connections the listener accepted (with
//! their slot), finds the client's address (behind trusted proxies, where
//! the per-address cap is applied here), and runs each connection's loop.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use wisp_proto::MAX_FRAME_BYTES;

use crate::listener::ConnectionHold;
use crate::state::AppState;

pub(crate) mod connection;
pub(crate) mod session;

/// The transport accepts messages up to this size, so that frames a little
/// over [`MAX_FRAME_BYTES`] get a typed FRAME_TOO_LARGE reply; anything
/// larger closes the connection (close code 1009, message too big).
const TRANSPORT_MAX_MESSAGE: usize = 2 * MAX_FRAME_BYTES;

/// The client's address: the peer's, or, when the peer is a trusted proxy,
/// the last `X-Forwarded-For` entry that is not itself a trusted proxy (the
/// entries before it were written by the client, and prove nothing).
pub(crate) fn client_address(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if is_trusted(&ip) => {}
            Ok(ip) => return ip,
            // Garbled: trust nothing further left.
            Err(_) => return peer,
        }
    }
    peer
}

/// How much the transport reads at a time. Its default (128 KiB) is zeroed
/// before every read, which costs more than the frame itself at chat sizes,
/// and is held by every idle connection; larger frames still arrive, over
/// several reads. 1 KiB holds a chat message's frame whole; measured at
/// 15,000 idle users (`wisp-bench idle`), it holds 10.1 KiB per connection
/// where 4 KiB held 13.1, at the same CPU per message at 20,000 msgs/s.
const READ_BUFFER: usize = 1024;

/// Outgoing bytes are written to the socket once this many are buffered;
/// every send is flushed anyway, so this only bounds what one write holds.
const WRITE_BUFFER: usize = 16 * 1024;

/// The most a connection may have buffered for a peer that does not read:
/// one frame of the largest size on top of the write buffer. Past it the
/// transport refuses to buffer more (a pong that does not fit replaces the
/// one waiting, it does not queue), so a client that pings and never reads
/// costs this much, not more; the connection then closes it for not
/// reading (see `connection`).
pub(crate) const MAX_WRITE_BUFFER: usize = WRITE_BUFFER + TRANSPORT_MAX_MESSAGE;

/// The upgrade to WebSocket. The connection's slot (of `--max-connections`)
/// was taken when it was accepted (`hold`) and moves to the WebSocket; a
/// client behind a trusted proxy takes its place in its address's share
/// here, where the forwarded address is known.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Extension(hold): Extension<Arc<ConnectionHold>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let client = client_address(peer.ip(), &headers, &state.trusted_proxies);
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "server is shutting down\n").into_response();
    }
    let forwarded_place = if crate::listener::is_trusted(peer.ip(), &state.trusted_proxies) {
        let Some(place) = state.per_address.admit(client) else {
            let refusal = crate::listener::Refusal::AddressShare;
            state.refusals.count(refusal);
            return (StatusCode::TOO_MANY_REQUESTS, refusal.text()).into_response();
        };
        Some(place)
    } else {
        None
    };
    let tracker = state.connections.clone();
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(TRANSPORT_MAX_MESSAGE)
        .max_frame_size(TRANSPORT_MAX_MESSAGE)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                connection::serve(socket, state, client).await;
                drop(forwarded_place);
                drop(hold);
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append("x-forwarded-for", value.parse().unwrap());
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_count_only_behind_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let forged = headers(&["198.51.100.7"]);
        // Not from a proxy: the header is whatever the client wrote.
        assert_eq!(
            client_address(ip("203.0.113.9"), &forged, &trusted),
            ip("203.0.113.9")
        );
        // From the proxy: the client it saw.
        assert_eq!(
            client_address(ip("10.0.0.5"), &forged, &trusted),
            ip("198.51.100.7")
        );
        // A client's forged entry sits left of what the proxy appended.
        let appended = headers(&["198.51.100.7, 203.0.113.9"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &appended, &trusted),
            ip("203.0.113.9")
        );
        // Chains of trusted proxies are walked; split headers are one list.
        let chained = headers(&["203.0.113.9", "10.0.0.7"]);
        assert_eq!(
            client_address(ip("10.0.0.5"), &chained, &trusted),
            ip("203.0.113.9")
        );
        // Garbage or nothing: the proxy's own address.
        assert_eq!(
            client_address(ip("10.0.0.5"), &headers(&["nonsense"]), &trusted),
            ip("10.0.0.5")
        );
        assert_eq!(
            client_address(ip("10.0.0.5"), &HeaderMap::new(), &trusted),
            ip("10.0.0.5")
        );
        // IPv4 seen through an IPv6 socket is still IPv4.
        assert_eq!(
            client_address(ip("::ffff:10.0.0.5"), &forged, &trusted),
            ip("198.51.100.7")
        );
        // No trusted proxies: never believed.
        assert_eq!(client_address(ip("10.0.0.5"), &forged, &[]), ip("10.0.0.5"));
    }
}
