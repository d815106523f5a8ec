//! The local key store: one file holding this device's [`LocalState`]
//! (identity, end-to-end sessions, handled ids, verified friends), sealed
//! at rest by the core's [`envelope`](wisp_core::envelope).
//!
//! This module owns the file, nothing of the cryptography: where it lives
//! (`identity.wisp` in the client's home), the lock that keeps a second
//! process out, and atomic writes (temporary file, fsync, rename), readable
//! by the owner only. The state pickles itself to bytes
//! ([`LocalState::pickle`]); the envelope seals those bytes under the
//! passphrase (Argon2id + XChaCha20-Poly1305).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use wisp_core::envelope::{EnvelopeError, EnvelopeKey, KdfParams};
use wisp_core::state::LocalState;

/// The file name inside the client's home directory.
pub const KEYSTORE_FILE: &str = "identity.wisp";

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

impl KeyStoreError {
    /// The envelope's error, for the file at `path`.
    fn of_envelope(error: EnvelopeError, path: &Path) -> Self {
        match error {
            EnvelopeError::WrongPassphrase => Self::WrongPassphrase,
            EnvelopeError::EmptyPassphrase => Self::EmptyPassphrase,
            other => Self::Unreadable {
                path: path.to_owned(),
                reason: other.to_string(),
            },
        }
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
    key: EnvelopeKey,
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
        let lock = lock_home(home)?;
        let key = EnvelopeKey::derive(passphrase, kdf)
            .map_err(|e| KeyStoreError::of_envelope(e, &path))?;
        let store = Self {
            path,
            key,
            _lock: lock,
        };
        store.save(state)?;
        Ok(store)
    }

    /// Opens the store in `home`, locking it, and decrypts it.
    pub fn open(home: &Path, passphrase: &str) -> Result<(Self, LocalState), KeyStoreError> {
        let lock = lock_home(home)?;
        let (path, key, state) = Self::read(home, passphrase)?;
        let store = Self {
            path,
            key,
            _lock: lock,
        };
        Ok((store, state))
    }

    /// Decrypts the store in `home` without locking it or keeping the key:
    /// for reading the identity while another process may hold the store.
    pub fn peek(home: &Path, passphrase: &str) -> Result<LocalState, KeyStoreError> {
        Self::read(home, passphrase).map(|(_, _, state)| state)
    }

    fn read(
        home: &Path,
        passphrase: &str,
    ) -> Result<(PathBuf, EnvelopeKey, LocalState), KeyStoreError> {
        let path = Self::path_in(home);
        let sealed = match fs::read(&path) {
            Ok(sealed) => sealed,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyStoreError::Missing(home.to_owned()));
            }
            Err(source) => return Err(KeyStoreError::Io { path, source }),
        };
        let (key, pickle) = EnvelopeKey::open(passphrase, &sealed)
            .map_err(|e| KeyStoreError::of_envelope(e, &path))?;
        let state = LocalState::from_pickle(&pickle).map_err(|e| KeyStoreError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok((path, key, state))
    }

    /// Seals `state` and replaces the file atomically.
    pub fn save(&self, state: &LocalState) -> Result<(), KeyStoreError> {
        self.write_sealed(&state.pickle())
    }

    /// Seals the pickled state and replaces the file atomically.
    fn write_sealed(&self, pickle: &[u8]) -> Result<(), KeyStoreError> {
        let bytes = self
            .key
            .seal(pickle)
            .map_err(|e| KeyStoreError::of_envelope(e, &self.path))?;
        write_atomically(&self.path, &bytes)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the key store from the device (after its account was
    /// deleted): the file, then the lock. What is gone is sealed under the
    /// passphrase anyway; nothing else of the identity is kept on disk.
    pub fn delete(self) -> Result<(), KeyStoreError> {
        let lock = self.path.with_file_name(format!("{KEYSTORE_FILE}.lock"));
        fs::remove_file(&self.path).map_err(|source| KeyStoreError::Io {
            path: self.path.clone(),
            source,
        })?;
        drop(self);
        match fs::remove_file(&lock) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                Err(KeyStoreError::Io { path: lock, source })
            }
            _ => Ok(()),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_core::{Identity, MessageId, UnixMillis};

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
        original.mark_seen(MessageId(42), UnixMillis::MAX);
        let store = KeyStore::create(home.path(), "pw", TEST_KDF, &original).unwrap();
        drop(store);
        let (_, reopened) = KeyStore::open(home.path(), "pw").unwrap();
        assert!(reopened.is_seen(MessageId(42)));
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
        let mut sealed: serde_json::Value = serde_json::from_slice(&original.pickle()).unwrap();
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
