//! One account may be logged in on a handful of connections at once
//! (`--max-sessions-per-user`, 5 by default): a login beyond the cap closes
//! the account's oldest connection with close code 1008 and a reason.

use wisp_client::Identity;
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::Ping;
use wisp_test_support::{ClusterBackend, RawConnection, Received, TestServer};

/// A raw connection logged in as `identity`.
async fn logged_in(server: &TestServer, identity: &Identity) -> RawConnection {
    logged_in_at(&server.url(), &server.name(), identity).await
}

/// A raw connection to the server at `url`, named `name`, logged in as
/// `identity`.
async fn logged_in_at(url: &str, name: &str, identity: &Identity) -> RawConnection {
    let mut conn = RawConnection::open_with_hello(url).await;
    conn.log_in(identity, name).await;
    conn
}

/// Whether `conn` answers a ping (pushed frames, such as MailboxDrained,
/// are passed over).
async fn answers(conn: &mut RawConnection) -> bool {
    let id = conn.send(Request::Ping(Ping {})).await;
    loop {
        match conn.receive().await {
            Received::Frame(frame) if frame.request_id == 0 => {}
            Received::Frame(frame) => return frame.request_id == id,
            Received::Closed { .. } => return false,
        }
    }
}

/// How the server closed `conn` (pushed frames before are passed over).
async fn closed(conn: &mut RawConnection) -> (u16, String) {
    loop {
        match conn.receive().await {
            Received::Frame(frame) if frame.request_id == 0 => {}
            Received::Frame(frame) => panic!("the session stays open: {frame:?}"),
            Received::Closed { code, reason } => return (code, reason),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_beyond_the_default_cap_closes_the_oldest_session() {
    let server = TestServer::start().await;
    let identity = server.user().await.identity;
    let mut sessions = Vec::new();
    // The user's own SDK connection (from `user()`) is gone; five fit.
    for _ in 0..5 {
        sessions.push(logged_in(&server, &identity).await);
    }
    for session in &mut sessions {
        assert!(
            answers(session).await,
            "within the cap, every session stays"
        );
    }
    let mut sixth = logged_in(&server, &identity).await;
    let (code, reason) = closed(&mut sessions[0]).await;
    assert_eq!(code, 1008);
    assert_eq!(
        reason,
        "too many sessions for this account; the oldest was closed"
    );
    for session in sessions.iter_mut().skip(1) {
        assert!(answers(session).await, "the newer sessions stay");
    }
    assert!(answers(&mut sixth).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_is_configurable() {
    let server = TestServer::start_with(|c| c.max_sessions_per_user = 1).await;
    let identity = server.user().await.identity;
    let mut first = logged_in(&server, &identity).await;
    let mut second = logged_in(&server, &identity).await;
    assert_eq!(closed(&mut first).await.0, 1008);
    assert!(answers(&mut second).await);
}

/// On the cluster backend the cap counts the account's sessions on every
/// node: a login on one node closes the oldest session wherever it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cap_holds_across_nodes() {
    let Some(backend) = ClusterBackend::create().await else {
        return;
    };
    let nodes = [
        backend
            .start_node_with(|c| c.max_sessions_per_user = 2)
            .await,
        backend
            .start_node_with(|c| c.max_sessions_per_user = 2)
            .await,
    ];
    let urls: Vec<String> = nodes.iter().map(wisp_server::Server::ws_url).collect();
    let identity = Identity::generate();
    let (client, _) = wisp_client::Client::connect(&urls[0]).await.unwrap();
    client.register(&identity).await.unwrap();
    let name = client.server_name().to_owned();
    drop(client);

    let mut first = logged_in_at(&urls[0], &name, &identity).await;
    let mut second = logged_in_at(&urls[1], &name, &identity).await;
    assert!(answers(&mut first).await && answers(&mut second).await);
    // A third on the second node: the oldest, on the first node, goes.
    let mut third = logged_in_at(&urls[1], &name, &identity).await;
    let (code, reason) = closed(&mut first).await;
    assert_eq!(code, 1008);
    assert_eq!(
        reason,
        "too many sessions for this account; the oldest was closed"
    );
    assert!(answers(&mut second).await && answers(&mut third).await);
    // A fourth on the first node: the oldest left, on the second, goes.
    let mut fourth = logged_in_at(&urls[0], &name, &identity).await;
    assert_eq!(closed(&mut second).await.0, 1008);
    assert!(answers(&mut third).await && answers(&mut fourth).await);
    // A session that ends frees its place: a fifth closes nobody.
    drop(third);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let mut fifth = logged_in_at(&urls[1], &name, &identity).await;
    assert!(answers(&mut fourth).await && answers(&mut fifth).await);
    for node in nodes {
        node.shutdown().await;
    }
}

/// A superseded device does not log in again by itself (it would close
/// the newer session in turn, and so on for ever): the SDK reports it and
/// waits for the application.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superseded_messenger_does_not_take_the_session_back_by_itself() {
    use std::time::Duration;
    use wisp_client::Event;
    let server = TestServer::start_with(|c| c.max_sessions_per_user = 1).await;
    let mut device = server.device().await;
    let (newer, mut newer_events) = server.raw_login(&device.home).await;
    let reason = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), device.messenger.next_event())
            .await
            .expect("an event within 10 s");
        match event {
            Some(Event::Superseded { reason }) => break reason,
            Some(Event::Disconnected { .. } | Event::Reconnected { .. }) => {
                panic!("a superseded session is not an ordinary disconnect")
            }
            Some(_) => {}
            None => panic!("the stream ended without saying why"),
        }
    };
    assert_eq!(
        reason.as_deref(),
        Some("too many sessions for this account; the oldest was closed")
    );
    // From now on nothing, and no login behind the application's back.
    let next = tokio::time::timeout(Duration::from_secs(2), device.messenger.next_event()).await;
    assert_eq!(next.ok(), Some(None));
    tokio::time::sleep(Duration::from_secs(1)).await;
    newer.ping().await.expect("the newer session stays");
    // Asked to, it takes the session back.
    device.messenger.reconnect().await.unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), newer_events.next()).await {
            Ok(Some(wisp_client::ServerEvent::Superseded { .. })) => break,
            Ok(Some(_)) => {}
            other => panic!("the newer session was not closed: {other:?}"),
        }
    }
}
