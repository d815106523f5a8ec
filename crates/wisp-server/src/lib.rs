//! The Wisp server: a WebSocket gateway in front of services (accounts,
//! friends, keys, messages) that keep their state behind storage traits.
//! The server never sees plaintext or private keys: it stores public keys,
//! relations and ciphertext with the routing fields it needs, until the
//! message is acknowledged or expires.
//!
//! # Layout
//! - [`config`]: flags, environment and config file, resolved to [`Config`].
//! - [`server`]: [`Server::start`] / [`Server::shutdown`]; the HTTP routes
//!   (`/` WebSocket, `/healthz`, `/readyz`, `/metrics`) and the reaper that
//!   deletes expired messages.
//! - `listener`: the accept loop: TLS handshake, HTTP/1.1, the
//!   connection cap, the per-address cap and the handshake timeout, from
//!   accept to close; the descriptor reserve.
//! - [`tls`]: the certificate and key, checked, reloaded on SIGHUP.
//! - [`web`]: the web app's files (`--web-root`), served from memory with
//!   a strict Content-Security-Policy; a browser's GET on `/` gets the app.
//! - `gateway`: the upgrade to WebSocket with the connection cap and the
//!   client's address; the connection loop with mailbox delivery
//!   (`connection`); the per-connection protocol state machine by phase
//!   (`session`).
//! - `services`: what the server does — `accounts` (proof-of-work
//!   registration, challenge-response login, account deletion), `friends` (requests, the
//!   20-friend circle, blocks), `keys` (one-time keys) and `messages` (send,
//!   deliver, burn on acknowledgement, reap what expired).
//! - [`store`]: one trait per concern and the backends: [`store::sqlite`]
//!   (embedded, the default), [`store::postgres`] and
//!   [`store::redis_mailbox`] (the cluster backend).
//! - `state`: what every connection shares (stores, hub, cache, limits).
//! - `hub`: live connections on this node and pushes to them; `bus`: the
//!   same across nodes (Redis pub/sub); `sessions`: the sessions cap
//!   across nodes (leases in Redis); `cache`: friendships and identity
//!   keys, invalidated across nodes.
//! - `error`: the one mapping from failures to wire error codes.
//! - `ratelimit` (per-user and per-address limits), [`clock`], `metrics`:
//!   supporting pieces.

mod bus;
mod cache;
pub mod clock;
pub mod config;
mod error;
mod gateway;
mod hub;
mod listener;
mod metrics;
mod ratelimit;
pub mod server;
mod services;
mod sessions;
mod state;
pub mod store;
pub mod tls;
pub mod web;

pub use config::{Args, Config, LogFormat};
pub use server::{Server, StartError};
pub use tls::TlsError;
