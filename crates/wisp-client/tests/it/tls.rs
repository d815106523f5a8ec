//! `wss://`: the SDK through TLS terminated in front of a plain server (a
//! test CA, a TLS-terminating proxy): it chats when the CA is given, and a
//! certificate that is untrusted, expired or for another name is a typed
//! error saying which, with nothing sent in plain text.

use std::time::Duration;

use wisp_client::{CertificateProblem, Client, ClientError, ConnectOptions, Event};
use wisp_test_support::{TestCa, TestServer, TlsFront, befriend_devices, device_with};

const HOUR: Duration = Duration::from_secs(3600);

/// The options that trust `ca`.
fn trusting(ca: &TestCa) -> ConnectOptions {
    ConnectOptions::new()
        .with_ca_pem(ca.pem().as_bytes())
        .unwrap()
}

/// Connects to `url` with `options`, bounded in time; the error.
async fn refusal(url: &str, options: &ConnectOptions) -> ClientError {
    tokio::time::timeout(Duration::from_secs(10), Client::connect_with(url, options))
        .await
        .expect("the connection attempt ends within 10 s")
        .expect_err("the connection is refused")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn friends_chat_over_wss_with_the_deployments_ca() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let front = TlsFront::start(server.server.local_addr(), &ca.leaf(&["127.0.0.1"])).await;
    let options = trusting(&ca);

    let mut alice = device_with(&front.url(), &options).await;
    let mut bob = device_with(&front.url(), &options).await;
    befriend_devices(&alice, &bob).await;
    alice
        .messenger
        .send_text(bob.id(), "over tls", HOUR, None)
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Event::Message(m) = bob.event().await {
                return m.text.to_string();
            }
        }
    })
    .await
    .expect("the message arrives within 10 s");
    assert_eq!(text, "over tls");

    // A reconnect goes through TLS with the same trust.
    alice.messenger.reconnect().await.unwrap();
    alice.messenger.client().ping().await.unwrap();
    let _ = &mut bob;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_ca_is_refused_as_untrusted() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let front = TlsFront::start(server.server.local_addr(), &ca.leaf(&["127.0.0.1"])).await;

    // The system's roots only: our CA is not among them.
    let error = refusal(&front.url(), &ConnectOptions::new()).await;
    assert_eq!(
        error.certificate_problem(),
        Some(&CertificateProblem::Untrusted),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("not trusted"), "{message}");
    assert!(message.contains("--ca-cert"), "{message}");
    assert!(!message.contains('\n'), "one line: {message}");

    // Another CA given is no better.
    let other = TestCa::new();
    let error = refusal(&front.url(), &trusting(&other)).await;
    assert_eq!(
        error.certificate_problem(),
        Some(&CertificateProblem::Untrusted)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_as_expired() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let front = TlsFront::start(server.server.local_addr(), &ca.expired_leaf(&["127.0.0.1"])).await;
    let error = refusal(&front.url(), &trusting(&ca)).await;
    assert_eq!(
        error.certificate_problem(),
        Some(&CertificateProblem::Expired),
        "{error:?}"
    );
    assert!(error.to_string().contains("expired"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_name_is_refused_as_wrong_name() {
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let front = TlsFront::start(server.server.local_addr(), &ca.leaf(&["chat.wisp.invalid"])).await;
    let error = refusal(&front.url(), &trusting(&ca)).await;
    assert_eq!(
        error.certificate_problem(),
        Some(&CertificateProblem::WrongName),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("not valid for this host name"),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_to_a_plain_server_fails_and_never_falls_back_to_plain_text() {
    let server = TestServer::start().await;
    // The plain server's own port, asked for TLS: the handshake fails, and
    // the client does not retry in plain text (which would succeed).
    let url = format!("wss://{}", server.server.local_addr());
    let error = refusal(&url, &ConnectOptions::new()).await;
    assert!(matches!(error, ClientError::Connect { .. }), "{error:?}");
    // A ws:// URL still works as before.
    let (client, _) = Client::connect(&server.url()).await.unwrap();
    client.ping().await.unwrap();
}
