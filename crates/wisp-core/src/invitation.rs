//! Invitations: a user id as a link, `wisp://add/<ID>`, to hand to someone
//! in person (as a QR code) or over another channel. The link carries only
//! the id; since the id is self-certifying, whoever adds it reaches the
//! holder of that identity key and nobody else.
//!
//! Every front end parses what the user typed or scanned with
//! [`parse_invitation`], which takes a bare id as well as a link.

use wisp_proto::{ParseUserIdError, UserId};

/// The link's scheme and path, before the id.
pub const INVITATION_PREFIX: &str = "wisp://add/";

/// What errors say a valid link looks like.
const VALID_LINK: &str = "a valid one is wisp://add/ followed by a 32-character user id";

/// The invitation link for `id`: `wisp://add/<ID>`.
pub fn invitation_link(id: UserId) -> String {
    format!("{INVITATION_PREFIX}{id}")
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
    let text = text.trim();
    match text.get(..INVITATION_PREFIX.len()) {
        Some(head) if head.eq_ignore_ascii_case(INVITATION_PREFIX) => text
            [INVITATION_PREFIX.len()..]
            .parse()
            .map_err(|reason| InvitationError::BadLink {
                text: text.to_owned(),
                reason,
            }),
        _ if text.contains(':') || text.contains('/') => {
            Err(InvitationError::NotAnInvitation(text.to_owned()))
        }
        _ => text.parse().map_err(|reason| InvitationError::BadId {
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
             this has 3; a valid one is wisp://add/ followed by a 32-character user id"
        );
        assert_eq!(
            parse_invitation(" not-an-id ").unwrap_err().to_string(),
            "\"not-an-id\" is not a user id: a user id has 32 characters, this has 9"
        );
        assert!(parse_invitation(&format!("wisp://add/{id}/x")).is_err());
        assert!(parse_invitation("").is_err());
    }
}
