//! Names and hostile text through the one-shot commands, against a real
//! server: petnames and display names in every command, a name taken
//! wherever an id is, clashes and bad names refused; and what a hostile
//! friend sends (escape sequences, window titles, bidi overrides, line
//! breaks forging another sender, bytes that are not UTF-8) shows
//! harmlessly in `wisp recv`, exactly in `wisp recv --json`; a display
//! name no client would send is cleaned and shows inert in the lists.

use wisp_client::{Client, Identity, LocalState, UserId};
use wisp_proto::frames::{Sealed, Text, sealed::Kind};
use wisp_proto::{ClientMsgId, codec};
use wisp_test_support::TestUser;

use crate::cli::{Env, json_lines};

/// What the screen must never receive from the network: control bytes a
/// terminal acts on (other than the CLI's own line breaks) and
/// text-direction overrides.
fn assert_inert(output: &str) {
    for c in output.chars() {
        assert!(
            c == '\n' || !(c.is_control() || wisp_client::names::is_invisible_format(c)),
            "{c:?} reached the terminal:\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_friend_cannot_drive_the_terminal_or_forge_a_sender() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    env.ok("alice", &["friend", "add", &bob]).await;
    env.ok("bob", &["friend", "accept", &alice, "--name", "Alice"])
        .await;
    let mallory = Identity::generate().user_id().to_string();
    let forged = format!("see you\n{mallory}: I am someone else\r\nAlice: me too");
    let escapes = "\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m \u{9b}2J \u{202e}txt.exe\u{2066}";
    env.ok("alice", &["send", &bob, &forged]).await;
    env.ok("alice", &["send", &bob, escapes]).await;

    // Exact in JSON (JSON escapes what it must).
    let json = env.wisp("bob", &["recv", "--json"]).await;
    assert_eq!(json.code, 0, "{}", json.stderr);
    let received = json_lines(&json.stdout);
    assert_eq!(received[0]["text"], forged.as_str());
    assert_eq!(received[1]["text"], escapes);
    assert_eq!(received[0]["from_name"], "Alice");
    assert!(received[0]["from_display_name"].is_null());
    assert_inert(&json.stdout);

    env.ok("alice", &["send", &bob, &forged]).await;
    env.ok("alice", &["send", &bob, escapes]).await;
    let shown = env.ok("bob", &["recv"]).await;
    println!("----- wisp recv -----\n{shown}");
    assert_inert(&shown);
    let rows: Vec<&str> = shown.lines().collect();
    assert_eq!(
        rows,
        vec![
            "Alice: see you".to_owned(),
            format!("    {mallory}: I am someone else"),
            "    Alice: me too".to_owned(),
            r"Alice: \x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m \u{9b}2J \u{202e}txt.exe\u{2066}"
                .to_owned(),
        ]
    );
}

const TEN_MINUTES: std::time::Duration = std::time::Duration::from_secs(600);

/// A friend of Bob's who speaks the protocol with the SDK's plain client
/// and her own state, to send what no client would.
struct Mallory {
    client: Client,
    state: LocalState,
    bob: UserId,
}

impl Mallory {
    /// Registers Mallory, has Bob (a CLI user) accept her, and opens an
    /// end-to-end session with him.
    async fn befriend(env: &Env, bob: &str) -> Self {
        let TestUser {
            client, identity, ..
        } = env.server.user().await;
        let bob: UserId = bob.parse().unwrap();
        client.request_friend(bob).await.unwrap();
        let me = identity.user_id().to_string();
        env.ok("bob", &["friend", "accept", &me]).await;
        let mut state = LocalState::new(identity);
        let bundle = client.claim_keys(bob).await.unwrap();
        state.start_session(bob, &bundle).unwrap();
        Self { client, state, bob }
    }

    /// Hands Bob `ciphertext` under `id`, living ten minutes.
    async fn send(&self, id: ClientMsgId, ciphertext: Vec<u8>) {
        self.client
            .send_ciphertext(self.bob, id, ciphertext, TEN_MINUTES)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_friend_speaking_the_protocol_gets_no_raw_bytes_on_screen() {
    let env = Env::start().await;
    let bob = env.register("bob").await;
    // Mallory speaks the protocol herself, to seal bytes no client would.
    let mut mallory = Mallory::befriend(&env, &bob).await;
    let sealed = Sealed {
        client_msg_id: vec![7; 16],
        sent_unix_ms: wisp_client::now_ms().0,
        expires_unix_ms: wisp_client::now_ms().0 + 600_000,
        kind: Some(Kind::Text(Text {
            body: "PLACEHOLDER".into(),
            view_seconds: 0,
        })),
    };
    let mut plaintext = codec::encode(&sealed);
    let at = plaintext
        .windows(11)
        .position(|w| w == b"PLACEHOLDER")
        .unwrap();
    plaintext[at..at + 11].copy_from_slice(b"\xff\xfe\x1b[2J\xc0\x80\x9b!!");
    let ciphertext = mallory
        .state
        .encrypt_plaintext(mallory.bob, &plaintext)
        .unwrap();
    mallory.send(ClientMsgId([7; 16]), ciphertext).await;

    let out = env.wisp("bob", &["recv"]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, "", "nothing printed as a message");
    assert!(
        out.stderr.contains("could not be decrypted"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("[2J"), "{}", out.stderr);
    assert_inert(&out.stderr);

    // A display name no client would send: cleaned when it comes, then
    // shown inert in the lists, marked as Mallory's own claim.
    let hostile = "\x1b]0;pwned\x07Bob\u{202e}\nmallory: \u{200b}hi".repeat(3);
    let profile = wisp_client::Content::Profile {
        display_name: Some(hostile),
    };
    let sealed = mallory
        .state
        .seal(
            mallory.bob,
            ClientMsgId([8; 16]),
            profile,
            wisp_client::now_ms(),
            TEN_MINUTES,
        )
        .unwrap();
    mallory.send(ClientMsgId([8; 16]), sealed).await;
    let out = env.wisp("bob", &["recv"]).await;
    assert_eq!((out.code, out.stdout.as_str()), (0, ""), "{}", out.stderr);
    let listed = env.ok("bob", &["friend", "list"]).await;
    println!("----- wisp friend list -----\n{listed}");
    assert_inert(&listed);
    assert_eq!(listed.lines().count(), 1, "one friend, one row: {listed}");
    let name = listed.split_once("  ~").unwrap().1.trim_end();
    assert_eq!(name.chars().count(), 64, "cut to 64: {name}");
    assert!(
        name.starts_with("]0;pwned Bob mallory: hi ]0;pwned"),
        "{name}"
    );
    let json = json_lines(&env.ok("bob", &["friend", "list", "--json"]).await);
    assert_eq!(json[0]["display_name"].as_str(), Some(name));
    assert!(json[0]["name"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_name_each_other_and_see_the_names_everywhere() {
    let env = Env::start().await;
    let alice = env.register("alice").await;
    let bob = env.register("bob").await;
    let carol = env.register("carol").await;

    // Names given with the request and the answer.
    let asked = env
        .ok("alice", &["friend", "add", &bob, "--name", "Bob Builder"])
        .await;
    assert!(
        asked.starts_with("friend request sent to Bob Builder"),
        "{asked}"
    );
    let requests = json_lines(&env.ok("alice", &["friend", "requests", "--json"]).await);
    assert_eq!(requests[0]["name"], "Bob Builder");
    let incoming = env.ok("bob", &["friend", "requests"]).await;
    assert_eq!(incoming.trim(), format!("incoming {alice}"));
    let accepted = env
        .ok("bob", &["friend", "accept", &alice, "--name", "Alice"])
        .await;
    assert_eq!(accepted.trim(), "you are now friends with Alice");

    // Display names go end-to-end; each side reads the other's.
    let chosen = env.ok("alice", &["profile", "name", "Alice Liddell"]).await;
    assert!(chosen.contains("\"Alice Liddell\""), "{chosen}");
    env.ok("bob", &["profile", "name", "Robert"]).await;
    let mine = json_lines(&env.ok("bob", &["profile", "show", "--json"]).await);
    assert_eq!(mine[0]["display_name"], "Robert");
    env.ok("alice", &["recv"]).await;
    env.ok("bob", &["recv"]).await;
    // Receipts for them reach the senders, who then stop sending them.
    env.ok("alice", &["recv"]).await;

    let friends = json_lines(&env.ok("alice", &["friend", "list", "--json"]).await);
    assert_eq!(friends[0]["name"], "Bob Builder");
    assert_eq!(friends[0]["display_name"], "Robert");
    let friends = json_lines(&env.ok("bob", &["friend", "list", "--json"]).await);
    assert_eq!(friends[0]["name"], "Alice");
    assert_eq!(friends[0]["display_name"], "Alice Liddell");
    assert_eq!(
        env.ok("bob", &["friend", "list"]).await.trim(),
        format!("{alice}  Alice")
    );

    // Names stand in for ids; the petname wins over the display name.
    let sent = env.ok("alice", &["send", "bob builder", "hi bob"]).await;
    assert!(sent.starts_with("sent to Bob Builder;"), "{sent}");
    let json = json_lines(&env.ok("bob", &["recv", "--json"]).await);
    assert_eq!(json[0]["from_name"], "Alice");
    assert_eq!(json[0]["from_display_name"], "Alice Liddell");
    env.ok("alice", &["send", "Bob Builder", "again"]).await;
    assert_eq!(env.ok("bob", &["recv"]).await, "Alice: again\n");
    let verify = json_lines(&env.ok("bob", &["verify", "Alice", "--json"]).await);
    assert_eq!(verify[0]["id"], alice.as_str());
    assert_eq!(verify[0]["name"], "Alice");
    let shown = env.ok("bob", &["verify", "Alice"]).await;
    assert!(
        shown.starts_with(&format!("safety number with Alice ({alice}):")),
        "{shown}"
    );

    // A friend Carol has not named shows under the name Alice chose,
    // marked as Alice's own, with her id's start.
    env.ok("carol", &["friend", "add", &alice]).await;
    env.ok("alice", &["friend", "accept", &carol]).await;
    env.ok("alice", &["send", &carol, "hello carol"]).await;
    let carols = env.ok("carol", &["recv"]).await;
    assert_eq!(
        carols,
        format!("~Alice Liddell ({}…): hello carol\n", &alice[..12])
    );
    let list = env.ok("carol", &["friend", "list"]).await;
    assert_eq!(list.trim(), format!("{alice}  ~Alice Liddell"));

    // Names are unique regardless of case, one line, and never an id.
    for (name, why) in [
        ("bob builder", "already given"),
        ("two\nlines", "control"),
        ("\u{202e}evil", "text-direction"),
        (&bob[..], "look like a user id"),
        (&"x".repeat(65)[..], "at most 64"),
    ] {
        let refused = env.wisp("alice", &["friend", "rename", &carol, name]).await;
        assert_eq!(refused.code, 1, "{name:?}: {}", refused.stdout);
        assert!(refused.stderr.contains(why), "{name:?}: {}", refused.stderr);
        assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
    }
    let own = env.wisp("alice", &["friend", "rename", &alice, "Me"]).await;
    assert_eq!(own.code, 1);
    assert!(own.stderr.contains("your own id"), "{}", own.stderr);
    let refused = env.wisp("alice", &["profile", "name", "a\x1bb"]).await;
    assert_eq!(refused.code, 1);
    env.ok("alice", &["friend", "rename", &carol, "Carol"])
        .await;
    env.ok("alice", &["friend", "rename", "carol", "Caroline"])
        .await;
    let friends = json_lines(&env.ok("alice", &["friend", "list", "--json"]).await);
    let named: Vec<&str> = friends.iter().filter_map(|f| f["name"].as_str()).collect();
    assert_eq!(named.len(), 2);
    assert!(named.contains(&"Caroline") && named.contains(&"Bob Builder"));
    env.ok("alice", &["friend", "rename", "Caroline", ""]).await;
    let unknown = env.wisp("alice", &["send", "Caroline", "x"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("nor is it a name you gave anyone"),
        "{}",
        unknown.stderr
    );

    // Removing a friend drops the name given to them.
    env.ok("alice", &["friend", "remove", "Bob Builder"]).await;
    let friends = json_lines(&env.ok("alice", &["friend", "list", "--json"]).await);
    assert_eq!(friends.len(), 1);
    assert!(friends[0]["name"].is_null());
    let gone = env.wisp("alice", &["send", "Bob Builder", "x"]).await;
    assert_eq!(gone.code, 1);
}
