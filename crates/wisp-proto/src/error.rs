//! Helpers for [`ErrorCode`]: the stable names clients and scripts match on,
//! and whether a client may retry.

use crate::frames::ErrorCode;

impl ErrorCode {
    /// True when the same request may succeed later without change.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::RateLimited | ErrorCode::Internal | ErrorCode::Unavailable
        )
    }
}

/// The `SCREAMING_CASE` name of a code as the `.proto` spells it, or
/// `UNKNOWN(n)` for a code this version does not know.
pub fn code_name(raw: i32) -> String {
    match ErrorCode::try_from(raw) {
        Ok(code) => code.as_str_name().to_owned(),
        Err(_) => format!("UNKNOWN({raw})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_contract() {
        assert_eq!(code_name(ErrorCode::FriendLimit as i32), "FRIEND_LIMIT");
        assert_eq!(code_name(ErrorCode::AuthFailed as i32), "AUTH_FAILED");
        assert_eq!(code_name(999), "UNKNOWN(999)");
    }
}
