//! Two `wisp chat` windows in tmux (80×24, a tmux server of the test's
//! own) against a real server: Alice writes, Bob sees the unread count,
//! opens the conversation, reads, and the message burns on both screens;
//! after exit nothing of it is left in the panes' scrollback. tmux comes
//! from `scripts/ensure-services.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use wisp_test_support::TestServer;

use crate::PASSPHRASE;

/// A tmux server on a socket in the test's directory; killed on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (scripts/ensure-services.sh installs it)");
        assert!(
            output.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// What the pane shows now.
    fn screen(&self, pane: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", pane])
    }

    /// Waits (at most `limit`) until the pane's screen satisfies `check`;
    /// returns that screen.
    fn wait_for(
        &self,
        pane: &str,
        what: &str,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let start = Instant::now();
        loop {
            let screen = self.screen(pane);
            if check(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < limit,
                "{pane}'s screen never showed {what} within {limit:?}; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts `command` in a new session `name` of `columns`×`rows`, whose
    /// pane stays (dead) after the command ends, to be read.
    fn session(&self, name: &str, (columns, rows): (u16, u16), command: &str) {
        let (columns, rows) = (columns.to_string(), rows.to_string());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &columns,
            "-y",
            &rows,
            command,
        ]);
        self.run(&["set-option", "-t", name, "remain-on-exit", "on"]);
    }

    /// Sends `keys`, then waits for the screen [`Tmux::wait_for`] `check`s.
    fn press(
        &self,
        pane: &str,
        keys: &[&str],
        what: &str,
        limit: Duration,
        check: impl Fn(&str) -> bool,
    ) -> String {
        self.keys(pane, keys);
        self.wait_for(pane, what, limit, check)
    }

    fn keys(&self, pane: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", pane];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn text(&self, pane: &str, text: &str) {
        self.run(&["send-keys", "-t", pane, "-l", text]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

fn wisp(home: &Path, server: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wisp"))
        .args(args)
        .env("WISP_HOME", home)
        .env("WISP_SERVER", server)
        .env("WISP_PASSPHRASE", PASSPHRASE)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "wisp {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn show(title: &str, screen: &str) {
    println!("----- {title} -----\n{screen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chats_in_tmux_exchange_a_message_that_burns_on_both_screens() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let url = server.url();
    let (alice_home, bob_home) = (dir.path().join("alice"), dir.path().join("bob"));
    let socket = dir.path().join("tmux.sock");
    let wisp_bin = env!("CARGO_BIN_EXE_wisp");

    let (screens, tmux) = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let alice = wisp(&alice_home, &url, &["register"]);
            let alice = alice.lines().last().unwrap().to_owned();
            let bob = wisp(&bob_home, &url, &["register"]);
            let bob = bob.lines().last().unwrap().to_owned();
            wisp(&alice_home, &url, &["friend", "add", &bob]);
            wisp(&bob_home, &url, &["friend", "accept", &alice]);
            // Alice compared safety numbers with Bob; Bob has not yet.
            wisp(&alice_home, &url, &["verify", &bob, "--mark"]);

            let tmux = Tmux { socket };
            let start = |name: &str, home: &Path, extra: &str| {
                let command = format!(
                    "env WISP_HOME={} WISP_SERVER={url} WISP_PASSPHRASE='{PASSPHRASE}' {wisp_bin} chat {extra}",
                    home.display()
                );
                tmux.session(name, (80, 24), &command);
            };
            // Alice opens Bob's conversation; her messages burn 3 s after
            // Bob reads them. Bob starts on his friend list.
            start("alice", &alice_home, &format!("{bob} --view 3"));
            start("bob", &bob_home, "");
            let short_bob = &bob[..12];
            let short_alice = &alice[..12];
            let limit = Duration::from_secs(20);
            tmux.wait_for("alice", "the open conversation", limit, |s| {
                s.contains("● connected") && s.contains(short_bob) && s.contains("Enter sends")
            });
            let marked = tmux.screen("alice");
            assert!(marked.contains(&format!("✓{short_bob}")) && marked.contains("✓ verified"), "Bob marked verified:\n{marked}");
            tmux.wait_for("bob", "Alice in his list", limit, |s| s.contains(short_alice));

            tmux.text("alice", "hello bob, this burns");
            tmux.keys("alice", &["Enter"]);
            let mut screens = Vec::new();
            screens.push((
                "Alice, sent",
                tmux.wait_for("alice", "her message stored", limit, |s| {
                    s.contains("hello bob, this burns") && s.contains("sent · not read yet")
                }),
            ));
            let unread = tmux.wait_for("bob", "one unread", limit, |s| s.contains(&format!(" {short_alice}… (1)")));
            assert!(!unread.contains("hello bob"), "not shown before he opens it");
            screens.push(("Bob, one unread", unread));

            tmux.keys("bob", &["Enter"]);
            let reading = tmux.wait_for("bob", "the message with its burn timer", limit, |s| {
                s.contains("hello bob, this burns") && s.contains("burns in 0:0")
            });
            assert!(reading.contains("gone in 59:") || reading.contains("gone in 1:00:00"), "the hour's ceiling counts down:\n{reading}");
            screens.push(("Bob, reading", reading));
            screens.push((
                "Alice, read",
                tmux.wait_for("alice", "\"read\"", limit, |s| s.contains("read · burned")),
            ));
            screens.push((
                "Bob, burned",
                tmux.wait_for("bob", "the message gone", Duration::from_secs(10), |s| {
                    !s.contains("hello bob")
                }),
            ));
            screens.push((
                "Alice, burned",
                tmux.wait_for("alice", "her copy gone", Duration::from_secs(10), |s| {
                    !s.contains("hello bob")
                }),
            ));

            // Help overlay, then quit both.
            // Esc alone (tmux would read Esc and ? sent together as Alt-?).
            tmux.keys("bob", &["Escape"]);
            tmux.wait_for("bob", "the list in focus", limit, |s| s.contains("Tab to write"));
            tmux.keys("bob", &["?"]);
            screens.push((
                "Bob, help",
                tmux.wait_for("bob", "the help", limit, |s| s.contains("Messages burn once read")),
            ));
            tmux.keys("bob", &["?"]);

            // Bob compares safety numbers with Alice without leaving the
            // chat (its key store is locked by it), then marks her verified.
            tmux.keys("bob", &["v"]);
            let hers = wisp(&alice_home, &url, &["verify", &bob, "--json"]);
            let hers: serde_json::Value = serde_json::from_str(&hers).unwrap();
            let digits = hers["safety_number"].as_str().unwrap().to_owned();
            let first_row = [0, 5, 10, 15].map(|at| &digits[at..at + 5]).join(" ");
            let last_row = [45, 50, 55].map(|at| &digits[at..at + 5]).join(" ");
            screens.push((
                "Bob, the safety number",
                tmux.wait_for("bob", "the number Alice sees", limit, |s| {
                    s.contains(&first_row) && s.contains(&last_row) && s.contains("not verified yet")
                }),
            ));
            tmux.keys("bob", &["m"]);
            screens.push((
                "Bob, verified",
                tmux.wait_for("bob", "the mark", limit, |s| {
                    s.contains("✓ marked verified") && s.contains("is marked verified")
                }),
            ));
            let bobs = wisp(&bob_home, &url, &["friend", "list", "--json"]);
            assert!(
                bobs.contains(r#""verified":true"#),
                "saved in Bob's key store at once: {bobs}"
            );
            tmux.keys("bob", &["Escape"]);
            tmux.wait_for("bob", "Alice ticked in his list", limit, |s| {
                s.contains(&format!("✓{short_alice}")) && !s.contains("Verify")
            });

            // Carol asks Bob; he picks her request and accepts it.
            let carol_home = alice_home.with_file_name("carol");
            let carol = wisp(&carol_home, &url, &["register"]);
            let carol = carol.lines().last().unwrap().to_owned();
            wisp(&carol_home, &url, &["friend", "add", &bob]);
            screens.push((
                "Bob, a request",
                tmux.wait_for("bob", "Carol's request", limit, |s| {
                    s.contains(&format!("?{} new, asks", &carol[..8]))
                        && s.contains("Friends 1/20 · 1 req")
                }),
            ));
            tmux.keys("bob", &["j"]);
            tmux.keys("bob", &["a"]);
            screens.push((
                "Bob, request accepted",
                tmux.wait_for("bob", "Carol among his friends", limit, |s| {
                    s.contains("Friends 2/20") && s.contains(&carol[..12])
                }),
            ));
            let carols = wisp(&carol_home, &url, &["friend", "list", "--json"]);
            assert!(carols.contains(&bob), "Carol sees Bob as a friend: {carols}");
            (screens, tmux)
        })
        .await
        .unwrap()
    };

    // The server goes away: both status lines say so; it comes back on the
    // same address and data: both reconnect by themselves and say so.
    let stopped = server.stop().await;
    let (screens, tmux) = tokio::task::spawn_blocking(move || {
        let mut screens = screens;
        let limit = Duration::from_secs(20);
        for pane in ["alice", "bob"] {
            tmux.wait_for(pane, "the connection lost", limit, |s| {
                s.contains("○ reconnecting")
            });
        }
        screens.push(("Bob, server gone", tmux.screen("bob")));
        (screens, tmux)
    })
    .await
    .unwrap();
    let server = stopped.start_again().await;

    let (screens, tmux) = {
        tokio::task::spawn_blocking(move || {
            let mut screens = screens;
            let limit = Duration::from_secs(30);
            for pane in ["alice", "bob"] {
                tmux.wait_for(pane, "the connection back", limit, |s| {
                    s.contains("● connected (1 reconnects)")
                });
            }
            screens.push(("Bob, reconnected", tmux.screen("bob")));

            // One more, and both quit while it is on both screens: the
            // alternate screen keeps it out of the scrollback.
            tmux.text("alice", "last words on screen");
            tmux.keys("alice", &["Enter"]);
            tmux.wait_for("bob", "the last message", limit, |s| {
                s.contains("last words on screen")
            });
            // Alice has Bob's receipt (nothing is left on the server) and
            // still shows her line for a moment.
            tmux.wait_for("alice", "the last message read", limit, |s| {
                s.contains("last words on screen") && s.contains("read · burned")
            });
            tmux.keys("bob", &["C-c"]);
            tmux.keys("alice", &["C-c"]);
            for pane in ["alice", "bob"] {
                let start = Instant::now();
                loop {
                    let dead = tmux.run(&["display-message", "-p", "-t", pane, "#{pane_dead}"]);
                    if dead.trim() == "1" {
                        break;
                    }
                    assert!(
                        start.elapsed() < limit,
                        "{pane}'s chat did not quit on Ctrl-C"
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
                // The whole pane, scrollback included: the alternate
                // screen kept every message out of it.
                let history = tmux.run(&["capture-pane", "-p", "-S", "-", "-t", pane]);
                for text in ["hello bob", "last words"] {
                    assert!(!history.contains(text), "{pane}'s scrollback:\n{history}");
                }
            }
            (screens, tmux)
        })
        .await
        .unwrap()
    };
    drop(tmux);
    for (title, screen) in &screens {
        show(title, screen);
    }
    assert_eq!(server.stored().await, 0, "burned on the server too");
}

/// `wisp chat` on a `wss://` server whose CA is given in `WISP_CA_CERT`:
/// it connects, and a message written in it reaches the friend (read with
/// `wisp recv` over TLS too).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_over_wss_connects_and_sends() {
    use wisp_test_support::{TestCa, TlsFront};
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let ca = TestCa::new();
    let ca_file = ca.write_pem(dir.path());
    let front = TlsFront::start(server.server.local_addr(), &ca.leaf(&["127.0.0.1"])).await;
    let url = front.url();
    let (alice_home, bob_home) = (dir.path().join("alice"), dir.path().join("bob"));
    let socket = dir.path().join("tmux.sock");
    let wisp_bin = env!("CARGO_BIN_EXE_wisp");

    tokio::task::spawn_blocking(move || {
        let ca = ca_file.to_str().unwrap().to_owned();
        let run = |home: &Path, args: &[&str]| {
            let mut all = vec!["--ca-cert", ca.as_str()];
            all.extend_from_slice(args);
            wisp(home, &url, &all)
        };
        let alice = run(&alice_home, &["register"]);
        let alice = alice.lines().last().unwrap().to_owned();
        let bob = run(&bob_home, &["register"]);
        let bob = bob.lines().last().unwrap().to_owned();
        run(&alice_home, &["friend", "add", &bob]);
        run(&bob_home, &["friend", "accept", &alice]);

        let tmux = Tmux { socket };
        let command = format!(
            "env WISP_HOME={} WISP_SERVER={url} WISP_CA_CERT={ca} WISP_PASSPHRASE='{PASSPHRASE}' {wisp_bin} chat {bob}",
            alice_home.display()
        );
        tmux.session("alice", (80, 24), &command);
        let limit = Duration::from_secs(20);
        let connected = tmux.wait_for("alice", "connected over wss", limit, |s| {
            s.contains("● connected") && s.contains("Enter sends")
        });
        show("Alice, connected over wss", &connected);
        tmux.text("alice", "hello over wss");
        tmux.keys("alice", &["Enter"]);
        tmux.wait_for("alice", "her message stored", limit, |s| {
            s.contains("hello over wss") && s.contains("sent · not read yet")
        });
        let received = run(&bob_home, &["recv", "--json"]);
        assert!(received.contains("hello over wss"), "{received}");
        tmux.keys("alice", &["C-c"]);
    })
    .await
    .unwrap();
}

/// What a hostile friend sends shows as inert text in a real terminal, in
/// `wisp recv` and in `wisp chat`: the screen is not cleared, the window
/// not retitled, and no line passes for another message; and names given
/// in the chat (n, N) are saved and sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_text_stays_inert_and_names_are_given_in_tmux() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start().await;
    let url = server.url();
    let socket = dir.path().join("tmux.sock");
    let wisp_bin = env!("CARGO_BIN_EXE_wisp");
    let screens = tokio::task::spawn_blocking(move || {
        let (alice_home, bob_home) = (dir.path().join("alice"), dir.path().join("bob"));
        let alice = wisp(&alice_home, &url, &["register"]);
        let alice = alice.lines().last().unwrap().to_owned();
        let bob = wisp(&bob_home, &url, &["register"]);
        let bob = bob.lines().last().unwrap().to_owned();
        wisp(
            &alice_home,
            &url,
            &["friend", "add", &bob, "--name", "Bob Builder"],
        );
        wisp(
            &bob_home,
            &url,
            &["friend", "accept", &alice, "--name", "Alice"],
        );
        wisp(&alice_home, &url, &["profile", "name", "Alice Liddell"]);
        let mallory = wisp_client::Identity::generate().user_id().to_string();
        let forged = format!("see you\n{mallory}: I am someone else");
        let escapes = "\x1b[2J\x1b]0;pwned\x07\x1b[31mred\x1b[0m \u{9b}2J \u{202e}txt.exe";
        // Where the terminal's own wrapping would start a row with it.
        let long = format!("{}Mallory: wrapped", "z".repeat(60 - "Alice: ".len()));
        let send_all = || {
            for text in [forged.as_str(), escapes, long.as_str()] {
                wisp(&alice_home, &url, &["send", "Bob Builder", text]);
            }
        };
        let tmux = Tmux { socket };
        let env = |home: &Path| {
            format!(
                "env WISP_HOME={} WISP_SERVER={url} WISP_PASSPHRASE='{PASSPHRASE}' {wisp_bin}",
                home.display()
            )
        };
        let limit = Duration::from_secs(20);
        let mut screens = Vec::new();

        // `wisp recv` on a 60-column terminal.
        send_all();
        // The pane outlives the command, which says how it ended.
        let command = format!("{} recv; echo RECV-EXIT-$?; sleep 120", env(&bob_home));
        tmux.session("recv", (60, 20), &command);
        tmux.wait_for("recv", "wisp recv done", limit, |s| {
            s.contains("RECV-EXIT-")
        });
        // History included: tmux may push the first rows up while it sizes
        // the new pane.
        let shown = tmux.run(&["capture-pane", "-p", "-S", "-", "-t", "recv"]);
        let (shown, exit) = shown.split_once("RECV-EXIT-").unwrap();
        assert!(exit.starts_with('0'), "wisp recv failed: {exit}");
        let shown = shown.to_owned();
        let rows: Vec<&str> = shown.lines().filter(|r| !r.trim().is_empty()).collect();
        let senders = rows.iter().filter(|r| !r.starts_with("    ")).count();
        assert_eq!(
            senders, 3,
            "three rows start a message, from Alice:\n{shown}"
        );
        assert!(
            rows.iter()
                .filter(|r| !r.starts_with("    "))
                .all(|r| r.starts_with("Alice: ")),
            "{shown}"
        );
        assert!(
            shown.contains(&format!("    {mallory}: I am someone else")),
            "{shown}"
        );
        assert!(shown.contains(r"\x1b[2J\x1b]0;pwned\x07"), "{shown}");
        assert!(shown.contains(r"\u{202e}txt.exe"), "{shown}");
        assert!(
            shown.contains("z\n    Mallory: wrapped"),
            "wrapped under its sender:\n{shown}"
        );
        let title = tmux.run(&["display-message", "-p", "-t", "recv", "#{pane_title}"]);
        assert!(!title.contains("pwned"), "the window was retitled: {title}");
        screens.push(("wisp recv (60 columns)", shown));

        // `wisp chat`, opened by the name Bob gave Alice.
        send_all();
        let command = format!("{} chat Alice", env(&bob_home));
        tmux.session("bob", (80, 24), &command);
        let chat = tmux.wait_for("bob", "the messages", limit, |s| {
            s.contains("I am someone") && s.contains("wrapped") && s.contains("txt.exe")
        });
        let pane: Vec<String> = chat.lines().map(|r| r.chars().skip(25).collect()).collect();
        let starts = pane.iter().filter(|r| r.starts_with('◂')).count();
        assert_eq!(starts, 3, "three messages from Alice, no more:\n{chat}");
        assert!(
            !pane.iter().any(|r| r.starts_with('▸')),
            "none passes for Bob's:\n{chat}"
        );
        assert!(
            chat.contains(&format!("    {}", &mallory[..20])),
            "indented:\n{chat}"
        );
        assert!(chat.contains(r"\x1b[2J\x1b]0;pwned\x07"), "{chat}");
        assert!(chat.contains(" Alice · "), "the title names her:\n{chat}");
        let title = tmux.run(&["display-message", "-p", "-t", "bob", "#{pane_title}"]);
        assert!(!title.contains("pwned"), "the window was retitled: {title}");
        screens.push(("wisp chat, hostile messages", chat));

        // Bob chooses his display name (N) and renames Alice (n).
        tmux.press("bob", &["Escape"], "the list in focus", limit, |s| {
            s.contains("Tab to write")
        });
        tmux.press("bob", &["N"], "the name field", limit, |s| {
            s.contains("your display name")
        });
        tmux.text("bob", "Robert");
        tmux.press("bob", &["Enter"], "the name saved", limit, |s| {
            s.contains("display name is saved")
        });
        tmux.press("bob", &["n"], "the rename field", limit, |s| {
            s.contains("your name for")
        });
        tmux.keys("bob", &["BSpace", "BSpace", "BSpace", "BSpace", "BSpace"]);
        tmux.text("bob", "Alice L.");
        tmux.keys("bob", &["Enter"]);
        screens.push((
            "wisp chat, Alice renamed",
            tmux.wait_for("bob", "the new name", limit, |s| s.contains(" Alice L.")),
        ));
        tmux.keys("bob", &["C-c"]);
        wisp(&alice_home, &url, &["recv"]);
        let friends = wisp(&alice_home, &url, &["friend", "list", "--json"]);
        assert!(friends.contains(r#""display_name":"Robert""#), "{friends}");
        assert!(friends.contains(r#""name":"Bob Builder""#), "{friends}");
        screens
    })
    .await
    .unwrap();
    for (title, screen) in &screens {
        show(title, screen);
    }
}
