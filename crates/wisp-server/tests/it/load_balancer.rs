//! The shipped HAProxy configuration (`deploy/haproxy.cfg`), run by the
//! Debian-packaged HAProxy in front of two nodes of one cluster: users chat
//! through it, and when a node goes away its users come back through the
//! balancer to the other node and get what is pending.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wisp_server::Server;
use wisp_test_support::{
    ClusterBackend, befriend_devices, device_at, free_port, friends_one_offline,
};

const HOUR: Duration = Duration::from_secs(3600);

/// HAProxy, stopped when dropped.
struct Balancer(Child);

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy() -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", "command -v haproxy || ls /usr/sbin/haproxy"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .filter(|s| !s.is_empty());
    wisp_test_support::tool_or_skip("haproxy", found, "scripts/ensure-services.sh installs it")
}

/// The shipped configuration, pointed at `nodes` and listening on `port`.
fn config_for(port: u16, nodes: &[std::net::SocketAddr]) -> String {
    let shipped = include_str!("../../../../deploy/haproxy.cfg");
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server ") {
            continue;
        }
        if trimmed.starts_with("maxconn") {
            out.push_str("    maxconn 1000\n");
        } else if trimmed.starts_with("bind :") {
            out.push_str(&format!("    bind 127.0.0.1:{port}\n"));
        } else {
            out.push_str(line);
            out.push('\n');
        }
        if trimmed.starts_with("default-server") {
            for (n, addr) in nodes.iter().enumerate() {
                out.push_str(&format!("    server node{n} {addr} check\n"));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_chat_through_haproxy_and_survive_a_node_leaving() {
    let Some(binary) = haproxy() else { return };
    let Some(cluster) = ClusterBackend::create().await else {
        return;
    };
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(cluster.start_node().await);
    }
    let addrs: Vec<_> = nodes.iter().map(Server::local_addr).collect();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config_for(port, &addrs)).unwrap();
    let _balancer = Balancer(
        Command::new(binary)
            .args(["-db", "-f"])
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let lb = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready = tokio::task::spawn_blocking(move || wisp_test_support::http_get(lb, "/readyz"));
        if let Ok(response) = ready.await
            && response.starts_with("HTTP/1.1 200")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "haproxy answers /readyz within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let url = format!("ws://{lb}");

    // Chat through the balancer.
    let mut alice = device_at(&url).await;
    let mut bob = device_at(&url).await;
    befriend_devices(&alice, &bob).await;
    assert!(bob.read_all().await.is_empty());
    alice
        .messenger
        .send_text(bob.id(), "via haproxy", HOUR, None)
        .await
        .unwrap();
    loop {
        if let wisp_client::Event::Message(m) = bob.event().await {
            assert_eq!(m.text.as_str(), "via haproxy");
            break;
        }
    }
    drop((alice, bob));

    // A node leaves; its users come back through the balancer to the other
    // one and get what was sent meanwhile.
    let (mut carol, d, dave_home) = friends_one_offline(&url).await;
    carol
        .messenger
        .send_text(d, "while you were away", HOUR, None)
        .await
        .unwrap();
    let leaving = nodes.remove(0);
    leaving.shutdown().await;
    // HAProxy needs a couple of failed checks to take the node out; until
    // then a connection may land on it and fail, as it would for a real
    // client, which retries.
    let mut messenger = None;
    for _ in 0..50 {
        let (store, state) = wisp_client::KeyStore::open(dave_home.path(), "pw").unwrap();
        let attempt = tokio::time::timeout(
            Duration::from_secs(2),
            wisp_client::Messenger::connect(&url, store, state),
        )
        .await;
        if let Ok(Ok(connected)) = attempt {
            messenger = Some(connected);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut dave = wisp_test_support::Device {
        messenger: messenger.expect("reconnected through the balancer"),
        home: dave_home,
    };
    assert_eq!(dave.read_all().await, vec!["while you were away"]);
    let _ = &mut carol;
    for node in nodes {
        node.shutdown().await;
    }
}
