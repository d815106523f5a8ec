//! A Redis primary with two replicas under three Sentinels, all started by
//! this test on free loopback ports; two `wisp-server` nodes reach Redis
//! through the Sentinels (`redis+sentinel://…`) and acknowledge a message
//! only once a replica holds it (`--redis-replicas 1`). The primary is
//! killed with SIGKILL mid-traffic: the Sentinels promote a replica, the
//! nodes follow it without a restart, and no acknowledged message is lost
//! or stored twice.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/traffic.rs"]
mod traffic;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{ClusterBackend, spawn};

const SERVICE: &str = "wisp";

/// A process stopped (SIGKILL) when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_server() -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", "command -v redis-server"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty());
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("no redis-server, and CI=true: scripts/ensure-services.sh installs it");
        }
        eprintln!("skipped: no redis-server to start a Sentinel set with");
    }
    found
}

fn start(binary: &str, args: &[String]) -> Process {
    Process(
        Command::new(binary)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server"),
    )
}

fn query<T: redis::FromRedisValue>(port: u16, command: &mut redis::Cmd) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
    command.query(&mut connection)
}

/// Waits (up to 30 s) until `ready` holds.
fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A primary, two replicas and three Sentinels (quorum two).
struct SentinelSet {
    data_ports: Vec<u16>,
    data: Vec<Option<Process>>,
    sentinel_ports: Vec<u16>,
    _sentinels: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    fn start(binary: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut data = Vec::new();
        for (i, port) in data_ports.iter().enumerate() {
            let node_dir = dir.path().join(format!("redis-{i}"));
            std::fs::create_dir(&node_dir).unwrap();
            let mut args: Vec<String> = [
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                node_dir.to_str().unwrap(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            if i > 0 {
                args.extend([
                    "--replicaof".to_owned(),
                    "127.0.0.1".to_owned(),
                    data_ports[0].to_string(),
                ]);
            }
            data.push(Some(start(binary, &args)));
        }
        wait_until("both replicas to sync", || {
            query::<String>(data_ports[0], redis::cmd("INFO").arg("replication"))
                .is_ok_and(|info| info.contains("connected_slaves:2"))
                && data_ports[1..].iter().all(|port| {
                    query::<String>(*port, redis::cmd("INFO").arg("replication"))
                        .is_ok_and(|info| info.contains("master_link_status:up"))
                })
        });
        let sentinel_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut sentinels = Vec::new();
        for (i, port) in sentinel_ports.iter().enumerate() {
            let config = dir.path().join(format!("sentinel-{i}.conf"));
            write_sentinel_config(&config, *port, data_ports[0]);
            sentinels.push(start(
                binary,
                &[config.to_str().unwrap().to_owned(), "--sentinel".to_owned()],
            ));
        }
        wait_until("the Sentinels to know the replicas and each other", || {
            sentinel_ports.iter().all(|port| {
                let replicas: Vec<redis::Value> =
                    query(*port, redis::cmd("SENTINEL").arg("replicas").arg(SERVICE))
                        .unwrap_or_default();
                let others: Vec<redis::Value> =
                    query(*port, redis::cmd("SENTINEL").arg("sentinels").arg(SERVICE))
                        .unwrap_or_default();
                replicas.len() == 2 && others.len() == 2
            })
        });
        Self {
            data_ports,
            data,
            sentinel_ports,
            _sentinels: sentinels,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// The primary's port as the first Sentinel names it.
    fn primary(&self) -> u16 {
        let (_, port): (String, u16) = query(
            self.sentinel_ports[0],
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(SERVICE),
        )
        .unwrap();
        port
    }
}

fn write_sentinel_config(path: &Path, port: u16, primary: u16) {
    std::fs::write(
        path,
        format!(
            "port {port}\n\
             bind 127.0.0.1\n\
             daemonize no\n\
             dir {dir}\n\
             sentinel monitor {SERVICE} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {SERVICE} 1000\n\
             sentinel failover-timeout {SERVICE} 10000\n\
             sentinel parallel-syncs {SERVICE} 2\n",
            dir = path.parent().unwrap().display(),
        ),
    )
    .unwrap();
}

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
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    let mut urls = Vec::new();
    let mut logs = Vec::new();
    for dir in &dirs {
        let (process, addr, log) = spawn(dir.path(), &env);
        nodes.push(process);
        urls.push(format!("ws://{addr}"));
        logs.push(log);
    }

    let set = Arc::new(Mutex::new(set));
    let victim = Arc::clone(&set);
    let plan = traffic::Plan {
        users: 40,
        friends_ahead: 2,
        rounds: 5,
        // 40 users × 4 friends × 5 rounds = 800 messages; kill at 250.
        disrupt_after: 250,
        deadline: Duration::from_secs(120),
    };
    let outcome = traffic::run(urls, plan, async move {
        let primary = victim.lock().unwrap().data[0].take().unwrap();
        drop(primary);
        eprintln!("Redis primary killed (SIGKILL)");
    })
    .await;
    eprintln!("{outcome:?}");
    for (node, log) in logs.iter().enumerate() {
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
    assert!(outcome.lost.is_empty(), "lost: {:?}", outcome.lost);
    assert!(
        outcome.stored_twice.is_empty(),
        "stored twice: {:?}",
        outcome.stored_twice
    );
    drop(nodes);
}
