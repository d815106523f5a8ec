//! Redis deployments a test starts for itself on free loopback ports: a
//! primary with replicas under Sentinels, and a Redis Cluster. Every process
//! is killed when its owner is dropped.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub use crate::host::Process;
use crate::host::{free_port, installed_tool};

/// The name the Sentinels monitor the primary under.
pub const SERVICE: &str = "wisp";

/// The `redis-server` on PATH, or None (a skip; a failure in CI).
pub fn redis_server() -> Option<String> {
    installed_tool("redis-server")
}

/// A Redis server on loopback `port`, keeping nothing on disk, working in
/// `dir`, with `extra` arguments.
fn data_node(binary: &str, port: u16, dir: &Path, extra: &[&str]) -> Process {
    std::fs::create_dir(dir).unwrap();
    let port = port.to_string();
    let mut args: Vec<String> = [
        "--port",
        port.as_str(),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir.to_str().unwrap(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Process::start(binary, &args)
}

pub fn query<T: redis::FromRedisValue>(
    port: u16,
    command: &mut redis::Cmd,
) -> redis::RedisResult<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
    let mut connection = client.get_connection_with_timeout(Duration::from_secs(1))?;
    command.query(&mut connection)
}

/// Waits (up to 30 s) until `ready` holds.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A primary, two replicas and three Sentinels (quorum two).
/// One plain Redis on a free loopback port, started empty (no scripts
/// cached, nothing persisted); stopped when dropped.
#[derive(Debug)]
pub struct SingleRedis {
    pub port: u16,
    _process: Process,
    _dir: tempfile::TempDir,
}

impl SingleRedis {
    pub fn start(binary: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let process = data_node(binary, port, &dir.path().join("redis"), &[]);
        wait_until("redis-server to answer", || {
            query::<String>(port, &mut redis::cmd("PING")).is_ok()
        });
        Self {
            port,
            _process: process,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

#[derive(Debug)]
pub struct SentinelSet {
    pub data_ports: Vec<u16>,
    pub data: Vec<Option<Process>>,
    pub sentinel_ports: Vec<u16>,
    _sentinels: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    pub fn start(binary: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut data = Vec::new();
        for (i, port) in data_ports.iter().enumerate() {
            let primary = data_ports[0].to_string();
            let extra: &[&str] = if i == 0 {
                &[]
            } else {
                &["--replicaof", "127.0.0.1", &primary]
            };
            data.push(Some(data_node(
                binary,
                *port,
                &dir.path().join(format!("redis-{i}")),
                extra,
            )));
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
            sentinels.push(Process::start(
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

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinel_ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+sentinel://{}/{SERVICE}", hosts.join(","))
    }

    /// The primary's port as the first Sentinel names it.
    pub fn primary(&self) -> u16 {
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

/// A Redis Cluster of three primaries (no replicas).
#[derive(Debug)]
pub struct RedisCluster {
    pub ports: Vec<u16>,
    _nodes: Vec<Process>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub fn start(binary: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (i, port) in ports.iter().enumerate() {
            let extra = ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"];
            nodes.push(data_node(
                binary,
                *port,
                &dir.path().join(format!("cluster-{i}")),
                &extra,
            ));
        }
        wait_until("the cluster nodes to answer", || {
            ports
                .iter()
                .all(|port| query::<String>(*port, &mut redis::cmd("PING")).is_ok())
        });
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for port in &ports {
            create.arg(format!("127.0.0.1:{port}"));
        }
        let created = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(created.status.success(), "cluster create: {created:?}");
        wait_until("the cluster to be ok", || {
            ports.iter().all(|port| {
                query::<String>(*port, redis::cmd("CLUSTER").arg("INFO"))
                    .is_ok_and(|info| info.contains("cluster_state:ok"))
            })
        });
        Self {
            ports,
            _nodes: nodes,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }
}
