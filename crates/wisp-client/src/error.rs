//! Client errors: transport failures, protocol surprises, refusals the
//! server sent with a typed code, and the core's end-to-end and key-store
//! errors as themselves.

use std::time::Duration;

use wisp_proto::ErrorCode;

use wisp_core::{E2eError, NameError};

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
    /// The server's TLS certificate was refused (`wss://`): nothing was
    /// sent, and nothing falls back to plain text. Front ends treat it as
    /// "unreachable", and show the problem, which says what to do.
    #[error("cannot connect to {url}: {problem}")]
    Certificate {
        /// Where we tried.
        url: String,
        /// What is wrong with the certificate.
        problem: CertificateProblem,
    },
    /// A CA certificate given to trust (a file or PEM text) is unusable.
    #[error("bad CA certificate: {0}")]
    CaCert(String),
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
    /// End-to-end encryption refused a key or a message. Match
    /// [`E2eError::ForgedKey`] to warn the user: the server handed out a key
    /// their friend's identity did not sign, so someone may be intercepting;
    /// nothing was sent, and the safety number is worth comparing.
    #[error(transparent)]
    E2e(#[from] E2eError),
    /// A petname or display name was refused (empty, too long, with
    /// invisible characters, like an id, or a petname another friend has).
    #[error(transparent)]
    Name(#[from] NameError),
}

/// Why a server's TLS certificate was refused; each message says what is
/// wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CertificateProblem {
    /// Not signed by a trusted CA (a self-hosted deployment's own CA, not
    /// given, or a forgery).
    #[error(
        "the server's certificate is not trusted (unknown issuer); if this is your own deployment, pass its CA certificate with --ca-cert FILE (or WISP_CA_CERT)"
    )]
    Untrusted,
    /// Past its end date.
    #[error(
        "the server's certificate has expired; its operator must renew it (or this computer's clock is wrong)"
    )]
    Expired,
    /// Before its start date.
    #[error("the server's certificate is not valid yet; check this computer's clock")]
    NotYetValid,
    /// Issued for other names than the one in the URL.
    #[error(
        "the server's certificate is not valid for this host name; connect with a name it was issued for"
    )]
    WrongName,
    /// Revoked by its CA.
    #[error("the server's certificate has been revoked; its operator must replace it")]
    Revoked,
    /// Any other defect, as rustls describes it.
    #[error("the server's certificate is invalid: {0}")]
    Invalid(String),
}

impl From<wisp_core::PowError> for ClientError {
    fn from(error: wisp_core::PowError) -> Self {
        match error {
            wisp_core::PowError::TooHard(bits) => ClientError::PowTooHard(bits),
            other => ClientError::Protocol(other.to_string()),
        }
    }
}

impl ClientError {
    /// The friend whose key was forged, if this is
    /// [`E2eError::ForgedKey`]: the error a front end must show as a
    /// warning, not as a glitch.
    pub fn forged_key(&self) -> Option<wisp_proto::UserId> {
        match self {
            ClientError::E2e(E2eError::ForgedKey(friend)) => Some(*friend),
            _ => None,
        }
    }

    /// What is wrong with the server's certificate, if that is why the
    /// connection failed.
    pub fn certificate_problem(&self) -> Option<&CertificateProblem> {
        match self {
            ClientError::Certificate { problem, .. } => Some(problem),
            _ => None,
        }
    }

    /// The server's typed refusal code, if this is a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => *code,
            _ => None,
        }
    }
}
