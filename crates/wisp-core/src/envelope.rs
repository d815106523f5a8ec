//! The key-store envelope: bytes sealed under a passphrase, and nothing
//! about files. Where the sealed bytes are kept (a file, IndexedDB) is the
//! caller's business.
//!
//! The sealed form is a small JSON object. The key is derived from the
//! passphrase with Argon2id (parameters and salt in the header); the content
//! is sealed with XChaCha20-Poly1305 under a fresh random nonce on every
//! [`EnvelopeKey::seal`], with the header as associated data so parameters
//! cannot be swapped. Derived keys live in zeroizing buffers, and so does
//! every plaintext this module hands back.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

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

/// Parameters sealed bytes may ask for before they are authenticated;
/// anything larger is refused rather than allowed to exhaust memory or time.
const MAX_KDF: KdfParams = KdfParams {
    m_kib: 1024 * 1024,
    t: 16,
    p: 8,
};

/// Why bytes could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The passphrase does not open the envelope (or it was tampered with).
    #[error("wrong passphrase (or the key store was altered)")]
    WrongPassphrase,
    /// The passphrase is empty.
    #[error("the passphrase must not be empty")]
    EmptyPassphrase,
    /// The bytes are not an envelope this version understands, or ask for
    /// key derivation beyond what this client allows.
    #[error("{0}")]
    Unreadable(String),
    /// The system's random source failed: nothing is sealed without a
    /// fresh salt and nonce.
    #[error("no randomness available: {0}")]
    NoRandomness(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    kdf: KdfParams,
    #[serde(with = "b64")]
    salt: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Envelope {
    #[serde(flatten)]
    header: Header,
    #[serde(with = "b64")]
    nonce: Vec<u8>,
    #[serde(with = "b64")]
    ciphertext: Vec<u8>,
}

/// The key derived from a passphrase, with the header (parameters, salt) it
/// was derived under: seals any number of times without deriving again.
/// `Debug` shows the parameters only.
pub struct EnvelopeKey {
    header: Header,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for EnvelopeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeKey")
            .field("kdf", &self.header.kdf)
            .finish_non_exhaustive()
    }
}

/// Sealed bytes read but not opened: everything about them that can be
/// checked without the passphrase (format, version, nonce, and key
/// derivation parameters this client allows), so a front end can refuse a
/// hostile key store before it spends a second or a gigabyte on Argon2id.
/// `Debug` shows the parameters only.
#[derive(PartialEq, Eq)]
pub struct SealedEnvelope {
    envelope: Envelope,
    /// The envelope's nonce, its length checked.
    nonce: [u8; NONCE_BYTES],
}

impl std::fmt::Debug for SealedEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedEnvelope")
            .field("kdf", &self.envelope.header.kdf)
            .finish_non_exhaustive()
    }
}

impl SealedEnvelope {
    /// Reads and checks `sealed`.
    pub fn read(sealed: &[u8]) -> Result<Self, EnvelopeError> {
        let unreadable = EnvelopeError::Unreadable;
        let envelope: Envelope =
            serde_json::from_slice(sealed).map_err(|e| unreadable(e.to_string()))?;
        if envelope.header.format != FORMAT || envelope.header.version != VERSION {
            return Err(unreadable(format!(
                "format {} version {}",
                envelope.header.format, envelope.header.version
            )));
        }
        let nonce = envelope
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| unreadable("bad nonce length".into()))?;
        argon2_params(envelope.header.kdf)?;
        Ok(Self { envelope, nonce })
    }

    /// The key derivation it asks for.
    pub fn kdf(&self) -> KdfParams {
        self.envelope.header.kdf
    }

    /// The bytes [`EnvelopeKey::seal`] would write for it.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, numbers and byte fields cannot fail.
        serde_json::to_vec_pretty(&self.envelope).unwrap_or_default()
    }
}

impl EnvelopeKey {
    /// Derives a key from `passphrase` under a fresh random salt. Refuses an
    /// empty passphrase.
    pub fn derive(passphrase: &str, kdf: KdfParams) -> Result<Self, EnvelopeError> {
        if passphrase.is_empty() {
            return Err(EnvelopeError::EmptyPassphrase);
        }
        let mut salt = vec![0u8; SALT_BYTES];
        random(&mut salt)?;
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            kdf,
            salt,
        };
        let key = derive_key(passphrase, &header)?;
        Ok(Self { header, key })
    }

    /// Opens `sealed` with `passphrase`: the plaintext, and the key to seal
    /// the next version with.
    pub fn open(
        passphrase: &str,
        sealed: &[u8],
    ) -> Result<(Self, Zeroizing<Vec<u8>>), EnvelopeError> {
        let SealedEnvelope { envelope, nonce } = SealedEnvelope::read(sealed)?;
        let key = derive_key(passphrase, &envelope.header)?;
        let aad = associated_data(&envelope.header);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        let plaintext = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &envelope.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| EnvelopeError::WrongPassphrase)?;
        let key = Self {
            header: envelope.header,
            key,
        };
        Ok((key, Zeroizing::new(plaintext)))
    }

    /// Seals `plaintext` under a fresh random nonce; returns the envelope's
    /// bytes.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let mut nonce = [0u8; NONCE_BYTES];
        random(&mut nonce)?;
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
            .map_err(|_| EnvelopeError::Unreadable("encryption failed".into()))?;
        let envelope = Envelope {
            header: self.header.clone(),
            nonce: nonce.to_vec(),
            ciphertext,
        };
        serde_json::to_vec_pretty(&envelope).map_err(|e| EnvelopeError::Unreadable(e.to_string()))
    }
}

fn random(buf: &mut [u8]) -> Result<(), EnvelopeError> {
    getrandom::fill(buf).map_err(|e| EnvelopeError::NoRandomness(e.to_string()))
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

/// The Argon2id parameters for `kdf`, if this client allows them.
fn argon2_params(kdf: KdfParams) -> Result<argon2::Params, EnvelopeError> {
    if kdf.m_kib > MAX_KDF.m_kib || kdf.t > MAX_KDF.t || kdf.p > MAX_KDF.p {
        return Err(EnvelopeError::Unreadable(format!(
            "key derivation parameters {kdf:?} are beyond what this client allows"
        )));
    }
    argon2::Params::new(kdf.m_kib, kdf.t, kdf.p, Some(32))
        .map_err(|e| EnvelopeError::Unreadable(format!("bad key derivation parameters: {e}")))
}

fn derive_key(passphrase: &str, header: &Header) -> Result<Zeroizing<[u8; 32]>, EnvelopeError> {
    let params = argon2_params(header.kdf)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(passphrase.as_bytes(), &header.salt, &mut *key)
        .map_err(|e| EnvelopeError::Unreadable(format!("key derivation failed: {e}")))?;
    Ok(key)
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

    #[test]
    fn bytes_round_trip_and_the_wrong_passphrase_is_refused() {
        let key = EnvelopeKey::derive("correct horse", TEST_KDF).unwrap();
        let sealed = key.seal(b"secret bytes").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let (reopened, plaintext) = EnvelopeKey::open("correct horse", &sealed).unwrap();
        assert_eq!(plaintext.as_slice(), b"secret bytes");
        // The reopened key seals again under the same header, a new nonce.
        let again = reopened.seal(b"secret bytes").unwrap();
        assert_ne!(again, sealed);
        assert!(matches!(
            EnvelopeKey::open("wrong horse", &sealed),
            Err(EnvelopeError::WrongPassphrase)
        ));
    }

    #[test]
    fn an_empty_passphrase_is_refused() {
        assert!(matches!(
            EnvelopeKey::derive("", TEST_KDF),
            Err(EnvelopeError::EmptyPassphrase)
        ));
    }

    #[test]
    fn tampered_parameters_are_detected_and_huge_ones_refused() {
        let key = EnvelopeKey::derive("pw", TEST_KDF).unwrap();
        let sealed = key.seal(b"x").unwrap();
        let mut envelope: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        envelope["kdf"]["t"] = 2.into();
        assert!(matches!(
            EnvelopeKey::open("pw", envelope.to_string().as_bytes()),
            Err(EnvelopeError::WrongPassphrase)
        ));
        envelope["kdf"]["m_kib"] = (16 * 1024 * 1024).into();
        assert!(matches!(
            EnvelopeKey::open("pw", envelope.to_string().as_bytes()),
            Err(EnvelopeError::Unreadable(_))
        ));
    }

    #[test]
    fn debug_shows_no_key() {
        let key = EnvelopeKey::derive("pw", TEST_KDF).unwrap();
        let debug = format!("{key:?}");
        assert!(!debug.contains(&format!("{:?}", &key.key[..8])), "{debug}");
    }
}
