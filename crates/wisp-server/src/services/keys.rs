//! One-time keys: clients upload signed batches and a fallback key; friends
//! claim one at a time to start an end-to-end session. The server checks
//! every signature against the owner's identity key, so it never hands out
//! a key its owner did not sign (clients check again: they trust ids, not
//! servers).

use wisp_proto::frames::{KeyBundle, KeysLow, SignedKey as WireKey, UploadKeys};
use wisp_proto::limits::{LOW_ONE_TIME_KEYS, MAX_KEYS_PER_UPLOAD};
use wisp_proto::server_frame::Body;
use wisp_proto::{ErrorCode, ServerFrame, UserId, transcript};

use crate::error::WireError;
use crate::ratelimit::UserLimit;
use crate::services::accounts::{verify, verifying_key};
use crate::state::AppState;
use crate::store::SignedKey;

fn checked(key: &WireKey, owner_key: &ed25519_dalek::VerifyingKey) -> Result<SignedKey, WireError> {
    let public_key: [u8; 32] = key.public_key.as_slice().try_into().map_err(|_| {
        WireError::new(
            ErrorCode::InvalidArgument,
            "a one-time key must be 32 bytes",
        )
    })?;
    if !verify(
        owner_key,
        &transcript::one_time_key(&public_key),
        &key.signature,
    ) {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            "a one-time key's signature does not verify with your identity key",
        ));
    }
    Ok(SignedKey {
        public_key,
        signature: key.signature.clone(),
    })
}

/// Counts a key upload or claim against `me`'s limit.
async fn limit(state: &AppState, me: UserId) -> Result<(), WireError> {
    state
        .limits
        .user(UserLimit::KeyOps, me)
        .await
        .map_err(|retry_after| WireError::rate_limited("key requests", retry_after))
}

/// Stores `me`'s new keys; returns how many one-time keys it now has.
pub(crate) async fn upload(
    state: &AppState,
    me: UserId,
    upload: UploadKeys,
) -> Result<u32, WireError> {
    limit(state, me).await?;
    if upload.one_time_keys.len() > MAX_KEYS_PER_UPLOAD {
        return Err(WireError::new(
            ErrorCode::InvalidArgument,
            format!("upload at most {MAX_KEYS_PER_UPLOAD} one-time keys at once"),
        ));
    }
    let identity = state
        .identity(me)
        .await?
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "internal error; try again later"))?;
    let owner_key = verifying_key(&identity.ed25519)
        .ok_or_else(|| WireError::new(ErrorCode::Internal, "internal error; try again later"))?;
    let one_time = upload
        .one_time_keys
        .iter()
        .map(|k| checked(k, &owner_key))
        .collect::<Result<Vec<_>, _>>()?;
    let fallback = upload
        .fallback_key
        .as_ref()
        .map(|k| checked(k, &owner_key))
        .transpose()?;
    let remaining = state
        .stores
        .prekeys
        .add_keys(me, &one_time, fallback.as_ref())
        .await?;
    Ok(u32::try_from(remaining).unwrap_or(u32::MAX))
}

/// Hands `me` one of friend `other`'s keys, with `other`'s identity.
pub(crate) async fn claim(
    state: &AppState,
    me: UserId,
    other: UserId,
) -> Result<KeyBundle, WireError> {
    limit(state, me).await?;
    if !state.are_friends(me, other).await? {
        return Err(WireError::new(
            ErrorCode::NotFriends,
            "that user is not your friend; only friends can exchange keys and messages",
        ));
    }
    let Some(identity) = state.identity(other).await? else {
        return Err(WireError::new(
            ErrorCode::NoSuchUser,
            "no user with that id is registered",
        ));
    };
    let Some(claimed) = state.stores.prekeys.claim(other).await? else {
        return Err(WireError::new(
            ErrorCode::NoKeys,
            "your friend has no session keys on the server yet; try again after they next connect",
        ));
    };
    metrics::counter!("wisp_one_time_keys_claimed_total", "fallback" => if claimed.fallback { "yes" } else { "no" })
        .increment(1);
    let remaining = state.stores.prekeys.one_time_key_count(other).await?;
    // Tell the owner once as the count falls below the mark, and once more
    // when it runs out, not on every claim: a claim that got the fallback
    // key took nothing, so the owner has been told already (by the claim
    // that took the last one-time key), until an upload starts again.
    if !claimed.fallback && (remaining + 1 == LOW_ONE_TIME_KEYS || remaining == 0) {
        state
            .push(
                other,
                &ServerFrame {
                    request_id: 0,
                    body: Some(Body::KeysLow(KeysLow {
                        one_time_keys_remaining: u32::try_from(remaining).unwrap_or(0),
                    })),
                },
            )
            .await;
    }
    Ok(KeyBundle {
        user_id: other.to_vec(),
        ed25519_key: identity.ed25519.to_vec(),
        curve25519_key: identity.curve25519.to_vec(),
        identity_signature: identity.curve25519_signature,
        one_time_key: Some(WireKey {
            public_key: claimed.key.public_key.to_vec(),
            signature: claimed.key.signature,
        }),
        fallback: claimed.fallback,
    })
}

/// How many one-time keys `me` has left.
pub(crate) async fn remaining(state: &AppState, me: UserId) -> Result<u32, WireError> {
    let n = state.stores.prekeys.one_time_key_count(me).await?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}
