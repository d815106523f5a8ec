//! Messages on both sides of the encryption: what the server delivers
//! ([`Delivery`], ciphertext), what goes inside ([`Content`]), and what a
//! delivery turns out to be once opened ([`Opened`], [`ReceivedMessage`]).
//! Also how a sender names its messages ([`client_msg_id`]).

use std::time::Duration;

use wisp_proto::{ClientMsgId, MessageId, UnixMillis, UserId};

use crate::e2e::E2eError;

/// An encrypted message as the server delivered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The server's id for it.
    pub message_id: MessageId,
    /// Who sent it.
    pub from: UserId,
    /// The end-to-end ciphertext.
    pub ciphertext: Vec<u8>,
    /// When the server accepted it.
    pub sent_unix_ms: UnixMillis,
    /// When it expires.
    pub expires_unix_ms: UnixMillis,
}

/// A decrypted message. `Debug` does not print the text.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The server's id for it.
    pub id: MessageId,
    /// The sender's id for it.
    pub client_msg_id: ClientMsgId,
    /// Who sent it.
    pub from: UserId,
    /// The text, in memory only; drop it once read.
    pub text: zeroize::Zeroizing<String>,
    /// When the server accepted it.
    pub sent_unix_ms: UnixMillis,
    /// The hard ceiling: gone from the screen by then, read or not.
    pub expires_unix_ms: UnixMillis,
    /// The burn-on-read timer the sender chose, started when it is read.
    pub view_timer: Option<Duration>,
}

impl std::fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("id", &self.id)
            .field("from", &self.from)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("expires_unix_ms", &self.expires_unix_ms)
            .finish_non_exhaustive()
    }
}

/// What a sealed message carries.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// Text to show, with the sender's burn-on-read timer.
    Text {
        /// The text.
        body: zeroize::Zeroizing<String>,
        /// How long it stays on screen once read, if limited.
        view_timer: Option<Duration>,
    },
    /// An end-to-end read receipt naming the sender's messages.
    ReadReceipt(Vec<ClientMsgId>),
    /// No content: tells the friend a fresh session was started.
    Renewal,
    /// The sender's display name ([`crate::names`]); `None`: cleared.
    Profile {
        /// Their own choice of name.
        display_name: Option<String>,
    },
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Text { body, view_timer } => f
                .debug_struct("Text")
                .field("body", &format_args!("<{} bytes>", body.len()))
                .field("view_timer", view_timer)
                .finish(),
            Content::ReadReceipt(ids) => f.debug_tuple("ReadReceipt").field(ids).finish(),
            Content::Renewal => f.write_str("Renewal"),
            Content::Profile { .. } => f.write_str("Profile"),
        }
    }
}

/// What a delivery turned out to be. Whatever it is, the server's copy is
/// now handled (acknowledge it once the state is saved).
#[derive(Debug)]
#[non_exhaustive]
pub enum Opened {
    /// Nothing to show: handled before, expired, a replay, or a renewal.
    Nothing,
    /// A friend's message to show.
    Text(ReceivedMessage),
    /// A friend read these of our messages.
    Read {
        /// Who read them.
        by: UserId,
        /// Our ids for them, as the receipt named them.
        client_msg_ids: Vec<ClientMsgId>,
    },
    /// It could not be decrypted; a fresh session with the sender is due.
    Undecryptable(E2eError),
    /// A friend's display name (kept in the state, cleaned); answer with a
    /// read receipt naming `client_msg_id`, so their device stops sending
    /// it.
    Profile {
        /// Who.
        from: UserId,
        /// Their id for the message, for the receipt.
        client_msg_id: ClientMsgId,
        /// The name as kept ([`crate::names::clean_received_name`]);
        /// `None`: they have none.
        display_name: Option<String>,
        /// When the message expires: the receipt lives no longer.
        expires_unix_ms: UnixMillis,
    },
}

/// How long a read receipt lives: as long as the longest-lived message it
/// names, `expires` (a receipt outliving it would tell nothing new), but at
/// least a second and at most the hour any message may live.
pub fn receipt_ttl(expires: UnixMillis, now: UnixMillis) -> Duration {
    expires
        .since(now)
        .clamp(Duration::from_secs(1), wisp_proto::limits::MAX_MESSAGE_TTL)
}

/// A client message id: the time in milliseconds (48 bits, big endian)
/// followed by 80 random bits from the caller, like a UUIDv7. Ids that grow
/// with time let the server file its retry records at the end of one index
/// instead of all over it; the random part keeps them unguessable and
/// unique. The server learns nothing new from the time: it sees when a
/// message arrives.
pub fn client_msg_id(now: UnixMillis, random: [u8; 10]) -> ClientMsgId {
    let mut id = [0u8; ClientMsgId::LEN];
    let millis = u64::try_from(now.0).unwrap_or(0);
    id[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    id[6..].copy_from_slice(&random);
    ClientMsgId(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_msg_ids_start_with_the_time_then_the_random_part() {
        let id = client_msg_id(UnixMillis(0x0102_0304_0506), [9; 10]);
        assert_eq!(&id.0[..6], &[1, 2, 3, 4, 5, 6]);
        assert_eq!(&id.0[6..], &[9; 10]);
        // Later times sort later.
        let later = client_msg_id(UnixMillis(0x0102_0304_0507), [0; 10]);
        assert!(later > id);
    }

    #[test]
    fn a_receipt_lives_as_long_as_its_message_within_a_second_and_an_hour() {
        let now = UnixMillis(1_000_000);
        assert_eq!(
            receipt_ttl(UnixMillis(1_090_000), now),
            Duration::from_secs(90)
        );
        assert_eq!(receipt_ttl(now, now), Duration::from_secs(1));
        assert_eq!(receipt_ttl(UnixMillis(0), now), Duration::from_secs(1));
        assert_eq!(
            receipt_ttl(UnixMillis(i64::MAX), now),
            wisp_proto::limits::MAX_MESSAGE_TTL
        );
    }

    #[test]
    fn debug_shows_no_text() {
        let content = Content::Text {
            body: zeroize::Zeroizing::new("the door code".into()),
            view_timer: None,
        };
        assert!(!format!("{content:?}").contains("door"));
    }
}
