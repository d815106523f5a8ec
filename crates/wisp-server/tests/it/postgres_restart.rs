//! A node survives its PostgreSQL going down and coming back: while the
//! database is down the node says it is not ready (and chat between
//! friends it already knows goes on, from its cache and Redis); once the
//! database is back, the same node process registers users, changes
//! friendships and logs users in again, without a restart. The test runs a
//! PostgreSQL of its own (initdb on a free loopback port), so stopping it
//! disturbs no other test.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wisp_test_support::{
    ClusterBackend, befriend_devices, device_at, free_port, http_get, reopen_at,
};

use crate::WISP_SERVER;

const HOUR: Duration = Duration::from_secs(3600);

fn postgres_bin() -> Option<PathBuf> {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()))
        .filter(|dir| dir.join("pg_ctl").exists());
    let found = from_pg_config.or_else(|| {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|dir| dir.join("pg_ctl").exists())
            .collect();
        dirs.sort();
        dirs.pop()
    });
    wisp_test_support::tool_or_skip(
        "PostgreSQL server binaries (initdb, pg_ctl)",
        found,
        "scripts/ensure-services.sh installs them",
    )
}

/// A PostgreSQL of the test's own, stopped when dropped.
struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root (the
/// server refuses to run as root).
fn pg(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let program = bin.join(tool);
    let mut command = if nix_is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&program);
        c
    } else {
        Command::new(&program)
    };
    command.args(args).output().expect("run a PostgreSQL tool")
}

fn nix_is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

impl OwnPostgres {
    fn start(bin: PathBuf) -> Self {
        let dir = tempfile::tempdir().unwrap();
        if nix_is_root() {
            let done = Command::new("chown")
                .args(["postgres:postgres", dir.path().to_str().unwrap()])
                .status()
                .unwrap();
            assert!(done.success());
        }
        let port = free_port();
        let data = dir.path().join("data");
        let init = pg(
            &bin,
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(init.status.success(), "initdb: {init:?}");
        let postgres = Self { bin, dir, port };
        postgres.up();
        postgres
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    fn up(&self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {}",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        let started = pg(
            &self.bin,
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        );
        assert!(started.status.success(), "pg_ctl start: {started:?}");
    }

    /// Stops at once, as a crash would (recovery runs at the next start).
    fn crash(&self) {
        let stopped = pg(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
        assert!(stopped.status.success(), "pg_ctl stop: {stopped:?}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = pg(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn ready(addr: SocketAddr) -> bool {
    http_get(addr, "/readyz").starts_with("HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_survives_a_postgresql_restart() {
    let Some(bin) = postgres_bin() else {
        return;
    };
    // The shared Redis, under a prefix of this test's own.
    let Some(backend) = ClusterBackend::create().await else {
        return;
    };
    let postgres = tokio::task::spawn_blocking(move || OwnPostgres::start(bin))
        .await
        .unwrap();
    let mut env = backend.node_env();
    for (key, value) in &mut env {
        if *key == "WISP_POSTGRES_URL" {
            *value = postgres.url();
        }
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let (_node, addr, _logs) = WISP_SERVER.spawn(dir.path(), &env);
    let url = format!("ws://{addr}");

    let mut alice = device_at(&url).await;
    let mut bob = device_at(&url).await;
    befriend_devices(&alice, &bob).await;
    alice
        .messenger
        .send_text(bob.id(), "before", HOUR, None)
        .await
        .unwrap();
    assert_eq!(bob.next_text().await, "before");

    postgres.crash();
    assert!(!ready(addr), "not ready while the database is down");
    // Friends the node already knows keep talking: the friendship is
    // cached and the message goes to Redis.
    alice
        .messenger
        .send_text(bob.id(), "during", HOUR, None)
        .await
        .unwrap();

    postgres.up();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready(addr) {
        assert!(Instant::now() < deadline, "ready again within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same process: registers, befriends, logs in again, delivers.
    let mut carol = device_at(&url).await;
    befriend_devices(&carol, &alice).await;
    carol
        .messenger
        .send_text(alice.id(), "after", HOUR, None)
        .await
        .unwrap();
    let bob_home = bob.home;
    drop(bob.messenger);
    let mut bob = reopen_at(&url, bob_home).await;
    assert_eq!(bob.next_text().await, "during");
    assert_eq!(alice.next_text().await, "after");
}
