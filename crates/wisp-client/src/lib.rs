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
//! - [`e2e`]: end-to-end encryption, sans IO: Olm sessions per friend,
//!   one-time keys, and the signature checks that keep the server from
//!   swapping keys.
//! - [`messenger`]: [`Messenger`], a logged-in device sending and receiving
//!   end-to-end encrypted messages that burn, with both timers.
//! - `connection`: the WebSocket transport: request ids, reply matching.
//! - [`error`]: the SDK's error type, [`ClientError`].

pub mod client;
mod connection;
pub mod e2e;
pub mod error;
pub mod identity;
pub mod keystore;
pub mod messenger;

pub use client::{
    Client, Delivery, Event, Events, FriendInfo, PendingInfo, ReceivedMessage, RequestInfo,
};
pub use error::ClientError;
pub use identity::Identity;
pub use keystore::{KdfParams, KeyStore, KeyStoreError, LocalState};
pub use messenger::{Messenger, SentMessage, new_client_msg_id};
pub use wisp_proto::{ErrorCode, UserId};
