//! Invitations: a user id as a link, `wisp://add/<ID>/<TOKEN>`, to hand to
//! someone in person (as a QR code) or over another channel. Since the id is
//! self-certifying, whoever adds it reaches the holder of that identity key
//! and nobody else. The token ([`InvitationToken`], signed by the inviter's
//! identity key, with an expiry) lets the holder's friend request past
//! strangers who filled the inviter's pending requests. Links without a
//! token (`wisp://add/<ID>`, as made before tokens) still read.
//!
//! Every front end parses what the user typed or scanned with
//! [`parse_invitation_link`] (id and token) or [`parse_invitation`] (the id
//! only), which take a bare id as well as a link.

use wisp_proto::{InvitationToken, ParseInvitationTokenError, ParseUserIdError, UserId};

/// The link's scheme and path, before the id.
pub const INVITATION_PREFIX: &str = "wisp://add/";

/// What errors say a valid link looks like.
const VALID_LINK: &str = "a valid one is wisp://add/ followed by a 32-character user id \
                          (and, in a signed invitation, / and the token)";

/// The invitation link for `id` without a token: `wisp://add/<ID>`.
pub fn invitation_link(id: UserId) -> String {
    format!("{INVITATION_PREFIX}{id}")
}

/// The invitation link for `id` with `token` (made by
/// [`Identity::sign_invitation`](crate::Identity::sign_invitation)):
/// `wisp://add/<ID>/<TOKEN>`.
pub fn signed_invitation_link(id: UserId, token: &InvitationToken) -> String {
    format!("{INVITATION_PREFIX}{id}/{}", token.to_text())
}

/// What an invitation link (or a bare id) names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invitation {
    /// Whom to ask.
    pub user: UserId,
    /// The inviter's signed token, when the link carries one.
    pub token: Option<InvitationToken>,
}

/// Why a text is neither a user id nor an invitation link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvitationError {
    /// It looks like a link, but not a Wisp invitation.
    #[error("\"{0}\" is not a Wisp invitation; {VALID_LINK}")]
    NotAnInvitation(String),
    /// An invitation link whose id is malformed.
    #[error("\"{text}\" is not a valid invitation: {reason}; {VALID_LINK}")]
    BadLink {
        /// What was given, trimmed.
        text: String,
        /// What is wrong with the id.
        reason: ParseUserIdError,
    },
    /// An invitation link whose token is malformed.
    #[error("\"{text}\" is not a valid invitation: {reason}; {VALID_LINK}")]
    BadToken {
        /// What was given, trimmed.
        text: String,
        /// What is wrong with the token.
        reason: ParseInvitationTokenError,
    },
    /// A bare id that is malformed.
    #[error("\"{text}\" is not a user id: {reason}")]
    BadId {
        /// What was given, trimmed.
        text: String,
        /// What is wrong with the id.
        reason: ParseUserIdError,
    },
}

/// Reads a user id from a bare id or an invitation link, ignoring
/// surrounding whitespace; the scheme and id may be in either case (a QR
/// code carries the link in upper case, which codes more compactly).
pub fn parse_invitation(text: &str) -> Result<UserId, InvitationError> {
    parse_invitation_link(text).map(|invitation| invitation.user)
}

/// Like [`parse_invitation`], keeping the link's token when it has one.
pub fn parse_invitation_link(text: &str) -> Result<Invitation, InvitationError> {
    let text = text.trim();
    match text.get(..INVITATION_PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(INVITATION_PREFIX) => {
            let rest = &text[INVITATION_PREFIX.len()..];
            let (id, token) = match rest.split_once('/') {
                Some((id, token)) => (id, Some(token)),
                None => (rest, None),
            };
            // Only the whole text is trimmed: whitespace inside a link is
            // not part of an id (found by fuzzing: "wisp://add/ \x0c<id>"
            // read as the link without it).
            let user = if id.trim() == id {
                id.parse()
            } else {
                Err(ParseUserIdError::NotBase32)
            }
            .map_err(|reason| InvitationError::BadLink {
                text: text.to_owned(),
                reason,
            })?;
            let token = token
                .map(InvitationToken::from_text)
                .transpose()
                .map_err(|reason| InvitationError::BadToken {
                    text: text.to_owned(),
                    reason,
                })?;
            Ok(Invitation { user, token })
        }
        _ if text.contains(':') || text.contains('/') => {
            Err(InvitationError::NotAnInvitation(text.to_owned()))
        }
        _ => text
            .parse()
            .map(|user| Invitation { user, token: None })
            .map_err(|reason| InvitationError::BadId {
                text: text.to_owned(),
                reason,
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> UserId {
        UserId::from_ed25519(&[5; 32])
    }

    #[test]
    fn a_link_or_a_bare_id_in_any_case_reads_back() {
        let id = id();
        let link = invitation_link(id);
        assert_eq!(link, format!("wisp://add/{id}"));
        for text in [
            link.clone(),
            format!("  {link}\n"),
            link.to_ascii_uppercase(),
            id.to_string(),
            format!("\t{id} "),
        ] {
            assert_eq!(parse_invitation(&text), Ok(id), "{text:?}");
        }
    }

    #[test]
    fn a_signed_link_reads_back_with_its_token_and_verifies() {
        use vodozemac::{Ed25519PublicKey, Ed25519Signature};
        let identity = crate::Identity::generate();
        let id = identity.user_id();
        let token = identity
            .sign_invitation(wisp_proto::UnixMillis(1_900_000_000_000))
            .unwrap();
        let link = signed_invitation_link(id, &token);
        for text in [
            link.clone(),
            link.to_ascii_uppercase(),
            format!(" {link}\n"),
        ] {
            let read = parse_invitation_link(&text).unwrap();
            assert_eq!(
                read,
                Invitation {
                    user: id,
                    token: Some(token)
                }
            );
            assert_eq!(parse_invitation(&text), Ok(id));
        }
        // Signed by the inviter's identity key over the invitation
        // transcript, as the server checks it.
        let key = Ed25519PublicKey::from_slice(&identity.ed25519_key()).unwrap();
        let signature = Ed25519Signature::from_slice(&token.signature).unwrap();
        assert!(key.verify(&token.transcript(id), &signature).is_ok());
        let other = crate::Identity::generate().user_id();
        assert!(key.verify(&token.transcript(other), &signature).is_err());
        // Two invitations differ.
        let again = identity.sign_invitation(token.expires).unwrap();
        assert_ne!(again.nonce, token.nonce);
        // An old link, without a token, still reads.
        assert_eq!(
            parse_invitation_link(&invitation_link(id)).unwrap(),
            Invitation {
                user: id,
                token: None
            }
        );
        // A damaged token is an error that says so.
        let damaged = format!("{}/{}", invitation_link(id), &token.to_text()[1..]);
        assert!(matches!(
            parse_invitation_link(&damaged),
            Err(InvitationError::BadToken { .. })
        ));
    }

    #[test]
    fn a_malformed_link_says_what_a_valid_one_looks_like() {
        let id = id();
        for text in [
            format!("https://add/{id}"),
            format!("wisp://friend/{id}"),
            format!("wisp:/add/{id}"),
        ] {
            let error = parse_invitation(&text).unwrap_err();
            assert!(matches!(error, InvitationError::NotAnInvitation(_)));
            assert!(error.to_string().contains("wisp://add/"), "{error}");
        }
        let short = parse_invitation("wisp://add/abc").unwrap_err();
        assert!(matches!(short, InvitationError::BadLink { .. }));
        assert_eq!(
            short.to_string(),
            "\"wisp://add/abc\" is not a valid invitation: a user id has 32 characters, \
             this has 3; a valid one is wisp://add/ followed by a 32-character user id \
             (and, in a signed invitation, / and the token)"
        );
        assert_eq!(
            parse_invitation(" not-an-id ").unwrap_err().to_string(),
            "\"not-an-id\" is not a user id: a user id has 32 characters, this has 9"
        );
        assert!(parse_invitation(&format!("wisp://add/{id}/x")).is_err());
        for inside in [" ", "\t", "\u{c}", "\n"] {
            let text = format!("wisp://add/{inside}{id}");
            assert!(
                matches!(
                    parse_invitation(&text),
                    Err(InvitationError::BadLink {
                        reason: ParseUserIdError::NotBase32,
                        ..
                    })
                ),
                "{text:?}"
            );
            assert!(parse_invitation(&format!("wisp://add/{id}{inside}/x")).is_err());
        }
        assert!(parse_invitation("").is_err());
    }
}
