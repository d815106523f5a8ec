//! A device's identity: a vodozemac [`Account`] holding an Ed25519 signing
//! key and a Curve25519 key. The private halves never leave this type except
//! in the state's pickle ([`LocalState::pickle`](crate::LocalState::pickle)),
//! which the caller seals; `Debug` prints the user id only. It signs the
//! transcripts of [`wisp_proto::transcript`]: registration, login, and the
//! identity key it vouches for.

use vodozemac::olm::{Account, AccountPickle};
use wisp_proto::{InvitationToken, UnixMillis, UserId, transcript};

/// This device's identity keys and the id they certify.
pub struct Identity {
    account: Account,
    user_id: UserId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// A new identity with fresh random keys.
    pub fn generate() -> Self {
        Self::from_account(Account::new())
    }

    fn from_account(account: Account) -> Self {
        let user_id = UserId::from_ed25519(account.ed25519_key().as_bytes());
        Self { account, user_id }
    }

    pub(crate) fn from_pickle(pickle: AccountPickle) -> Self {
        Self::from_account(Account::from_pickle(pickle))
    }

    pub(crate) fn pickle(&self) -> AccountPickle {
        self.account.pickle()
    }

    pub(crate) fn account(&self) -> &Account {
        &self.account
    }

    pub(crate) fn account_mut(&mut self) -> &mut Account {
        &mut self.account
    }

    pub(crate) fn sign_raw(&self, message: &[u8]) -> [u8; 64] {
        self.account.sign(message).to_bytes()
    }

    /// The self-certifying id: a hash of the Ed25519 public key.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }

    /// The Ed25519 public key.
    pub fn ed25519_key(&self) -> [u8; 32] {
        *self.account.ed25519_key().as_bytes()
    }

    /// The Curve25519 public key.
    pub fn curve25519_key(&self) -> [u8; 32] {
        self.account.curve25519_key().to_bytes()
    }

    /// Signs the registration transcript for `server_name` and the puzzle.
    pub fn sign_registration(&self, server_name: &str, puzzle_nonce: &[u8]) -> [u8; 64] {
        let message = transcript::registration(
            server_name,
            puzzle_nonce,
            &self.ed25519_key(),
            &self.curve25519_key(),
        );
        self.account.sign(message).to_bytes()
    }

    /// Signs the identity-key transcript: vouches for the Curve25519 key to
    /// anyone who holds the user id.
    pub fn sign_identity_key(&self) -> [u8; 64] {
        self.account
            .sign(transcript::identity_key(&self.curve25519_key()))
            .to_bytes()
    }

    /// Makes an invitation token: whoever holds it may ask this user to be
    /// friends until `expires`, past strangers who filled the pending
    /// requests (see [`wisp_proto::invitation`]). Needs the OS's randomness
    /// for its nonce.
    pub fn sign_invitation(
        &self,
        expires: UnixMillis,
    ) -> Result<InvitationToken, getrandom::Error> {
        let mut nonce = [0u8; InvitationToken::NONCE_LEN];
        getrandom::fill(&mut nonce)?;
        let mut token = InvitationToken {
            nonce,
            expires,
            signature: [0; InvitationToken::SIGNATURE_LEN],
        };
        token.signature = self.sign_raw(&token.transcript(self.user_id));
        Ok(token)
    }

    /// Signs the login transcript for `server_name` and the server's nonce.
    pub fn sign_login(&self, server_name: &str, nonce: &[u8]) -> [u8; 64] {
        self.account
            .sign(transcript::login(server_name, nonce))
            .to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_certifies_the_signing_key_and_debug_hides_keys() {
        let identity = Identity::generate();
        assert!(identity.user_id().is_of_key(&identity.ed25519_key()));
        let debug = format!("{identity:?}");
        assert!(debug.contains(&identity.user_id().to_string()));
        for secret in identity.secret_key_material_for_tests() {
            let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
            assert!(!debug.contains(&hex));
            assert!(!debug.contains(&format!("{:?}", &secret[..8])));
        }
    }

    #[test]
    fn login_signatures_verify_with_the_public_key() {
        let identity = Identity::generate();
        let signature = identity.sign_login("server", &[7; 32]);
        let key = vodozemac::Ed25519PublicKey::from_slice(&identity.ed25519_key()).unwrap();
        let signature = vodozemac::Ed25519Signature::from_slice(&signature).unwrap();
        key.verify(&transcript::login("server", &[7; 32]), &signature)
            .unwrap();
        assert!(
            key.verify(&transcript::login("other", &[7; 32]), &signature)
                .is_err()
        );
    }
}

#[cfg(any(test, feature = "test-support"))]
impl Identity {
    /// The same keys in a second value, for tests that log one identity in
    /// on several connections at once.
    #[doc(hidden)]
    pub fn clone_for_tests(&self) -> Self {
        Self::from_pickle(self.pickle())
    }

    /// Every 32- or 64-byte value in the account's serialized form that is
    /// not one of its public keys: the private key material. For tests that
    /// prove no secret reaches a server; compiled only with `test-support`.
    #[doc(hidden)]
    pub fn secret_key_material_for_tests(&self) -> Vec<Vec<u8>> {
        fn walk(value: &serde_json::Value, out: &mut Vec<Vec<u8>>) {
            match value {
                serde_json::Value::Array(items) => {
                    let bytes: Option<Vec<u8>> = items
                        .iter()
                        .map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
                        .collect();
                    match bytes {
                        Some(bytes) if bytes.len() == 32 || bytes.len() == 64 => out.push(bytes),
                        _ => items.iter().for_each(|v| walk(v, out)),
                    }
                }
                serde_json::Value::Object(fields) => fields.values().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let json = serde_json::to_value(self.pickle()).unwrap_or_default();
        let mut found = Vec::new();
        walk(&json, &mut found);
        let public = [self.ed25519_key(), self.curve25519_key()];
        found.retain(|bytes| !public.iter().any(|p| bytes.as_slice() == p));
        found
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;

    #[test]
    fn secret_material_is_found_and_excludes_public_keys() {
        let identity = Identity::generate();
        let secrets = identity.secret_key_material_for_tests();
        // At least the Ed25519 and Curve25519 private keys.
        assert!(secrets.len() >= 2, "found {}", secrets.len());
        assert!(
            !secrets
                .iter()
                .any(|s| s.as_slice() == identity.ed25519_key())
        );
    }
}
