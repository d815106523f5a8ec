//! The Wisp client's logic with no I/O: what a device knows and computes,
//! for any front end and any platform (the native SDK, `wisp-client`, and a
//! browser build for `wasm32-unknown-unknown`).
//!
//! No sockets, no files, no async runtime, no clock: the caller passes the
//! time ([`UnixMillis`]) and moves the bytes. Randomness comes from the
//! operating system (`getrandom`; in the browser, `crypto.getRandomValues`)
//! or, for client message ids, from the caller.
//!
//! # Layout
//! - [`identity`]: [`Identity`], the device's vodozemac account and the
//!   self-certifying user id; signs the registration, login and identity-key
//!   transcripts of [`wisp_proto::transcript`].
//! - [`e2e`]: end-to-end encryption: Olm sessions per friend, one-time
//!   keys, bundle verification ([`E2eError::ForgedKey`]), sealing and
//!   opening messages, read receipts, the ids of handled messages.
//! - [`message`]: [`Delivery`], [`Content`], [`Opened`],
//!   [`ReceivedMessage`], [`client_msg_id`], [`AwaitingReceipt`] (the
//!   texts sent and not yet read) and [`receipt_ttl`].
//! - [`names`]: petnames (the user's own names for friends, on the device
//!   only) and display names (sent to friends end-to-end), and the rules
//!   that keep both one visible line.
//! - [`state`]: [`LocalState`], what a device remembers, which pickles
//!   itself to bytes and back.
//! - [`envelope`]: [`EnvelopeKey`], bytes sealed under a passphrase
//!   (Argon2id + XChaCha20-Poly1305), the key store's format without the
//!   file.
//! - [`safety`]: [`SafetyNumber`], what two friends compare to verify each
//!   other.
//! - [`invitation`]: invitation links (`wisp://add/<ID>`) and the one
//!   parser front ends use for whatever id the user types or scans.
//! - [`pow`]: solving the registration proof-of-work within a client's
//!   bounds (the puzzle and its check stay in [`wisp_proto::pow`], shared
//!   with the server).

pub mod e2e;
pub mod envelope;
pub mod identity;
pub mod invitation;
pub mod message;
pub mod names;
pub mod pow;
pub mod safety;
pub mod state;

pub use e2e::{E2eError, ONE_TIME_KEY_TARGET, verify_bundle};
pub use envelope::{EnvelopeError, EnvelopeKey, KdfParams, SealedEnvelope};
pub use identity::Identity;
pub use invitation::{
    INVITATION_PREFIX, Invitation, InvitationError, invitation_link, parse_invitation,
    parse_invitation_link, signed_invitation_link,
};
pub use message::{
    AwaitingReceipt, Content, Delivery, Opened, ReceivedMessage, client_msg_id, receipt_ttl,
};
pub use names::{MAX_NAME_CHARS, NameError, check_name, clean_received_name};
pub use pow::{PowError, solve_registration, solve_registration_slice};
pub use safety::{SafetyNumber, safety_number};
pub use state::{LocalState, PickleError};
pub use wisp_proto::{ClientMsgId, MessageId, UnixMillis, UserId};
