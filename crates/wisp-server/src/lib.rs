//! The Wisp server: a WebSocket gateway in front of services (accounts,
//! friends) that keep their state behind storage traits. The server never
//! sees plaintext or private keys: it stores public keys, relations and
//! (later) ciphertext with the routing fields it needs.
//!
//! # Layout
//! - [`config`]: flags, environment and config file, resolved to [`Config`].
//! - [`server`]: [`Server::start`] / [`Server::shutdown`]; the HTTP routes
//!   (`/` WebSocket, `/healthz`, `/readyz`, `/metrics`).
//! - `gateway`: the connection loop (`connection`) and the per-connection
//!   protocol state machine (`session`).
//! - `services`: what the server does — `accounts` (proof-of-work
//!   registration, challenge-response login) and `friends`.
//! - [`store`]: one trait per concern and the backends ([`store::sqlite`]).
//! - `hub`: live connections on this node and pushes to them; `bus`: the
//!   same across nodes (Redis pub/sub); `cache`: friendships and identity
//!   keys, invalidated across nodes.
//! - `error`: the one mapping from failures to wire error codes.
//! - `ratelimit`, [`clock`], `metrics`: supporting pieces.

mod bus;
mod cache;
pub mod clock;
pub mod config;
mod error;
mod gateway;
mod hub;
mod metrics;
mod ratelimit;
pub mod server;
mod services;
mod state;
pub mod store;

pub use config::{Args, Config, LogFormat};
pub use server::{Server, StartError};
