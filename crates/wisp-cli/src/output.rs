//! How the CLI reports: a one-line error with an exit code per kind of
//! failure, and JSON lines for `--json`.

use std::fmt;

use wisp_client::{ClientError, KeyStoreError};

/// Refused by the server, or failed.
pub const EXIT_FAILURE: u8 = 1;
/// Server unreachable or connection lost.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Key store problem.
pub const EXIT_KEYSTORE: u8 = 4;

/// A command's failure: what to print and which exit code to use.
#[derive(Debug)]
pub struct CliError {
    message: String,
    exit_code: u8,
}

impl CliError {
    /// A failure with exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: EXIT_FAILURE,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CliError {}

impl From<ClientError> for CliError {
    fn from(error: ClientError) -> Self {
        let exit_code = match &error {
            ClientError::Connect { .. } | ClientError::Closed(_) | ClientError::Timeout(_) => {
                EXIT_UNREACHABLE
            }
            ClientError::KeyStore(_) => EXIT_KEYSTORE,
            _ => EXIT_FAILURE,
        };
        Self {
            message: error.to_string(),
            exit_code,
        }
    }
}

impl From<KeyStoreError> for CliError {
    fn from(error: KeyStoreError) -> Self {
        Self {
            message: error.to_string(),
            exit_code: EXIT_KEYSTORE,
        }
    }
}

/// Prints one JSON object as a line.
pub fn json_line(value: &serde_json::Value) {
    println!("{value}");
}
