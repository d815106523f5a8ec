//! TLS on the server's listener: logins and messages over `wss://`, no
//! plain-text fallback, start-up errors for bad certificates and keys,
//! reloads (in process and by SIGHUP to the binary) that serve the new
//! certificate to new connections while open ones keep going, failed
//! reloads that keep the old one, and the handshake timeout.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use wisp_server::{StartError, TlsError};
use wisp_test_support::server_tls::{Tunnel, certificate_in, served_certificate, tls_connect};
use wisp_test_support::tls::{LeafFiles, TestCa};
use wisp_test_support::{TestServer, befriend_devices, device_at, test_config};

use crate::WISP_SERVER;

const HOUR: Duration = Duration::from_secs(3600);

async fn tls_server(leaf: &LeafFiles) -> TestServer {
    let leaf = leaf.clone();
    TestServer::start_with(move |c| {
        c.tls_cert = Some(leaf.cert);
        c.tls_key = Some(leaf.key);
    })
    .await
}

/// Puts `from`'s pair where `to`'s files are (what an operator's renewal
/// does).
fn replace(to: &LeafFiles, from: &LeafFiles) {
    std::fs::copy(&from.cert, &to.cert).unwrap();
    std::fs::copy(&from.key, &to.key).unwrap();
}

#[tokio::test]
async fn users_log_in_and_message_over_tls_and_plain_text_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestCa::new();
    let server = tls_server(&pki.write_leaf(dir.path(), "server")).await;
    assert!(server.url().starts_with("wss://"), "{}", server.url());

    let tunnel = Tunnel::start(server.server.local_addr(), None, Some(pki.client_config())).await;
    let mut alice = device_at(&tunnel.url()).await;
    let mut bob = device_at(&tunnel.url()).await;
    befriend_devices(&alice, &bob).await;
    alice
        .messenger
        .send_text(bob.id(), "over TLS", HOUR, None)
        .await
        .unwrap();
    assert_eq!(bob.next_text().await, "over TLS");
    bob.messenger
        .send_text(alice.id(), "both ways", HOUR, None)
        .await
        .unwrap();
    assert_eq!(alice.next_text().await, "both ways");

    // No fallback: a plain WebSocket to the TLS listener gets nowhere.
    let plain = format!("ws://{}", server.server.local_addr());
    let attempt = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(plain),
    )
    .await
    .expect("refused within 10 s");
    assert!(attempt.is_err(), "a plain-text upgrade was served");

    // /healthz is served over TLS on the same listener.
    let mut stream = tls_connect(server.server.local_addr(), pki.client_config())
        .await
        .unwrap();
    let response = http_over(&mut stream, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

async fn http_over<S>(stream: &mut S, path: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut response))
        .await
        .expect("a response within 10 s")
        .unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn bad_certificates_and_keys_stop_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestCa::new();
    let a = pki.write_leaf(dir.path(), "a");
    let b = pki.write_leaf(dir.path(), "b");
    let start = |cert: std::path::PathBuf, key: std::path::PathBuf| {
        let data = dir.path().join("data");
        async move {
            let mut config = test_config(data);
            config.tls_cert = Some(cert);
            config.tls_key = Some(key);
            wisp_server::Server::start(&config).await
        }
    };

    let mismatched = start(a.cert.clone(), b.key.clone()).await.unwrap_err();
    assert!(
        matches!(mismatched, StartError::Tls(TlsError::Mismatch { .. })),
        "{mismatched}"
    );
    assert!(
        mismatched.to_string().contains("does not go with"),
        "{mismatched}"
    );

    let missing = start(dir.path().join("absent.crt"), a.key.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(missing, StartError::Tls(TlsError::Read { .. })),
        "{missing}"
    );
    assert!(missing.to_string().contains("absent.crt"), "{missing}");

    let garbage = dir.path().join("garbage.crt");
    std::fs::write(&garbage, "this is not PEM\n").unwrap();
    let unparsable = start(garbage, a.key.clone()).await.unwrap_err();
    assert!(
        matches!(unparsable, StartError::Tls(TlsError::Parse { .. })),
        "{unparsable}"
    );
}

#[tokio::test]
async fn a_reload_serves_the_new_certificate_and_open_connections_keep_going() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestCa::new();
    let live = pki.write_leaf(dir.path(), "live");
    let first = certificate_in(&live.cert);
    let server = tls_server(&live).await;
    let addr = server.server.local_addr();

    let tunnel = Tunnel::start(addr, None, Some(pki.client_config())).await;
    let mut alice = device_at(&tunnel.url()).await;
    let mut bob = device_at(&tunnel.url()).await;
    befriend_devices(&alice, &bob).await;
    let before = tls_connect(addr, pki.client_config()).await.unwrap();
    assert_eq!(served_certificate(&before), first);

    let renewed = pki.write_leaf(dir.path(), "renewed");
    replace(&live, &renewed);
    server.server.reload_tls().unwrap();
    let after = tls_connect(addr, pki.client_config()).await.unwrap();
    assert_eq!(served_certificate(&after), certificate_in(&renewed.cert));
    assert_ne!(served_certificate(&after), first);

    // The connections opened before the reload still carry messages.
    alice
        .messenger
        .send_text(bob.id(), "still here", HOUR, None)
        .await
        .unwrap();
    assert_eq!(bob.next_text().await, "still here");

    // A broken renewal is refused and the last good pair stays in service.
    std::fs::write(&live.cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    assert!(server.server.reload_tls().is_err());
    let still = tls_connect(addr, pki.client_config()).await.unwrap();
    assert_eq!(served_certificate(&still), certificate_in(&renewed.cert));
    // A key that is not the certificate's is refused the same way.
    let other = pki.write_leaf(dir.path(), "other");
    std::fs::copy(&renewed.cert, &live.cert).unwrap();
    std::fs::copy(&other.key, &live.key).unwrap();
    assert!(matches!(
        server.server.reload_tls(),
        Err(TlsError::Mismatch { .. })
    ));
    let still = tls_connect(addr, pki.client_config()).await.unwrap();
    assert_eq!(served_certificate(&still), certificate_in(&renewed.cert));
    bob.messenger
        .send_text(alice.id(), "and still", HOUR, None)
        .await
        .unwrap();
    assert_eq!(alice.next_text().await, "and still");
}

#[tokio::test]
async fn sighup_reloads_the_binarys_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestCa::new();
    let live = pki.write_leaf(dir.path(), "live");
    let first = certificate_in(&live.cert);
    let (process, addr, log) = WISP_SERVER.spawn(
        dir.path(),
        &[
            ("WISP_TLS_CERT", live.cert.to_str().unwrap()),
            ("WISP_TLS_KEY", live.key.to_str().unwrap()),
            ("WISP_POW_DIFFICULTY", "0"),
        ],
    );
    let open = tls_connect(addr, pki.client_config()).await.unwrap();
    assert_eq!(served_certificate(&open), first);

    let renewed = pki.write_leaf(dir.path(), "renewed");
    replace(&live, &renewed);
    hang_up(&process);
    wait_for_log(&log, "TLS certificate and key reloaded");
    let fresh = tls_connect(addr, pki.client_config()).await.unwrap();
    assert_eq!(served_certificate(&fresh), certificate_in(&renewed.cert));

    // A bad file: the binary says why and keeps serving the renewed pair.
    std::fs::write(&live.key, "not a key\n").unwrap();
    hang_up(&process);
    let line = wait_for_log(&log, "TLS reload failed");
    assert!(line.contains("PRIVATE KEY"), "{line}");
    let still = tls_connect(addr, pki.client_config()).await.unwrap();
    assert_eq!(served_certificate(&still), certificate_in(&renewed.cert));
    drop(open);
}

fn hang_up(process: &wisp_test_support::ServerProcess) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &process.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// The first log line (within 10 s) containing `needle`.
fn wait_for_log(log: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let line = log
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or_else(|_| panic!("no log line with {needle:?} within 10 s"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_handshake_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestCa::new();
    let leaf = pki.write_leaf(dir.path(), "server");
    let server = TestServer::start_with(move |c| {
        c.tls_cert = Some(leaf.cert);
        c.tls_key = Some(leaf.key);
        c.handshake_timeout = Duration::from_millis(300);
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(server.server.local_addr())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut byte))
        .await
        .expect("closed within 5 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(started.elapsed() >= Duration::from_millis(250));
}
