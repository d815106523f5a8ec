//! The `wisp` binary's integration tests, in one test binary: one-shot
//! commands (`cli`) and two `wisp chat` windows in tmux (`chat_tmux`), each
//! against a real server on loopback (`wisp_test_support::TestServer`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The passphrase of every test home's key store.
const PASSPHRASE: &str = "correct horse battery staple";

mod chat_tmux;
mod cli;
mod names;
mod tls;
