//! The shipped balancer configurations, run by the Debian-packaged HAProxy
//! (`deploy/haproxy.cfg`) and nginx (`deploy/nginx.conf`) in front of two
//! nodes of one cluster. Through HAProxy users chat, and when a node goes
//! away its users come back through the balancer to the other node and get
//! what is pending. With each one's TLS termination as shipped (a test
//! CA's certificate for 127.0.0.1), clients on `wss://` with the CA given
//! register, befriend and chat through it, and are refused without it.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use wisp_client::{Client, ConnectOptions};
use wisp_server::Server;
use wisp_test_support::{
    ClusterBackend, LeafFiles, Process, TestCa, befriend_devices, device_at, device_with,
    free_port, friends_one_offline, installed_tool,
};

const HOUR: Duration = Duration::from_secs(3600);

/// Two nodes of a fresh cluster, or None when the cluster backend is
/// missing (outside CI).
async fn two_nodes() -> Option<(ClusterBackend, Vec<Server>)> {
    let cluster = ClusterBackend::create().await?;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(cluster.start_node().await);
    }
    Some((cluster, nodes))
}

/// The shipped configuration, pointed at `nodes` and listening on `port`:
/// with `tls`, its TLS `bind` line as shipped, presenting the certificate
/// and key in that PEM file; without, in plain text.
fn haproxy_config(port: u16, nodes: &[SocketAddr], tls: Option<&Path>) -> String {
    let shipped = include_str!("../../../../deploy/haproxy.cfg");
    let mut out = String::new();
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("server ") {
            continue;
        }
        if trimmed.starts_with("maxconn") {
            out.push_str("    maxconn 1000\n");
        } else if let Some(options) = trimmed.strip_prefix("bind :443 ") {
            let bind = match tls {
                Some(pem) => {
                    let (_, after_crt) = options
                        .split_once("crt ")
                        .expect("the shipped bind line names a crt");
                    let rest = after_crt.split_once(' ').map_or("", |(_, rest)| rest);
                    format!("ssl crt {} {rest}", pem.display())
                }
                None => String::new(),
            };
            out.push_str(&format!("    bind 127.0.0.1:{port} {bind}\n"));
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
    let Some(binary) = installed_tool("haproxy") else {
        return;
    };
    let Some((_cluster, mut nodes)) = two_nodes().await else {
        return;
    };
    let addrs: Vec<_> = nodes.iter().map(Server::local_addr).collect();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(port, &addrs, None)).unwrap();
    let _balancer = Process::start(
        &binary,
        [OsStr::new("-db"), OsStr::new("-f"), cfg.as_os_str()],
    );
    let lb = SocketAddr::from(([127, 0, 0, 1], port));
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

/// `wss://127.0.0.1:PORT` through a balancer ending TLS with `ca`'s leaf:
/// ready within 15 s, refused (typed) without the CA, and two users
/// register, befriend and chat through it with the CA given.
async fn chat_over_wss(url: &str, ca: &TestCa, text: &str) {
    let options = ConnectOptions::new()
        .with_ca_pem(ca.pem().as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let attempt =
            tokio::time::timeout(Duration::from_secs(2), Client::connect_with(url, &options)).await;
        if let Ok(Ok((client, _))) = attempt
            && client.ping().await.is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a wss:// connection gets through {url} within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Without the CA, the balancer's certificate is refused, typed.
    let untrusted = Client::connect(url).await.unwrap_err();
    assert_eq!(
        untrusted.certificate_problem(),
        Some(&wisp_client::CertificateProblem::Untrusted),
        "{untrusted:?}"
    );

    let mut alice = device_with(url, &options).await;
    let mut bob = device_with(url, &options).await;
    befriend_devices(&alice, &bob).await;
    assert!(bob.read_all().await.is_empty());
    alice
        .messenger
        .send_text(bob.id(), text, HOUR, None)
        .await
        .unwrap();
    let received = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let wisp_client::Event::Message(m) = bob.event().await {
                return m.text.to_string();
            }
        }
    })
    .await
    .expect("the message arrives within 10 s");
    assert_eq!(received, text);
}

/// Two nodes behind the Debian-packaged balancer `name`, started by
/// `start(binary, dir, port, nodes, ca)` to end TLS on `port` with `ca`'s
/// leaf: users chat through it over `wss://` ([`chat_over_wss`]).
async fn chat_through_tls_balancer(
    name: &str,
    start: impl FnOnce(&str, &Path, u16, &[SocketAddr], &TestCa) -> Process,
) {
    let Some(binary) = installed_tool(name) else {
        return;
    };
    let Some((_cluster, nodes)) = two_nodes().await else {
        return;
    };
    let addrs: Vec<_> = nodes.iter().map(Server::local_addr).collect();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let port = free_port();
    let _balancer = start(&binary, dir.path(), port, &addrs, &ca);
    let url = format!("wss://127.0.0.1:{port}");
    chat_over_wss(&url, &ca, &format!("via {name} over tls")).await;
    for node in nodes {
        node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_chat_over_wss_through_haproxy_ending_tls() {
    chat_through_tls_balancer("haproxy", |binary, dir, port, nodes, ca| {
        let pem = dir.join("wisp.pem");
        std::fs::write(&pem, ca.leaf(&["127.0.0.1"]).combined_pem()).unwrap();
        let cfg = dir.join("haproxy.cfg");
        let config = haproxy_config(port, nodes, Some(&pem));
        assert!(
            config.contains(" ssl crt "),
            "the shipped config ends TLS:\n{config}"
        );
        std::fs::write(&cfg, config).unwrap();
        Process::start(
            binary,
            [OsStr::new("-db"), OsStr::new("-f"), cfg.as_os_str()],
        )
    })
    .await;
}

/// The shipped nginx configuration inside a minimal top-level one that runs
/// in the foreground, as one process (killing it leaves no worker behind),
/// with everything under `dir`: its upstream pointed at
/// `nodes`, listening on `port` with its TLS settings as shipped,
/// presenting the certificate and key files given.
fn nginx_config(dir: &Path, port: u16, nodes: &[SocketAddr], leaf: &LeafFiles) -> String {
    let shipped = include_str!("../../../../deploy/nginx.conf");
    let mut site = String::new();
    let mut upstream_written = false;
    for line in shipped.lines() {
        let trimmed = line.trim_start();
        let line = if trimmed.starts_with("server ") && trimmed.ends_with(';') {
            // The upstream's nodes: the shipped options, the test's nodes.
            if upstream_written {
                continue;
            }
            upstream_written = true;
            let options = trimmed
                .trim_end_matches(';')
                .split_once(' ')
                .and_then(|(_, rest)| rest.split_once(' '))
                .map_or("", |(_, options)| options);
            nodes
                .iter()
                .map(|addr| format!("    server {addr} {options};"))
                .collect::<Vec<_>>()
                .join("\n")
        } else if trimmed == "listen 443 ssl;" {
            format!("    listen 127.0.0.1:{port} ssl;")
        } else if trimmed.starts_with("ssl_certificate ") {
            format!("    ssl_certificate {};", leaf.cert.display())
        } else if trimmed.starts_with("ssl_certificate_key ") {
            format!("    ssl_certificate_key {};", leaf.key.display())
        } else {
            line.to_owned()
        };
        site.push_str(&line);
        site.push('\n');
    }
    assert!(
        upstream_written,
        "the shipped nginx.conf lists upstream servers"
    );
    let site_path = dir.join("wisp-site.conf");
    std::fs::write(&site_path, site).unwrap();
    let d = dir.display();
    format!(
        "daemon off;\nmaster_process off;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n    access_log off;\n    client_body_temp_path {d}/body;\n    \
         proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
         uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    \
         include {};\n}}\n",
        site_path.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_chat_over_wss_through_nginx_ending_tls() {
    chat_through_tls_balancer("nginx", |binary, dir, port, nodes, ca| {
        let leaf = ca.write_leaf(dir, "wisp");
        let cfg = dir.join("nginx.conf");
        std::fs::write(&cfg, nginx_config(dir, port, nodes, &leaf)).unwrap();
        let error_log = dir.join("error.log");
        let args = [
            OsStr::new("-p"),
            dir.as_os_str(),
            OsStr::new("-e"),
            error_log.as_os_str(),
            OsStr::new("-c"),
            cfg.as_os_str(),
        ];
        let checked = Command::new(binary).arg("-t").args(args).output().unwrap();
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        Process::start(binary, args)
    })
    .await;
}
