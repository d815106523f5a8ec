//! Names never reach the server, on both backends: two users give each
//! other petnames (kept only in their sealed key stores) and choose
//! display names (sent to each other end-to-end encrypted); the names
//! arrive, and no table, file, key or log line of the server (at trace
//! level) holds any of them, in flight or after.

use std::time::Duration;

use wisp_client::Event;
use wisp_test_support::cluster::ClusterBackend;
use wisp_test_support::{Backend, Device, befriend_devices, device_at, leftovers};

use crate::WISP_SERVER;

/// Where a server keeps things, to scan.
enum Store {
    Sqlite(std::path::PathBuf),
    Cluster(ClusterBackend),
}

impl Store {
    /// Whether the store holds `user` (a sanity check of the scan).
    async fn mentions(&self, user: wisp_client::UserId) -> bool {
        match self {
            Store::Sqlite(dir) => !leftovers::in_sqlite_files(dir, user).is_empty(),
            Store::Cluster(cluster) => !leftovers::in_postgres(cluster, user).await.is_empty(),
        }
    }

    /// Where any of `names` is found: files, tables or keys.
    async fn holding(&self, names: &[String]) -> Vec<String> {
        let forms: Vec<Vec<u8>> = names
            .iter()
            .flat_map(|n| leftovers::text_forms(n))
            .collect();
        match self {
            Store::Sqlite(dir) => leftovers::sqlite_files_holding(dir, &forms),
            Store::Cluster(cluster) => {
                let needles: Vec<String> = forms
                    .iter()
                    .map(|f| String::from_utf8(f.clone()).expect("UTF-8"))
                    .collect();
                let mut found = leftovers::postgres_rows_holding(cluster, &needles).await;
                found.extend(leftovers::redis_keys_holding(cluster, &forms).await);
                found
            }
        }
    }
}

/// Waits for `device`'s next display name event; returns the name.
async fn display_name_event(device: &mut Device) -> Option<String> {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Event::DisplayName { display_name, .. } = device.event().await {
                return display_name;
            }
        }
    })
    .await
    .expect("a display name within 15 s")
}

async fn names_never_reach_the_server(backend: Backend) {
    let cwd = tempfile::tempdir().unwrap();
    let trace = ("WISP_LOG", "trace".to_owned());
    // The server processes live as long as this guard.
    type Guard = Box<dyn std::any::Any + Send>;
    let (_guard, url, logs, store): (Guard, _, _, _) = match backend {
        Backend::Sqlite => {
            let env = [
                ("WISP_POW_DIFFICULTY", "0"),
                ("WISP_REGISTER_LIMIT", "0"),
                ("WISP_LOG", "trace"),
            ];
            let (process, addr, logs) = WISP_SERVER.spawn(cwd.path(), &env);
            let store = Store::Sqlite(cwd.path().join("wisp-data"));
            let guard: Guard = Box::new(process);
            (guard, format!("ws://{addr}"), vec![logs], store)
        }
        Backend::Cluster => {
            let Some(cluster) = ClusterBackend::create().await else {
                return;
            };
            let mut env = cluster.node_env();
            env.push(trace);
            let mut nodes = WISP_SERVER.spawn_nodes(1, &env);
            let url = nodes.urls[0].clone();
            let logs = std::mem::take(&mut nodes.logs);
            let guard: Guard = Box::new(nodes);
            (guard, url, logs, Store::Cluster(cluster))
        }
    };
    let mut alice = device_at(&url).await;
    let mut bob = device_at(&url).await;
    befriend_devices(&alice, &bob).await;
    let tag = &alice.id().to_string()[..10];
    let names = [
        format!("Bobby Petname {tag}"),
        format!("Alice Petname {tag}"),
        format!("Alice Liddell {tag}"),
        format!("Robert Display {tag}"),
    ];
    alice
        .messenger
        .set_petname(bob.id(), Some(&names[0]))
        .unwrap();
    bob.messenger
        .set_petname(alice.id(), Some(&names[1]))
        .unwrap();
    // Bob is busy elsewhere: Alice's name waits for him on the server.
    alice
        .messenger
        .set_display_name(Some(&names[2]))
        .await
        .unwrap();
    // Sanity: the scan finds what is there (the friendship's ids); the
    // display name waits stored, as ciphertext only.
    assert!(store.mentions(bob.id()).await, "the scan sees the store");
    assert!(
        store.holding(&names).await.is_empty(),
        "a name in the server's store while in flight"
    );
    assert_eq!(
        display_name_event(&mut bob).await.as_deref(),
        Some(names[2].as_str())
    );
    bob.messenger
        .set_display_name(Some(&names[3]))
        .await
        .unwrap();
    assert_eq!(
        display_name_event(&mut alice).await.as_deref(),
        Some(names[3].as_str())
    );
    // Both sides settle: receipts out, everything acknowledged.
    alice.messenger.settle().await.unwrap();
    bob.messenger.settle().await.unwrap();
    assert_eq!(
        alice.messenger.friend_display_name(&bob.id()),
        Some(names[3].as_str())
    );
    assert_eq!(
        bob.messenger.friend_display_name(&alice.id()),
        Some(names[2].as_str())
    );
    assert_eq!(alice.messenger.petname(&bob.id()), Some(names[0].as_str()));
    // A new friend of Alice's gets her name as the friendship starts: her
    // device hears that Carol accepted and sends it.
    let mut carol = device_at(&url).await;
    alice
        .messenger
        .client()
        .request_friend(carol.id())
        .await
        .unwrap();
    carol
        .messenger
        .client()
        .accept_friend(alice.id())
        .await
        .unwrap();
    while !matches!(alice.event().await, Event::FriendAccepted { .. }) {}
    assert_eq!(
        display_name_event(&mut carol).await.as_deref(),
        Some(names[2].as_str())
    );
    carol.messenger.settle().await.unwrap();

    assert!(
        store.holding(&names).await.is_empty(),
        "a name in the server's store"
    );
    drop((alice, bob, carol));
    // The logs of the whole exchange, once the logins show in them.
    let mut logged: Vec<String> = Vec::new();
    for _ in 0..50 {
        logged.extend(logs.iter().flat_map(|l| l.try_iter()));
        if logged.iter().any(|line| line.contains("logged in")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        logged.iter().any(|line| line.contains("logged in")),
        "trace logs were captured: {:?}",
        logged.iter().take(20).collect::<Vec<_>>()
    );
    for name in &names {
        assert!(
            !logged.iter().any(|line| line.contains(name.as_str())),
            "a name in the server's logs"
        );
    }
}

on_every_backend!(names_never_reach_the_server);
