//! No level of logging writes ciphertext: the `wisp-server` binary at
//! `WISP_LOG=trace` (and `RUST_LOG=trace`) relays a message whose
//! ciphertext carries a marker, and its whole log is searched for the
//! marker in every form a logger prints bytes in.

use std::time::Duration;

use data_encoding::{BASE64, BASE64URL_NOPAD, HEXLOWER, HEXUPPER};
use wisp_client::{Client, Identity, ServerEvent};
use wisp_proto::ClientMsgId;
use wisp_test_support::{TestUser, befriend};

use crate::WISP_SERVER;

/// The marker's period: bytes that are not printable ASCII, so a debug
/// print escapes them rather than showing them as text.
const PATTERN: [u8; 3] = [0xC1, 0x9E, 0xA5];

/// Every form of a run of the marker that a log line could hold: hex,
/// escaped bytes, decimal and hex lists, and base64 in each of the three
/// alignments the marker can have inside a larger encoded frame.
fn needles() -> Vec<String> {
    let run: Vec<u8> = PATTERN.iter().copied().cycle().take(12).collect();
    let mut needles = vec![
        HEXLOWER.encode(&run),
        HEXUPPER.encode(&run),
        run.iter().map(|b| format!("\\x{b:02x}")).collect(),
        run.iter().map(|b| format!("\\\\x{b:02x}")).collect(),
        run.iter().map(u8::to_string).collect::<Vec<_>>().join(", "),
        run.iter()
            .map(|b| format!("{b:#04x}"))
            .collect::<Vec<_>>()
            .join(", "),
        run.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
    ];
    for shift in 0..3 {
        let rotated: Vec<u8> = PATTERN
            .iter()
            .copied()
            .cycle()
            .skip(shift)
            .take(12)
            .collect();
        needles.push(BASE64.encode(&rotated));
        needles.push(BASE64URL_NOPAD.encode(&rotated));
    }
    needles
}

async fn user_at(url: &str) -> TestUser {
    let identity = Identity::generate();
    let (client, _) = Client::connect(url).await.expect("connect");
    client.register(&identity).await.expect("register");
    let name = client.server_name().to_owned();
    drop(client);
    let (mut client, events) = Client::connect(url).await.expect("connect");
    client.login(&identity, &name).await.expect("login");
    TestUser {
        client,
        events,
        identity,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_logs_no_ciphertext_even_at_trace() {
    let cwd = tempfile::tempdir().unwrap();
    let env = [
        ("WISP_POW_DIFFICULTY", "4"),
        ("WISP_REGISTER_LIMIT", "0"),
        ("WISP_LOG", "trace"),
        ("RUST_LOG", "trace"),
    ];
    let (process, addr, logs) = WISP_SERVER.spawn(cwd.path(), &env);
    let url = format!("ws://{addr}");
    let alice = user_at(&url).await;
    let mut bob = user_at(&url).await;
    befriend(&alice, &bob).await;

    let mut ciphertext = b"not-a-real-envelope:".to_vec();
    ciphertext.extend(PATTERN.iter().copied().cycle().take(300));
    alice
        .client
        .send_ciphertext(
            bob.id(),
            ClientMsgId([7; 16]),
            ciphertext.clone(),
            Duration::from_secs(600),
        )
        .await
        .unwrap();
    let delivered = loop {
        match tokio::time::timeout(Duration::from_secs(10), bob.events.next()).await {
            Ok(Some(ServerEvent::Delivery(message))) => break message,
            Ok(Some(_)) => {}
            other => panic!("no delivery: {other:?}"),
        }
    };
    assert_eq!(delivered.ciphertext, ciphertext);
    bob.client.ack(vec![delivered.message_id]).await.unwrap();
    drop((alice, bob));
    drop(process);

    let mut lines = Vec::new();
    while let Ok(line) = logs.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    // The log really is at trace: our own debug lines are there.
    assert!(
        lines.iter().any(|line| line.contains("logged in")),
        "no debug output at WISP_LOG=trace: {} lines",
        lines.len()
    );
    let needles = needles();
    for line in &lines {
        for needle in &needles {
            assert!(
                !line.contains(needle.as_str()),
                "ciphertext in the log ({needle}): {line}"
            );
        }
    }
}
