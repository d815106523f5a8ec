//! The `wisp-server` binary as an operator runs it, as child processes of
//! the test: [`ServerBinary::spawn`] starts one and waits until it logs
//! where it listens, [`ServerBinary::spawn_nodes`] starts several with one
//! environment (the nodes of one cluster). Each process is killed if the
//! test ends before it exits.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

/// The `wisp-server` binary to run. Only the server's own tests can name
/// it: `ServerBinary(env!("CARGO_BIN_EXE_wisp-server"))`.
#[derive(Debug, Clone, Copy)]
pub struct ServerBinary(pub &'static str);

/// A server process, killed if the test ends before it exits.
#[derive(Debug)]
pub struct ServerProcess(pub Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// `wisp-server` processes started with the same environment.
#[derive(Debug)]
pub struct NodeProcesses {
    /// Each node, `None` once a test killed it.
    pub processes: Vec<Option<ServerProcess>>,
    pub urls: Vec<String>,
    /// Each node's JSON log lines.
    pub logs: Vec<Receiver<String>>,
    _dirs: Vec<tempfile::TempDir>,
}

impl ServerBinary {
    /// Starts the binary in `cwd` on a free loopback port, with JSON logs
    /// and `env` on top; returns once it logs where it listens (within
    /// 30 s), with that address and its log lines.
    pub fn spawn(
        self,
        cwd: &Path,
        env: &[(&str, &str)],
    ) -> (ServerProcess, SocketAddr, Receiver<String>) {
        let child = Command::new(self.0)
            .current_dir(cwd)
            // Port 0: the defaults are checked by the config tests; here the
            // test must not collide with a server someone runs on 7700.
            .env("WISP_LISTEN", "127.0.0.1:0")
            .env("WISP_LOG_FORMAT", "json")
            .env("WISP_LOG", "info")
            // Every test client is 127.0.0.1: no per-address cap unless the
            // test asks for one in `env`.
            .env("WISP_MAX_CONNECTIONS_PER_ADDRESS", "0")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start wisp-server");
        let mut child = ServerProcess(child);
        let stderr = child.0.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining after the test stopped listening: a full pipe
            // would block the server's logging, and with it the server.
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("server logs that it listens within 30 s");
            let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
            if json["fields"]["message"] == "wisp-server listening" {
                let addr = json["fields"]["addr"]
                    .as_str()
                    .expect("addr field")
                    .parse()
                    .expect("socket address");
                return (child, addr, rx);
            }
        }
    }

    /// Starts `n` nodes, each in a directory of its own, with `env`.
    pub fn spawn_nodes(self, n: usize, env: &[(&'static str, String)]) -> NodeProcesses {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let mut nodes = NodeProcesses {
            processes: Vec::new(),
            urls: Vec::new(),
            logs: Vec::new(),
            _dirs: Vec::new(),
        };
        for _ in 0..n {
            let dir = tempfile::tempdir().expect("node directory");
            let (process, addr, log) = self.spawn(dir.path(), &env);
            nodes.processes.push(Some(process));
            nodes.urls.push(format!("ws://{addr}"));
            nodes.logs.push(log);
            nodes._dirs.push(dir);
        }
        nodes
    }
}
