//! The token an invitation link carries: the inviter's Ed25519 identity key
//! signs "whoever holds this may ask me to be friends until then" (the
//! [`transcript::invitation`](crate::transcript::invitation) bytes, with a
//! random nonce). A friend request bearing a valid token gets past the
//! strangers' limit on the inviter's pending requests, so strangers can
//! never lock a genuine friend out. The server checks it against the
//! inviter's registered key; only the inviter's device can make one.
//!
//! On the wire (`FriendOp.invitation`) and in a link the token is
//! [`InvitationToken::LEN`] bytes: nonce, expiry (big-endian Unix
//! milliseconds), signature.

use std::fmt;

use crate::UnixMillis;

/// A signed invitation, as carried in a link and a friend request.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct InvitationToken {
    /// Random, so no two invitations are alike.
    pub nonce: [u8; InvitationToken::NONCE_LEN],
    /// Until when the invitation lets its holder in.
    pub expires: UnixMillis,
    /// The inviter's Ed25519 signature over the invitation transcript.
    pub signature: [u8; InvitationToken::SIGNATURE_LEN],
}

impl InvitationToken {
    /// Bytes of the nonce.
    pub const NONCE_LEN: usize = 16;
    /// Bytes of an Ed25519 signature.
    pub const SIGNATURE_LEN: usize = 64;
    /// Bytes of the whole token.
    pub const LEN: usize = Self::NONCE_LEN + 8 + Self::SIGNATURE_LEN;

    /// The bytes `inviter`'s identity key signs for this token.
    pub fn transcript(&self, inviter: crate::UserId) -> Vec<u8> {
        crate::transcript::invitation(inviter.as_bytes(), &self.nonce, self.expires.0)
    }

    /// The wire form.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..Self::NONCE_LEN].copy_from_slice(&self.nonce);
        out[Self::NONCE_LEN..Self::NONCE_LEN + 8].copy_from_slice(&self.expires.0.to_be_bytes());
        out[Self::NONCE_LEN + 8..].copy_from_slice(&self.signature);
        out
    }

    /// Reads the wire form: exactly [`Self::LEN`] bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ParseInvitationTokenError> {
        let bytes: &[u8; Self::LEN] = bytes
            .try_into()
            .map_err(|_| ParseInvitationTokenError::WrongLength(bytes.len()))?;
        let (nonce, rest) = bytes.split_at(Self::NONCE_LEN);
        let (expires, signature) = rest.split_at(8);
        let mut token = Self {
            nonce: [0; Self::NONCE_LEN],
            expires: UnixMillis(0),
            signature: [0; Self::SIGNATURE_LEN],
        };
        token.nonce.copy_from_slice(nonce);
        let mut be = [0u8; 8];
        be.copy_from_slice(expires);
        token.expires = UnixMillis(i64::from_be_bytes(be));
        token.signature.copy_from_slice(signature);
        Ok(token)
    }

    /// The text form used in links: unpadded base32, lowercase (read back
    /// in either case, as a QR code carries it in upper case).
    pub fn to_text(&self) -> String {
        data_encoding::BASE32_NOPAD
            .encode(&self.to_bytes())
            .to_ascii_lowercase()
    }

    /// Reads the text form, in either case.
    pub fn from_text(text: &str) -> Result<Self, ParseInvitationTokenError> {
        let upper = text.to_ascii_uppercase();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(upper.as_bytes())
            .map_err(|_| ParseInvitationTokenError::NotBase32)?;
        Self::from_bytes(&bytes)
    }
}

impl fmt::Debug for InvitationToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential: never printed whole.
        f.debug_struct("InvitationToken")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// Why bytes or text are not an invitation token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseInvitationTokenError {
    /// Not [`InvitationToken::LEN`] bytes.
    #[error("an invitation token has {len} bytes, this has {0}", len = InvitationToken::LEN)]
    WrongLength(usize),
    /// The text is not base32.
    #[error("an invitation token is base32 (letters a-z and digits 2-7)")]
    NotBase32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> InvitationToken {
        InvitationToken {
            nonce: [7; 16],
            expires: UnixMillis(1_800_000_000_000),
            signature: [9; 64],
        }
    }

    #[test]
    fn bytes_and_text_read_back_and_nothing_else_does() {
        let token = token();
        assert_eq!(InvitationToken::from_bytes(&token.to_bytes()), Ok(token));
        let text = token.to_text();
        assert_eq!(InvitationToken::from_text(&text), Ok(token));
        assert_eq!(
            InvitationToken::from_text(&text.to_ascii_uppercase()),
            Ok(token)
        );
        assert_eq!(
            InvitationToken::from_bytes(&token.to_bytes()[1..]),
            Err(ParseInvitationTokenError::WrongLength(
                InvitationToken::LEN - 1
            ))
        );
        assert_eq!(
            InvitationToken::from_text("!!"),
            Err(ParseInvitationTokenError::NotBase32)
        );
        assert!(!format!("{token:?}").contains("9, 9"));
    }
}
