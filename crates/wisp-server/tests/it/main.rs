//! The server's integration tests, in one test binary (one link instead of
//! one per file): real servers on loopback port 0, in process or as the
//! `wisp-server` binary, over real SQLite, PostgreSQL and Redis. Each module
//! is one area; run one with `cargo test -p wisp-server --test it <module>::`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod accounts;
mod at_rest;
mod bad_input;
mod binary;
mod cluster;
mod cluster_kill;
mod friends;
mod load_balancer;
mod messages;
mod postgres_restart;
mod redis_cluster;
mod redis_failover;
mod secrets;
