//! A key the friend's identity did not sign reaches the sender as the typed
//! error `ClientError::E2e(E2eError::ForgedKey)`, never as a glitch.
//!
//! An honest server refuses such a key at upload (it checks every
//! signature), so the test plays a compromised server: a real one whose
//! key store hands out the friend's one-time key with a broken signature.

use std::time::Duration;

use wisp_client::{ClientError, E2eError, ErrorCode};
use wisp_proto::frames::{SignedKey as WireKey, UploadKeys};
use wisp_test_support::TestServer;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_key_fails_the_send_as_the_typed_error() {
    let server = TestServer::start_forging_keys().await;
    // Each device keeps its home (and key store) for the whole test.
    let mut alice_device = server.device().await;
    let bob_device = server.device().await;
    let (alice, bob) = (&mut alice_device.messenger, &bob_device.messenger);
    alice.client().request_friend(bob.user_id()).await.unwrap();
    bob.client().accept_friend(alice.user_id()).await.unwrap();

    // Bob's raw client cannot upload a key with a bad signature: the
    // server checks it...
    let refused = bob
        .client()
        .upload_keys(UploadKeys {
            one_time_keys: vec![WireKey {
                public_key: vec![9; 32],
                signature: vec![0; 64],
            }],
            fallback_key: None,
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::InvalidArgument),
        "{refused}"
    );

    // ...but a compromised server can hand out one anyway, and Alice's
    // device refuses it, typed.
    let error = alice
        .send_text(bob.user_id(), "hello bob", HOUR, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ClientError::E2e(E2eError::ForgedKey(friend)) if *friend == bob.user_id()),
        "{error:?}"
    );
    assert_eq!(error.forged_key(), Some(bob.user_id()));
    assert!(
        error.to_string().contains("not signed by their identity"),
        "{error}"
    );
}
