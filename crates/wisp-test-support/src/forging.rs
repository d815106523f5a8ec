//! A compromised server, for the tests of the forged-key warning: a real
//! server on SQLite, except that its one-time-key store breaks the
//! signature of every key it hands out. An honest server refuses such a
//! key at upload (it checks every signature), so only a server that lies
//! can hand one out, and a device must refuse it, loudly.

use async_trait::async_trait;
use std::sync::Arc;

use wisp_proto::UserId;
use wisp_server::store::sqlite::SqliteStore;
use wisp_server::store::{ClaimedKey, PreKeyStore, SignedKey, StoreError, Stores};

use crate::server::TestServer;

/// The real key store, except that every claimed key's signature is
/// broken: what a server that swaps keys would hand out.
#[derive(Debug)]
struct ForgingPreKeys(SqliteStore);

#[async_trait]
impl PreKeyStore for ForgingPreKeys {
    async fn add_keys(
        &self,
        owner: UserId,
        one_time: &[SignedKey],
        fallback: Option<&SignedKey>,
    ) -> Result<usize, StoreError> {
        self.0.add_keys(owner, one_time, fallback).await
    }

    async fn claim(&self, owner: UserId) -> Result<Option<ClaimedKey>, StoreError> {
        let mut claimed = self.0.claim(owner).await?;
        if let Some(claimed) = claimed.as_mut() {
            claimed.key.signature[0] ^= 1;
        }
        Ok(claimed)
    }

    async fn one_time_key_count(&self, owner: UserId) -> Result<usize, StoreError> {
        self.0.one_time_key_count(owner).await
    }
}

impl TestServer {
    /// A server on SQLite whose key claims hand out forged keys.
    pub async fn start_forging_keys() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SqliteStore::open(&dir.path().join("data"))
            .await
            .expect("SQLite opens");
        let stores = Stores {
            accounts: Arc::new(store.clone()),
            friends: Arc::new(store.clone()),
            prekeys: Arc::new(ForgingPreKeys(store.clone())),
            mailbox: Arc::new(store),
            limits: None,
        };
        Self::start_over(stores, dir).await
    }
}
