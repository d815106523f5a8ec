//! The `wisp` binary's integration tests, in one test binary: one-shot
//! commands (`cli`) and two `wisp chat` windows in tmux (`chat_tmux`), each
//! against a real server on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

mod chat_tmux;
mod cli;
