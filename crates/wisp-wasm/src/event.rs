//! What the device tells the page: one serialisable enum, sent to
//! JavaScript as JSON (`type` names the variant). Ids travel as text (user
//! ids in base32, client message ids in hex); message text only inside
//! [`Event::Message`], where `Debug` hides it.

use serde::{Serialize, Serializer};
use zeroize::Zeroizing;

/// Message text on its way to the page: zeroized when dropped here, shown
/// by length in `Debug`, serialised as the string itself.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretText(pub Zeroizing<String>);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl Serialize for SecretText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A friend as the page lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FriendView {
    /// Their id.
    pub id: String,
    /// Friends since.
    pub since_unix_ms: i64,
    /// Marked verified on this device (safety number compared).
    pub verified: bool,
    /// The user's own name for them, if they gave one (shown first).
    pub petname: Option<String>,
    /// The name they gave themselves (cleaned): only their claim, shown
    /// marked as such.
    pub display_name: Option<String>,
}

/// Someone in the lists of requests and blocks, with the names the device
/// knows for them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerView {
    /// Their id.
    pub id: String,
    /// The user's own name for them, if they gave one.
    pub petname: Option<String>,
    /// The name they gave themselves, if they sent one while friends.
    pub display_name: Option<String>,
}

/// Something the page should know or show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Where the connection's hand-shake is: `hello`, `registering`,
    /// `logging_in`.
    Status {
        /// The step.
        status: &'static str,
    },
    /// Registration needs a proof-of-work of this many bits; call
    /// `work` until it is done (progress: `pow_progress`).
    Pow {
        /// Leading zero bits asked for.
        difficulty: u32,
    },
    /// The identity is registered with the server (pinned from now on).
    Registered {
        /// This device's id.
        user_id: String,
    },
    /// Logged in: requests and messages flow.
    Ready {
        /// This device's id.
        user_id: String,
        /// The deployment's name.
        server_name: String,
    },
    /// The friend list, in full.
    Friends {
        /// Oldest friendship first.
        friends: Vec<FriendView>,
    },
    /// Pending requests both ways, and blocks, in full.
    Requests {
        /// Asking us.
        incoming: Vec<PeerView>,
        /// Asked by us.
        outgoing: Vec<PeerView>,
        /// Blocked by us.
        blocked: Vec<PeerView>,
    },
    /// A friend sent their display name (cleaned: one line, at most 64
    /// characters, nothing invisible); `null` when they cleared it. Only
    /// their claim: a `friends` event with it follows, and a receipt went
    /// back to their device.
    DisplayName {
        /// Who.
        from: String,
        /// The name as kept; insert it as text, isolated (`<bdi>`).
        display_name: Option<String>,
    },
    /// Someone asked to be friends.
    FriendRequest {
        /// Who.
        from: String,
    },
    /// Someone accepted (or asked while we had asked).
    FriendAccepted {
        /// Who.
        by: String,
    },
    /// Someone ended the friendship.
    FriendRemoved {
        /// Who.
        by: String,
    },
    /// A friend operation of ours went through.
    FriendOpDone {
        /// `request`, `accept`, `decline`, `cancel`, `remove`, `block`, `unblock`.
        action: &'static str,
        /// With whom.
        id: String,
        /// Whether the two are friends now.
        friends: bool,
    },
    /// A friend's message, decrypted; shown, its view timer starts, then
    /// `mark_read`.
    Message {
        /// The server's id.
        message_id: String,
        /// The sender's id for it (what the read receipt names).
        client_msg_id: String,
        /// Who sent it.
        from: String,
        /// The text: insert it as text, never as HTML.
        text: SecretText,
        /// When it was sent.
        sent_unix_ms: i64,
        /// Its hard ceiling: gone by then, read or not.
        expires_unix_ms: i64,
        /// Seconds it stays on screen once shown (0: until the ceiling).
        view_seconds: u32,
    },
    /// A text of ours is sealed and on its way.
    Queued {
        /// To whom.
        to: String,
        /// Our id for it.
        client_msg_id: String,
        /// When it expires at the latest (the server's time comes with `sent`).
        expires_unix_ms: i64,
    },
    /// The server stored a text of ours.
    Sent {
        /// To whom.
        to: String,
        /// Our id for it.
        client_msg_id: String,
        /// When the server burns it, read or not.
        expires_unix_ms: i64,
    },
    /// A friend read a text of ours (their device's end-to-end receipt).
    Read {
        /// Who.
        by: String,
        /// Our id for it.
        client_msg_id: String,
    },
    /// A text of ours expired before any receipt came.
    ExpiredUnread {
        /// To whom.
        to: String,
        /// Our id for it.
        client_msg_id: String,
    },
    /// A text of ours was not sent.
    SendFailed {
        /// To whom.
        to: String,
        /// Our id for it.
        client_msg_id: String,
        /// The reason's code (`NOT_FRIENDS`, `FORGED_KEY`, ...).
        code: String,
        /// The reason, for people.
        message: String,
    },
    /// The server handed out a key for `peer` that their id did not sign:
    /// someone may be intercepting. Nothing was encrypted to it.
    ForgedKey {
        /// Whom the key claimed to be.
        peer: String,
    },
    /// A message from `from` could not be decrypted; a fresh session is
    /// being set up.
    Undecryptable {
        /// Who sent it.
        from: String,
    },
    /// Everything waiting at login has come.
    MailboxDrained,
    /// A request was refused.
    Error {
        /// What was asked: `friend`, `keys`, `ack`, `server`, ...
        context: &'static str,
        /// The code's name.
        code: String,
        /// For people.
        message: String,
    },
    /// The server deleted this account; delete the stored key store.
    AccountDeleted,
    /// The session cannot go on (login refused, another deployment, the
    /// server speaks another protocol): do not reconnect by itself.
    Fatal {
        /// The code's name.
        code: String,
        /// For people.
        message: String,
    },
}
