//! The bench's integration tests, in one test binary: the smoke run CI
//! makes against a real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod smoke;
