//! Malformed, truncated, oversized, out-of-order and wrong-version frames
//! each get their typed error, and nobody else's session notices.

use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::{Hello, Ping};
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{ClientFrame, ErrorCode, MAX_FRAME_BYTES, encode};
use wisp_test_support::{RawConnection, Received, TestServer, befriend};

fn hello_bytes(version: u32) -> Vec<u8> {
    encode(&ClientFrame {
        request_id: 1,
        body: Some(Request::Hello(Hello {
            protocol_version: version,
            client: "bad-input-test".into(),
        })),
    })
}

#[tokio::test]
async fn each_bad_frame_gets_its_typed_error_and_others_are_unaffected() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let bob = server.user().await;
    befriend(&alice, &bob).await;
    let bystander_is_fine = || async {
        alice
            .client
            .ping()
            .await
            .expect("bystander still connected");
        let friends = alice
            .client
            .friends()
            .await
            .expect("bystander can still list");
        assert_eq!(friends.len(), 1);
        assert_eq!(friends[0].id, bob.id());
    };

    let mut attacker = RawConnection::open(&server.url()).await;

    // Anything before Hello.
    attacker.send(Request::Ping(Ping {})).await;
    assert_eq!(attacker.expect_error().await, (1, ErrorCode::HelloRequired));
    bystander_is_fine().await;

    // Bytes that are not protobuf at all.
    attacker.send_bytes(vec![0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(attacker.expect_error().await, (0, ErrorCode::BadFrame));

    // A truncated frame.
    let hello = hello_bytes(wisp_proto::PROTOCOL_VERSION);
    attacker.send_bytes(hello[..hello.len() - 2].to_vec()).await;
    assert_eq!(attacker.expect_error().await, (0, ErrorCode::BadFrame));

    // A frame one byte over the limit.
    attacker.send_bytes(vec![0u8; MAX_FRAME_BYTES + 1]).await;
    assert_eq!(attacker.expect_error().await, (0, ErrorCode::FrameTooLarge));
    bystander_is_fine().await;

    // Unknown fields after a valid frame.
    let mut extended = hello.clone();
    extended.extend_from_slice(&[0x98, 0x06, 0x01]);
    attacker.send_bytes(extended).await;
    assert_eq!(attacker.expect_error().await, (0, ErrorCode::BadFrame));

    // A text frame.
    attacker.send_text("{\"hello\": 1}").await;
    assert_eq!(attacker.expect_error().await, (0, ErrorCode::BadFrame));

    // Request id zero.
    attacker
        .send_bytes(encode(&ClientFrame {
            request_id: 0,
            body: Some(Request::Ping(Ping {})),
        }))
        .await;
    assert_eq!(attacker.expect_error().await, (0, ErrorCode::BadFrame));
    bystander_is_fine().await;

    // The connection still works for a well-behaved request...
    attacker.send_bytes(hello).await;
    match attacker.receive().await {
        Received::Frame(frame) => assert!(matches!(frame.body, Some(Reply::HelloOk(_)))),
        other => panic!("{other:?}"),
    }
    // ...until it has sent 8 bad frames: the 8th closes it with 1002.
    attacker.send_bytes(vec![0xff]).await;
    assert_eq!(attacker.expect_error().await, (0, ErrorCode::BadFrame));
    match attacker.receive().await {
        Received::Closed { code, reason } => {
            assert_eq!(code, 1002);
            assert!(reason.contains("malformed"), "{reason}");
        }
        other => panic!("expected close, got {other:?}"),
    }
    bystander_is_fine().await;
}

#[tokio::test]
async fn an_unsupported_version_is_refused_and_the_connection_closed() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let mut old = RawConnection::open(&server.url()).await;
    old.send_bytes(hello_bytes(99)).await;
    let (id, code) = old.expect_error().await;
    assert_eq!((id, code), (1, ErrorCode::UnsupportedVersion));
    match old.receive().await {
        Received::Closed { code, .. } => assert_eq!(code, 1002),
        other => panic!("expected close, got {other:?}"),
    }
    alice.client.ping().await.unwrap();
}

#[tokio::test]
async fn a_frame_far_over_the_transport_limit_closes_only_that_connection() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let mut flooder = RawConnection::open_with_hello(&server.url()).await;
    flooder.send_bytes(vec![0u8; 32 * MAX_FRAME_BYTES]).await;
    match flooder.receive().await {
        Received::Closed { .. } => {}
        other => panic!("expected the connection to close, got {other:?}"),
    }
    alice.client.ping().await.unwrap();
}
