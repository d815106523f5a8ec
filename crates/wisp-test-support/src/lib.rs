//! What Wisp's integration tests share (an unpublished crate, only ever a
//! dev-dependency): real servers on loopback port 0 over real SQLite,
//! PostgreSQL and Redis, real SDK clients, raw WebSocket connections, Redis
//! deployments a test starts for itself, and a traffic script that accounts
//! for every message. The tests of `wisp-server`, `wisp-cli` and
//! `wisp-bench` use it instead of each carrying a copy.
//!
//! Every helper panics when it cannot do its job: a failed set-up fails the
//! test that asked for it, with a message saying what failed. Services a
//! test cannot find here (PostgreSQL, Redis, `redis-server`, `haproxy`) make
//! it skip with a note, except with `CI=true`, where they fail it.
//!
//! Depending on this crate turns on the `test-support` features of
//! `wisp-server` and `wisp-client` (seams such as `ManualClock`,
//! `Server::stored_message_count` and `Identity::clone_for_tests`) in the
//! test builds that use it, and nowhere else.
//!
//! # Layout
//! - [`server`]: [`TestServer`], one server in the test's process, on SQLite
//!   in a temporary directory or on the cluster backend; [`test_config`],
//!   the settings every test server and node starts from.
//! - [`cluster`]: [`ClusterBackend`], a PostgreSQL schema and a Redis key
//!   prefix of one test's own, and the nodes ([`ClusterBackend::start_node`])
//!   that share them.
//! - [`decoders`]: what every decoder must do with any input (never
//!   panic, read back what it writes): the fuzz targets' bodies and the
//!   suite's replay of the committed corpus.
//! - [`leftovers`]: where an id still appears in SQLite's files, in
//!   PostgreSQL's rows or in Redis (after an account was deleted).
//! - [`device`]: users: [`Device`] (a `Messenger` and the home holding its
//!   encrypted state), [`TestUser`] (a plain `Client`), making friends, and
//!   [`code_of`] for refusals.
//! - [`forging`]: a compromised server whose key claims hand out forged
//!   keys ([`TestServer::start_forging_keys`]).
//! - [`raw`]: [`RawConnection`], a WebSocket with no SDK in between, for
//!   bytes no SDK would send.
//! - [`process`]: the `wisp-server` binary run as child processes
//!   ([`ServerBinary`]): one, or several nodes on one cluster.
//! - [`host`]: what the machine offers: a free port, a tool (or a skip), a
//!   plain HTTP GET.
//! - [`redis_set`]: Redis deployments on free ports: a primary and replicas
//!   under Sentinels, a Redis Cluster.
//! - [`tls`]: TLS in front of a plain server for `wss://` clients: a test
//!   CA ([`TestCa`]) issuing leaves (valid, expired, for any name) and
//!   [`TlsFront`], a TLS-terminating proxy.
//! - [`server_tls`]: a rustls client for a test CA's `wss://` server,
//!   and [`server_tls::Tunnel`], carrying `ws://` clients to a `wss://` server
//!   from a chosen loopback address (the server's own TLS tests).
//! - [`traffic`]: many users chatting across nodes while something breaks,
//!   then an account of every message.
// A test helper that cannot do its job fails the test: panicking is how it
// says so.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;
pub mod decoders;
pub mod device;
pub mod forging;
pub mod host;
pub mod leftovers;
pub mod process;
pub mod raw;
pub mod redis_set;
pub mod server;
pub mod server_tls;
pub mod tls;
pub mod traffic;

pub use cluster::ClusterBackend;
pub use device::{
    Device, TEST_KDF, TestUser, befriend, befriend_devices, code_of, device_at, device_with,
    friends_one_offline, reopen_at,
};
pub use host::{Process, free_port, http_get, installed_tool, tool_or_skip};
pub use process::{NodeProcesses, ServerBinary, ServerProcess};
pub use raw::{RawConnection, Received};
pub use server::{Backend, StoppedServer, TEST_POW_BITS, TestServer, test_config};
pub use tls::{Leaf, LeafFiles, TestCa, TlsFront};
