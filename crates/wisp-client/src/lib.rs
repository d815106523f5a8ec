//! The Wisp client SDK: everything a front end (the `wisp` CLI, later a chat
//! window, a mobile or web app) needs to talk to a Wisp server, with no UI.
//!
//! # Layout
//! - [`identity`]: [`Identity`], the device's vodozemac account and the
//!   self-certifying user id; signs registrations and logins.
//! - [`keystore`]: [`KeyStore`], the identity encrypted at rest under a
//!   passphrase (Argon2id + XChaCha20-Poly1305).
//! - [`client`]: [`Client`], the typed async API over one connection, and
//!   the [`Events`] stream of server pushes.
//! - `connection`: the WebSocket transport: request ids, reply matching.
//! - [`error`]: the SDK's error type, [`ClientError`].

pub mod client;
mod connection;
pub mod error;
pub mod identity;
pub mod keystore;

pub use client::{Client, Event, Events, FriendInfo, PendingInfo, RequestInfo};
pub use error::ClientError;
pub use identity::Identity;
pub use keystore::{KdfParams, KeyStore, KeyStoreError, LocalState};
pub use wisp_proto::{ErrorCode, UserId};
