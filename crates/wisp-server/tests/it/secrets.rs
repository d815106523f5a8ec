//! The server's database never holds a client's private key bytes: the
//! test registers users, makes them friends, then scans the SQLite file and
//! its WAL for every byte string of each user's private keys.

use wisp_test_support::{TestServer, befriend};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn no_private_key_bytes_reach_the_server_database() {
    let server = TestServer::start().await;
    let alice = server.user().await;
    let bob = server.user().await;
    befriend(&alice, &bob).await;

    let files: Vec<_> = std::fs::read_dir(&server.data_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wisp.sqlite3"))
        })
        .collect();
    assert!(
        files.iter().any(|p| p.to_string_lossy().ends_with("-wal")),
        "the WAL is scanned too: {files:?}"
    );
    let contents: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();

    for user in [&alice, &bob] {
        // Sanity: the scan does find what is there, the public key.
        let public = user.identity.ed25519_key();
        assert!(
            contents.iter().any(|c| contains(c, &public)),
            "public key is stored"
        );
        let secrets = user.identity.secret_key_material_for_tests();
        assert!(secrets.len() >= 2);
        for secret in secrets {
            for (path, content) in files.iter().zip(&contents) {
                assert!(
                    !contains(content, &secret),
                    "private key bytes found in {}",
                    path.display()
                );
            }
        }
    }
}
