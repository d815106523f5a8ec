//! What the test machine offers: a free loopback port, an installed tool
//! (or a skip that says which is missing), a plain HTTP GET.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process, its output discarded, killed (SIGKILL) and reaped when
/// dropped.
#[derive(Debug)]
pub struct Process(Child);

impl Process {
    /// Starts `binary` with `args`.
    pub fn start(binary: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> Self {
        Self(
            Command::new(binary)
                .args(args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {binary}: {e}")),
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The installed `name` (on PATH, or in /usr/sbin where Debian puts
/// daemons), or None after saying the test is skipped (a failure with
/// CI=true); `scripts/ensure-services.sh` installs it.
pub fn installed_tool(name: &str) -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name} || ls /usr/sbin/{name}")])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.lines().next().map(str::to_owned))
        .filter(|s| !s.is_empty());
    tool_or_skip(name, found, "scripts/ensure-services.sh installs it")
}

/// A loopback port free right now (bound, read, released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .expect("bound address")
        .port()
}

/// `found`, or else None after saying the test is skipped, except with
/// CI=true, where a missing tool fails the test (`hint` says who installs
/// it).
pub fn tool_or_skip<T>(what: &str, found: Option<T>, hint: &str) -> Option<T> {
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("no {what}, and CI=true: {hint}");
        }
        eprintln!("skipped: no {what} ({hint})");
    }
    found
}

/// `GET path` on a server's HTTP port; the whole response as text.
/// Blocking: call it from `spawn_blocking` in an async test.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}
