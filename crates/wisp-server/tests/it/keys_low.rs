//! `KeysLow` is pushed once as an owner's one-time keys run out, not on
//! every claim that then falls back, on both backends (the rule sits in
//! the service, over each backend's count).

use std::sync::Arc;
use std::time::Duration;

use wisp_client::ServerEvent;
use wisp_client::state::LocalState;
use wisp_proto::UnixMillis;
use wisp_server::clock::SystemClock;
use wisp_test_support::{Backend, TestServer, befriend};

async fn keys_low_is_pushed_once_when_the_keys_run_out(backend: Backend) {
    let Some(server) = TestServer::start_on(backend, |_| {}, Arc::new(SystemClock)).await else {
        return;
    };
    let mut owner = server.user().await;
    let friend = server.user().await;
    befriend(&owner, &friend).await;
    // Two one-time keys and a fallback key, signed by the owner.
    let mut local = LocalState::new(owner.identity.clone_for_tests());
    let target = wisp_client::e2e::ONE_TIME_KEY_TARGET;
    let upload = local
        .prepare_key_upload(target - 2, UnixMillis(0))
        .expect("keys to upload");
    assert_eq!(upload.one_time_keys.len(), 2);
    assert!(upload.fallback_key.is_some());
    assert_eq!(owner.client.upload_keys(upload).await.unwrap(), 2);

    // Two claims take the one-time keys, the next ones get the fallback.
    for claim in 0..8 {
        let bundle = friend.client.claim_keys(owner.id()).await.unwrap();
        assert_eq!(bundle.fallback, claim >= 2, "claim {claim}");
    }
    // Every push for the owner is queued by now; a round trip and a pause
    // let them arrive.
    owner.client.ping().await.unwrap();
    let mut told = Vec::new();
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), owner.events.next()).await
    {
        if let ServerEvent::KeysLow { remaining } = event {
            told.push(remaining);
        }
    }
    assert_eq!(told, vec![0], "told once, when the last one-time key went");
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_low_is_pushed_once_when_the_keys_run_out() {
        super::keys_low_is_pushed_once_when_the_keys_run_out(super::Backend::Sqlite).await;
    }
}

mod cluster {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_low_is_pushed_once_when_the_keys_run_out() {
        super::keys_low_is_pushed_once_when_the_keys_run_out(super::Backend::Cluster).await;
    }
}
