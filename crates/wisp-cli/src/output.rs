//! How the CLI reports: a one-line error (or, for a forged key, a warning)
//! with an exit code per kind of failure, and JSON lines for `--json`.

use std::fmt;

use wisp_client::{ClientError, E2eError, KeyStoreError, LocalState, UserId};

use crate::safe;

/// Refused by the server, or failed.
pub const EXIT_FAILURE: u8 = 1;
/// Server unreachable (also: its TLS certificate refused) or connection
/// lost.
pub const EXIT_UNREACHABLE: u8 = 3;
/// Key store problem.
pub const EXIT_KEYSTORE: u8 = 4;
/// The server handed out a key the friend's identity did not sign
/// ([`E2eError::ForgedKey`]): someone may be intercepting; nothing was sent.
pub const EXIT_FORGED_KEY: u8 = 5;

/// A command's failure: what to print and which exit code to use.
#[derive(Debug)]
pub struct CliError {
    message: String,
    exit_code: u8,
    /// A security warning rather than a plain failure.
    warning: bool,
}

impl CliError {
    /// A failure with exit code 1.
    pub fn failed(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            exit_code: EXIT_FAILURE,
            warning: false,
        }
    }

    /// The warning for a key the server handed out for `friend` that their
    /// identity did not sign.
    pub fn forged_key(friend: UserId) -> Self {
        Self {
            message: format!(
                "the server handed out a key for {friend} that their identity did not sign: \
                 someone may be intercepting your messages, so nothing was sent. Compare your \
                 safety number with them in person or on a call: wisp verify {friend}"
            ),
            exit_code: EXIT_FORGED_KEY,
            warning: true,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.exit_code
    }

    /// How the line on stderr starts: `warning` for a security warning,
    /// `error` otherwise.
    pub fn label(&self) -> &'static str {
        if self.warning { "warning" } else { "error" }
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
        if let ClientError::E2e(E2eError::ForgedKey(friend)) = error {
            return Self::forged_key(friend);
        }
        let exit_code = match &error {
            ClientError::Connect { .. }
            | ClientError::Certificate { .. }
            | ClientError::Closed(_)
            | ClientError::Timeout(_) => EXIT_UNREACHABLE,
            ClientError::KeyStore(_) => EXIT_KEYSTORE,
            _ => EXIT_FAILURE,
        };
        Self {
            message: error.to_string(),
            exit_code,
            warning: false,
        }
    }
}

impl From<KeyStoreError> for CliError {
    fn from(error: KeyStoreError) -> Self {
        Self {
            message: error.to_string(),
            exit_code: EXIT_KEYSTORE,
            warning: false,
        }
    }
}

/// What the user knows to call someone: the petname they gave them, and
/// the display name the other chose (their own claim).
#[derive(Debug, Clone, Default)]
pub struct Named {
    /// The user's own name for them.
    pub petname: Option<String>,
    /// The name they chose, cleaned when it came.
    pub display_name: Option<String>,
}

/// The names `state` holds for `id`.
pub fn named(state: &LocalState, id: &UserId) -> Named {
    Named {
        petname: state.petname(id).map(str::to_owned),
        display_name: state.friend_display_name(id).map(str::to_owned),
    }
}

impl Named {
    /// The name to show ([`label`]).
    pub fn label(&self) -> Option<String> {
        label(self.petname.as_deref(), self.display_name.as_deref())
    }

    /// The name and the whole id, e.g. `Bob (4eiouwvq…)`; the id alone
    /// when there is no name.
    pub fn with_id(&self, id: &UserId) -> String {
        match self.label() {
            Some(label) => format!("{label} ({id})"),
            None => id.to_string(),
        }
    }

    /// The whole id first (what scripts cut), then the name, e.g.
    /// `4eiouwvq…  Bob`.
    pub fn after_id(&self, id: &UserId) -> String {
        match self.label() {
            Some(label) => format!("{id}  {label}"),
            None => id.to_string(),
        }
    }
}

/// The name to show for someone, safe to print: the user's `petname` for
/// them; else `~` and the name they chose, `theirs` (marked as their own
/// claim); `None` when there is neither. The CLI and the chat alike.
pub fn label(petname: Option<&str>, theirs: Option<&str>) -> Option<String> {
    match (petname, theirs) {
        (Some(petname), _) => Some(safe::line(petname)),
        (None, Some(theirs)) => Some(format!("~{}", safe::line(theirs))),
        (None, None) => None,
    }
}

/// How a one-line message names `id`: the petname alone (the user chose
/// it, unique on this device); else the name they chose, marked `~`, with
/// the start of the id (anyone can choose any name); else the whole id.
pub fn who(state: &LocalState, id: &UserId) -> String {
    let named = named(state, id);
    match (&named.petname, named.label()) {
        (Some(_), Some(label)) => label,
        (None, Some(label)) => format!("{label} ({})", short_id(id)),
        _ => id.to_string(),
    }
}

/// The first 12 characters of an id, then `…`.
pub fn short_id(id: &UserId) -> String {
    let text = id.to_string();
    format!("{}…", &text[..12])
}

/// Prints one JSON object as a line. The values stay exact; beyond what
/// JSON must escape (C0 controls), C1 controls, DEL and the invisible
/// formatting characters of [`safe`] are written as `\uXXXX` escapes
/// too, so the line is inert even on a terminal.
pub fn json_line(value: &serde_json::Value) {
    println!("{}", inert_json(&value.to_string()));
}

/// `json` with every C1 control, DEL and invisible formatting character
/// written as a `\uXXXX` escape (a UTF-16 surrogate pair above the Basic
/// Multilingual Plane; outside strings JSON text is ASCII).
pub fn inert_json(json: &str) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_control() || wisp_client::names::is_invisible_format(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn json_lines_escape_every_character_a_terminal_acts_on_and_stay_exact() {
        let text = "a\u{9b}2J\u{7f}\x1b[0m\u{202e}b\u{2066}\n\u{e0001}\u{e0067}x";
        let line = inert_json(&serde_json::json!({ "text": text }).to_string());
        assert!(
            line.is_ascii() || !line.chars().any(char::is_control),
            "{line}"
        );
        assert!(
            !line.contains('\u{202e}') && !line.contains('\u{9b}'),
            "{line}"
        );
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["text"], text);
    }
}
