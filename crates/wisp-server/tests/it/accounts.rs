//! Registration without a phone number, and challenge-response login,
//! against a real server on a real SQLite file.

use wisp_client::{Client, Identity};
use wisp_proto::ErrorCode;
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::{
    FriendOp, ListFriends, Login, LoginChallengeRequest, Register, RegisterChallengeRequest,
};
use wisp_proto::server_frame::Body as Reply;
use wisp_test_support::{RawConnection, Received, TestServer, code_of};

#[tokio::test]
async fn registered_id_is_the_hash_of_the_key_and_login_works() {
    let server = TestServer::start().await;
    let identity = Identity::generate();
    let (client, _) = Client::connect(&server.url()).await.unwrap();
    let id = client.register(&identity).await.unwrap();
    assert_eq!(id, identity.user_id());
    assert!(id.is_of_key(&identity.ed25519_key()));
    let user = server.login(identity).await;
    user.client.ping().await.unwrap();
    assert_eq!(user.client.user_id(), Some(id));
}

#[tokio::test]
async fn registering_the_same_keys_twice_is_refused() {
    let server = TestServer::start().await;
    let identity = Identity::generate();
    let (client, _) = Client::connect(&server.url()).await.unwrap();
    client.register(&identity).await.unwrap();
    let again = client.register(&identity).await;
    assert_eq!(code_of(again), ErrorCode::AlreadyRegistered);
}

async fn puzzle(conn: &mut RawConnection) -> (Vec<u8>, u32) {
    match conn
        .request(Request::RegisterChallenge(RegisterChallengeRequest {}))
        .await
    {
        Reply::RegisterPuzzle(p) => (p.nonce, p.difficulty_bits),
        other => panic!("{other:?}"),
    }
}

fn registration(identity: &Identity, server: &str, nonce: &[u8], solution: u64) -> Request {
    Request::Register(Register {
        ed25519_key: identity.ed25519_key().to_vec(),
        curve25519_key: identity.curve25519_key().to_vec(),
        signature: identity.sign_registration(server, nonce).to_vec(),
        pow_solution: solution,
        identity_signature: identity.sign_identity_key().to_vec(),
    })
}

fn error_code(reply: Reply) -> ErrorCode {
    match reply {
        Reply::Error(e) => ErrorCode::try_from(e.code).unwrap(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn proof_of_work_is_enforced() {
    let server = TestServer::start_with(|c| c.pow_difficulty = 12).await;
    let identity = Identity::generate();
    let mut conn = RawConnection::open_with_hello(&server.url()).await;

    // No puzzle asked for: refused.
    let reply = conn
        .request(registration(&identity, &server.name(), &[0; 32], 0))
        .await;
    assert_eq!(error_code(reply), ErrorCode::PowFailed);

    // A wrong solution: refused, and the puzzle is used up.
    let (nonce, bits) = puzzle(&mut conn).await;
    assert_eq!(bits, 12);
    let key = identity.ed25519_key();
    let wrong = (0u64..)
        .find(|s| !wisp_proto::pow::check(&nonce, &key, bits, *s))
        .unwrap();
    let reply = conn
        .request(registration(&identity, &server.name(), &nonce, wrong))
        .await;
    assert_eq!(error_code(reply), ErrorCode::PowFailed);
    let right = wisp_proto::pow::solve(&nonce, &key, bits, 1 << 24).unwrap();
    let reply = conn
        .request(registration(&identity, &server.name(), &nonce, right))
        .await;
    assert_eq!(
        error_code(reply),
        ErrorCode::PowFailed,
        "a puzzle is good for one attempt"
    );

    // A solution for another key does not carry over.
    let (nonce, _) = puzzle(&mut conn).await;
    let other_key = Identity::generate().ed25519_key();
    let mut borrowed = 0;
    while !wisp_proto::pow::check(&nonce, &other_key, bits, borrowed)
        || wisp_proto::pow::check(&nonce, &key, bits, borrowed)
    {
        borrowed += 1;
    }
    let reply = conn
        .request(registration(&identity, &server.name(), &nonce, borrowed))
        .await;
    assert_eq!(error_code(reply), ErrorCode::PowFailed);

    // The right work on a fresh puzzle registers.
    let (nonce, _) = puzzle(&mut conn).await;
    let right = wisp_proto::pow::solve(&nonce, &key, bits, 1 << 24).unwrap();
    let reply = conn
        .request(registration(&identity, &server.name(), &nonce, right))
        .await;
    assert!(matches!(reply, Reply::Registered(_)), "{reply:?}");
}

#[tokio::test]
async fn a_signature_that_does_not_match_the_keys_is_refused() {
    let server = TestServer::start_with(|c| c.pow_difficulty = 0).await;
    let identity = Identity::generate();
    let impostor = Identity::generate();
    let mut conn = RawConnection::open_with_hello(&server.url()).await;
    let (nonce, _) = puzzle(&mut conn).await;
    // The impostor signs, claiming the victim's keys.
    let request = Request::Register(Register {
        ed25519_key: identity.ed25519_key().to_vec(),
        curve25519_key: impostor.curve25519_key().to_vec(),
        signature: impostor.sign_registration(&server.name(), &nonce).to_vec(),
        pow_solution: 0,
        identity_signature: impostor.sign_identity_key().to_vec(),
    });
    assert_eq!(
        error_code(conn.request(request).await),
        ErrorCode::InvalidArgument
    );
}

#[tokio::test]
async fn registrations_are_rate_limited_per_address() {
    let server = TestServer::start_with(|c| c.register_limit = 2).await;
    let (client, _) = Client::connect(&server.url()).await.unwrap();
    client.register(&Identity::generate()).await.unwrap();
    client.register(&Identity::generate()).await.unwrap();
    let third = client.register(&Identity::generate()).await;
    match third {
        Err(wisp_client::ClientError::Refused {
            code: Some(ErrorCode::RateLimited),
            retry_after: Some(wait),
            ..
        }) => assert!(wait.as_secs() >= 1, "{wait:?}"),
        other => panic!("expected RATE_LIMITED with a retry time, got {other:?}"),
    }
    // A new connection from the same address is limited too.
    let (client, _) = Client::connect(&server.url()).await.unwrap();
    assert_eq!(
        code_of(client.register(&Identity::generate()).await),
        ErrorCode::RateLimited
    );
}

/// The error a (bogus) registration attempt on `conn` gets: the rate
/// limit is checked before anything else, so it shows whether the attempt
/// was counted against the address the server sees.
async fn register_attempt(conn: &mut RawConnection) -> ErrorCode {
    match conn
        .request(Request::Register(wisp_proto::frames::Register {
            ed25519_key: vec![1; 32],
            curve25519_key: vec![2; 32],
            signature: vec![3; 64],
            pow_solution: 0,
            identity_signature: vec![4; 64],
        }))
        .await
    {
        Reply::Error(error) => error.code(),
        other => panic!("a bogus registration was accepted: {other:?}"),
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_registrations_are_limited_per_forwarded_client() {
    let server = TestServer::start_with(|c| {
        c.register_limit = 1;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.pow_difficulty = 0;
    })
    .await;
    let from = |client: &'static str| {
        let url = server.url();
        async move { RawConnection::open_with_headers(&url, &[("x-forwarded-for", client)]).await }
    };
    let mut first = from("203.0.113.1").await;
    assert_ne!(register_attempt(&mut first).await, ErrorCode::RateLimited);
    assert_eq!(register_attempt(&mut first).await, ErrorCode::RateLimited);
    // Another client behind the same balancer has its own allowance; the
    // first one, on a new connection, still has none.
    let mut second = from("203.0.113.2").await;
    assert_ne!(register_attempt(&mut second).await, ErrorCode::RateLimited);
    let mut again = from("203.0.113.1").await;
    assert_eq!(register_attempt(&mut again).await, ErrorCode::RateLimited);
}

#[tokio::test]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    let server = TestServer::start_with(|c| {
        c.register_limit = 1;
        c.pow_difficulty = 0;
    })
    .await;
    let mut first =
        RawConnection::open_with_headers(&server.url(), &[("x-forwarded-for", "203.0.113.1")])
            .await;
    assert_ne!(register_attempt(&mut first).await, ErrorCode::RateLimited);
    // A forged header does not buy a fresh allowance.
    let mut forged =
        RawConnection::open_with_headers(&server.url(), &[("x-forwarded-for", "203.0.113.2")])
            .await;
    assert_eq!(register_attempt(&mut forged).await, ErrorCode::RateLimited);
}

/// Gets a login challenge nonce on `conn` for `user`.
async fn challenge(conn: &mut RawConnection, user: &Identity) -> Vec<u8> {
    match conn
        .request(Request::LoginChallenge(LoginChallengeRequest {
            user_id: user.user_id().to_vec(),
        }))
        .await
    {
        Reply::LoginChallenge(c) => c.nonce,
        other => panic!("{other:?}"),
    }
}

fn login(signature: [u8; 64]) -> Request {
    Request::Login(Login {
        signature: signature.to_vec(),
    })
}

#[tokio::test]
async fn replayed_foreign_and_unknown_logins_are_refused() {
    let server = TestServer::start().await;
    let name = server.name();
    let alice = server.user().await.identity;
    let mallory = server.user().await.identity;

    // A good login, whose signature an eavesdropper records.
    let mut first = RawConnection::open_with_hello(&server.url()).await;
    let nonce = challenge(&mut first, &alice).await;
    let recorded = alice.sign_login(&name, &nonce);
    assert!(matches!(
        first.request(login(recorded)).await,
        Reply::LoggedIn(_)
    ));

    // Replayed on a new connection, against a fresh challenge.
    let mut replay = RawConnection::open_with_hello(&server.url()).await;
    challenge(&mut replay, &alice).await;
    assert_eq!(
        error_code(replay.request(login(recorded)).await),
        ErrorCode::AuthFailed
    );
    // The failed connection can do nothing else.
    let reply = replay.request(Request::ListFriends(ListFriends {})).await;
    assert_eq!(error_code(reply), ErrorCode::AuthRequired);
    // A nonce is single use: the right signature after a failed attempt
    // fails too, because the challenge is gone.
    let nonce = challenge(&mut replay, &alice).await;
    let mut wrong = alice.sign_login(&name, &nonce);
    wrong[0] ^= 1;
    assert_eq!(
        error_code(replay.request(login(wrong)).await),
        ErrorCode::AuthFailed
    );
    let right = alice.sign_login(&name, &nonce);
    assert_eq!(
        error_code(replay.request(login(right)).await),
        ErrorCode::AuthFailed
    );
    // Three failures close the connection.
    match replay.receive().await {
        Received::Closed { code, .. } => assert_eq!(code, 1008),
        other => panic!("expected close, got {other:?}"),
    }

    // Another key's signature over Alice's challenge.
    let mut foreign = RawConnection::open_with_hello(&server.url()).await;
    let nonce = challenge(&mut foreign, &alice).await;
    let signed_by_mallory = mallory.sign_login(&name, &nonce);
    assert_eq!(
        error_code(foreign.request(login(signed_by_mallory)).await),
        ErrorCode::AuthFailed
    );

    // A login signed for another deployment's name.
    let mut elsewhere = RawConnection::open_with_hello(&server.url()).await;
    let nonce = challenge(&mut elsewhere, &alice).await;
    let for_other_server = alice.sign_login("some-other-wisp", &nonce);
    assert_eq!(
        error_code(elsewhere.request(login(for_other_server)).await),
        ErrorCode::AuthFailed
    );

    // An id nobody registered, with a perfectly valid signature.
    let stranger = Identity::generate();
    let mut unknown = RawConnection::open_with_hello(&server.url()).await;
    let nonce = challenge(&mut unknown, &stranger).await;
    assert_eq!(
        error_code(
            unknown
                .request(login(stranger.sign_login(&name, &nonce)))
                .await
        ),
        ErrorCode::AuthFailed
    );

    // A login with no challenge at all.
    let mut blind = RawConnection::open_with_hello(&server.url()).await;
    assert_eq!(
        error_code(blind.request(login(recorded)).await),
        ErrorCode::AuthFailed
    );
}

#[tokio::test]
async fn nothing_but_hello_register_and_login_before_logging_in() {
    let server = TestServer::start().await;
    let someone = server.user().await;
    let mut conn = RawConnection::open_with_hello(&server.url()).await;
    let reply = conn
        .request(Request::FriendOp(FriendOp {
            action: wisp_proto::FriendAction::Request as i32,
            user_id: someone.id().to_vec(),
            invitation: Vec::new(),
        }))
        .await;
    assert_eq!(error_code(reply), ErrorCode::AuthRequired);
    assert!(
        someone
            .client
            .friend_requests()
            .await
            .unwrap()
            .incoming
            .is_empty()
    );
}

#[tokio::test]
async fn the_sdk_refuses_to_sign_for_a_server_it_did_not_register_with() {
    let server = TestServer::start().await;
    let user = server.user().await;
    let (mut client, _) = Client::connect(&server.url()).await.unwrap();
    let result = client.login(&user.identity, "another-deployment").await;
    assert!(
        matches!(result, Err(wisp_client::ClientError::WrongServer { .. })),
        "{result:?}"
    );
}
