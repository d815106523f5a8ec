//! What the `wisp` binary's tests share: a real server on loopback (port
//! 0, real SQLite in `dir`, cheap proof of work, no rate limits) and the
//! passphrase every test home uses.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use wisp_server::{Config, Server};

pub(crate) const PASSPHRASE: &str = "correct horse battery staple";

pub(crate) async fn start_server(dir: &Path) -> Server {
    start_server_at(dir, "127.0.0.1:0".parse().unwrap()).await
}

/// The server on `dir`'s data at `listen` (again, after a shutdown).
pub(crate) async fn start_server_at(dir: &Path, listen: std::net::SocketAddr) -> Server {
    let config = Config {
        listen,
        data_dir: dir.join("server"),
        pow_difficulty: 8,
        register_limit: 0,
        send_limit: 0,
        ..Config::default()
    };
    Server::start(&config).await.unwrap()
}
