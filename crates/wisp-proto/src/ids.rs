//! User ids. A [`UserId`] is self-certifying: it is a hash of the user's
//! Ed25519 identity key, so anyone holding the id can check that a key the
//! server hands out really belongs to it, and no phone number or e-mail is
//! involved.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Domain separation for the id hash, so the digest is never reused elsewhere.
const ID_HASH_LABEL: &[u8] = b"wisp-user-id-v1\0";

/// A user's id: the first 20 bytes (160 bits) of
/// `SHA-256("wisp-user-id-v1\0" || ed25519_public_key)`, written as 32
/// lowercase base32 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId([u8; UserId::LEN]);

impl UserId {
    /// Bytes in an id on the wire.
    pub const LEN: usize = 20;
    /// Characters in an id's text form.
    pub const TEXT_LEN: usize = 32;

    /// The id that belongs to an Ed25519 public key.
    pub fn from_ed25519(public_key: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(ID_HASH_LABEL)
            .chain_update(public_key)
            .finalize();
        let mut id = [0u8; Self::LEN];
        id.copy_from_slice(&digest[..Self::LEN]);
        Self(id)
    }

    /// Checks that `public_key` is the key this id was made from.
    pub fn is_of_key(&self, public_key: &[u8; 32]) -> bool {
        use subtle::ConstantTimeEq;
        bool::from(Self::from_ed25519(public_key).0.ct_eq(&self.0))
    }

    /// Reads an id from its wire form (exactly 20 bytes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ParseUserIdError> {
        let id: [u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| ParseUserIdError::WrongByteLength(bytes.len()))?;
        Ok(Self(id))
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }

    /// The wire form, owned, as the protobuf messages want it.
    pub fn to_vec(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = data_encoding::BASE32_NOPAD.encode(&self.0);
        f.write_str(&text.to_ascii_lowercase())
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({self})")
    }
}

impl FromStr for UserId {
    type Err = ParseUserIdError;

    /// Parses the 32-character text form, in either case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.len() != Self::TEXT_LEN {
            return Err(ParseUserIdError::WrongTextLength(text.chars().count()));
        }
        let upper = text.to_ascii_uppercase();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .map_err(|_| ParseUserIdError::NotBase32)?;
        Self::from_bytes(&bytes)
    }
}

/// A message's id on the server: unique, increasing in the order messages
/// were stored, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MessageId(pub u64);

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The sender's own id for a message: 16 random bytes (the first eight are
/// the send time, so ids sort roughly by age). A retry carries the same id,
/// and the server stores it once; read receipts name messages by it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientMsgId(pub [u8; ClientMsgId::LEN]);

impl ClientMsgId {
    /// Bytes on the wire.
    pub const LEN: usize = 16;

    /// Reads the wire form; `None` unless it is exactly [`Self::LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        <[u8; Self::LEN]>::try_from(bytes).ok().map(Self)
    }

    /// The wire form.
    pub fn as_bytes(&self) -> &[u8; Self::LEN] {
        &self.0
    }
}

impl fmt::Debug for ClientMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientMsgId({self})")
    }
}

impl fmt::Display for ClientMsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A point in time as milliseconds since the Unix epoch: the one unit every
/// stored or transmitted time uses (expiries, friendship dates, key ages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// The epoch itself.
    pub const ZERO: Self = Self(0);
    /// Later than any real time.
    pub const MAX: Self = Self(i64::MAX);

    /// This time moved forward by `by`, saturating.
    pub fn plus(self, by: std::time::Duration) -> Self {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(ms))
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn since(self, earlier: Self) -> std::time::Duration {
        std::time::Duration::from_millis(
            u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0),
        )
    }
}

impl fmt::Display for UnixMillis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a text or byte string is not a user id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseUserIdError {
    /// The text form has the wrong number of characters.
    #[error("a user id has 32 characters, this has {0}")]
    WrongTextLength(usize),
    /// The text uses characters outside base32 (a-z, 2-7).
    #[error("a user id uses only the letters a-z and digits 2-7")]
    NotBase32,
    /// The wire form has the wrong number of bytes.
    #[error("a user id is 20 bytes on the wire, this is {0}")]
    WrongByteLength(usize),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn id_is_32_lowercase_chars_and_parses_back() {
        let id = UserId::from_ed25519(&[7u8; 32]);
        let text = id.to_string();
        assert_eq!(text.len(), UserId::TEXT_LEN);
        assert!(
            text.chars()
                .all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c))
        );
        assert_eq!(text.parse::<UserId>().unwrap(), id);
        assert_eq!(text.to_ascii_uppercase().parse::<UserId>().unwrap(), id);
    }

    #[test]
    fn id_certifies_only_its_own_key() {
        let id = UserId::from_ed25519(&[1u8; 32]);
        assert!(id.is_of_key(&[1u8; 32]));
        assert!(!id.is_of_key(&[2u8; 32]));
    }

    #[test]
    fn bad_text_is_refused_with_a_reason() {
        assert_eq!(
            "abc".parse::<UserId>(),
            Err(ParseUserIdError::WrongTextLength(3))
        );
        assert_eq!(
            "0".repeat(32).parse::<UserId>(),
            Err(ParseUserIdError::NotBase32)
        );
        assert_eq!(
            UserId::from_bytes(&[0u8; 19]),
            Err(ParseUserIdError::WrongByteLength(19))
        );
    }

    #[test]
    fn client_msg_ids_are_sixteen_bytes_shown_as_hex() {
        assert_eq!(ClientMsgId::from_bytes(&[0xab; 15]), None);
        let id = ClientMsgId::from_bytes(&[0xab; 16]).unwrap();
        assert_eq!(id.to_string(), "ab".repeat(16));
        assert_eq!(id.as_bytes(), &[0xab; 16]);
    }

    #[test]
    fn unix_millis_move_and_measure_without_overflow() {
        let t = UnixMillis(1_000);
        assert_eq!(
            t.plus(std::time::Duration::from_millis(500)),
            UnixMillis(1_500)
        );
        assert_eq!(
            UnixMillis::MAX.plus(std::time::Duration::from_secs(1)),
            UnixMillis::MAX
        );
        assert_eq!(
            UnixMillis(1_500).since(t),
            std::time::Duration::from_millis(500)
        );
        assert_eq!(t.since(UnixMillis(1_500)), std::time::Duration::ZERO);
    }

    proptest! {
        #[test]
        fn text_form_round_trips(bytes in proptest::array::uniform20(any::<u8>())) {
            let id = UserId::from_bytes(&bytes).unwrap();
            prop_assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        }
    }
}
