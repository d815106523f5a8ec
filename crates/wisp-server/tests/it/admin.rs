//! The admin listener (`--metrics-listen`): `/metrics`, `/healthz` and
//! `/readyz` on their own address, `/metrics` gone from the public one,
//! and probes that still get in while the public listener is full.

use std::time::Duration;

use wisp_test_support::{TestServer, http_get};

async fn get(addr: std::net::SocketAddr, path: &'static str) -> String {
    tokio::task::spawn_blocking(move || http_get(addr, path))
        .await
        .unwrap()
}

#[tokio::test]
async fn metrics_move_to_the_admin_address() {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let public = server.server.local_addr();
    let admin = server.server.admin_addr().expect("an admin address");
    assert_ne!(admin, public);
    assert!(get(public, "/metrics").await.starts_with("HTTP/1.1 404"));
    assert!(get(public, "/healthz").await.starts_with("HTTP/1.1 200"));
    let metrics = get(admin, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(get(admin, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get(admin, "/readyz").await.starts_with("HTTP/1.1 200"));
    // The admin listener serves no WebSocket.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{admin}"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn without_an_admin_address_metrics_stay_public() {
    let server = TestServer::start().await;
    assert!(server.server.admin_addr().is_none());
    let metrics = get(server.server.local_addr(), "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
}

#[tokio::test]
async fn probes_get_in_while_the_public_listener_is_full() {
    let server = TestServer::start_with(|c| {
        c.max_connections = 2;
        c.max_connections_per_address = 0;
        c.handshake_timeout = Duration::from_secs(30);
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    })
    .await;
    let public = server.server.local_addr();
    let _held = [
        tokio::net::TcpStream::connect(public).await.unwrap(),
        tokio::net::TcpStream::connect(public).await.unwrap(),
    ];
    // The public listener refuses a third connection: 503, then closed.
    let mut third = tokio::net::TcpStream::connect(public).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(3),
        tokio::io::AsyncReadExt::read_to_end(&mut third, &mut answer),
    )
    .await
    .expect("closed within 3 s")
    .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n")
            && answer.ends_with("try again later\r\n"),
        "{answer:?}"
    );
    let admin = server.server.admin_addr().unwrap();
    assert!(get(admin, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(get(admin, "/readyz").await.starts_with("HTTP/1.1 200"));
    // Counted by reason (the recorder is the process's: other tests'
    // refusals may be in the count too).
    let metrics = get(admin, "/metrics").await;
    assert!(
        metrics.contains("wisp_connections_refused_total{reason=\"full\"}"),
        "{metrics}"
    );
}
