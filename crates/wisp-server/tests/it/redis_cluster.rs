//! A Redis Cluster (three primaries this test starts on free loopback
//! ports) behind two nodes, named by `redis+cluster://…`: mailboxes spread
//! over the cluster's slots, pushes cross nodes through the cluster's
//! pub/sub, burns empty the mailboxes on every primary, and a removal on one
//! node stops a send through the other.

use std::time::{Duration, Instant};

use wisp_proto::ErrorCode;
use wisp_test_support::redis_set::{RedisCluster, redis_server};
use wisp_test_support::{ClusterBackend, befriend_devices, code_of, device_at};

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_cluster_carries_mailboxes_and_notifications() {
    let Some(binary) = redis_server() else {
        return;
    };
    let Some(backend) = ClusterBackend::create().await else {
        return;
    };
    let redis = tokio::task::spawn_blocking(move || RedisCluster::start(&binary))
        .await
        .unwrap();
    let url = redis.url();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let node = backend
            .start_node_with(|config| config.redis_url = Some(url.clone()))
            .await;
        nodes.push(node);
    }
    let (a, b) = (nodes[0].ws_url(), nodes[1].ws_url());
    // Several recipients, so mailboxes (almost surely) land on more than one
    // of the three primaries.
    let mut pairs = Vec::new();
    for _ in 0..4 {
        let sender = device_at(&a).await;
        let mut recipient = device_at(&b).await;
        befriend_devices(&sender, &recipient).await;
        assert!(recipient.read_all().await.is_empty());
        pairs.push((sender, recipient));
    }
    for (n, (sender, recipient)) in pairs.iter_mut().enumerate() {
        for k in 0..5 {
            let text = format!("pair {n} message {k}");
            sender
                .messenger
                .send_text(recipient.id(), &text, HOUR, None)
                .await
                .unwrap();
            let got = tokio::time::timeout(Duration::from_secs(5), recipient.next_text())
                .await
                .expect("pushed across nodes within 5 s");
            assert_eq!(got, text);
        }
    }
    // All gone once read (counted on every primary).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stored = nodes[0].stored_message_count().await.unwrap();
        if stored == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{stored} messages still stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (sender, recipient) = &mut pairs[0];
    sender
        .messenger
        .send_text(recipient.id(), "kept until read", HOUR, None)
        .await
        .unwrap();
    assert_eq!(nodes[1].stored_message_count().await.unwrap(), 1);
    recipient
        .messenger
        .client()
        .remove_friend(sender.id())
        .await
        .unwrap();
    // The removal dropped the unread message and closed the conversation.
    assert_eq!(nodes[0].stored_message_count().await.unwrap(), 0);
    let refused = sender
        .messenger
        .send_text(recipient.id(), "still there?", HOUR, None)
        .await;
    assert_eq!(code_of(refused), ErrorCode::NotFriends);
    for node in nodes {
        node.shutdown().await;
    }
    drop(redis);
}
