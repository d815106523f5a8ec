//! Registration without a phone number, and challenge-response login.
//!
//! Registration: the server hands out a proof-of-work puzzle bound to the
//! connection; the client answers with its public keys, the solution and an
//! Ed25519 signature over the registration transcript (proving it holds the
//! key). The user id is derived here from the key, never taken from the
//! client.
//!
//! Login: the server hands out a fresh 32-byte nonce, single use; the client
//! signs the login transcript (label, server name, nonce). A signature over
//! any other nonce, by any other key, or for an unknown id fails the same way,
//! and takes the same steps: an unknown id's identity lookup is cached like a
//! known one's (see `cache`), and its signature is checked against a key no
//! one holds, so neither the reply nor its timing tells who is registered.

use std::net::IpAddr;

use ed25519_dalek::{Signature, VerifyingKey};
use wisp_proto::limits::NONCE_BYTES;
use wisp_proto::{ErrorCode, UserId, pow, transcript};

use crate::error::WireError;
use crate::state::AppState;
use crate::store::IdentityKeys;

/// The public half of an Ed25519 key made at start-up and thrown away:
/// what a login for an unknown id is checked against, so it costs what a
/// known one costs. No one holds its private half.
pub(crate) static UNHELD_KEY: std::sync::LazyLock<[u8; 32]> = std::sync::LazyLock::new(|| {
    use rand::Rng;
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    rand::rng().fill_bytes(seed.as_mut());
    ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes()
});

/// A random single-use value from the OS's CSPRNG.
pub(crate) fn fresh_nonce() -> [u8; NONCE_BYTES] {
    use rand::Rng;
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// A puzzle handed to one connection.
#[derive(Debug, Clone)]
pub(crate) struct Puzzle {
    pub(crate) nonce: [u8; NONCE_BYTES],
    pub(crate) difficulty: u32,
}

pub(crate) fn new_puzzle(state: &AppState) -> Puzzle {
    Puzzle {
        nonce: fresh_nonce(),
        difficulty: state.pow_difficulty,
    }
}

/// What a client sent to register.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    pub(crate) ed25519_key: &'a [u8],
    pub(crate) curve25519_key: &'a [u8],
    pub(crate) signature: &'a [u8],
    pub(crate) pow_solution: u64,
    pub(crate) identity_signature: &'a [u8],
}

fn key32(bytes: &[u8], what: &str) -> Result<[u8; 32], WireError> {
    bytes.try_into().map_err(|_| {
        WireError::new(
            ErrorCode::InvalidArgument,
            format!("{what} must be 32 bytes, got {}", bytes.len()),
        )
    })
}

pub(crate) fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    let key = VerifyingKey::from_bytes(bytes).ok()?;
    (!key.is_weak()).then_some(key)
}

pub(crate) fn verify(key: &VerifyingKey, message: &[u8], signature: &[u8]) -> bool {
    Signature::from_slice(signature)
        .map(|sig| key.verify_strict(message, &sig).is_ok())
        .unwrap_or(false)
}

/// Registers a new identity; `puzzle` is the one this connection was given
/// (already taken out of the connection, so it cannot be reused).
pub(crate) async fn register(
    state: &AppState,
    peer: IpAddr,
    puzzle: Option<Puzzle>,
    request: Registration<'_>,
) -> Result<UserId, WireError> {
    if let Err(retry_after) = state.limits.registration(peer).await {
        metrics::counter!("wisp_registrations_refused_total", "reason" => "rate_limited")
            .increment(1);
        return Err(WireError::rate_limited("registrations", retry_after));
    }
    let Some(puzzle) = puzzle else {
        return Err(WireError::new(
            ErrorCode::PowFailed,
            "ask for a registration puzzle on this connection first",
        ));
    };
    let ed25519 = key32(request.ed25519_key, "ed25519_key")?;
    let curve25519 = key32(request.curve25519_key, "curve25519_key")?;
    if !pow::check(
        &puzzle.nonce,
        &ed25519,
        puzzle.difficulty,
        request.pow_solution,
    ) {
        metrics::counter!("wisp_registrations_refused_total", "reason" => "pow").increment(1);
        return Err(WireError::new(
            ErrorCode::PowFailed,
            "the proof-of-work does not solve this connection's puzzle",
        ));
    }
    let signed = transcript::registration(&state.server_name, &puzzle.nonce, &ed25519, &curve25519);
    let vouched = transcript::identity_key(&curve25519);
    let valid = verifying_key(&ed25519).is_some_and(|key| {
        verify(&key, &signed, request.signature)
            && verify(&key, &vouched, request.identity_signature)
    });
    if !valid {
        metrics::counter!("wisp_registrations_refused_total", "reason" => "signature").increment(1);
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            "the registration or identity-key signature does not verify with the given identity key",
        ));
    }
    let user = UserId::from_ed25519(&ed25519);
    let keys = IdentityKeys {
        ed25519,
        curve25519,
        curve25519_signature: request.identity_signature.to_vec(),
    };
    state
        .stores
        .accounts
        .create_account(user, &keys, state.clock.now_ms())
        .await?;
    state.cache.forget_identity(user);
    metrics::counter!("wisp_registrations_total").increment(1);
    tracing::debug!(%user, "registered");
    Ok(user)
}

/// A login challenge handed to one connection.
#[derive(Debug, Clone)]
pub(crate) struct LoginChallenge {
    pub(crate) user: UserId,
    pub(crate) nonce: [u8; NONCE_BYTES],
}

/// Checks a login; `challenge` has already been taken out of the connection,
/// so every nonce is good for one attempt only.
pub(crate) async fn login(
    state: &AppState,
    challenge: Option<LoginChallenge>,
    signature: &[u8],
) -> Result<UserId, WireError> {
    let outcome = check_login(state, challenge, signature).await;
    let result = if outcome.is_ok() { "ok" } else { "refused" };
    metrics::counter!("wisp_logins_total", "result" => result).increment(1);
    outcome
}

async fn check_login(
    state: &AppState,
    challenge: Option<LoginChallenge>,
    signature: &[u8],
) -> Result<UserId, WireError> {
    let Some(challenge) = challenge else {
        return Err(WireError::auth_failed());
    };
    let keys = state.identity(challenge.user).await?;
    // An unknown id is checked against a key no one holds, by the same
    // steps as a known one (point decoding included), and then refused.
    let (known, ed25519) = match &keys {
        Some(keys) => (true, keys.ed25519),
        None => (false, *UNHELD_KEY),
    };
    let signed = transcript::login(&state.server_name, &challenge.nonce);
    let valid = verifying_key(&ed25519).is_some_and(|key| verify(&key, &signed, signature));
    if valid && known {
        Ok(challenge.user)
    } else {
        Err(WireError::auth_failed())
    }
}

/// How long after a deletion the mailbox is swept again: past the time any
/// node may still trust a friendship it cached before hearing of the
/// deletion, so a message such a node let in is destroyed too.
const SWEEP_AGAIN_AFTER: std::time::Duration =
    crate::cache::FRIENDSHIP_TTL.saturating_add(std::time::Duration::from_secs(10));

/// Deletes `me`'s account for good: everything the stores hold about it
/// (see [`AccountStore::delete_account`](crate::store::AccountStore::delete_account)
/// and [`MailboxStore::erase_user`](crate::store::MailboxStore::erase_user)),
/// each former friend told `FriendRemoved`, the account's connections
/// closed on every node. The keys can never register again.
pub(crate) async fn delete(state: &std::sync::Arc<AppState>, me: UserId) -> Result<(), WireError> {
    use wisp_proto::frames::FriendRemoved;
    use wisp_proto::server_frame::Body;

    let friends = state.stores.accounts.delete_account(me).await?;
    state.account_deleted(me).await;
    let removed = wisp_proto::ServerFrame {
        request_id: 0,
        body: Some(Body::FriendRemoved(FriendRemoved { by: me.to_vec() })),
    };
    for &friend in &friends {
        state.friendship_changed(me, friend).await;
        state.push(friend, &removed).await;
    }
    erase_mailbox(state, me).await?;
    metrics::counter!("wisp_accounts_deleted_total").increment(1);
    tracing::debug!(%me, friends = friends.len(), "account deleted");

    // A node that trusted a cached friendship may still store a message
    // for or from the account; it is swept once that cache has lapsed. (If
    // this node stops first, such a message lives out its own TTL, an hour
    // at most, unreadable: nobody can log in as the account.)
    let later = std::sync::Arc::clone(state);
    state.connections.spawn(async move {
        tokio::select! {
            () = later.shutdown.cancelled() => {}
            () = tokio::time::sleep(SWEEP_AGAIN_AFTER) => {
                if let Err(error) = erase_mailbox(&later, me).await {
                    tracing::warn!(%error, "sweeping a deleted account's mailbox again failed; what is left expires with its TTL");
                }
            }
        }
    });
    Ok(())
}

/// Erases what waits for or from `user`, then lets deleted ciphertext
/// leave the disk (or marks the store for the reaper to do it).
async fn erase_mailbox(state: &AppState, user: UserId) -> Result<(), crate::store::StoreError> {
    let erased = state.stores.mailbox.erase_user(user).await?;
    metrics::counter!("wisp_messages_dropped_total").increment(erased);
    let finished = state.stores.mailbox.maintain().await.unwrap_or(false);
    if !finished {
        state
            .mailbox_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(())
}
