//! [`LocalState`]: everything a device remembers between runs (its
//! identity, its server, its end-to-end sessions, the messages it handled,
//! the friends it verified), and its pickle: the state serialises itself to
//! bytes and back ([`LocalState::pickle`], [`LocalState::from_pickle`],
//! vodozemac's own pattern), and the caller decides where those bytes go,
//! sealed with the [`envelope`](crate::envelope). No message text is ever
//! part of it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde::{Deserialize, Serialize};
use vodozemac::olm::{AccountPickle, Session, SessionPickle};
use wisp_proto::{ClientMsgId, MessageId, UnixMillis, UserId};
use zeroize::Zeroizing;

use crate::identity::Identity;
use crate::names::{Names, ProfileInFlight};

/// Sessions of each friend, preferred first.
pub(crate) type SessionBook = BTreeMap<UserId, Vec<Session>>;

/// Why pickled bytes could not be read back.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The bytes are not a state this version can read.
    #[error("{0}")]
    Unreadable(String),
}

/// A device's identity plus what the client remembers: its server, its
/// end-to-end sessions, the messages it has handled. No message text.
pub struct LocalState {
    /// The identity keys.
    pub identity: Identity,
    /// The deployment name pinned at registration (None until registered).
    pub server_name: Option<String>,
    /// End-to-end sessions per friend, preferred first.
    pub(crate) sessions: SessionBook,
    /// Server message ids handled, with their expiry.
    pub(crate) seen: BTreeMap<MessageId, UnixMillis>,
    /// Friends' message ids shown in this process, with their expiry: a
    /// replayed message is not shown twice. Kept in memory only (pickling
    /// it would grow every save); across restarts, replays of known
    /// sessions are refused by the session checks in [`crate::e2e`].
    pub(crate) seen_messages: BTreeMap<(UserId, ClientMsgId), UnixMillis>,
    /// When the fallback key was last replaced.
    pub(crate) fallback_rotated: Option<UnixMillis>,
    /// Friends whose safety number the user confirmed matches on both
    /// devices.
    pub(crate) verified: BTreeSet<UserId>,
    /// Petnames, this user's display name, and friends' display names.
    pub(crate) names: Names,
}

impl std::fmt::Debug for LocalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalState")
            .field("identity", &self.identity)
            .field("server_name", &self.server_name)
            .field("sessions", &self.sessions.len())
            .field("verified", &self.verified)
            .field("petnames", &self.names.petnames.len())
            .finish_non_exhaustive()
    }
}

/// The pickled form. Holds private keys: never logged, zeroized. Its JSON
/// shape is the key store's content format, so it only ever gains
/// `#[serde(default)]` fields.
#[derive(Serialize, Deserialize)]
struct Pickle {
    account: AccountPickle,
    /// The deployment this identity registered with; logins sign this name.
    server_name: Option<String>,
    /// End-to-end sessions, per friend, preferred first.
    #[serde(default)]
    sessions: Vec<PickledSession>,
    /// Server message ids already handled, with their expiry (ms).
    #[serde(default)]
    seen: Vec<(u64, i64)>,
    /// When the fallback key was last replaced (ms).
    #[serde(default)]
    fallback_rotated_ms: Option<i64>,
    /// Friends whose safety number the user confirmed, as id text. Absent
    /// in stores written before verification existed.
    #[serde(default)]
    verified: Vec<String>,
    /// The user's names for others: (id text, name).
    #[serde(default)]
    petnames: Vec<(String, String)>,
    /// The user's own display name, and its revision (bumped per change).
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    profile_revision: u32,
    /// The revision of the display name each friend confirmed.
    #[serde(default)]
    profiles_delivered: Vec<(String, u32)>,
    /// Profile messages sent and not yet confirmed.
    #[serde(default)]
    profiles_in_flight: Vec<PickledProfile>,
    /// Display names friends sent: (id text, name).
    #[serde(default)]
    friend_display_names: Vec<(String, String)>,
    /// When each friendship that data is kept for began (ms).
    #[serde(default)]
    friends_since: Vec<(String, i64)>,
}

#[derive(Serialize, Deserialize)]
struct PickledProfile {
    client_msg_id: [u8; ClientMsgId::LEN],
    to: String,
    revision: u32,
    expires_ms: i64,
}

#[derive(Serialize, Deserialize)]
struct PickledSession {
    peer: String,
    session: SessionPickle,
}

impl LocalState {
    /// A fresh state for a new identity, not yet registered.
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            server_name: None,
            sessions: SessionBook::new(),
            seen: BTreeMap::new(),
            seen_messages: BTreeMap::new(),
            fallback_rotated: None,
            verified: BTreeSet::new(),
            names: Names::default(),
        }
    }

    /// The state as bytes (JSON), in a buffer that is zeroized on drop.
    /// They hold private keys: seal them before they leave memory.
    pub fn pickle(&self) -> Zeroizing<Vec<u8>> {
        let pickle = Pickle {
            account: self.identity.pickle(),
            server_name: self.server_name.clone(),
            sessions: self
                .sessions
                .iter()
                .flat_map(|(peer, sessions)| {
                    sessions.iter().map(|s| PickledSession {
                        peer: peer.to_string(),
                        session: s.pickle(),
                    })
                })
                .collect(),
            seen: self.seen.iter().map(|(id, exp)| (id.0, exp.0)).collect(),
            fallback_rotated_ms: self.fallback_rotated.map(|at| at.0),
            verified: self.verified.iter().map(|id| id.to_string()).collect(),
            petnames: by_id_text(&self.names.petnames),
            display_name: self.names.display_name.clone(),
            profile_revision: self.names.revision,
            profiles_delivered: by_id_text(&self.names.delivered),
            profiles_in_flight: self
                .names
                .in_flight
                .iter()
                .map(|(id, sent)| PickledProfile {
                    client_msg_id: id.0,
                    to: sent.to.to_string(),
                    revision: sent.revision,
                    expires_ms: sent.expires.0,
                })
                .collect(),
            friend_display_names: by_id_text(&self.names.received),
            friends_since: self
                .names
                .since
                .iter()
                .map(|(id, at)| (id.to_string(), at.0))
                .collect(),
        };
        serialize_zeroizing(&pickle)
    }

    /// The state [`LocalState::pickle`] made these bytes from.
    pub fn from_pickle(bytes: &[u8]) -> Result<Self, PickleError> {
        let unreadable = |e: &dyn std::fmt::Display| PickleError::Unreadable(e.to_string());
        let pickle: Pickle = serde_json::from_slice(bytes).map_err(|e| unreadable(&e))?;
        let mut sessions = SessionBook::new();
        for stored in pickle.sessions {
            let peer: UserId = stored.peer.parse().map_err(|e| unreadable(&e))?;
            sessions
                .entry(peer)
                .or_default()
                .push(Session::from_pickle(stored.session));
        }
        let verified = pickle
            .verified
            .iter()
            .map(|id| id.parse())
            .collect::<Result<_, wisp_proto::ParseUserIdError>>()
            .map_err(|e| unreadable(&e))?;
        let in_flight = pickle
            .profiles_in_flight
            .into_iter()
            .map(|p| {
                let to = p.to.parse().map_err(|e| unreadable(&e))?;
                let sent = ProfileInFlight {
                    to,
                    revision: p.revision,
                    expires: UnixMillis(p.expires_ms),
                };
                Ok((ClientMsgId(p.client_msg_id), sent))
            })
            .collect::<Result<_, PickleError>>()?;
        let names = Names {
            petnames: from_id_text(pickle.petnames)?,
            display_name: pickle.display_name,
            revision: pickle.profile_revision,
            delivered: from_id_text(pickle.profiles_delivered)?,
            in_flight,
            received: from_id_text(pickle.friend_display_names)?,
            since: from_id_text(pickle.friends_since)?
                .into_iter()
                .map(|(id, at)| (id, UnixMillis(at)))
                .collect(),
        };
        Ok(Self {
            identity: Identity::from_pickle(pickle.account),
            server_name: pickle.server_name,
            sessions,
            seen: pickle
                .seen
                .into_iter()
                .map(|(id, exp)| (MessageId(id), UnixMillis(exp)))
                .collect(),
            seen_messages: BTreeMap::new(),
            fallback_rotated: pickle.fallback_rotated_ms.map(UnixMillis),
            verified,
            names,
        })
    }

    /// Whether the user marked `friend` as verified (compared the safety
    /// number with them).
    pub fn is_verified(&self, friend: &UserId) -> bool {
        self.verified.contains(friend)
    }

    /// Marks `friend` as verified, or not. Returns whether anything
    /// changed (so the caller knows whether to save).
    pub fn set_verified(&mut self, friend: UserId, verified: bool) -> bool {
        if verified {
            self.verified.insert(friend)
        } else {
            self.verified.remove(&friend)
        }
    }

    /// The friends marked as verified.
    pub fn verified(&self) -> impl Iterator<Item = &UserId> {
        self.verified.iter()
    }
}

/// A map by user id as (id text, value) pairs, the pickle's form.
fn by_id_text<V: Clone>(map: &BTreeMap<UserId, V>) -> Vec<(String, V)> {
    map.iter()
        .map(|(id, v)| (id.to_string(), v.clone()))
        .collect()
}

/// The map [`by_id_text`] made these pairs from.
fn from_id_text<V>(pairs: Vec<(String, V)>) -> Result<BTreeMap<UserId, V>, PickleError> {
    pairs
        .into_iter()
        .map(|(id, v)| {
            Ok((
                id.parse().map_err(|e: wisp_proto::ParseUserIdError| {
                    PickleError::Unreadable(e.to_string())
                })?,
                v,
            ))
        })
        .collect()
}

/// Serializes into a buffer sized exactly beforehand, so no reallocation
/// leaves copies of secret bytes behind in freed memory.
fn serialize_zeroizing<T: Serialize>(value: &T) -> Zeroizing<Vec<u8>> {
    struct Counter(usize);
    impl Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Serializing plain data into memory cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    let mut buffer = Zeroizing::new(Vec::with_capacity(counter.0));
    let _ = serde_json::to_writer(&mut *buffer, value);
    buffer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> LocalState {
        let mut state = LocalState::new(Identity::generate());
        state.server_name = Some("wisp-test".into());
        state
    }

    #[test]
    fn a_state_round_trips_through_its_pickle() {
        let mut original = state();
        original.mark_seen(MessageId(42), UnixMillis::MAX);
        let bob = Identity::generate().user_id();
        original.set_verified(bob, true);
        original.set_petname(bob, Some("Bob")).unwrap();
        original.set_display_name(Some("Alice")).unwrap();
        original.profile_sent(bob, ClientMsgId([3; 16]), UnixMillis::MAX);
        original.received_display_name(bob, Some("Bobby".into()));
        let reopened = LocalState::from_pickle(&original.pickle()).unwrap();
        assert_eq!(reopened.names, original.names);
        assert_eq!(reopened.identity.user_id(), original.identity.user_id());
        assert_eq!(reopened.server_name.as_deref(), Some("wisp-test"));
        assert!(reopened.is_seen(MessageId(42)));
        assert!(reopened.is_verified(&bob));
    }

    #[test]
    fn verified_marks_change_only_when_they_change() {
        let mut original = state();
        let (bob, carol) = (
            Identity::generate().user_id(),
            Identity::generate().user_id(),
        );
        assert!(!original.is_verified(&bob));
        assert!(original.set_verified(bob, true));
        assert!(!original.set_verified(bob, true), "already verified");
        assert!(original.set_verified(carol, true));
        assert!(original.set_verified(carol, false));
        assert_eq!(original.verified().collect::<Vec<_>>(), vec![&bob]);
    }

    #[test]
    fn a_pickle_written_before_verification_existed_still_reads() {
        let original = state();
        let mut old: serde_json::Value = serde_json::from_slice(&original.pickle()).unwrap();
        assert!(old.as_object_mut().unwrap().remove("verified").is_some());
        let reopened = LocalState::from_pickle(old.to_string().as_bytes()).unwrap();
        assert_eq!(reopened.identity.user_id(), original.identity.user_id());
        assert_eq!(reopened.verified().count(), 0);
    }

    #[test]
    fn garbage_is_unreadable_not_a_panic() {
        assert!(matches!(
            LocalState::from_pickle(b"{\"account\": 1}"),
            Err(PickleError::Unreadable(_))
        ));
    }
}
