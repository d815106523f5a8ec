//! The `wisp` binary against a real server (in-process, loopback port 0,
//! real SQLite): the two-user walkthrough of the README, the friend
//! commands, and the one-line errors and exit codes scripts rely on.

use std::path::{Path, PathBuf};
use std::process::Command;

use wisp_client::{Client, Identity, KeyStore};
use wisp_test_support::TestServer;

use crate::PASSPHRASE;

pub(crate) struct Env {
    pub(crate) server: TestServer,
    dir: tempfile::TempDir,
}

pub(crate) struct Output {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Env {
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start().await;
        Self { server, dir }
    }

    /// On a server that hands out forged keys.
    async fn start_forging() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let server = TestServer::start_forging_keys().await;
        Self { server, dir }
    }

    fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join(user)
    }

    /// Runs `wisp` as `user` (a home directory of its own).
    pub(crate) async fn wisp(&self, user: &str, args: &[&str]) -> Output {
        self.wisp_typing(user, args, "").await
    }

    /// Runs `wisp` as `user`, with `typed` on its standard input.
    async fn wisp_typing(&self, user: &str, args: &[&str], typed: &str) -> Output {
        let home = self.home(user);
        let server = self.server.url();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let typed = typed.to_owned();
        tokio::task::spawn_blocking(move || {
            use std::io::Write;
            let mut child = Command::new(env!("CARGO_BIN_EXE_wisp"))
                .args(&args)
                .env("WISP_HOME", &home)
                .env("WISP_SERVER", &server)
                .env("WISP_PASSPHRASE", PASSPHRASE)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(typed.as_bytes()).unwrap();
            drop(stdin);
            let output = child.wait_with_output().unwrap();
            Output {
                code: output.status.code().unwrap_or(-1),
                stdout: String::from_utf8(output.stdout).unwrap(),
                stderr: String::from_utf8(output.stderr).unwrap(),
            }
        })
        .await
        .unwrap()
    }

    pub(crate) async fn ok(&self, user: &str, args: &[&str]) -> String {
        let out = self.wisp(user, args).await;
        assert_eq!(out.code, 0, "wisp {args:?} failed: {}", out.stderr);
        out.stdout
    }

    pub(crate) async fn register(&self, user: &str) -> String {
        let stdout = self.ok(user, &["register"]).await;
        stdout.lines().last().unwrap().to_owned()
    }
}

pub(crate) fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn ids(stdout: &str) -> Vec<String> {
    json_lines(stdout)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_register_befriend_and_list_each_other() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    assert_eq!(alice.len(), 32);
    assert_ne!(alice, bob);
    assert_eq!(env.ok("alice", &["id"]).await.trim(), alice);

    let sent = env.ok("alice", &["friend", "add", &bob]).await;
    assert_eq!(
        sent.trim(),
        format!("friend request sent to {bob}; it waits for their answer for 7 days")
    );
    let requests = json_lines(&env.ok("bob", &["friend", "requests", "--json"]).await);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0]["id"], alice.as_str());
    assert_eq!(requests[0]["direction"], "incoming");
    let outgoing = json_lines(&env.ok("alice", &["friend", "requests", "--json"]).await);
    assert_eq!(outgoing[0]["direction"], "outgoing");

    env.ok("bob", &["friend", "accept", &alice]).await;
    assert_eq!(
        ids(&env.ok("alice", &["friend", "list", "--json"]).await),
        vec![bob.clone()]
    );
    assert_eq!(
        ids(&env.ok("bob", &["friend", "list", "--json"]).await),
        vec![alice.clone()]
    );
    assert_eq!(env.ok("bob", &["friend", "list"]).await.trim(), alice);
    assert!(env.ok("bob", &["friend", "requests"]).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_delete_asks_for_the_id_then_deletes_server_side_and_here() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice]).await;
    env.ok("bob", &["send", &alice, "waiting for alice"]).await;

    // A wrong confirmation (or none) deletes nothing.
    for typed in ["", "not my id\n", &format!("{bob}\n")] {
        let out = env
            .wisp_typing("alice", &["account", "delete"], typed)
            .await;
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr
                .contains("not deleted: what you typed is not your id (or pass --yes)"),
            "{}",
            out.stderr
        );
    }
    assert_eq!(
        ids(&env.ok("bob", &["friend", "list", "--json"]).await),
        vec![alice.clone()]
    );

    let out = env
        .wisp_typing("alice", &["account", "delete"], &format!("{alice}\n"))
        .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Type your id to confirm"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains(&format!("account {alice} deleted on the server;")),
        "{}",
        out.stderr
    );
    assert!(!KeyStore::exists_in(&env.home("alice")));
    // Bob's circle no longer has Alice, and her message is gone.
    assert!(
        env.ok("bob", &["friend", "list", "--json"])
            .await
            .is_empty()
    );
    assert_eq!(env.server.stored().await, 0);
    // The home has no identity left: exit code 4.
    assert_eq!(env.wisp("alice", &["id"]).await.code, 4);

    // With --yes, nothing is asked.
    let out = env.wisp("bob", &["account", "delete", "--yes"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("Type your id"), "{}", out.stderr);
    assert!(!KeyStore::exists_in(&env.home("bob")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decline_remove_and_block_behave() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    let carol = env.register("carol").await;

    // Decline.
    env.ok("carol", &["friend", "add", &alice]).await;
    env.ok("alice", &["friend", "decline", &carol]).await;
    assert!(
        env.ok("carol", &["friend", "requests", "--json"])
            .await
            .is_empty()
    );
    let again = env.wisp("alice", &["friend", "accept", &carol]).await;
    assert_eq!(again.code, 1);
    assert_eq!(
        again.stderr.trim(),
        "error: there is no pending friend request to act on"
    );

    // Remove.
    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice]).await;
    env.ok("alice", &["friend", "remove", &bob]).await;
    assert!(
        env.ok("alice", &["friend", "list", "--json"])
            .await
            .is_empty()
    );
    assert!(
        env.ok("bob", &["friend", "list", "--json"])
            .await
            .is_empty()
    );

    // Block: ends the friendship, and the blocked user's requests vanish.
    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice]).await;
    env.ok("alice", &["friend", "block", &bob]).await;
    assert!(
        env.ok("bob", &["friend", "list", "--json"])
            .await
            .is_empty()
    );
    assert_eq!(
        ids(&env.ok("alice", &["friend", "blocked", "--json"]).await),
        vec![bob.clone()]
    );
    env.ok("bob", &["friend", "add", &alice]).await;
    assert!(
        env.ok("alice", &["friend", "requests", "--json"])
            .await
            .is_empty()
    );
    let blocked = env.wisp("alice", &["friend", "add", &bob]).await;
    assert_eq!(blocked.code, 1);
    assert_eq!(
        blocked.stderr.trim(),
        "error: you have blocked this user; unblock them first"
    );
    env.ok("alice", &["friend", "unblock", &bob]).await;
    env.ok("alice", &["friend", "add", &bob]).await;
}

/// Logs an SDK client in as the CLI user in `home`.
async fn sdk_login(env: &Env, home: &Path) -> (Client, Identity) {
    let state = KeyStore::peek(home, PASSPHRASE).unwrap();
    let (mut client, _) = Client::connect(&env.server.url()).await.unwrap();
    client
        .login(&state.identity, state.server_name.as_deref().unwrap())
        .await
        .unwrap();
    (client, state.identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_21st_friend_is_refused_with_a_one_line_reason() {
    let env = Env::start().await;
    env.register("popular").await;
    let waiting = env.register("waiting").await;
    env.ok(
        "waiting",
        &["friend", "add", env.ok("popular", &["id"]).await.trim()],
    )
    .await;
    let (popular, popular_id) = sdk_login(&env, &env.home("popular")).await;
    // Twenty friends, made through the SDK to keep the test quick.
    for _ in 0..20 {
        let friend = Identity::generate();
        let (mut client, _) = Client::connect(&env.server.url()).await.unwrap();
        client.register(&friend).await.unwrap();
        client.login(&friend, &env.server.name()).await.unwrap();
        client.request_friend(popular_id.user_id()).await.unwrap();
        popular.accept_friend(friend.user_id()).await.unwrap();
    }
    let late = env.register("late").await;

    let at_request = env.wisp("popular", &["friend", "add", &late]).await;
    assert_eq!(at_request.code, 1);
    assert_eq!(
        at_request.stderr.trim(),
        "error: friend limit reached (20); remove a friend first"
    );
    let at_accept = env.wisp("popular", &["friend", "accept", &waiting]).await;
    assert_eq!(at_accept.code, 1);
    assert_eq!(
        at_accept.stderr.trim(),
        "error: friend limit reached (20); remove a friend first"
    );
    let theirs = env
        .wisp(
            "late",
            &["friend", "add", &popular_id.user_id().to_string()],
        )
        .await;
    assert_eq!(theirs.code, 1);
    assert!(
        theirs.stderr.contains("most friends allowed (20)"),
        "{}",
        theirs.stderr
    );
    assert_eq!(
        json_lines(&env.ok("popular", &["friend", "list", "--json"]).await).len(),
        20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_have_one_line_reasons_and_distinct_exit_codes() {
    let env = Env::start().await;

    let none = env.wisp("nobody", &["id"]).await;
    assert_eq!(none.code, 4);
    assert!(
        none.stderr.contains("run `wisp register` first"),
        "{}",
        none.stderr
    );

    env.register("alice").await;
    let twice = env.wisp("alice", &["register"]).await;
    assert_eq!(twice.code, 1);
    assert!(
        twice.stderr.contains("already registered"),
        "{}",
        twice.stderr
    );

    let bad_id = env.wisp("alice", &["friend", "add", "not-an-id"]).await;
    assert_eq!(bad_id.code, 1);
    assert_eq!(bad_id.stderr.lines().count(), 1);
    assert!(
        bad_id
            .stderr
            .starts_with("error: \"not-an-id\" is not a user id")
    );

    let ghost = Identity::generate().user_id().to_string();
    // Whether an id is registered is nobody's business but its friends': a
    // request to one nobody holds looks like any other, and just waits.
    let stranger = env.wisp("alice", &["friend", "add", &ghost]).await;
    assert_eq!(stranger.code, 0, "{}", stranger.stderr);
    assert!(
        stranger
            .stdout
            .contains(&format!("friend request sent to {ghost}")),
        "{}",
        stranger.stdout
    );

    let wrong = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(["friend", "list"])
        .env("WISP_HOME", env.home("alice"))
        .env("WISP_SERVER", env.server.url())
        .env("WISP_PASSPHRASE", "not the passphrase")
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase"));

    let unreachable = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(["friend", "list"])
        .env("WISP_HOME", env.home("alice"))
        .env("WISP_SERVER", "ws://127.0.0.1:1")
        .env("WISP_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&unreachable.stderr).starts_with("error: cannot connect to"));
}

#[test]
fn help_explains_the_passphrase_and_exit_codes() {
    let output = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for needle in [
        "WISP_PASSPHRASE",
        "WISP_HOME",
        "WISP_SERVER",
        "Exit codes",
        "register",
        "friend",
        "invite",
        "verify",
    ] {
        assert!(help.contains(needle), "--help mentions {needle}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_then_recv_prints_once_and_burns() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice]).await;

    let sent = env
        .ok("alice", &["send", &bob, "hello bob", "--ttl", "600"])
        .await;
    assert!(sent.starts_with(&format!("sent to {bob}")), "{sent}");
    env.ok("alice", &["send", &bob, "second"]).await;

    let received = json_lines(&env.ok("bob", &["recv", "--json"]).await);
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["text"], "hello bob");
    assert_eq!(received[1]["text"], "second");
    for message in &received {
        assert_eq!(message["from"], alice.as_str());
        for field in ["id", "sent_at", "expires_at"] {
            assert!(!message[field].is_null(), "{field} in {message}");
        }
    }
    let sent_ms = received[0]["sent_unix_ms"].as_i64().unwrap();
    let expires_ms = received[0]["expires_unix_ms"].as_i64().unwrap();
    assert!(
        (expires_ms - sent_ms - 600_000).abs() < 5_000,
        "ttl 600 s honoured"
    );
    assert!(received[0]["sent_at"].as_str().unwrap().ends_with('Z'));

    // Burned: a second recv prints nothing.
    assert_eq!(env.ok("bob", &["recv"]).await, "");
    assert_eq!(env.server.stored().await, 2, "two read receipts for Alice");
    assert_eq!(
        env.ok("alice", &["recv"]).await,
        "",
        "receipts are not messages"
    );
    assert_eq!(env.server.stored().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_refusals_say_why() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;

    let stranger = env.wisp("alice", &["send", &bob, "hi"]).await;
    assert_eq!(stranger.code, 1);
    assert_eq!(
        stranger.stderr.trim(),
        "error: that user is not your friend; only friends can exchange keys and messages"
    );

    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice]).await;
    let too_long = env
        .wisp("alice", &["send", &bob, "hi", "--ttl", "3601"])
        .await;
    assert_eq!(too_long.code, 1);
    assert_eq!(
        too_long.stderr.trim(),
        "error: --ttl must be 1 to 3600 seconds (messages never live longer than an hour)"
    );
    let big = "x".repeat(5000);
    let too_big = env.wisp("alice", &["send", &bob, &big]).await;
    assert_eq!(too_big.code, 1);
    assert!(
        too_big.stderr.contains("at most 4096 bytes"),
        "{}",
        too_big.stderr
    );
    assert_eq!(env.server.stored().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_key_is_a_warning_with_its_own_exit_code() {
    let env = Env::start_forging().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice]).await;
    // Bob's keys go up when he first connects.
    env.ok("bob", &["recv"]).await;

    let forged = env.wisp("alice", &["send", &bob, "hello bob"]).await;
    assert_eq!(forged.code, 5, "{}", forged.stderr);
    assert_eq!(forged.stderr.lines().count(), 1, "{}", forged.stderr);
    assert_eq!(
        forged.stderr.trim(),
        format!(
            "warning: the server handed out a key for {bob} that their identity did not sign: \
             someone may be intercepting your messages, so nothing was sent. Compare your \
             safety number with them in person or on a call: wisp verify {bob}"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_link_round_trips_through_friend_add() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;

    let invite = env.ok("alice", &["invite"]).await;
    let lines: Vec<&str> = invite.lines().collect();
    // The link carries Alice's signed invitation token after her id.
    let link = lines[0].to_owned();
    let invitation = wisp_client::parse_invitation_link(&link).unwrap();
    assert_eq!(invitation.user.to_string(), alice);
    assert!(invitation.token.is_some(), "{link}");
    // The QR code below it: half blocks only, 80 columns at most.
    assert!(lines.len() > 10 && lines.len() <= 31, "{invite}");
    for line in &lines[1..] {
        assert!(line.chars().count() <= 80);
        assert!(line.chars().all(|c| "▀▄█ ".contains(c)), "{line:?}");
    }
    let json = json_lines(&env.ok("alice", &["invite", "--json"]).await);
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["id"], alice.as_str());
    let json_link = json[0]["link"].as_str().unwrap();
    let token = wisp_client::parse_invitation_link(json_link)
        .unwrap()
        .token
        .unwrap();
    assert_eq!(json[0]["expires_unix_ms"], token.expires.0);
    // Each invitation is its own.
    assert_ne!(json_link, link);
    // It needs no server.
    let offline = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(["invite", "--json"])
        .env("WISP_HOME", env.home("alice"))
        .env("WISP_SERVER", "ws://127.0.0.1:1")
        .env("WISP_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert_eq!(offline.status.code(), Some(0));

    // Bob pastes the link (with the newline of a copy) into friend add.
    let sent = env
        .ok("bob", &["friend", "add", &format!(" {link}\n")])
        .await;
    assert_eq!(
        sent.trim(),
        format!("friend request sent to {alice}; it waits for their answer for 7 days")
    );
    // An old link, without a token, still works.
    env.ok("bob", &["friend", "cancel", &alice]).await;
    env.ok("bob", &["friend", "add", &format!("wisp://add/{alice}")])
        .await;
    env.ok("alice", &["friend", "accept", &bob]).await;
    assert_eq!(
        ids(&env.ok("bob", &["friend", "list", "--json"]).await),
        vec![alice.clone()]
    );
    assert_eq!(
        ids(&env.ok("alice", &["friend", "list", "--json"]).await),
        vec![bob.clone()]
    );

    // A link that is not an invitation says what one looks like.
    let bad = env
        .wisp("bob", &["friend", "add", &format!("https://add/{alice}")])
        .await;
    assert_eq!(bad.code, 1);
    assert_eq!(bad.stderr.lines().count(), 1);
    assert!(
        bad.stderr
            .contains("a valid one is wisp://add/ followed by a 32-character user id"),
        "{}",
        bad.stderr
    );
    let short = env.wisp("bob", &["friend", "add", "wisp://add/abc"]).await;
    assert_eq!(short.code, 1);
    assert!(short.stderr.contains("wisp://add/"), "{}", short.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_sides_see_one_safety_number_and_can_mark_it_verified() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    let carol = env.register("carol").await;
    for friend in ["bob", "carol"] {
        let id = env.ok(friend, &["id"]).await;
        env.ok("alice", &["friend", "add", id.trim()]).await;
        env.ok(friend, &["friend", "accept", &alice]).await;
    }
    let number = |stdout: &str| {
        let json = json_lines(stdout);
        assert_eq!(json.len(), 1);
        assert_eq!(json[0]["verified"], false);
        json[0]["safety_number"].as_str().unwrap().to_owned()
    };
    let alice_bob = number(&env.ok("alice", &["verify", &bob, "--json"]).await);
    let bob_alice = number(&env.ok("bob", &["verify", &alice, "--json"]).await);
    assert_eq!(alice_bob, bob_alice);
    assert_eq!(alice_bob.len(), 60);
    assert!(alice_bob.bytes().all(|b| b.is_ascii_digit()));
    let alice_carol = number(&env.ok("alice", &["verify", &carol, "--json"]).await);
    assert_ne!(alice_carol, alice_bob);
    assert_eq!(
        alice_carol,
        number(&env.ok("carol", &["verify", &alice, "--json"]).await)
    );

    // The text form: the digits in groups, a QR code, the state, and what
    // to do.
    let shown = env.ok("bob", &["verify", &alice]).await;
    let groups: Vec<&str> = alice_bob
        .as_bytes()
        .chunks(5)
        .map(|g| std::str::from_utf8(g).unwrap())
        .collect();
    for line in groups.chunks(4) {
        assert!(shown.contains(&line.join(" ")), "{shown}");
    }
    assert!(shown.contains('█'), "{shown}");
    assert!(
        shown.contains(&format!("{alice} is not verified")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("run `wisp verify {alice} --mark`")),
        "{shown}"
    );

    // Only friends.
    let stranger = env.wisp("bob", &["verify", &carol]).await;
    assert_eq!(stranger.code, 1);
    assert_eq!(
        stranger.stderr.trim(),
        format!("error: {carol} is not your friend; safety numbers are compared with friends only")
    );
    let both = env
        .wisp("alice", &["verify", &bob, "--mark", "--unmark"])
        .await;
    assert_eq!(both.code, 2);

    // Marked, listed as verified; the other friend is not.
    let marked = env.ok("alice", &["verify", &bob, "--mark"]).await;
    assert_eq!(marked.trim(), format!("marked {bob} as verified"));
    let verified = |stdout: &str| -> Vec<(String, bool)> {
        let mut friends: Vec<(String, bool)> = json_lines(stdout)
            .iter()
            .map(|v| {
                assert!(v["since_unix_ms"].is_i64(), "{v}");
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["verified"].as_bool().unwrap(),
                )
            })
            .collect();
        friends.sort();
        friends
    };
    let mut expected = vec![(bob.clone(), true), (carol.clone(), false)];
    expected.sort();
    assert_eq!(
        verified(&env.ok("alice", &["friend", "list", "--json"]).await),
        expected
    );
    let listed = env.ok("alice", &["friend", "list"]).await;
    assert!(listed.contains(&format!("{bob} (verified)\n")), "{listed}");
    assert!(listed.contains(&format!("{carol}\n")), "{listed}");
    assert!(
        env.ok("alice", &["verify", &bob])
            .await
            .contains(&format!("{bob} is verified")),
    );
    // Only on Alice's side: Bob has not marked her.
    assert_eq!(
        verified(&env.ok("bob", &["friend", "list", "--json"]).await),
        vec![(alice.clone(), false)]
    );

    // Unmarked again.
    let unmarked = json_lines(
        &env.ok("alice", &["verify", &bob, "--unmark", "--json"])
            .await,
    );
    assert_eq!(unmarked[0]["verified"], false);
    assert_eq!(unmarked[0]["safety_number"], alice_bob.as_str());
    assert!(
        !env.ok("alice", &["friend", "list"])
            .await
            .contains("(verified)")
    );

    // A friendship that ends takes the mark with it: befriended again, Bob
    // is not verified.
    let marked_in = |user: &str, id: &str| {
        KeyStore::peek(&env.home(user), PASSPHRASE)
            .unwrap()
            .is_verified(&id.parse().unwrap())
    };
    env.ok("alice", &["verify", &bob, "--mark"]).await;
    assert!(marked_in("alice", &bob));
    env.ok("alice", &["friend", "remove", &bob]).await;
    assert!(!marked_in("alice", &bob));
    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice]).await;
    assert_eq!(
        verified(&env.ok("alice", &["friend", "list", "--json"]).await),
        expected
            .iter()
            .map(|(id, _)| (id.clone(), false))
            .collect::<Vec<_>>()
    );
    // So does one ended by the friend while this device was away: the mark
    // goes at the next connect.
    env.ok("carol", &["verify", &alice, "--mark"]).await;
    env.ok("alice", &["friend", "remove", &carol]).await;
    assert!(
        marked_in("carol", &alice),
        "nothing told Carol's device yet"
    );
    env.ok("carol", &["recv"]).await;
    assert!(!marked_in("carol", &alice));
    env.ok("carol", &["friend", "add", &alice]).await;
    env.ok("alice", &["friend", "accept", &carol]).await;
    assert_eq!(
        verified(&env.ok("carol", &["friend", "list", "--json"]).await),
        vec![(alice.clone(), false)]
    );
}
