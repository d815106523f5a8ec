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

/// The user's texts the server stored and no receipt has answered yet:
/// each ends read (a receipt from the friend it went to) or expired unread
/// (its ceiling passed). Kept in memory by a front end's device; its
/// events are the front end's to tell.
#[derive(Debug, Default, Clone)]
pub struct AwaitingReceipt {
    texts: std::collections::BTreeMap<ClientMsgId, (UserId, UnixMillis)>,
}

impl AwaitingReceipt {
    /// A text to `to`, stored until `expires`.
    pub fn sent(&mut self, client_msg_id: ClientMsgId, to: UserId, expires: UnixMillis) {
        self.texts.insert(client_msg_id, (to, expires));
    }

    /// A receipt from `by` naming `ids`: those of ours that went to `by`,
    /// now read (and forgotten); ids of others' or unknown are ignored.
    pub fn read(&mut self, by: UserId, ids: Vec<ClientMsgId>) -> Vec<ClientMsgId> {
        let mut read = Vec::new();
        for id in ids {
            if self.texts.get(&id).is_some_and(|(to, _)| *to == by) {
                self.texts.remove(&id);
                read.push(id);
            }
        }
        read
    }

    /// The texts whose ceiling has passed at `now`, as (to, id), forgotten.
    pub fn expired(&mut self, now: UnixMillis) -> Vec<(UserId, ClientMsgId)> {
        let expired: Vec<ClientMsgId> = self
            .texts
            .iter()
            .filter(|(_, (_, expires))| *expires <= now)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| self.texts.remove(&id).map(|(to, _)| (to, id)))
            .collect()
    }

    /// When the next one expires, if any.
    pub fn next_expiry(&self) -> Option<UnixMillis> {
        self.texts.values().map(|(_, expires)| *expires).min()
    }

    /// Forgets them all (the account is gone).
    pub fn clear(&mut self) {
        self.texts.clear();
    }
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
    fn a_text_ends_read_by_its_recipient_or_expired_unread() {
        let (bob, carol) = (
            UserId::from_bytes(&[2; UserId::LEN]).unwrap(),
            UserId::from_bytes(&[3; UserId::LEN]).unwrap(),
        );
        let mut texts = AwaitingReceipt::default();
        texts.sent(ClientMsgId([1; 16]), bob, UnixMillis(100));
        texts.sent(ClientMsgId([2; 16]), bob, UnixMillis(50));
        texts.sent(ClientMsgId([3; 16]), carol, UnixMillis(200));
        assert_eq!(texts.next_expiry(), Some(UnixMillis(50)));
        // Carol cannot mark Bob's read; a stranger's id is ignored.
        assert!(texts.read(carol, vec![ClientMsgId([1; 16])]).is_empty());
        assert_eq!(
            texts.read(bob, vec![ClientMsgId([1; 16]), ClientMsgId([9; 16])]),
            vec![ClientMsgId([1; 16])]
        );
        assert!(
            texts.read(bob, vec![ClientMsgId([1; 16])]).is_empty(),
            "once"
        );
        assert_eq!(
            texts.expired(UnixMillis(60)),
            vec![(bob, ClientMsgId([2; 16]))]
        );
        assert!(texts.expired(UnixMillis(60)).is_empty(), "once");
        assert_eq!(texts.next_expiry(), Some(UnixMillis(200)));
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
