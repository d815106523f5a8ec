//! The one place where failures become wire errors. Everything a client
//! sees is a typed [`ErrorCode`] and a short human sentence; backend
//! details are logged for operators and replaced by "internal error".

use std::time::Duration;

use wisp_proto::frames::Error as ErrorFrame;
use wisp_proto::limits::{MAX_FRIENDS, MAX_PENDING_INCOMING, MAX_PENDING_OUTGOING};
use wisp_proto::{CodecError, ErrorCode};

use crate::store::{CreateAccountError, FriendError, Side, StoreError};

/// A refusal on its way to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
    pub(crate) retry_after: Option<Duration>,
}

impl WireError {
    pub(crate) fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub(crate) fn rate_limited(what: &str, retry_after: Duration) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: format!(
                "too many {what}; try again in {} s",
                retry_after.as_secs().max(1)
            ),
            retry_after: Some(retry_after),
        }
    }

    pub(crate) fn auth_failed() -> Self {
        Self::new(
            ErrorCode::AuthFailed,
            "login refused: unknown user id, or a signature that does not match a fresh challenge",
        )
    }

    pub(crate) fn to_frame(&self) -> ErrorFrame {
        ErrorFrame {
            code: self.code as i32,
            message: self.message.clone(),
            retry_after_ms: self
                .retry_after
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        }
    }
}

impl From<StoreError> for WireError {
    /// Logs the failure with its sources for operators and answers the
    /// client with nothing of it: no backend, host, query or reason.
    fn from(error: StoreError) -> Self {
        tracing::error!(
            error = &error as &(dyn std::error::Error + 'static),
            "storage failure"
        );
        Self::new(ErrorCode::Internal, "internal error; try again later")
    }
}

impl From<CodecError> for WireError {
    fn from(error: CodecError) -> Self {
        match error {
            CodecError::TooLarge { .. } => Self::new(ErrorCode::FrameTooLarge, error.to_string()),
            _ => Self::new(ErrorCode::BadFrame, error.to_string()),
        }
    }
}

impl From<CreateAccountError> for WireError {
    fn from(error: CreateAccountError) -> Self {
        match error {
            CreateAccountError::AlreadyRegistered => Self::new(
                ErrorCode::AlreadyRegistered,
                "these identity keys are already registered; log in instead",
            ),
            CreateAccountError::Deleted => Self::new(
                ErrorCode::AlreadyRegistered,
                "the account of these identity keys was deleted; create a new identity to register again",
            ),
            CreateAccountError::Store(e) => e.into(),
        }
    }
}

impl From<FriendError> for WireError {
    fn from(error: FriendError) -> Self {
        use ErrorCode as C;
        match error {
            FriendError::SelfTarget => Self::new(C::InvalidArgument, "that is your own id"),
            FriendError::AlreadyFriends => Self::new(C::AlreadyFriends, "you are already friends"),
            FriendError::NotFriends => {
                Self::new(C::NotFriends, "you are not friends with that user")
            }
            FriendError::FriendLimit(Side::Me) => Self::new(
                C::FriendLimit,
                format!("friend limit reached ({MAX_FRIENDS}); remove a friend first"),
            ),
            FriendError::FriendLimit(Side::Them) => Self::new(
                C::FriendLimit,
                format!("that user already has the most friends allowed ({MAX_FRIENDS})"),
            ),
            FriendError::PendingLimit(Side::Me) => Self::new(
                C::PendingLimit,
                format!(
                    "you have {MAX_PENDING_OUTGOING} friend requests waiting for an answer; cancel one first"
                ),
            ),
            FriendError::PendingLimit(Side::Them) => Self::new(
                C::PendingLimit,
                format!(
                    "that user has {MAX_PENDING_INCOMING} friend requests waiting already; \
                     a request made with their invitation link gets through"
                ),
            ),
            FriendError::NoSuchRequest => Self::new(
                C::NoSuchRequest,
                "there is no pending friend request to act on",
            ),
            FriendError::Blocked => {
                Self::new(C::Blocked, "you have blocked this user; unblock them first")
            }
            FriendError::BlockLimit => Self::new(
                C::BlockLimit,
                format!(
                    "you have blocked {} users already; unblock some first",
                    wisp_proto::limits::MAX_BLOCKS
                ),
            ),
            FriendError::NotBlocked => {
                Self::new(C::InvalidArgument, "you have not blocked this user")
            }
            FriendError::Store(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// What an operator's log shows of `error`: it and its sources.
    fn logged(error: &StoreError) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }

    #[test]
    fn store_failures_reach_the_wire_without_backend_detail() {
        let detail = "password authentication failed for user \"wisp_admin\" at db1.internal";
        let failures = [
            StoreError::from(sqlx::Error::Configuration(detail.into())),
            StoreError::Redis(detail.into()),
            StoreError::Migration {
                version: 4,
                name: "secret_table",
                source: detail.into(),
            },
            StoreError::Config(detail.into()),
            StoreError::Corrupt(detail.into()),
        ];
        for failure in failures {
            assert!(logged(&failure).contains(detail), "operators see why");
            let shown = format!("{failure}");
            for wire in [
                WireError::from(failure),
                WireError::from(FriendError::Store(StoreError::Closed)),
            ] {
                assert_eq!(wire.code, ErrorCode::Internal);
                let frame = wire.to_frame();
                for secret in [
                    "wisp_admin",
                    "db1",
                    "password",
                    "secret_table",
                    shown.as_str(),
                ] {
                    assert!(
                        !frame.message.contains(secret),
                        "{shown}: {}",
                        frame.message
                    );
                }
            }
        }
    }
}
