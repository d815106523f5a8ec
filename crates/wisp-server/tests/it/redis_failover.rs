//! A Redis primary with two replicas under three Sentinels, all started by
//! this test on free loopback ports; two `wisp-server` nodes reach Redis
//! through the Sentinels (`redis+sentinel://…`) and acknowledge a message
//! only once a replica holds it (`--redis-replicas 1`). The primary is
//! killed with SIGKILL mid-traffic: the Sentinels promote a replica, the
//! nodes follow it without a restart, and no acknowledged message is lost
//! or stored twice.

use wisp_test_support::traffic;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use wisp_test_support::ClusterBackend;

use crate::WISP_SERVER;
use wisp_test_support::redis_set::{SentinelSet, redis_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_redis_primary_loses_no_acknowledged_message() {
    let Some(binary) = redis_server() else {
        return;
    };
    let Some(backend) = ClusterBackend::create().await else {
        return;
    };
    let set = tokio::task::spawn_blocking(move || SentinelSet::start(&binary))
        .await
        .unwrap();
    let old_primary = set.primary();
    assert_eq!(old_primary, set.data_ports[0]);
    let sentinel_url = set.url();
    let mut env = backend.node_env();
    for (key, value) in &mut env {
        if *key == "WISP_REDIS_URL" {
            value.clone_from(&sentinel_url);
        }
    }
    env.push(("WISP_REDIS_REPLICAS", "1".into()));
    let nodes = WISP_SERVER.spawn_nodes(2, &env);
    let urls = nodes.urls.clone();

    let set = Arc::new(Mutex::new(set));
    let victim = Arc::clone(&set);
    let plan = traffic::Plan {
        users: 40,
        friends_ahead: 2,
        rounds: 5,
        // 40 users × 4 friends × 5 rounds = 800 messages; kill at 250.
        disrupt_after: 250,
        pace: Duration::from_millis(50),
        deadline: Duration::from_secs(120),
    };
    let outcome = traffic::run(urls, plan, async move {
        let primary = victim.lock().unwrap().data[0].take().unwrap();
        drop(primary);
        eprintln!("Redis primary killed (SIGKILL)");
    })
    .await;
    eprintln!("{outcome:?}");
    for (node, log) in nodes.logs.iter().enumerate() {
        let warnings: Vec<String> = log
            .try_iter()
            .filter(|line| line.contains("\"WARN\"") || line.contains("\"ERROR\""))
            .collect();
        eprintln!("node {node}: {} warnings", warnings.len());
        for line in warnings.iter().take(5) {
            eprintln!("  {line}");
        }
    }
    let set = Arc::try_unwrap(set).ok().unwrap().into_inner().unwrap();
    let new_primary = tokio::task::spawn_blocking(move || {
        let port = set.primary();
        drop(set);
        port
    })
    .await
    .unwrap();
    assert_ne!(new_primary, old_primary, "the Sentinels promoted a replica");
    assert_eq!(outcome.acknowledged, 800);
    assert!(
        outcome.acknowledged_before_disruption < 800,
        "the disruption landed while messages were still being sent"
    );
    assert!(outcome.lost.is_empty(), "lost: {:?}", outcome.lost);
    assert!(
        outcome.stored_twice.is_empty(),
        "stored twice: {:?}",
        outcome.stored_twice
    );
    drop(nodes);
}
