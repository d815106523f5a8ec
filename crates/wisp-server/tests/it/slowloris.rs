//! Slowloris and connection floods: half-sent upgrades are timed out,
//! half-open connections count against `--max-connections`, one address
//! holds at most `--max-connections-per-address` (behind a trusted proxy,
//! per forwarded client), and while one address floods the server another
//! one still connects, logs in and gets `/healthz`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wisp_test_support::server_tls::{Tunnel, connect_from};
use wisp_test_support::{TestServer, device_at};

/// The address the victim connects from: Linux routes all of 127/8 to
/// loopback.
const VICTIM: &str = "127.0.0.2";

/// Whether the server closes `stream` within `within` (EOF or reset),
/// without sending it anything.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, stream.read(&mut buf)).await {
        Ok(Ok(0) | Err(_)) => true,
        Ok(Ok(_)) => panic!("the server answered a request it never got"),
        Err(_) => false,
    }
}

/// The status line the server refuses `stream` with, unasked, before it
/// closes it within `within`; None if it kept the connection open.
async fn refusal_within(stream: &mut TcpStream, within: Duration) -> Option<String> {
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .ok()?
        .expect("an answer, then a close");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.ends_with("try again later\r\n"), "{answer:?}");
    answer.lines().next().map(str::to_owned)
}

/// `count` TCP connections from `source` that say nothing.
async fn silent_connections(
    server: SocketAddr,
    source: Option<IpAddr>,
    count: usize,
) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        held.push(connect_from(server, source).await.unwrap());
    }
    held
}

/// A plain GET from `source`; the status line, or None if the connection
/// was closed without an answer.
async fn get_from(server: SocketAddr, source: Option<IpAddr>, path: &str) -> Option<String> {
    let mut stream = connect_from(server, source).await.ok()?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .ok()?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("an answer or a close within 10 s")
        .ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    text.lines().next().map(str::to_owned)
}

#[tokio::test]
async fn a_half_sent_upgrade_is_timed_out() {
    let server = TestServer::start_with(|c| c.handshake_timeout = Duration::from_millis(500)).await;
    let addr = server.server.local_addr();
    // Headers that never end.
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    // Headers that trickle in, a line at a time, never finishing.
    let mut trickle = TcpStream::connect(addr).await.unwrap();
    trickle.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    let trickling = async {
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if trickle
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return;
            }
        }
    };
    trickling.await;
    assert!(
        closed_within(&mut slow, Duration::from_secs(3)).await,
        "a half-sent upgrade was held open"
    );
    assert!(
        closed_within(&mut trickle, Duration::from_secs(3)).await,
        "trickled headers kept a connection open"
    );
    assert!(started.elapsed() < Duration::from_secs(6));
}

#[tokio::test]
async fn half_open_connections_count_against_max_connections() {
    let server = TestServer::start_with(|c| {
        c.max_connections = 3;
        c.max_connections_per_address = 0;
        c.handshake_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = server.server.local_addr();
    let held = silent_connections(addr, None, 3).await;
    // The fourth is told so and closed at once; no upgrade gets through.
    let mut fourth = TcpStream::connect(addr).await.unwrap();
    assert_eq!(
        refusal_within(&mut fourth, Duration::from_secs(3))
            .await
            .as_deref(),
        Some("HTTP/1.1 503 Service Unavailable"),
        "a connection over --max-connections was kept"
    );
    let upgrade = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(server.url()),
    )
    .await
    .expect("an answer within 5 s");
    assert!(upgrade.is_err(), "an upgrade got past a full server");
    drop(held);
    // Their slots come back as the server notices the closes.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if tokio_tungstenite::connect_async(server.url()).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "slots did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn one_address_cannot_crowd_out_another() {
    let server = TestServer::start_with(|c| {
        c.max_connections = 40;
        c.max_connections_per_address = 8;
        c.handshake_timeout = Duration::from_secs(30);
    })
    .await;
    let addr = server.server.local_addr();
    // The attacker holds its share of half-open connections…
    let _held = silent_connections(addr, None, 8).await;
    // …and no more: further ones are told so and closed at once.
    let mut more = silent_connections(addr, None, 40).await;
    for extra in &mut more {
        assert_eq!(
            refusal_within(extra, Duration::from_secs(3))
                .await
                .as_deref(),
            Some("HTTP/1.1 429 Too Many Requests"),
            "a connection over the per-address cap was kept"
        );
    }
    assert_eq!(
        get_from(addr, None, "/healthz").await.as_deref(),
        Some("HTTP/1.1 429 Too Many Requests")
    );
    // Another address connects, registers, logs in, talks, and is healthy.
    let victim: IpAddr = VICTIM.parse().unwrap();
    assert_eq!(
        get_from(addr, Some(victim), "/healthz").await.as_deref(),
        Some("HTTP/1.1 200 OK")
    );
    let tunnel = Tunnel::start(addr, Some(victim), None).await;
    let alice = device_at(&tunnel.url()).await;
    let bob = device_at(&tunnel.url()).await;
    wisp_test_support::befriend_devices(&alice, &bob).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_cap_is_per_forwarded_client() {
    let server = TestServer::start_with(|c| {
        c.max_connections_per_address = 2;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await;
    let open_as = |client: &'static str| {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = server.url().into_client_request().unwrap();
        request
            .headers_mut()
            .append("x-forwarded-for", client.parse().unwrap());
        tokio_tungstenite::connect_async(request)
    };
    // The balancer itself is not capped: many clients come through it.
    let first = open_as("203.0.113.1").await.unwrap();
    let second = open_as("203.0.113.1").await.unwrap();
    let third = open_as("203.0.113.1").await;
    match third {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429);
        }
        other => panic!("a third connection for one forwarded client: {other:?}"),
    }
    let others: Vec<_> =
        futures_util::future::join_all(["203.0.113.2", "203.0.113.3", "203.0.113.4"].map(open_as))
            .await;
    assert!(others.iter().all(Result::is_ok));
    drop((first, second));
}
