//! The Wisp client SDK: everything a native front end (the `wisp` CLI and
//! its chat window, the load generator) needs to talk to a Wisp server,
//! with no UI. It is the native shell around [`wisp_core`], which holds the
//! logic without I/O (identity, end-to-end state, the key-store envelope,
//! safety numbers, invitations) and is re-exported here, so a front end
//! depends on this crate alone.
//!
//! # Layout
//! - [`client`]: [`Client`], the typed async API over one connection, and
//!   the [`Events`] stream of [`ServerEvent`]s the server pushes.
//! - `connection`: the WebSocket transport: request ids, reply matching,
//!   pushes handed to the event stream.
//! - [`messenger`]: [`Messenger`], a logged-in device sending and receiving
//!   end-to-end encrypted messages that burn, with both timers, reconnects
//!   and the [`Event`]s it tells the application.
//! - [`keystore`]: [`KeyStore`], the file that keeps the [`LocalState`]
//!   sealed at rest: path, lock, atomic writes.
//! - [`tls`]: [`ConnectOptions`], what a `wss://` connection trusts (the
//!   system's roots, plus a self-hosted deployment's CA) and the local
//!   address; certificate problems become [`CertificateProblem`]s.
//! - [`error`]: the SDK's error type, [`ClientError`]; the core's
//!   [`E2eError`] reaches callers as itself ([`ClientError::E2e`]).
//! - From [`wisp_core`]: [`Identity`], [`LocalState`], [`e2e`],
//!   [`SafetyNumber`], [`invitation`], the message types.
//!
//! # Building a front end
//! A front end (the `wisp chat` window, a web or mobile client) opens the
//! [`KeyStore`], connects a [`Messenger`], and reads one typed event stream
//! from [`Messenger::next_event`]. It receives [`Event`]s only (the raw
//! [`ServerEvent`]s of the transport are the messenger's business):
//!
//! | event | what to show |
//! |---|---|
//! | [`Event::Message`] | a friend's message: text, sender, both timers (hard ceiling `expires_unix_ms`; `view_timer` from the moment it is shown). Call [`Messenger::mark_read`] when it is shown: the sender gets a read receipt. |
//! | [`Event::Read`] | your message `client_msg_id` was read: show "read", then drop it. |
//! | [`Event::ExpiredUnread`] | your message expired before any receipt: show "expired unread", drop the text. |
//! | [`Event::FriendRequest`], [`Event::FriendAccepted`], [`Event::FriendRemoved`] | the circle changed: list again with [`Client::friends`] and [`Client::friend_requests`] (via [`Messenger::client`]). |
//! | [`Event::Disconnected`], [`Event::Reconnected`] | the connection state: the next `next_event` after a disconnect reconnects with backoff, and what came meanwhile follows. |
//! | [`Event::Superseded`] | the account logged in on more devices than the server allows and this session, the oldest, was closed: nothing reconnects by itself (`next_event` returns `None`); offer the user to take it back with [`Messenger::reconnect`]. |
//! | [`Event::Undecryptable`] | a message that could not be decrypted: say so; a fresh session is already being set up. |
//! | [`Event::MailboxDrained`] | everything waiting at login has come. |
//! | [`Event::ServerError`] | the server refused something it could not tie to a request: show its text. |
//!
//! Sends fail with a [`ClientError`]. One of them is not a glitch:
//! [`ClientError::E2e`] with [`E2eError::ForgedKey`] means the server
//! handed out a key the friend's identity did not sign: someone may be
//! intercepting. Nothing was sent. Show it as a warning and ask the user to
//! compare the [`SafetyNumber`] with the friend ([`Messenger::safety_number`]);
//! [`ClientError::forged_key`] tells whom it is about.
//!
//! `next_event` is cancel-safe, so it can sit in a `select!` beside the
//! user's input, and sends ([`Messenger::send_text`]) go in between:
//!
//! ```no_run
//! # async fn front_end(mut messenger: wisp_client::Messenger) -> Result<(), wisp_client::ClientError> {
//! use wisp_client::{ClientError, E2eError, Event};
//! let (_typed, mut input) = tokio::sync::mpsc::channel::<(wisp_client::UserId, String)>(8);
//! loop {
//!     tokio::select! {
//!         Some((to, text)) = input.recv() => {
//!             let hour = std::time::Duration::from_secs(3600);
//!             match messenger.send_text(to, &text, hour, None).await {
//!                 Ok(_) => {}
//!                 Err(ClientError::E2e(E2eError::ForgedKey(friend))) => {
//!                     let number = messenger.safety_number(friend);
//!                     println!("warning: a key for {friend} is forged; compare:\n{number}");
//!                 }
//!                 Err(other) => return Err(other),
//!             }
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
//!
//! ## Names
//! A friend's id is hard to tell apart from another's; show a name where
//! there is one, in this order:
//! 1. the **petname** the user gave them ([`Messenger::petname`], set with
//!    [`Messenger::set_petname`]): kept in the key store only, never sent,
//!    unique on the device, so it can stand for the id in what the user
//!    types ([`Messenger::find_petname`]);
//! 2. else the **display name** they chose ([`Messenger::friend_display_name`],
//!    announced by [`Event::DisplayName`]), always marked as their own
//!    claim (the CLI writes `~Alice`): anyone can call themselves
//!    anything, and only the [`SafetyNumber`] proves who someone is;
//! 3. else (part of) the id.
//!
//! [`Messenger::set_display_name`] sets the user's own; the messenger sends
//! it inside the end-to-end encryption to every friend, to each new friend,
//! and again until each friend's device confirms it. Names are checked
//! with [`check_name`] (one line, at most [`MAX_NAME_CHARS`] characters, no
//! control or text-direction characters, not like an id) when typed, and
//! cleaned with [`clean_received_name`] when they arrive. One-shot front
//! ends call [`Messenger::settle`] before exiting, so the receipts for
//! names received go out.
//!
//! ## Text from the network is hostile
//! Message text, display names and server error text come from others.
//! Before a terminal shows them, escape C0 and C1 controls, DEL, and the
//! bidirectional and invisible formatting characters
//! ([`names::is_invisible_format`]); the CLI's `wisp_cli::safe` module is
//! one way. Keep a message's own line breaks from starting a row that
//! looks like another message (indent them under the sender), and wrap
//! long lines yourself for the same reason. A web page renders text as
//! text (never as HTML) and isolates it (`<bdi>`, `unicode-bidi:
//! isolate`).

pub mod client;
mod connection;
pub mod error;
pub mod keystore;
pub mod messenger;
pub mod tls;

pub use wisp_core::{e2e, envelope, identity, invitation, names, safety, state};

pub use client::{Accepted, Client, Events, FriendInfo, PendingInfo, RequestInfo, ServerEvent};
pub use error::{CertificateProblem, ClientError};
pub use keystore::{KeyStore, KeyStoreError};
pub use messenger::{Event, Messenger, SentMessage, new_client_msg_id, now_ms};
pub use tls::ConnectOptions;
pub use wisp_core::{
    ClientMsgId, Content, Delivery, E2eError, Identity, Invitation, InvitationError, KdfParams,
    LocalState, MAX_NAME_CHARS, MessageId, NameError, Opened, ReceivedMessage, SafetyNumber,
    UnixMillis, UserId, check_name, clean_received_name, invitation_link, parse_invitation,
    parse_invitation_link, safety_number, signed_invitation_link,
};
pub use wisp_proto::ErrorCode;
pub use wisp_proto::InvitationToken;
