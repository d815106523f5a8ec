//! What every decoder must do with any input, however hostile: never panic,
//! and read back what it writes. A decoder that accepts bytes must write
//! them back the same way (a canonical form, so no two encodings of one
//! frame both pass), and what it writes must read back to the same value.
//!
//! One function per decoder, each panicking when the property fails. They
//! are the bodies of the fuzz targets in `fuzz/` (cargo-fuzz, outside the
//! workspace) and of the suite's stable replay (`wisp-server`'s
//! `fuzz_replay` tests), which runs the committed corpus and mutations of
//! [`seeds`] on every `cargo test`.

use prost::Message;
use wisp_core::{EnvelopeKey, KdfParams, LocalState, SealedEnvelope};
use wisp_proto::codec::decode_message;
use wisp_proto::frames::{self, OlmEnvelope, Sealed};
use wisp_proto::{UserId, client_frame, decode_client_frame, decode_server_frame, server_frame};
use wisp_server::store::redis_link::RedisUrl;

/// A decoder's property, by the name of its fuzz target.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// The fuzz target's name (`fuzz/fuzz_targets/<name>.rs`, corpus in
    /// `fuzz/corpus/<name>/`).
    pub name: &'static str,
    /// Checks one input; panics when the property fails.
    pub check: fn(&[u8]),
}

/// Every decoder Wisp has for what arrives from a network or a disk.
pub const TARGETS: &[Target] = &[
    Target {
        name: "client_frame",
        check: client_frame,
    },
    Target {
        name: "server_frame",
        check: server_frame,
    },
    Target {
        name: "olm_envelope",
        check: olm_envelope,
    },
    Target {
        name: "sealed",
        check: sealed,
    },
    Target {
        name: "keystore_envelope",
        check: keystore_envelope,
    },
    Target {
        name: "local_state",
        check: local_state,
    },
    Target {
        name: "user_id",
        check: user_id,
    },
    Target {
        name: "invitation",
        check: invitation,
    },
    Target {
        name: "redis_url",
        check: redis_url,
    },
];

/// Bytes a protobuf decoder accepted must be exactly what it encodes.
fn reencodes_the_same<M: Message>(what: &str, decoded: &M, data: &[u8]) {
    let encoded = decoded.encode_to_vec();
    assert!(
        encoded == data,
        "{what}: accepted {} bytes that encode back as {} different bytes\n in:  {data:02x?}\n out: {encoded:02x?}",
        data.len(),
        encoded.len()
    );
}

/// A frame from a client (what the server reads).
pub fn client_frame(data: &[u8]) {
    if let Ok(frame) = decode_client_frame(data) {
        reencodes_the_same("client frame", &frame, data);
    }
}

/// A frame from the server (what every client reads).
pub fn server_frame(data: &[u8]) {
    if let Ok(frame) = decode_server_frame(data) {
        reencodes_the_same("server frame", &frame, data);
    }
}

/// The sealed message envelope a `Send` carries (an Olm message and its
/// sender's keys).
pub fn olm_envelope(data: &[u8]) {
    if let Ok(envelope) = decode_message::<OlmEnvelope>(data) {
        reencodes_the_same("Olm envelope", &envelope, data);
    }
}

/// The plaintext inside every Olm message.
pub fn sealed(data: &[u8]) {
    if let Ok(sealed) = decode_message::<Sealed>(data) {
        reencodes_the_same("sealed plaintext", &sealed, data);
    }
}

/// The key-store envelope, as read before any key is derived.
pub fn keystore_envelope(data: &[u8]) {
    let Ok(envelope) = SealedEnvelope::read(data) else {
        return;
    };
    let written = envelope.to_bytes();
    let again = SealedEnvelope::read(&written).expect("a written envelope reads back");
    assert_eq!(again, envelope, "the envelope changed on writing");
    assert_eq!(
        again.to_bytes(),
        written,
        "the envelope's form is not stable"
    );
}

/// The key store's content once decrypted (the pickled state).
pub fn local_state(data: &[u8]) {
    let Ok(state) = LocalState::from_pickle(data) else {
        return;
    };
    let pickle = state.pickle();
    let again = LocalState::from_pickle(&pickle).expect("a pickled state reads back");
    assert!(*again.pickle() == *pickle, "the pickle is not stable");
}

/// A user id as text.
pub fn user_id(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(id) = text.parse::<UserId>() else {
        return;
    };
    let written = id.to_string();
    assert_eq!(
        written.parse::<UserId>().ok(),
        Some(id),
        "{written} reads back"
    );
    assert!(
        written.eq_ignore_ascii_case(text.trim()),
        "{text:?} was read as {written}"
    );
}

/// An invitation link (with or without its signed token) or bare id, as
/// typed or scanned.
pub fn invitation(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(invitation) = wisp_core::parse_invitation_link(text) else {
        return;
    };
    let link = match &invitation.token {
        Some(token) => wisp_core::signed_invitation_link(invitation.user, token),
        None => wisp_core::invitation_link(invitation.user),
    };
    assert_eq!(
        wisp_core::parse_invitation_link(&link).ok(),
        Some(invitation)
    );
    let text = text.trim();
    assert!(
        link.eq_ignore_ascii_case(text) || invitation.user.to_string().eq_ignore_ascii_case(text),
        "{text:?} was read as {link}"
    );
}

/// A Redis URL of any form the server takes.
pub fn redis_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(url) = RedisUrl::parse(text) else {
        return;
    };
    let written = url.to_string();
    let again = RedisUrl::parse(&written).unwrap_or_else(|error| {
        panic!("{text:?} was written as {written:?}, which fails: {error}")
    });
    assert_eq!(again, url, "{text:?} → {written:?} reads back differently");
    assert_eq!(again.to_string(), written, "{written:?} is not stable");
}

/// Valid inputs for `target`, to start fuzzing from and to mutate.
pub fn seeds(target: &str) -> Vec<Vec<u8>> {
    match target {
        "client_frame" => client_frames().iter().map(wisp_proto::encode).collect(),
        "server_frame" => server_frames().iter().map(wisp_proto::encode).collect(),
        "olm_envelope" => vec![wisp_proto::encode(&OlmEnvelope {
            message_type: 0,
            body: vec![0x0a; 120],
            sender_ed25519: vec![7; 32],
            sender_identity_signature: vec![9; 64],
        })],
        "sealed" => sealed_plaintexts().iter().map(wisp_proto::encode).collect(),
        "keystore_envelope" => vec![keystore()],
        "local_state" => vec![
            LocalState::new(wisp_core::Identity::generate())
                .pickle()
                .to_vec(),
        ],
        "user_id" => vec![some_id().to_string().into_bytes()],
        "invitation" => vec![
            wisp_core::invitation_link(some_id()).into_bytes(),
            wisp_core::invitation_link(some_id())
                .to_uppercase()
                .into_bytes(),
        ],
        "redis_url" => [
            "redis://127.0.0.1:6379/2",
            "redis://:s%40cret@localhost:6379",
            "redis+sentinel://u:p%3Aw@10.0.0.1:26379,10.0.0.2:26379/wisp/3",
            "redis+sentinel://h:26379/wisp",
            "redis+cluster://u:p@a:7000,b:7001",
        ]
        .iter()
        .map(|url| url.as_bytes().to_vec())
        .collect(),
        other => panic!("no fuzz target named {other}"),
    }
}

fn some_id() -> UserId {
    UserId::from_ed25519(&[42; 32])
}

fn client_frames() -> Vec<wisp_proto::ClientFrame> {
    use client_frame::Body;
    let id = some_id().as_bytes().to_vec();
    [
        Body::Hello(frames::Hello {
            protocol_version: 1,
            client: "wisp-cli 0.1.0".into(),
        }),
        Body::Ping(frames::Ping {}),
        Body::Register(frames::Register {
            ed25519_key: vec![1; 32],
            curve25519_key: vec![2; 32],
            signature: vec![3; 64],
            pow_solution: 123_456,
            identity_signature: vec![4; 64],
        }),
        Body::LoginChallenge(frames::LoginChallengeRequest {
            user_id: id.clone(),
        }),
        Body::FriendOp(frames::FriendOp {
            action: frames::FriendAction::Request.into(),
            user_id: id.clone(),
            invitation: vec![0x11; 88],
        }),
        Body::UploadKeys(frames::UploadKeys {
            one_time_keys: vec![frames::SignedKey {
                public_key: vec![5; 32],
                signature: vec![6; 64],
            }],
            fallback_key: None,
        }),
        Body::Send(frames::Send {
            to: id,
            client_msg_id: vec![8; 16],
            ciphertext: vec![0xab; 300],
            ttl_seconds: 3600,
        }),
        Body::Ack(frames::Ack {
            message_ids: vec![1, 2, 300_000],
        }),
    ]
    .into_iter()
    .zip(1..)
    .map(|(body, request_id)| wisp_proto::ClientFrame {
        request_id,
        body: Some(body),
    })
    .collect()
}

fn server_frames() -> Vec<wisp_proto::ServerFrame> {
    use server_frame::Body;
    let id = some_id().as_bytes().to_vec();
    [
        Body::Error(frames::Error {
            code: wisp_proto::ErrorCode::RateLimited.into(),
            message: "slow down".into(),
            retry_after_ms: 1500,
        }),
        Body::HelloOk(frames::HelloOk {
            protocol_version: 1,
            server_name: "wisp-test".into(),
            max_frame_bytes: 65_536,
        }),
        Body::KeyBundle(frames::KeyBundle {
            user_id: id.clone(),
            ed25519_key: vec![1; 32],
            curve25519_key: vec![2; 32],
            identity_signature: vec![3; 64],
            one_time_key: Some(frames::SignedKey {
                public_key: vec![4; 32],
                signature: vec![5; 64],
            }),
            fallback: true,
        }),
        Body::FriendRequests(frames::FriendRequests {
            incoming: vec![frames::PendingRequest {
                user_id: id.clone(),
                created_unix_ms: 1_790_000_000_000,
            }],
            outgoing: vec![],
            blocked: vec![id.clone()],
        }),
        Body::Deliver(frames::Deliver {
            message_id: 77,
            from: id,
            ciphertext: vec![0xcd; 300],
            sent_unix_ms: 1_790_000_000_000,
            expires_unix_ms: 1_790_003_600_000,
        }),
    ]
    .into_iter()
    .zip(0..)
    .map(|(body, request_id)| wisp_proto::ServerFrame {
        request_id,
        body: Some(body),
    })
    .collect()
}

fn sealed_plaintexts() -> Vec<Sealed> {
    use frames::sealed::Kind;
    [
        Kind::Text(frames::Text {
            body: "see you at 8 — ünïcode ✓".into(),
            view_seconds: 30,
        }),
        Kind::ReadReceipt(frames::ReadReceipt {
            client_msg_ids: vec![vec![1; 16], vec![2; 16]],
        }),
        Kind::Renewal(frames::SessionRenewal {}),
    ]
    .into_iter()
    .map(|kind| Sealed {
        client_msg_id: vec![9; 16],
        sent_unix_ms: 1_790_000_000_000,
        expires_unix_ms: 1_790_000_060_000,
        kind: Some(kind),
    })
    .collect()
}

/// A real sealed key store (under the cheapest parameters Argon2 takes).
fn keystore() -> Vec<u8> {
    let cheap = KdfParams {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    EnvelopeKey::derive("correct horse", cheap)
        .and_then(|key| key.seal(b"{\"account\":{}}"))
        .expect("sealing under cheap parameters")
}

/// What a [`replay`] ran.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Files of the committed corpus.
    pub corpus: usize,
    /// Mutated inputs.
    pub mutations: usize,
}

/// Runs `target` over its seeds and every file in `corpus_dir` (if it
/// exists), then over up to `mutations` mutations of them, the same ones on
/// every run (seeded), stopping early once `budget` has passed.
pub fn replay(
    target: &Target,
    corpus_dir: &std::path::Path,
    mutations: usize,
    budget: std::time::Duration,
) -> Replayed {
    use rand::SeedableRng;
    let started = std::time::Instant::now();
    let mut inputs = seeds(target.name);
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir)
        .map(|dir| {
            dir.filter_map(|entry| entry.ok().map(|e| e.path()))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let corpus = files.len();
    inputs.extend(files.iter().filter_map(|path| std::fs::read(path).ok()));
    for input in &inputs {
        (target.check)(input);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5715_u64 ^ target.name.len() as u64);
    let mut done = 0;
    while done < mutations && started.elapsed() < budget {
        let input = mutate(&mut rng, &inputs);
        (target.check)(&input);
        done += 1;
    }
    Replayed {
        corpus,
        mutations: done,
    }
}

/// One input made from `pool`: a few byte flips, insertions, deletions,
/// truncations, duplicated runs or a splice of two inputs.
fn mutate(rng: &mut impl rand::RngExt, pool: &[Vec<u8>]) -> Vec<u8> {
    let mut data = pool[rng.random_range(0..pool.len())].clone();
    for _ in 0..rng.random_range(1..=4) {
        let len = data.len();
        let at = rng.random_range(0..=len);
        match rng.random_range(0..7) {
            0 if len > 0 => data[at.min(len - 1)] ^= 1 << rng.random_range(0..8),
            1 if len > 0 => data[at.min(len - 1)] = interesting_byte(rng),
            2 => data.insert(at, interesting_byte(rng)),
            3 if len > 0 => {
                data.remove(at.min(len - 1));
            }
            4 => data.truncate(at),
            5 => {
                let end = rng.random_range(at..=len);
                let run = data[at..end].to_vec();
                data.splice(at..at, run);
            }
            _ => {
                let other = &pool[rng.random_range(0..pool.len())];
                let from = rng.random_range(0..=other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
        }
    }
    data
}

/// Bytes that tend to matter to parsers: varint and length edges, quotes,
/// separators, a high bit.
fn interesting_byte(rng: &mut impl rand::RngExt) -> u8 {
    const BYTES: &[u8] = b"\x00\x01\x7f\x80\xff\"\\:/@%,{}[]\x0a\x12\x1a";
    if rng.random_bool(0.5) {
        BYTES[rng.random_range(0..BYTES.len())]
    } else {
        rng.random()
    }
}
