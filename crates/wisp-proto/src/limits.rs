//! Protocol constants and the product's hard limits, shared by client and
//! server so both refuse the same things.

use std::time::Duration;

/// The protocol version this crate speaks; sent in `Hello` and `HelloOk`.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest frame either side accepts, checked before parsing.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// The most friends a user may have.
pub const MAX_FRIENDS: usize = 20;

/// The most friend requests a user may have sent and not yet had answered.
pub const MAX_PENDING_OUTGOING: usize = 20;

/// The most friend requests a user may have waiting for an answer.
pub const MAX_PENDING_INCOMING: usize = 50;

/// How long a friend request waits for an answer. Past it, the request is
/// gone: not listed, not counted against anyone's limits, not acceptable;
/// the requester may ask again.
pub const FRIEND_REQUEST_LIFETIME: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How long an invitation link made by `wisp invite` (or the SDK) lets its
/// holder's friend request past the strangers' limit.
pub const INVITATION_LIFETIME: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The most users one user may block.
pub const MAX_BLOCKS: usize = 1000;

/// The largest ciphertext a message may carry.
pub const MAX_CIPHERTEXT_BYTES: usize = 16 * 1024;

/// The longest text a client will send (the ciphertext of the longest text
/// stays well under [`MAX_CIPHERTEXT_BYTES`]).
pub const MAX_TEXT_BYTES: usize = 4 * 1024;

/// One-time keys a client may upload at once, and the most the server keeps
/// per user.
pub const MAX_KEYS_PER_UPLOAD: usize = 100;
/// The server keeps at most this many unclaimed one-time keys per user.
pub const MAX_STORED_ONE_TIME_KEYS: usize = 100;
/// Below this many one-time keys the server asks the client to top up.
pub const LOW_ONE_TIME_KEYS: usize = 10;

/// Unread messages one user may have waiting in one friend's mailbox.
pub const MAX_PENDING_PER_CONVERSATION: u64 = 1000;

/// Messages a connection is handed before it acknowledges some.
pub const DELIVERY_WINDOW: usize = 256;

/// Message ids one `Ack` may carry.
pub const MAX_ACK_BATCH: usize = 1024;

/// No message lives longer than this anywhere.
pub const MAX_MESSAGE_TTL: Duration = Duration::from_secs(60 * 60);

/// Length of the nonces the server hands out (puzzles and login challenges).
pub const NONCE_BYTES: usize = 32;

/// The hardest proof-of-work a client agrees to solve; anything above would
/// take a phone minutes, so a server asking for it is refused.
pub const MAX_POW_DIFFICULTY: u32 = 28;
