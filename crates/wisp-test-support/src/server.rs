//! One server in the test's own process: [`TestServer`], started on
//! loopback port 0 from [`test_config`] (an easy puzzle, no rate limits),
//! on SQLite in a temporary directory removed with it, on the cluster
//! backend ([`Backend::Cluster`]), or on stores the test built itself.

use std::path::PathBuf;
use std::sync::Arc;

use wisp_client::{Client, Events, Identity, KeyStore};
use wisp_server::clock::{Clock, SystemClock};
use wisp_server::store::Stores;
use wisp_server::{Config, Server};

use crate::cluster::ClusterBackend;
use crate::device::{Device, TestUser, device_at, reopen_at};

/// The proof-of-work difficulty of test servers: a real puzzle, solved in
/// microseconds.
pub const TEST_POW_BITS: u32 = 4;

/// The settings every test server and node starts from: any free loopback
/// port, data in `data_dir`, a [`TEST_POW_BITS`] puzzle, no rate limits and
/// no per-address connection cap (every test client is 127.0.0.1; the
/// cap's own tests set it).
/// A test changes what it is about (`TestServer::start_with`).
pub fn test_config(data_dir: PathBuf) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("loopback address"),
        data_dir,
        pow_difficulty: TEST_POW_BITS,
        register_limit: 0,
        send_limit: 0,
        max_connections_per_address: 0,
        ..Config::default()
    }
}

/// Which storage backend a test's server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// PostgreSQL and Redis, the local ones (a schema and key prefix of the
    /// test's own).
    Cluster,
}

/// A server started for one test; its temporary directory (and, on the
/// cluster backend, its schema and keys) go when it is dropped.
#[derive(Debug)]
pub struct TestServer {
    pub server: Server,
    /// Where the server keeps its SQLite file.
    pub data_dir: PathBuf,
    config: Config,
    clock: Arc<dyn Clock>,
    cluster: Option<ClusterBackend>,
    _dir: tempfile::TempDir,
}

/// A [`TestServer`] after [`TestServer::stop`]: its data, address and
/// backend, kept for [`StoppedServer::start_again`].
#[derive(Debug)]
pub struct StoppedServer {
    config: Config,
    clock: Arc<dyn Clock>,
    cluster: Option<ClusterBackend>,
    dir: tempfile::TempDir,
}

impl TestServer {
    /// A server on SQLite with the [`test_config`].
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server on SQLite with the [`test_config`] as `tweak` changes it.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_on(Backend::Sqlite, tweak, Arc::new(SystemClock))
            .await
            .expect("SQLite is always there")
    }

    /// A server on `backend`, with `tweak` applied to its config, reading
    /// time from `clock`; None (after saying so) when the cluster backend's
    /// services are missing here, outside CI.
    pub async fn start_on(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        clock: Arc<dyn Clock>,
    ) -> Option<Self> {
        let cluster = match backend {
            Backend::Sqlite => None,
            Backend::Cluster => Some(ClusterBackend::create().await?),
        };
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path().join("data"));
        if let Some(cluster) = &cluster {
            cluster.configure(&mut config);
        }
        tweak(&mut config);
        Some(Self::run(config, clock, cluster, dir).await)
    }

    /// A server over `stores` the test built itself (a store that loses
    /// acknowledgements, a store the test also writes to behind the
    /// server's back), with the [`test_config`]; `dir` holds their data and
    /// lives as long as the server.
    pub async fn start_over(stores: Stores, dir: tempfile::TempDir) -> Self {
        let config = test_config(dir.path().join("data"));
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let server = Server::start_with(&config, stores, Arc::clone(&clock))
            .await
            .expect("server starts");
        Self {
            server,
            data_dir: config.data_dir.clone(),
            config,
            clock,
            cluster: None,
            _dir: dir,
        }
    }

    async fn run(
        config: Config,
        clock: Arc<dyn Clock>,
        cluster: Option<ClusterBackend>,
        dir: tempfile::TempDir,
    ) -> Self {
        let started = match &cluster {
            Some(cluster) => {
                Server::start_with(&config, cluster.stores().await, Arc::clone(&clock)).await
            }
            None => Server::start_with_clock(&config, Arc::clone(&clock)).await,
        };
        let server = started.expect("server starts");
        Self {
            server,
            data_dir: config.data_dir.clone(),
            config,
            clock,
            cluster,
            _dir: dir,
        }
    }

    /// Shuts the server down as an operator would (clients are told it is
    /// going away), keeping its data and address so that
    /// [`StoppedServer::start_again`] brings the same server back (on the
    /// SQLite in its data directory or on its cluster; not on stores given
    /// to [`TestServer::start_over`]).
    pub async fn stop(self) -> StoppedServer {
        let mut config = self.config;
        config.listen = self.server.local_addr();
        self.server.shutdown().await;
        StoppedServer {
            config,
            clock: self.clock,
            cluster: self.cluster,
            dir: self._dir,
        }
    }

    /// Shuts the server down (clients are told it is going away).
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }

    /// A new registered device with its own encrypted key store, logged in
    /// as a `Messenger` (which puts its one-time keys on the server).
    pub async fn device(&self) -> Device {
        device_at(&self.url()).await
    }

    /// Opens `home`'s key store again and logs in anew (a restart).
    pub async fn reopen(&self, home: tempfile::TempDir) -> Device {
        reopen_at(&self.url(), home).await
    }

    /// A second plain connection logged in as `device`'s identity.
    pub async fn login_same(&self, device: &Device) -> Client {
        self.raw_login(&device.home).await.0
    }

    /// A plain SDK connection (no `Messenger`) logged in with the identity
    /// in `home`.
    pub async fn raw_login(&self, home: &tempfile::TempDir) -> (Client, Events) {
        let state = KeyStore::peek(home.path(), "pw").expect("peek");
        let (mut client, events) = Client::connect(&self.url()).await.expect("connect");
        client
            .login(&state.identity, &self.name())
            .await
            .expect("login");
        (client, events)
    }

    /// How many messages the server stores now.
    pub async fn stored(&self) -> u64 {
        self.server.stored_message_count().await.expect("count")
    }

    /// The WebSocket URL clients connect to.
    pub fn url(&self) -> String {
        self.server.ws_url()
    }

    /// The deployment name clients sign into logins.
    pub fn name(&self) -> String {
        self.server.server_name().to_owned()
    }

    /// The PostgreSQL schema and Redis prefix, on the cluster backend.
    pub fn cluster(&self) -> Option<&ClusterBackend> {
        self.cluster.as_ref()
    }

    /// A new identity, registered and logged in.
    pub async fn user(&self) -> TestUser {
        let identity = Identity::generate();
        let (client, _) = Client::connect(&self.url()).await.expect("connect");
        client.register(&identity).await.expect("register");
        drop(client);
        self.login(identity).await
    }

    /// A fresh connection logged in as `identity`.
    pub async fn login(&self, identity: Identity) -> TestUser {
        let (mut client, events) = Client::connect(&self.url()).await.expect("connect");
        client.login(&identity, &self.name()).await.expect("login");
        TestUser {
            client,
            events,
            identity,
        }
    }
}

impl StoppedServer {
    /// The same server again: same address, same data (SQLite in its
    /// directory, or the same cluster schema and prefix).
    pub async fn start_again(self) -> TestServer {
        TestServer::run(self.config, self.clock, self.cluster, self.dir).await
    }
}
