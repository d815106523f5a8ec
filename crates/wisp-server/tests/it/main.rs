//! The server's integration tests, in one test binary (one link instead of
//! one per file): real servers on loopback port 0, in process or as the
//! `wisp-server` binary, over real SQLite, PostgreSQL and Redis, set up with
//! the shared helpers of `wisp-test-support`. Each module
//! is one area; run one with `cargo test -p wisp-server --test it <module>::`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use wisp_test_support::ServerBinary;

/// This crate's server binary, for the tests that run it as a process.
const WISP_SERVER: ServerBinary = ServerBinary(env!("CARGO_BIN_EXE_wisp-server"));

/// Runs each named `async fn(Backend)` of the module as two tests, in
/// modules `sqlite` and `cluster`: on the embedded SQLite store, and on
/// PostgreSQL + Redis.
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::Sqlite).await;
                }
            )*
        }
        mod cluster {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::Cluster).await;
                }
            )*
        }
    };
}

mod account_deletion;
mod accounts;
mod admin;
mod at_rest;
mod bad_input;
mod binary;
mod cluster;
mod cluster_kill;
mod connection_abuse;
mod friends;
mod fuzz_replay;
mod keys_low;
mod load_balancer;
mod messages;
mod names;
mod postgres_restart;
mod redis_cluster;
mod redis_failover;
mod secrets;
mod sessions;
mod slowloris;
mod tls;
mod trace_logs;
mod web;
