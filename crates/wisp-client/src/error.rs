//! Client errors: transport failures, protocol surprises, and refusals the
//! server sent with a typed code.

use std::time::Duration;

use wisp_proto::ErrorCode;

use crate::keystore::KeyStoreError;

/// Anything the SDK can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server could not be reached.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// Where we tried.
        url: String,
        /// Why it failed.
        reason: String,
    },
    /// The connection ended before the reply came.
    #[error("the server closed the connection{}", .0.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Closed(Option<String>),
    /// No reply within the time allowed.
    #[error("the server did not answer within {0:?}")]
    Timeout(Duration),
    /// The server refused the request.
    #[error("{message}")]
    Refused {
        /// The typed code, or `None` for a code this version does not know.
        code: Option<ErrorCode>,
        /// The server's explanation.
        message: String,
        /// With rate limits: when to try again.
        retry_after: Option<Duration>,
    },
    /// The server answered with something the protocol does not allow here.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server is not the deployment this identity registered with.
    #[error(
        "this identity is registered with server \"{expected}\", but this server is \"{actual}\"; use the server you registered with"
    )]
    WrongServer {
        /// The pinned name.
        expected: String,
        /// The name the server gave.
        actual: String,
    },
    /// The server asked for more proof-of-work than a client will do.
    #[error("the server asks for a {0}-bit proof-of-work, more than this client will solve")]
    PowTooHard(u32),
    /// The local key store failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
}

impl ClientError {
    /// The server's typed refusal code, if this is a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => *code,
            _ => None,
        }
    }
}
