//! What the `wisp` binary's tests share: a real server on loopback (port
//! 0, real SQLite in `dir`, cheap proof of work, no rate limits) and the
//! passphrase every test home uses.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use wisp_server::{Config, Server};

pub(crate) const PASSPHRASE: &str = "correct horse battery staple";

pub(crate) async fn start_server(dir: &Path) -> Server {
    start_server_at(dir, "127.0.0.1:0".parse().unwrap()).await
}

/// The server on `dir`'s data at `listen` (again, after a shutdown).
pub(crate) async fn start_server_at(dir: &Path, listen: std::net::SocketAddr) -> Server {
    let config = Config {
        listen,
        data_dir: dir.join("server"),
        pow_difficulty: 8,
        register_limit: 0,
        send_limit: 0,
        ..Config::default()
    };
    Server::start(&config).await.unwrap()
}

/// A compromised server: real, except that its key store hands out every
/// claimed one-time key with a broken signature (an honest server refuses
/// such a key at upload), for the tests of the forged-key warning.
#[allow(dead_code)] // Not every test binary that includes this module uses it.
pub(crate) async fn start_forging_server(dir: &Path) -> Server {
    use std::sync::Arc;
    use wisp_server::store::sqlite::SqliteStore;
    use wisp_server::store::{ClaimedKey, PreKeyStore, SignedKey, StoreError, Stores};

    struct ForgingPreKeys(SqliteStore);

    #[async_trait::async_trait]
    impl PreKeyStore for ForgingPreKeys {
        async fn add_keys(
            &self,
            owner: wisp_client::UserId,
            one_time: &[SignedKey],
            fallback: Option<&SignedKey>,
        ) -> Result<usize, StoreError> {
            self.0.add_keys(owner, one_time, fallback).await
        }

        async fn claim(
            &self,
            owner: wisp_client::UserId,
        ) -> Result<Option<ClaimedKey>, StoreError> {
            let mut claimed = self.0.claim(owner).await?;
            if let Some(claimed) = claimed.as_mut() {
                claimed.key.signature[0] ^= 1;
            }
            Ok(claimed)
        }

        async fn one_time_key_count(
            &self,
            owner: wisp_client::UserId,
        ) -> Result<usize, StoreError> {
            self.0.one_time_key_count(owner).await
        }
    }

    let config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("server"),
        pow_difficulty: 8,
        register_limit: 0,
        send_limit: 0,
        ..Config::default()
    };
    let store = SqliteStore::open(&config.data_dir).await.unwrap();
    let stores = Stores {
        accounts: Arc::new(store.clone()),
        friends: Arc::new(store.clone()),
        prekeys: Arc::new(ForgingPreKeys(store.clone())),
        mailbox: Arc::new(store),
    };
    Server::start_with(&config, stores, Arc::new(wisp_server::clock::SystemClock))
        .await
        .unwrap()
}
