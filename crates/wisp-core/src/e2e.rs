//! End-to-end encryption, sans IO: Olm sessions (vodozemac) per friend,
//! one-time key batches, the checks that keep the server from swapping
//! keys, sealing and opening messages, read receipts, and the ids of
//! messages already handled. Bytes in, bytes out; the caller (the SDK's
//! `Messenger`) moves them over the network and persists the state.
//!
//! Trust: a friend is their user id, the hash of their Ed25519 key. Every
//! Curve25519 key used for them (identity key, one-time key) must carry a
//! signature by that Ed25519 key, checked here; anything else is refused as
//! [`E2eError::ForgedKey`].
//!
//! Sessions: each friend may have a few sessions, the preferred one first.
//! A pre-key message from a friend that opens a new session moves it to the
//! front (the friend started afresh, e.g. after losing state); normal
//! messages are tried against each. vodozemac commits ratchet state only
//! when a message decrypts, so a bad message leaves the sessions unharmed.

use std::time::Duration;

use vodozemac::olm::{OlmMessage, PreKeyMessage, Session, SessionConfig};
use vodozemac::{Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature};
use wisp_proto::frames::sealed::Kind;
use wisp_proto::frames::{
    KeyBundle, OlmEnvelope, Profile, ReadReceipt, Sealed, SessionRenewal, SignedKey, Text,
    UploadKeys,
};
use wisp_proto::limits::MAX_MESSAGE_TTL;
use wisp_proto::{ClientMsgId, MessageId, UnixMillis, UserId, codec, transcript};

use crate::message::{Content, Delivery, Opened, ReceivedMessage};
use crate::state::LocalState;

/// Sessions kept per friend; older ones are dropped.
const SESSIONS_PER_FRIEND: usize = 3;

/// One-time keys the client keeps on the server.
pub const ONE_TIME_KEY_TARGET: usize = 50;

/// How long a fallback key serves before a new one replaces it (a week).
pub const FALLBACK_ROTATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a key or message was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum E2eError {
    /// A key does not carry a valid signature by the friend's identity key,
    /// or that identity key does not hash to the friend's id: the server (or
    /// someone between it and us) handed out a key that is not theirs.
    /// Nothing was encrypted to it. This is the signal of an attempt to
    /// intercept: a front end says so loudly and suggests comparing the
    /// safety number with the friend, never retries silently.
    #[error("a key for {0} is not signed by their identity; refusing it")]
    ForgedKey(UserId),
    /// There is no session with this friend yet.
    #[error("no end-to-end session with {0} yet")]
    NoSession(UserId),
    /// The message is not a well-formed Olm message.
    #[error("malformed encrypted message: {0}")]
    Malformed(String),
    /// No session could decrypt the message.
    #[error("a message from {0} could not be decrypted")]
    Undecryptable(UserId),
    /// Encryption failed (a broken session).
    #[error("encryption failed: {0}")]
    Encrypt(String),
}

fn curve_key(bytes: &[u8], peer: UserId) -> Result<Curve25519PublicKey, E2eError> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| E2eError::ForgedKey(peer))?;
    Ok(Curve25519PublicKey::from_bytes(array))
}

/// Checks that `ed25519` is `peer`'s identity key and that it signed
/// `message`.
fn check_signed(
    peer: UserId,
    ed25519: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), E2eError> {
    let ed: [u8; 32] = ed25519.try_into().map_err(|_| E2eError::ForgedKey(peer))?;
    if !peer.is_of_key(&ed) {
        return Err(E2eError::ForgedKey(peer));
    }
    let key = Ed25519PublicKey::from_slice(&ed).map_err(|_| E2eError::ForgedKey(peer))?;
    let signature =
        Ed25519Signature::from_slice(signature).map_err(|_| E2eError::ForgedKey(peer))?;
    key.verify(message, &signature)
        .map_err(|_| E2eError::ForgedKey(peer))
}

/// Checks a key bundle the server handed out for `peer`: the identity key
/// hashes to the id, and it signed both the Curve25519 identity key and the
/// one-time key.
pub fn verify_bundle(peer: UserId, bundle: &KeyBundle) -> Result<(), E2eError> {
    if bundle.user_id != peer.to_vec() {
        return Err(E2eError::ForgedKey(peer));
    }
    check_signed(
        peer,
        &bundle.ed25519_key,
        &transcript::identity_key(&bundle.curve25519_key),
        &bundle.identity_signature,
    )?;
    let one_time = bundle
        .one_time_key
        .as_ref()
        .ok_or(E2eError::ForgedKey(peer))?;
    check_signed(
        peer,
        &bundle.ed25519_key,
        &transcript::one_time_key(&one_time.public_key),
        &one_time.signature,
    )
}

impl LocalState {
    /// Keys to upload so the server holds [`ONE_TIME_KEY_TARGET`] one-time
    /// keys (it reports `server_has`), plus a new fallback key when the last
    /// one is older than [`FALLBACK_ROTATION`] (rotating on every upload
    /// would strand pre-key messages built on older fallbacks: vodozemac
    /// keeps only the current and the previous one). The caller must persist
    /// the state *before* uploading (the private halves must survive a
    /// crash), then call [`LocalState::keys_published`].
    pub fn prepare_key_upload(&mut self, server_has: usize, now: UnixMillis) -> Option<UploadKeys> {
        let missing = ONE_TIME_KEY_TARGET.saturating_sub(server_has);
        if missing == 0 {
            return None;
        }
        let rotate = self
            .fallback_rotated
            .is_none_or(|at| now.since(at) >= FALLBACK_ROTATION);
        let account = self.identity.account_mut();
        // Never more unpublished keys than one upload carries.
        let unpublished = account.one_time_keys().len();
        account.generate_one_time_keys(missing.saturating_sub(unpublished));
        if rotate {
            account.generate_fallback_key();
            self.fallback_rotated = Some(now);
        }
        let sign = |key: &Curve25519PublicKey| SignedKey {
            public_key: key.to_bytes().to_vec(),
            signature: self
                .identity
                .sign_raw(&transcript::one_time_key(&key.to_bytes()))
                .to_vec(),
        };
        let account = self.identity.account();
        let mut one_time: Vec<_> = account.one_time_keys().into_iter().collect();
        one_time.sort_by_key(|(id, _)| *id);
        let one_time_keys = one_time
            .iter()
            .take(wisp_proto::limits::MAX_KEYS_PER_UPLOAD)
            .map(|(_, key)| sign(key))
            .collect();
        let fallback_key = account.fallback_key().values().next().map(sign);
        Some(UploadKeys {
            one_time_keys,
            fallback_key,
        })
    }

    /// Marks the keys of the last upload as on the server.
    pub fn keys_published(&mut self) {
        self.identity.account_mut().mark_keys_as_published();
    }

    /// Whether a session with `peer` exists.
    pub fn has_session(&self, peer: UserId) -> bool {
        self.sessions.get(&peer).is_some_and(|s| !s.is_empty())
    }

    /// Starts a session with `peer` from a bundle the server handed out,
    /// after checking every signature in it. The new session becomes the
    /// preferred one.
    pub fn start_session(&mut self, peer: UserId, bundle: &KeyBundle) -> Result<(), E2eError> {
        verify_bundle(peer, bundle)?;
        let identity_key = curve_key(&bundle.curve25519_key, peer)?;
        let one_time = bundle
            .one_time_key
            .as_ref()
            .ok_or(E2eError::ForgedKey(peer))?;
        let one_time_key = curve_key(&one_time.public_key, peer)?;
        let session = self
            .identity
            .account()
            .create_outbound_session(SessionConfig::version_1(), identity_key, one_time_key)
            .map_err(|e| E2eError::Encrypt(e.to_string()))?;
        self.prefer(peer, session);
        Ok(())
    }

    fn prefer(&mut self, peer: UserId, session: Session) {
        let sessions = self.sessions.entry(peer).or_default();
        sessions.insert(0, session);
        sessions.truncate(SESSIONS_PER_FRIEND);
    }

    /// Encrypts `sealed` for `peer` with the preferred session; returns the
    /// bytes to send as the message's ciphertext.
    pub fn encrypt(&mut self, peer: UserId, sealed: &Sealed) -> Result<Vec<u8>, E2eError> {
        let plaintext = zeroize::Zeroizing::new(codec::encode(sealed));
        self.encrypt_bytes(peer, &plaintext)
    }

    /// Encrypts `plaintext` as it is, for tests that play a hostile friend
    /// sending what no client seals (bytes that are not a valid payload).
    #[cfg(feature = "test-support")]
    pub fn encrypt_plaintext(
        &mut self,
        peer: UserId,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, E2eError> {
        self.encrypt_bytes(peer, plaintext)
    }

    fn encrypt_bytes(&mut self, peer: UserId, plaintext: &[u8]) -> Result<Vec<u8>, E2eError> {
        let session = self
            .sessions
            .get_mut(&peer)
            .and_then(|s| s.first_mut())
            .ok_or(E2eError::NoSession(peer))?;
        let message = session
            .encrypt(plaintext)
            .map_err(|e| E2eError::Encrypt(e.to_string()))?;
        let (message_type, body) = message.to_parts();
        let mut envelope = OlmEnvelope {
            message_type: u32::try_from(message_type).unwrap_or(u32::MAX),
            body,
            ..OlmEnvelope::default()
        };
        if matches!(message, OlmMessage::PreKey(_)) {
            envelope.sender_ed25519 = self.identity.ed25519_key().to_vec();
            envelope.sender_identity_signature = self.identity.sign_identity_key().to_vec();
        }
        Ok(codec::encode(&envelope))
    }

    /// Decrypts a message from `peer`. A pre-key message that no existing
    /// session accepts opens a new session, after the sender's identity is
    /// checked against `peer`.
    pub fn decrypt(&mut self, peer: UserId, ciphertext: &[u8]) -> Result<Sealed, E2eError> {
        let envelope: OlmEnvelope =
            codec::decode_message(ciphertext).map_err(|e| E2eError::Malformed(e.to_string()))?;
        let message_type = usize::try_from(envelope.message_type).unwrap_or(usize::MAX);
        let message = OlmMessage::from_parts(message_type, &envelope.body)
            .map_err(|e| E2eError::Malformed(e.to_string()))?;
        let plaintext = match &message {
            OlmMessage::Normal(_) => self.decrypt_existing(peer, &message)?,
            OlmMessage::PreKey(pre_key) => {
                let known = self
                    .sessions
                    .get(&peer)
                    .is_some_and(|s| s.iter().any(|s| s.session_id() == pre_key.session_id()));
                if known {
                    // A replay of a session we have never opens a second one.
                    self.decrypt_existing(peer, &message)?
                } else {
                    self.accept_new_session(peer, &envelope, pre_key)?
                }
            }
        };
        codec::decode_message(&plaintext).map_err(|e| E2eError::Malformed(e.to_string()))
    }

    fn decrypt_existing(
        &mut self,
        peer: UserId,
        message: &OlmMessage,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, E2eError> {
        let sessions = self
            .sessions
            .get_mut(&peer)
            .ok_or(E2eError::Undecryptable(peer))?;
        if let OlmMessage::PreKey(pre_key) = message {
            // Only the session this pre-key message belongs to may take it.
            let id = pre_key.session_id();
            let session = sessions
                .iter_mut()
                .find(|s| s.session_id() == id)
                .ok_or(E2eError::Undecryptable(peer))?;
            return session
                .decrypt(message)
                .map(zeroize::Zeroizing::new)
                .map_err(|_| E2eError::Undecryptable(peer));
        }
        for session in sessions.iter_mut() {
            if let Ok(plaintext) = session.decrypt(message) {
                return Ok(zeroize::Zeroizing::new(plaintext));
            }
        }
        Err(E2eError::Undecryptable(peer))
    }

    fn accept_new_session(
        &mut self,
        peer: UserId,
        envelope: &OlmEnvelope,
        pre_key: &PreKeyMessage,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, E2eError> {
        let their_identity = pre_key.identity_key();
        check_signed(
            peer,
            &envelope.sender_ed25519,
            &transcript::identity_key(&their_identity.to_bytes()),
            &envelope.sender_identity_signature,
        )?;
        let created = self
            .identity
            .account_mut()
            .create_inbound_session(SessionConfig::version_1(), their_identity, pre_key)
            .map_err(|_| E2eError::Undecryptable(peer))?;
        self.prefer(peer, created.session);
        Ok(zeroize::Zeroizing::new(created.plaintext))
    }

    /// Remembers that server message `id` was handled, until `expires_at`.
    pub fn mark_seen(&mut self, id: MessageId, expires_at: UnixMillis) {
        self.seen.insert(id, expires_at);
    }

    /// Whether server message `id` was handled already.
    pub fn is_seen(&self, id: MessageId) -> bool {
        self.seen.contains_key(&id)
    }

    /// Remembers that `peer`'s message `client_msg_id` was shown, until
    /// `expires_at`; returns false if it had been shown already (a replay).
    pub fn first_sight(
        &mut self,
        peer: UserId,
        client_msg_id: ClientMsgId,
        expires_at: UnixMillis,
    ) -> bool {
        self.seen_messages
            .insert((peer, client_msg_id), expires_at)
            .is_none()
    }

    /// Forgets handled ids whose messages have expired (the server can no
    /// longer deliver them).
    pub fn prune_seen(&mut self, now: UnixMillis) {
        self.seen.retain(|_, expires| *expires > now);
        self.seen_messages.retain(|_, expires| *expires > now);
    }

    /// Seals `content` for `to`, sent `now` to live `ttl`: the bytes to send
    /// as the message's ciphertext. Needs a session with `to`
    /// ([`LocalState::start_session`]); the ratchet moved, so the caller
    /// persists the state before the bytes leave the device.
    pub fn seal(
        &mut self,
        to: UserId,
        client_msg_id: ClientMsgId,
        content: Content,
        now: UnixMillis,
        ttl: Duration,
    ) -> Result<Vec<u8>, E2eError> {
        let kind = match content {
            Content::Text { body, view_timer } => Kind::Text(Text {
                body: body.to_string(),
                view_seconds: view_timer
                    .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            }),
            Content::ReadReceipt(ids) => Kind::ReadReceipt(ReadReceipt {
                client_msg_ids: ids.iter().map(|id| id.0.to_vec()).collect(),
            }),
            Content::Renewal => Kind::Renewal(SessionRenewal {}),
            Content::Profile { display_name } => Kind::Profile(Profile {
                display_name: display_name.unwrap_or_default(),
            }),
        };
        let sealed = Sealed {
            client_msg_id: client_msg_id.0.to_vec(),
            sent_unix_ms: now.0,
            expires_unix_ms: now.plus(ttl).0,
            kind: Some(kind),
        };
        self.encrypt(to, &sealed)
    }

    /// Opens a delivery at time `now`: skips what was handled before or has
    /// expired, decrypts the rest, enforces the 60-minute ceiling (never
    /// later than the server's expiry or an hour after sending), and drops
    /// replays. The delivery counts as handled afterwards, whatever it was.
    pub fn open(&mut self, delivery: &Delivery, now: UnixMillis) -> Opened {
        let id = delivery.message_id;
        if self.is_seen(id) || delivery.expires_unix_ms <= now {
            return Opened::Nothing;
        }
        let outcome = self.decrypt(delivery.from, &delivery.ciphertext);
        self.mark_seen(id, delivery.expires_unix_ms);
        let sealed = match outcome {
            Ok(sealed) => sealed,
            Err(error) => return Opened::Undecryptable(error),
        };
        let expires_unix_ms = UnixMillis(sealed.expires_unix_ms)
            .min(delivery.expires_unix_ms)
            .min(delivery.sent_unix_ms.plus(MAX_MESSAGE_TTL));
        if expires_unix_ms <= now {
            return Opened::Nothing;
        }
        let Some(client_msg_id) = ClientMsgId::from_bytes(&sealed.client_msg_id) else {
            return Opened::Nothing;
        };
        if !self.first_sight(delivery.from, client_msg_id, expires_unix_ms) {
            // The same message under a new server id: a replay.
            return Opened::Nothing;
        }
        match sealed.kind {
            Some(Kind::Text(text)) => Opened::Text(ReceivedMessage {
                id,
                client_msg_id,
                from: delivery.from,
                text: zeroize::Zeroizing::new(text.body),
                sent_unix_ms: delivery.sent_unix_ms,
                expires_unix_ms,
                view_timer: (text.view_seconds > 0)
                    .then(|| Duration::from_secs(u64::from(text.view_seconds))),
            }),
            Some(Kind::ReadReceipt(receipt)) => {
                let client_msg_ids: Vec<ClientMsgId> = receipt
                    .client_msg_ids
                    .iter()
                    .filter_map(|raw| ClientMsgId::from_bytes(raw))
                    .collect();
                self.profile_receipt(delivery.from, &client_msg_ids);
                Opened::Read {
                    by: delivery.from,
                    client_msg_ids,
                }
            }
            Some(Kind::Profile(profile)) => {
                let display_name = crate::names::clean_received_name(&profile.display_name);
                self.received_display_name(delivery.from, display_name.clone());
                Opened::Profile {
                    from: delivery.from,
                    client_msg_id,
                    display_name,
                    expires_unix_ms,
                }
            }
            Some(Kind::Renewal(_)) | None => Opened::Nothing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use wisp_proto::frames::{Text, sealed::Kind};

    fn state() -> LocalState {
        LocalState::new(Identity::generate())
    }

    fn text(body: &str) -> Sealed {
        Sealed {
            client_msg_id: vec![1; 16],
            sent_unix_ms: 1,
            expires_unix_ms: 2,
            kind: Some(Kind::Text(Text {
                body: body.into(),
                view_seconds: 0,
            })),
        }
    }

    fn body(sealed: &Sealed) -> &str {
        match &sealed.kind {
            Some(Kind::Text(t)) => &t.body,
            other => panic!("{other:?}"),
        }
    }

    /// What a server would hand out for `owner`: its identity and one key.
    fn bundle(owner: &mut LocalState) -> KeyBundle {
        let upload = owner.prepare_key_upload(0, UnixMillis(0)).unwrap();
        owner.keys_published();
        KeyBundle {
            user_id: owner.identity.user_id().to_vec(),
            ed25519_key: owner.identity.ed25519_key().to_vec(),
            curve25519_key: owner.identity.curve25519_key().to_vec(),
            identity_signature: owner.identity.sign_identity_key().to_vec(),
            one_time_key: upload.one_time_keys.into_iter().next(),
            fallback: false,
        }
    }

    #[test]
    fn a_conversation_round_trips_both_ways() {
        let (mut alice, mut bob) = (state(), state());
        let (a, b) = (alice.identity.user_id(), bob.identity.user_id());
        alice.start_session(b, &bundle(&mut bob)).unwrap();
        let first = alice.encrypt(b, &text("hello bob")).unwrap();
        assert_eq!(body(&bob.decrypt(a, &first).unwrap()), "hello bob");
        let reply = bob.encrypt(a, &text("hi alice")).unwrap();
        assert_eq!(body(&alice.decrypt(b, &reply).unwrap()), "hi alice");
        for n in 0..5 {
            let m = alice.encrypt(b, &text(&format!("m{n}"))).unwrap();
            assert_eq!(body(&bob.decrypt(a, &m).unwrap()), format!("m{n}"));
        }
    }

    #[test]
    fn a_key_the_friend_did_not_sign_is_refused() {
        let (mut alice, mut bob) = (state(), state());
        let b = bob.identity.user_id();
        let good = bundle(&mut bob);

        // The server swaps in its own one-time key.
        let mut swapped = good.clone();
        swapped.one_time_key.as_mut().unwrap().public_key = vec![9; 32];
        assert!(matches!(
            alice.start_session(b, &swapped),
            Err(E2eError::ForgedKey(_))
        ));

        // ...or its own identity key, signed by another Ed25519 key.
        let mallory = Identity::generate();
        let mut impostor = good.clone();
        impostor.ed25519_key = mallory.ed25519_key().to_vec();
        impostor.curve25519_key = mallory.curve25519_key().to_vec();
        impostor.identity_signature = mallory.sign_identity_key().to_vec();
        assert!(matches!(
            alice.start_session(b, &impostor),
            Err(E2eError::ForgedKey(_))
        ));

        // ...or a bundle for someone else.
        assert!(matches!(
            alice.start_session(alice.identity.user_id(), &good),
            Err(E2eError::ForgedKey(_))
        ));
        assert!(!alice.has_session(b));
        alice.start_session(b, &good).unwrap();
    }

    /// The server keeps the friend's Ed25519 key (so the id still matches)
    /// but swaps the Curve25519 identity key or the one-time key for its
    /// own, signing them as well as it can.
    #[test]
    fn a_bundle_the_server_tampered_with_is_refused() {
        let (mut alice, mut bob) = (state(), state());
        let b = bob.identity.user_id();
        let good = bundle(&mut bob);
        let mut mallory = state();
        let mallory_keys = bundle(&mut mallory);
        let refused = |alice: &mut LocalState, tampered: &KeyBundle| {
            matches!(
                alice.start_session(b, tampered),
                Err(E2eError::ForgedKey(peer)) if peer == b
            )
        };

        // A swapped Curve25519 identity key, keeping Bob's signature...
        let mut swapped_identity = good.clone();
        swapped_identity.curve25519_key = mallory_keys.curve25519_key.clone();
        assert!(refused(&mut alice, &swapped_identity));
        // ...or signed by the server's own Ed25519 key instead.
        swapped_identity.identity_signature = mallory_keys.identity_signature.clone();
        assert!(refused(&mut alice, &swapped_identity));

        // A one-time key of the server's, validly signed by its own key.
        let mut forged_one_time = good.clone();
        forged_one_time.one_time_key = mallory_keys.one_time_key.clone();
        assert!(refused(&mut alice, &forged_one_time));
        // Bob's one-time key with a signature that is not over it.
        let mut bad_signature = good.clone();
        bad_signature.one_time_key.as_mut().unwrap().signature[0] ^= 1;
        assert!(refused(&mut alice, &bad_signature));
        // Bob's signature on his identity key passed off as a one-time key
        // signature: the transcripts differ, so it does not verify.
        let mut cross = good.clone();
        cross.one_time_key = Some(SignedKey {
            public_key: good.curve25519_key.clone(),
            signature: good.identity_signature.clone(),
        });
        assert!(refused(&mut alice, &cross));
        // No one-time key at all.
        let mut missing = good.clone();
        missing.one_time_key = None;
        assert!(refused(&mut alice, &missing));
        // Keys of the wrong length.
        let mut short = good.clone();
        short.curve25519_key.pop();
        assert!(refused(&mut alice, &short));

        assert!(!alice.has_session(b));
        alice.start_session(b, &good).unwrap();
        assert!(alice.has_session(b));
    }

    #[test]
    fn forward_secrecy_an_early_ciphertext_cannot_be_read_later() {
        let (mut alice, mut bob) = (state(), state());
        let (a, b) = (alice.identity.user_id(), bob.identity.user_id());
        alice.start_session(b, &bundle(&mut bob)).unwrap();
        let opener = alice.encrypt(b, &text("opener")).unwrap();
        bob.decrypt(a, &opener).unwrap();
        let early = alice.encrypt(b, &text("early secret")).unwrap();
        // The recipient reads it once...
        assert_eq!(body(&bob.decrypt(a, &early).unwrap()), "early secret");
        // ...then the ratchet moves on, both ways.
        for n in 0..3 {
            let r = bob.encrypt(a, &text(&format!("r{n}"))).unwrap();
            alice.decrypt(b, &r).unwrap();
            let m = alice.encrypt(b, &text(&format!("m{n}"))).unwrap();
            bob.decrypt(a, &m).unwrap();
        }
        // Bob's current state, even a full copy of it, cannot open the
        // captured ciphertext again: its message key is gone.
        assert!(matches!(
            bob.decrypt(a, &early),
            Err(E2eError::Undecryptable(_))
        ));
    }

    #[test]
    fn a_new_session_from_the_friend_replaces_a_lost_one() {
        let (mut alice, mut bob) = (state(), state());
        let (a, b) = (alice.identity.user_id(), bob.identity.user_id());
        alice.start_session(b, &bundle(&mut bob)).unwrap();
        bob.decrypt(a, &alice.encrypt(b, &text("one")).unwrap())
            .unwrap();
        // Bob loses his session state (say, restored from an old backup).
        bob.sessions.clear();
        let lost = alice.encrypt(b, &text("two")).unwrap();
        assert!(matches!(
            bob.decrypt(a, &lost),
            Err(E2eError::Undecryptable(_))
        ));
        // Bob starts a fresh session with Alice; she accepts it and prefers it.
        bob.start_session(a, &bundle(&mut alice)).unwrap();
        let renewal = bob.encrypt(a, &text("renew")).unwrap();
        assert_eq!(body(&alice.decrypt(b, &renewal).unwrap()), "renew");
        let three = alice.encrypt(b, &text("three")).unwrap();
        assert_eq!(body(&bob.decrypt(a, &three).unwrap()), "three");
    }

    #[test]
    fn a_pre_key_message_from_an_impostor_is_refused() {
        let (mut alice, mut bob, mut mallory) = (state(), state(), state());
        let a = alice.identity.user_id();
        // Mallory opens a session to Bob but claims to be Alice.
        mallory
            .start_session(bob.identity.user_id(), &bundle(&mut bob))
            .unwrap();
        let forged = mallory
            .encrypt(bob.identity.user_id(), &text("it is me, alice"))
            .unwrap();
        assert!(matches!(
            bob.decrypt(a, &forged),
            Err(E2eError::ForgedKey(_))
        ));
        let _ = &mut alice;
    }

    #[test]
    fn a_replayed_pre_key_message_opens_no_second_session() {
        let (mut alice, mut bob) = (state(), state());
        let (a, b) = (alice.identity.user_id(), bob.identity.user_id());
        alice.start_session(b, &bundle(&mut bob)).unwrap();
        let opener = alice.encrypt(b, &text("once")).unwrap();
        bob.decrypt(a, &opener).unwrap();
        assert!(bob.decrypt(a, &opener).is_err());
        assert_eq!(bob.sessions[&a].len(), 1);
    }

    #[test]
    fn the_fallback_key_rotates_weekly_not_per_upload() {
        let mut bob = state();
        let first = bob
            .prepare_key_upload(0, UnixMillis(0))
            .unwrap()
            .fallback_key;
        bob.keys_published();
        assert!(first.is_some());
        assert!(
            bob.prepare_key_upload(0, UnixMillis(1000))
                .unwrap()
                .fallback_key
                .is_none()
        );
        bob.keys_published();
        let later = bob
            .prepare_key_upload(0, UnixMillis(0).plus(FALLBACK_ROTATION))
            .unwrap()
            .fallback_key;
        assert!(later.is_some() && later != first);
    }

    fn delivery(from: UserId, id: u64, ciphertext: Vec<u8>, sent: UnixMillis) -> Delivery {
        Delivery {
            message_id: MessageId(id),
            from,
            ciphertext,
            sent_unix_ms: sent,
            expires_unix_ms: sent.plus(MAX_MESSAGE_TTL),
        }
    }

    #[test]
    fn a_display_name_travels_sealed_is_cleaned_and_confirmed_by_receipt() {
        let (mut alice, mut bob) = (state(), state());
        let (a, b) = (alice.identity.user_id(), bob.identity.user_id());
        alice.start_session(b, &bundle(&mut bob)).unwrap();
        let now = UnixMillis(1_000_000);
        alice.set_display_name(Some("Alice")).unwrap();
        assert_eq!(alice.profiles_due([b], now), vec![b]);
        let id = ClientMsgId([8; 16]);
        let sealed = alice
            .seal(b, id, alice.profile_content(), now, MAX_MESSAGE_TTL)
            .unwrap();
        assert!(
            !sealed.windows(5).any(|w| w == b"Alice"),
            "the name is inside the encryption"
        );
        alice.profile_sent(b, id, now.plus(MAX_MESSAGE_TTL));
        assert!(alice.profiles_due([b], now).is_empty());
        match bob.open(&delivery(a, 1, sealed, now), now) {
            Opened::Profile {
                from,
                client_msg_id,
                display_name,
                ..
            } => {
                assert_eq!((from, client_msg_id), (a, id));
                assert_eq!(display_name.as_deref(), Some("Alice"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(bob.friend_display_name(&a), Some("Alice"));
        let receipt = bob
            .seal(
                a,
                ClientMsgId([9; 16]),
                Content::ReadReceipt(vec![id]),
                now,
                MAX_MESSAGE_TTL,
            )
            .unwrap();
        assert!(matches!(
            alice.open(&delivery(b, 2, receipt, now), now),
            Opened::Read { .. }
        ));
        assert!(
            alice
                .profiles_due([b], now.plus(MAX_MESSAGE_TTL))
                .is_empty(),
            "confirmed: not sent again"
        );

        // A hostile name is cleaned before it is kept; an empty one clears.
        let hostile = Content::Profile {
            display_name: Some("\x1b]0;owned\x07Ali\u{202e}ce\nbob: hi".into()),
        };
        let sealed = alice
            .seal(b, ClientMsgId([10; 16]), hostile, now, MAX_MESSAGE_TTL)
            .unwrap();
        bob.open(&delivery(a, 3, sealed, now), now);
        assert_eq!(bob.friend_display_name(&a), Some("]0;owned Ali ce bob: hi"));
        let cleared = Content::Profile { display_name: None };
        let sealed = alice
            .seal(b, ClientMsgId([11; 16]), cleared, now, MAX_MESSAGE_TTL)
            .unwrap();
        bob.open(&delivery(a, 4, sealed, now), now);
        assert_eq!(bob.friend_display_name(&a), None);
    }

    #[test]
    fn sealed_text_and_receipts_open_once_within_their_ceiling() {
        let (mut alice, mut bob) = (state(), state());
        let (a, b) = (alice.identity.user_id(), bob.identity.user_id());
        alice.start_session(b, &bundle(&mut bob)).unwrap();
        let now = UnixMillis(1_000_000);
        let id = ClientMsgId([5; 16]);
        let text = Content::Text {
            body: zeroize::Zeroizing::new("hi bob".into()),
            view_timer: Some(Duration::from_secs(5)),
        };
        let minute = Duration::from_secs(60);
        let sealed = alice.seal(b, id, text, now, minute).unwrap();
        let first = delivery(a, 1, sealed, now);
        let Opened::Text(message) = bob.open(&first, now) else {
            panic!("a text");
        };
        assert_eq!(message.text.as_str(), "hi bob");
        assert_eq!(message.client_msg_id, id);
        assert_eq!(
            message.expires_unix_ms,
            now.plus(minute),
            "the sender's ttl"
        );
        assert_eq!(message.view_timer, Some(Duration::from_secs(5)));
        // Handled: the same delivery again shows nothing.
        assert!(matches!(bob.open(&first, now), Opened::Nothing));

        let receipt = Content::ReadReceipt(vec![id]);
        let sealed = bob
            .seal(a, ClientMsgId([6; 16]), receipt, now, minute)
            .unwrap();
        match alice.open(&delivery(b, 2, sealed, now), now) {
            Opened::Read { by, client_msg_ids } => {
                assert_eq!((by, client_msg_ids), (b, vec![id]));
            }
            other => panic!("{other:?}"),
        }

        // Past its ceiling, a delivery is not shown at all.
        let late = alice
            .seal(b, ClientMsgId([7; 16]), Content::Renewal, now, minute)
            .unwrap();
        let after = now.plus(MAX_MESSAGE_TTL);
        assert!(matches!(
            bob.open(&delivery(a, 3, late, now), after),
            Opened::Nothing
        ));
        assert!(matches!(
            bob.open(&delivery(a, 4, b"junk".to_vec(), now), now),
            Opened::Undecryptable(_)
        ));
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut bob = state();
        let a = Identity::generate().user_id();
        assert!(matches!(
            bob.decrypt(a, b"\xff\xff"),
            Err(E2eError::Malformed(_))
        ));
        let envelope = codec::encode(&OlmEnvelope {
            message_type: 1,
            body: vec![1, 2, 3],
            ..OlmEnvelope::default()
        });
        assert!(bob.decrypt(a, &envelope).is_err());
    }
}
