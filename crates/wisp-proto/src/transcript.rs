//! The exact bytes a client signs with its Ed25519 identity key.
//!
//! Each transcript starts with its own label, so a signature made for one
//! purpose is never valid for another, and names the server deployment, so
//! a login signed for one deployment is useless at any other. Variable-length
//! parts are length-prefixed so no two inputs give the same bytes.

const REGISTER_LABEL: &[u8] = b"wisp-register-v1";
const LOGIN_LABEL: &[u8] = b"wisp-login-v1";
const IDENTITY_KEY_LABEL: &[u8] = b"wisp-identity-key-v1";
const ONE_TIME_KEY_LABEL: &[u8] = b"wisp-one-time-key-v1";
const INVITATION_LABEL: &[u8] = b"wisp-invitation-v1";

/// What a client signs to register: it proves the client holds the Ed25519
/// key and vouches for the Curve25519 key registered beside it.
pub fn registration(
    server_name: &str,
    puzzle_nonce: &[u8],
    ed25519_key: &[u8],
    curve25519_key: &[u8],
) -> Vec<u8> {
    build(
        REGISTER_LABEL,
        &[
            server_name.as_bytes(),
            puzzle_nonce,
            ed25519_key,
            curve25519_key,
        ],
    )
}

/// What a client signs to log in: the server's fresh, single-use nonce.
pub fn login(server_name: &str, nonce: &[u8]) -> Vec<u8> {
    build(LOGIN_LABEL, &[server_name.as_bytes(), nonce])
}

/// What a client signs to vouch for its Curve25519 identity key, so anyone
/// holding its user id can check the key the server hands out.
pub fn identity_key(curve25519_key: &[u8]) -> Vec<u8> {
    build(IDENTITY_KEY_LABEL, &[curve25519_key])
}

/// What a client signs for each one-time (and fallback) key it uploads.
pub fn one_time_key(public_key: &[u8]) -> Vec<u8> {
    build(ONE_TIME_KEY_LABEL, &[public_key])
}

/// What a user signs into an invitation link: "whoever holds this may ask
/// `inviter` to be friends until `expires_unix_ms`". The nonce makes every
/// invitation distinct.
pub fn invitation(inviter: &[u8], nonce: &[u8], expires_unix_ms: i64) -> Vec<u8> {
    build(
        INVITATION_LABEL,
        &[inviter, nonce, &expires_unix_ms.to_be_bytes()],
    )
}

fn build(label: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(label.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    out.extend_from_slice(label);
    for part in parts {
        // Parts are protocol-bounded (names, 32-byte keys and nonces), far
        // below 4 GiB; saturate rather than wrap if ever misused.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_and_servers_never_collide() {
        let nonce = [1u8; 32];
        assert_ne!(login("a", &nonce), login("b", &nonce));
        assert_ne!(login("ab", &nonce[..31]), login("a", &[b'b'; 32]));
        assert_ne!(login("s", &nonce), registration("s", &nonce, &[], &[]));
        assert_ne!(invitation(&[1; 20], &nonce[..16], 5), login("", &nonce));
        assert_ne!(
            invitation(&[1; 20], &nonce[..16], 5),
            invitation(&[1; 20], &nonce[..16], 6)
        );
    }
}
