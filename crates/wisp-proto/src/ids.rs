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

    proptest! {
        #[test]
        fn text_form_round_trips(bytes in proptest::array::uniform20(any::<u8>())) {
            let id = UserId::from_bytes(&bytes).unwrap();
            prop_assert_eq!(id.to_string().parse::<UserId>().unwrap(), id);
        }
    }
}
