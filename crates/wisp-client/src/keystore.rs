//! The local key store: one file holding this device's identity (and, later,
//! its end-to-end sessions), encrypted at rest.
//!
//! The file is a small JSON envelope. The key is derived from the user's
//! passphrase with Argon2id (parameters and salt in the envelope); the
//! content is sealed with XChaCha20-Poly1305 under a fresh random nonce on
//! every save, with the envelope's header as associated data so parameters
//! cannot be swapped. Plaintext and derived keys live in zeroizing buffers;
//! writes are atomic (temporary file, fsync, rename), and the file is
//! readable by its owner only.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

use vodozemac::olm::{AccountPickle, Session, SessionPickle};
use zeroize::Zeroizing;

use crate::e2e::SessionBook;
use crate::identity::Identity;

/// The file name inside the client's home directory.
pub const KEYSTORE_FILE: &str = "identity.wisp";

const FORMAT: &str = "wisp-keystore";
const VERSION: u32 = 1;
const SALT_BYTES: usize = 16;
const NONCE_BYTES: usize = 24;

/// Argon2id cost parameters (RFC 9106's second recommended option, one lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            m_kib: 64 * 1024,
            t: 3,
            p: 1,
        }
    }
}

/// Why the key store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// No identity exists in this home yet.
    #[error("no identity in {0}; run `wisp register` first")]
    Missing(PathBuf),
    /// Another process has this identity open.
    #[error(
        "another wisp process (a running `wisp chat`, say) is using the identity in {0}; \
         close it first"
    )]
    InUse(PathBuf),
    /// An identity exists already, so a new one is not created over it.
    #[error("an identity already exists in {0}")]
    Exists(PathBuf),
    /// The passphrase does not open the store (or the file was tampered with).
    #[error("wrong passphrase (or the key store file was altered)")]
    WrongPassphrase,
    /// The passphrase is empty.
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
    /// The file is not a key store this version understands.
    #[error("{path} is not a Wisp key store this version can read: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Reading or writing the file failed.
    #[error("cannot access the key store at {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    kdf: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    #[serde(flatten)]
    header: Header,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

/// What is sealed inside. Holds private keys: never logged, zeroized.
/// Never message text: that lives in memory only.
#[derive(Serialize, Deserialize)]
struct Sealed {
    account: AccountPickle,
    /// The deployment this identity registered with; logins sign this name.
    server_name: Option<String>,
    /// End-to-end sessions, per friend, preferred first.
    #[serde(default)]
    sessions: Vec<StoredSession>,
    /// Server message ids already handled, with their expiry.
    #[serde(default)]
    seen: Vec<(u64, i64)>,
    /// When the fallback key was last replaced.
    #[serde(default)]
    fallback_rotated_ms: Option<i64>,
    /// Friends whose safety number the user confirmed, as id text. Absent
    /// in stores written before verification existed.
    #[serde(default)]
    verified: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct StoredSession {
    peer: String,
    session: SessionPickle,
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
    /// Server message ids handled, with their expiry (ms since the epoch).
    pub(crate) seen: BTreeMap<u64, i64>,
    /// Friends' message ids shown in this process, with their expiry: a
    /// replayed message is not shown twice. Kept in memory only (persisting
    /// it would grow every save); across restarts, replays of known
    /// sessions are refused by the session checks in [`crate::e2e`].
    pub(crate) seen_messages: BTreeMap<(wisp_proto::UserId, [u8; 16]), i64>,
    /// When the fallback key was last replaced.
    pub(crate) fallback_rotated_ms: Option<i64>,
    /// Friends whose safety number the user confirmed matches on both
    /// devices.
    pub(crate) verified: BTreeSet<wisp_proto::UserId>,
}

impl std::fmt::Debug for LocalState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalState")
            .field("identity", &self.identity)
            .field("server_name", &self.server_name)
            .field("sessions", &self.sessions.len())
            .field("verified", &self.verified)
            .finish_non_exhaustive()
    }
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
            fallback_rotated_ms: None,
            verified: BTreeSet::new(),
        }
    }

    /// Whether the user marked `friend` as verified (compared the safety
    /// number with them).
    pub fn is_verified(&self, friend: &wisp_proto::UserId) -> bool {
        self.verified.contains(friend)
    }

    /// Marks `friend` as verified, or not. Returns whether anything
    /// changed (so the caller knows whether to save).
    pub fn set_verified(&mut self, friend: wisp_proto::UserId, verified: bool) -> bool {
        if verified {
            self.verified.insert(friend)
        } else {
            self.verified.remove(&friend)
        }
    }

    /// The friends marked as verified.
    pub fn verified(&self) -> impl Iterator<Item = &wisp_proto::UserId> {
        self.verified.iter()
    }
}

/// An open key store: the file and the key derived from the passphrase.
///
/// It holds an exclusive lock on the home while open: two processes working
/// on the same ratchet would reuse message keys and lose each other's
/// writes, so a second one is refused ([`KeyStoreError::InUse`]).
/// [`KeyStore::peek`] reads without locking, for commands that change
/// nothing.
pub struct KeyStore {
    path: PathBuf,
    header: Header,
    key: Zeroizing<[u8; 32]>,
    _lock: fs::File,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// The key store file in `home`.
    pub fn path_in(home: &Path) -> PathBuf {
        home.join(KEYSTORE_FILE)
    }

    /// Whether `home` holds a key store.
    pub fn exists_in(home: &Path) -> bool {
        Self::path_in(home).exists()
    }

    /// Creates a new store in `home` holding `state`, refusing to overwrite
    /// an existing one.
    pub fn create(
        home: &Path,
        passphrase: &str,
        kdf: KdfParams,
        state: &LocalState,
    ) -> Result<Self, KeyStoreError> {
        let path = Self::path_in(home);
        if path.exists() {
            return Err(KeyStoreError::Exists(path));
        }
        if passphrase.is_empty() {
            return Err(KeyStoreError::EmptyPassphrase);
        }
        fs::create_dir_all(home).map_err(|source| KeyStoreError::Io {
            path: home.to_owned(),
            source,
        })?;
        let mut salt = vec![0u8; SALT_BYTES];
        random(&mut salt);
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            kdf,
            salt,
        };
        let lock = lock_home(home)?;
        let key = derive_key(passphrase, &header, &path)?;
        let store = Self {
            path,
            header,
            key,
            _lock: lock,
        };
        store.save(state)?;
        Ok(store)
    }

    /// Opens the store in `home`, locking it, and decrypts it.
    pub fn open(home: &Path, passphrase: &str) -> Result<(Self, LocalState), KeyStoreError> {
        let lock = lock_home(home)?;
        let (path, header, key, state) = Self::read(home, passphrase)?;
        let store = Self {
            path,
            header,
            key,
            _lock: lock,
        };
        Ok((store, state))
    }

    /// Decrypts the store in `home` without locking it or keeping the key:
    /// for reading the identity while another process may hold the store.
    pub fn peek(home: &Path, passphrase: &str) -> Result<LocalState, KeyStoreError> {
        Self::read(home, passphrase).map(|(_, _, _, state)| state)
    }

    #[allow(clippy::type_complexity)]
    fn read(
        home: &Path,
        passphrase: &str,
    ) -> Result<(PathBuf, Header, Zeroizing<[u8; 32]>, LocalState), KeyStoreError> {
        let path = Self::path_in(home);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyStoreError::Missing(home.to_owned()));
            }
            Err(source) => return Err(KeyStoreError::Io { path, source }),
        };
        let unreadable = |reason: String| KeyStoreError::Unreadable {
            path: path.clone(),
            reason,
        };
        let envelope: Envelope =
            serde_json::from_slice(&text).map_err(|e| unreadable(e.to_string()))?;
        if envelope.header.format != FORMAT || envelope.header.version != VERSION {
            return Err(unreadable(format!(
                "format {} version {}",
                envelope.header.format, envelope.header.version
            )));
        }
        let nonce: [u8; NONCE_BYTES] = envelope
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| unreadable("bad nonce length".into()))?;
        let key = derive_key(passphrase, &envelope.header, &path)?;
        let aad = associated_data(&envelope.header);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let plaintext = Zeroizing::new(
            cipher
                .decrypt(
                    &XNonce::from(nonce),
                    Payload {
                        msg: &envelope.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| KeyStoreError::WrongPassphrase)?,
        );
        let sealed: Sealed =
            serde_json::from_slice(&plaintext).map_err(|e| unreadable(e.to_string()))?;
        let mut sessions = SessionBook::new();
        for stored in sealed.sessions {
            let peer: wisp_proto::UserId = stored
                .peer
                .parse()
                .map_err(|e: wisp_proto::ParseUserIdError| unreadable(e.to_string()))?;
            sessions
                .entry(peer)
                .or_default()
                .push(Session::from_pickle(stored.session));
        }
        let verified = sealed
            .verified
            .iter()
            .map(|id| id.parse())
            .collect::<Result<_, wisp_proto::ParseUserIdError>>()
            .map_err(|e| unreadable(e.to_string()))?;
        let state = LocalState {
            identity: Identity::from_pickle(sealed.account),
            server_name: sealed.server_name,
            sessions,
            seen: sealed.seen.into_iter().collect(),
            seen_messages: BTreeMap::new(),
            fallback_rotated_ms: sealed.fallback_rotated_ms,
            verified,
        };
        Ok((path, envelope.header, key, state))
    }

    /// Seals `state` and replaces the file atomically.
    pub fn save(&self, state: &LocalState) -> Result<(), KeyStoreError> {
        let sealed = Sealed {
            account: state.identity.pickle(),
            server_name: state.server_name.clone(),
            sessions: state
                .sessions
                .iter()
                .flat_map(|(peer, sessions)| {
                    sessions.iter().map(|s| StoredSession {
                        peer: peer.to_string(),
                        session: s.pickle(),
                    })
                })
                .collect(),
            seen: state.seen.iter().map(|(id, exp)| (*id, *exp)).collect(),
            fallback_rotated_ms: state.fallback_rotated_ms,
            verified: state.verified.iter().map(|id| id.to_string()).collect(),
        };
        self.write_sealed(&serialize_zeroizing(&sealed))
    }

    /// Encrypts the serialized content and replaces the file atomically.
    fn write_sealed(&self, plaintext: &[u8]) -> Result<(), KeyStoreError> {
        let mut nonce = [0u8; NONCE_BYTES];
        random(&mut nonce);
        let aad = associated_data(&self.header);
        let cipher = XChaCha20Poly1305::new(&(*self.key).into());
        let ciphertext = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| KeyStoreError::Unreadable {
                path: self.path.clone(),
                reason: "encryption failed".into(),
            })?;
        let envelope = Envelope {
            header: Header {
                format: self.header.format.clone(),
                version: self.header.version,
                kdf: self.header.kdf,
                salt: self.header.salt.clone(),
            },
            nonce: nonce.to_vec(),
            ciphertext,
        };
        let bytes =
            serde_json::to_vec_pretty(&envelope).map_err(|e| KeyStoreError::Unreadable {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        write_atomically(&self.path, &bytes)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
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

fn associated_data(header: &Header) -> Vec<u8> {
    format!(
        "{}|{}|argon2id|{}|{}|{}|{}",
        header.format,
        header.version,
        header.kdf.m_kib,
        header.kdf.t,
        header.kdf.p,
        data_encoding::BASE64.encode(&header.salt)
    )
    .into_bytes()
}

/// Parameters a file may ask for before it is authenticated; anything larger
/// is refused rather than allowed to exhaust memory or time.
const MAX_KDF: KdfParams = KdfParams {
    m_kib: 1024 * 1024,
    t: 16,
    p: 8,
};

fn derive_key(
    passphrase: &str,
    header: &Header,
    path: &Path,
) -> Result<Zeroizing<[u8; 32]>, KeyStoreError> {
    let kdf = header.kdf;
    if kdf.m_kib > MAX_KDF.m_kib || kdf.t > MAX_KDF.t || kdf.p > MAX_KDF.p {
        return Err(KeyStoreError::Unreadable {
            path: path.to_owned(),
            reason: format!("key derivation parameters {kdf:?} are beyond what this client allows"),
        });
    }
    let params = argon2::Params::new(header.kdf.m_kib, header.kdf.t, header.kdf.p, Some(32))
        .map_err(|e| KeyStoreError::Unreadable {
            path: path.to_owned(),
            reason: format!("bad key derivation parameters: {e}"),
        })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), &header.salt, &mut *key)
        .map_err(|e| KeyStoreError::Unreadable {
            path: path.to_owned(),
            reason: format!("key derivation failed: {e}"),
        })?;
    Ok(key)
}

/// Takes the home's lock file, or says another process holds it.
fn lock_home(home: &Path) -> Result<fs::File, KeyStoreError> {
    let path = home.join(format!("{KEYSTORE_FILE}.lock"));
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| KeyStoreError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(KeyStoreError::InUse(home.to_owned())),
        Err(fs::TryLockError::Error(source)) => Err(KeyStoreError::Io { path, source }),
    }
}

fn random(buf: &mut [u8]) {
    use rand::Rng;
    rand::rng().fill_bytes(buf);
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), KeyStoreError> {
    let io = |source| KeyStoreError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension(format!("wisp.tmp.{}", std::process::id()));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        // Make the rename itself durable; not all platforms can open a directory.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(())
}

mod b64 {
    //! Byte fields as standard base64 in the JSON envelope.
    use data_encoding::BASE64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        BASE64
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap parameters so the tests stay fast; the format is the same.
    const TEST_KDF: KdfParams = KdfParams {
        m_kib: 1024,
        t: 1,
        p: 1,
    };

    fn state() -> LocalState {
        let mut state = LocalState::new(Identity::generate());
        state.server_name = Some("wisp-test".into());
        state
    }

    #[test]
    fn round_trips_and_refuses_the_wrong_passphrase() {
        let home = tempfile::tempdir().unwrap();
        let original = state();
        let id = original.identity.user_id();
        KeyStore::create(home.path(), "correct horse", TEST_KDF, &original).unwrap();
        let (_, reopened) = KeyStore::open(home.path(), "correct horse").unwrap();
        assert_eq!(reopened.identity.user_id(), id);
        assert_eq!(reopened.server_name.as_deref(), Some("wisp-test"));
        assert!(matches!(
            KeyStore::open(home.path(), "wrong horse"),
            Err(KeyStoreError::WrongPassphrase)
        ));
    }

    #[test]
    fn a_second_process_is_refused_but_may_peek() {
        let home = tempfile::tempdir().unwrap();
        let original = state();
        let id = original.identity.user_id();
        let held = KeyStore::create(home.path(), "pw", TEST_KDF, &original).unwrap();
        assert!(matches!(
            KeyStore::open(home.path(), "pw"),
            Err(KeyStoreError::InUse(_))
        ));
        assert_eq!(
            KeyStore::peek(home.path(), "pw")
                .unwrap()
                .identity
                .user_id(),
            id
        );
        drop(held);
        assert!(KeyStore::open(home.path(), "pw").is_ok());
    }

    #[test]
    fn sessions_and_handled_ids_survive_a_reopen() {
        let home = tempfile::tempdir().unwrap();
        let mut original = state();
        original.mark_seen(42, i64::MAX);
        let store = KeyStore::create(home.path(), "pw", TEST_KDF, &original).unwrap();
        drop(store);
        let (_, reopened) = KeyStore::open(home.path(), "pw").unwrap();
        assert!(reopened.is_seen(42));
    }

    #[test]
    fn verified_friends_survive_a_reopen() {
        let home = tempfile::tempdir().unwrap();
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
        let store = KeyStore::create(home.path(), "pw", TEST_KDF, &original).unwrap();
        drop(store);
        let (_, reopened) = KeyStore::open(home.path(), "pw").unwrap();
        assert!(reopened.is_verified(&bob));
        assert!(!reopened.is_verified(&carol));
        assert_eq!(reopened.verified().collect::<Vec<_>>(), vec![&bob]);
    }

    #[test]
    fn a_store_written_before_verification_existed_still_opens() {
        let home = tempfile::tempdir().unwrap();
        let original = state();
        let id = original.identity.user_id();
        let store = KeyStore::create(home.path(), "pw", TEST_KDF, &original).unwrap();
        // The content as an older version wrote it: no `verified` field.
        let mut sealed = serde_json::to_value(Sealed {
            account: original.identity.pickle(),
            server_name: original.server_name.clone(),
            sessions: Vec::new(),
            seen: Vec::new(),
            fallback_rotated_ms: None,
            verified: Vec::new(),
        })
        .unwrap();
        assert!(sealed.as_object_mut().unwrap().remove("verified").is_some());
        store.write_sealed(sealed.to_string().as_bytes()).unwrap();
        drop(store);
        let (_, reopened) = KeyStore::open(home.path(), "pw").unwrap();
        assert_eq!(reopened.identity.user_id(), id);
        assert_eq!(reopened.verified().count(), 0);
    }

    #[test]
    fn never_overwrites_an_identity() {
        let home = tempfile::tempdir().unwrap();
        drop(KeyStore::create(home.path(), "pw", TEST_KDF, &state()).unwrap());
        assert!(matches!(
            KeyStore::create(home.path(), "pw", TEST_KDF, &state()),
            Err(KeyStoreError::Exists(_))
        ));
    }

    #[test]
    fn file_holds_no_private_or_public_key_bytes_in_clear() {
        let home = tempfile::tempdir().unwrap();
        let original = state();
        let public = original.identity.ed25519_key();
        let store = KeyStore::create(home.path(), "pw", TEST_KDF, &original).unwrap();
        let file = std::fs::read(store.path()).unwrap();
        // The sealed content's field names would show if anything leaked
        // in clear; so would the key in any encoding we use.
        for field in [&b"signing_key"[..], b"diffie_hellman_key", b"account"] {
            assert!(!contains(&file, field));
        }
        assert!(!contains(&file, &public));
        assert!(!contains(&file, base64(&public).as_bytes()));
        for secret in original.identity.secret_key_material_for_tests() {
            assert!(!contains(&file, &secret));
            assert!(!contains(&file, base64(&secret).as_bytes()));
        }
    }

    #[test]
    fn tampered_parameters_are_detected() {
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::create(home.path(), "pw", TEST_KDF, &state()).unwrap();
        let path = store.path().to_owned();
        drop(store);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut envelope: serde_json::Value = serde_json::from_str(&text).unwrap();
        envelope["kdf"]["t"] = 2.into();
        std::fs::write(&path, envelope.to_string()).unwrap();
        assert!(matches!(
            KeyStore::open(home.path(), "pw"),
            Err(KeyStoreError::WrongPassphrase)
        ));
    }

    #[test]
    fn missing_store_says_what_to_do() {
        let home = tempfile::tempdir().unwrap();
        let err = KeyStore::open(home.path(), "pw").unwrap_err();
        assert!(err.to_string().contains("wisp register"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let store = KeyStore::create(home.path(), "pw", TEST_KDF, &state()).unwrap();
        let mode = std::fs::metadata(store.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    fn base64(bytes: &[u8]) -> String {
        data_encoding::BASE64_NOPAD.encode(bytes)
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }
}
