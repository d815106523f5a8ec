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
//! - [`invitation`]: invitation links (`wisp://add/<ID>`) and the one
//!   parser front ends use for whatever id the user types or scans.
//! - [`safety`]: [`SafetyNumber`], what two friends compare to verify each
//!   other; verified friends are kept in [`LocalState`].
//! - `connection`: the WebSocket transport: request ids, reply matching.
//! - [`error`]: the SDK's error type, [`ClientError`].
//!
//! # Building a front end
//! A front end (the `wisp chat` window, a web or mobile client) opens the
//! [`KeyStore`], connects a [`Messenger`], and reads one typed event stream
//! from [`Messenger::next_event`]:
//!
//! | event | what to show |
//! |---|---|
//! | [`Event::Message`] | a friend's message: text, sender, both timers (hard ceiling `expires_unix_ms`; `view_timer` from the moment it is shown). Call [`Messenger::mark_read`] when it is shown: the sender gets a read receipt. |
//! | [`Event::Read`] | your message `client_msg_id` was read: show "read", then drop it. |
//! | [`Event::ExpiredUnread`] | your message expired before any receipt: show "expired unread", drop the text. |
//! | [`Event::FriendRequest`], [`Event::FriendAccepted`], [`Event::FriendRemoved`] | the circle changed: list again with [`Client::friends`] and [`Client::friend_requests`] (via [`Messenger::client`]). |
//! | [`Event::Disconnected`], [`Event::Reconnected`] | the connection state: the next `next_event` after a disconnect reconnects with backoff, and what came meanwhile follows. |
//! | [`Event::Undecryptable`] | a message that could not be decrypted: say so; a fresh session is already being set up. |
//!
//! `next_event` is cancel-safe, so it can sit in a `select!` beside the
//! user's input, and sends ([`Messenger::send_text`]) go in between:
//!
//! ```no_run
//! # async fn front_end(mut messenger: wisp_client::Messenger) -> Result<(), wisp_client::ClientError> {
//! use wisp_client::Event;
//! let (_typed, mut input) = tokio::sync::mpsc::channel::<(wisp_client::UserId, String)>(8);
//! loop {
//!     tokio::select! {
//!         Some((to, text)) = input.recv() => {
//!             let hour = std::time::Duration::from_secs(3600);
//!             messenger.send_text(to, &text, hour, None).await?;
//!         }
//!         event = messenger.next_event() => match event {
//!             Some(Event::Message(message)) => {
//!                 println!("{}: {}", message.from, message.text.as_str());
//!                 messenger.mark_read(&message).await?;
//!             }
//!             Some(Event::Read { by, .. }) => println!("{by} read your message"),
//!             Some(_) => {}
//!             None => break,
//!         },
//!     }
//! }
//! // Burns on the server what was shown, before exit.
//! messenger.confirm().await
//! # }
//! ```
//!
//! Message text lives in memory only ([`zeroize::Zeroizing`]); nothing of
//! a message is written to disk by the SDK.

pub mod client;
mod connection;
pub mod e2e;
pub mod error;
pub mod identity;
pub mod invitation;
pub mod keystore;
pub mod messenger;
pub mod safety;

pub use client::{
    Client, Delivery, Event, Events, FriendInfo, PendingInfo, ReceivedMessage, RequestInfo,
};
pub use error::ClientError;
pub use identity::Identity;
pub use invitation::{InvitationError, invitation_link, parse_invitation};
pub use keystore::{KdfParams, KeyStore, KeyStoreError, LocalState};
pub use messenger::{Messenger, SentMessage, new_client_msg_id, now_ms};
pub use safety::{SafetyNumber, safety_number};
pub use wisp_proto::{ErrorCode, UserId};
