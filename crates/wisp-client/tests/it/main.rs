//! The SDK against a real server (in-process, loopback port 0, real
//! SQLite), one test binary with a module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod forged_key;
mod tls;
