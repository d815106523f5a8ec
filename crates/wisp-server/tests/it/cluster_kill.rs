//! Three `wisp-server` processes on one PostgreSQL and one Redis, 200 users
//! spread over them, every user talking to its friends; one node is killed
//! with SIGKILL midway. Every acknowledged message is delivered, and stored
//! once; the killed node's users carry on through the other two.

use wisp_test_support::traffic;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wisp_test_support::ClusterBackend;

use crate::WISP_SERVER;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_two_hundred_users_and_a_node_killed_midway() {
    let Some(backend) = ClusterBackend::create().await else {
        return;
    };
    let nodes = WISP_SERVER.spawn_nodes(3, &backend.node_env());
    let urls = nodes.urls.clone();
    let nodes = Arc::new(Mutex::new(nodes));
    let victim = Arc::clone(&nodes);
    let plan = traffic::Plan {
        users: 200,
        friends_ahead: 2,
        rounds: 3,
        // 200 users × 4 friends × 3 rounds = 2400 messages; kill at 800.
        disrupt_after: 800,
        pace: Duration::from_millis(50),
        deadline: Duration::from_secs(240),
    };
    let outcome = traffic::run(urls, plan, async move {
        let mut process = victim.lock().unwrap().processes[1].take().unwrap();
        process.0.kill().unwrap();
        process.0.wait().unwrap();
        eprintln!("node 1 killed (SIGKILL)");
    })
    .await;
    eprintln!("{outcome:?}");
    assert_eq!(outcome.acknowledged, 2400);
    assert!(
        outcome.acknowledged_before_disruption < 2400,
        "the disruption landed while messages were still being sent"
    );
    assert!(outcome.lost.is_empty(), "lost: {:?}", outcome.lost);
    assert!(
        outcome.stored_twice.is_empty(),
        "stored twice: {:?}",
        outcome.stored_twice
    );
    // A third of the users were on the killed node and had to come back.
    assert!(outcome.reconnects >= 60, "{outcome:?}");
    drop(nodes);
}
