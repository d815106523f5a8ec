//! Starting and stopping a server: open the stores (embedded SQLite, or
//! PostgreSQL and Redis), bind, join the other nodes (with Redis), serve the
//! WebSocket gateway and the operator endpoints, run the reaper, shut down
//! gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::listener::{AddressCounts, Listener};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::bus::Bus;
use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::hub::Hub;
use crate::ratelimit::Limits;
use crate::state::AppState;
use crate::store::postgres::PgStore;
use crate::store::redis_mailbox::RedisMailbox;
use crate::store::sqlite::SqliteStore;
use crate::store::{StoreError, Stores};
use crate::tls::{ServerTls, TlsError, TlsFiles};

/// Reaper ticks between store maintenance passes (when anything was deleted).
const MAINTAIN_EVERY_TICKS: u32 = 4;

/// How often expired messages are deleted.
const REAPER_INTERVAL: Duration = Duration::from_millis(500);

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Connections the admin listener (`--metrics-listen`) holds at once: its
/// own pool, so probes get in while the public listener is full.
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// How long shutdown waits for connections to say goodbye.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source} (is another server running there?)")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TLS certificate or key is missing, unreadable, unparsable, or
    /// the key is not the certificate's.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The web app's directory (`--web-root`) could not be served.
    #[error(transparent)]
    WebRoot(#[from] crate::web::WebRootError),
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    tls: Option<ServerTls>,
    state: Arc<AppState>,
    serving: JoinHandle<std::io::Result<()>>,
    admin: Option<JoinHandle<std::io::Result<()>>>,
    embedded: Option<SqliteStore>,
}

impl Server {
    /// Opens the embedded store in `config.data_dir` and starts serving.
    pub async fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`Server::start`], reading time from `clock` (tests move time
    /// instead of sleeping).
    pub async fn start_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        if let (Some(postgres), Some(redis)) = (&config.postgres_url, &config.redis_url) {
            let relational = PgStore::connect(postgres).await?;
            let mailbox = RedisMailbox::connect_with_prefix(redis, &config.redis_prefix)
                .await?
                .with_replicas(config.redis_replicas)?;
            let stores = Stores {
                accounts: Arc::new(relational.clone()),
                friends: Arc::new(relational.clone()),
                prekeys: Arc::new(relational),
                limits: Some(Arc::new(mailbox.limits())),
                mailbox: Arc::new(mailbox),
            };
            tracing::info!("cluster backend: PostgreSQL and Redis");
            return Self::start_with(config, stores, clock).await;
        }
        let store = SqliteStore::open(&config.data_dir).await?;
        let stores = Stores {
            accounts: Arc::new(store.clone()),
            friends: Arc::new(store.clone()),
            prekeys: Arc::new(store.clone()),
            mailbox: Arc::new(store.clone()),
            limits: None,
        };
        let mut server = Self::start_with(config, stores, clock).await?;
        server.embedded = Some(store);
        Ok(server)
    }

    /// Starts serving on the given stores and clock.
    pub async fn start_with(
        config: &Config,
        stores: Stores,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let metrics = crate::metrics::install();
        let tls = tls_files(config)?.map(ServerTls::new).transpose()?;
        let web = config
            .web_root
            .as_deref()
            .map(crate::web::WebRoot::load)
            .transpose()?;
        let server_name = deployment_name(config, &stores).await?;
        let (listener, addr) = bind(config.listen).await?;
        let admin_listener = match config.metrics_listen {
            Some(admin) => Some(bind(admin).await?),
            None => None,
        };
        let shutdown = CancellationToken::new();
        let cache = Arc::new(Cache::default());
        let (hub, bus) = start_hub(config, &cache, &shutdown).await?;
        let limits = Limits::new(config, stores.limits.clone());
        let state = Arc::new(AppState {
            stores,
            hub,
            bus,
            clock,
            server_name,
            pow_difficulty: config.pow_difficulty,
            limits,
            mailbox_quota: crate::store::Quota::of(config),
            mailbox_dirty: std::sync::atomic::AtomicBool::new(false),
            per_address: AddressCounts::new(config.max_connections_per_address),
            refusals: Arc::default(),
            shutdown,
            connections: TaskTracker::new(),
            cache,
            trusted_proxies: config.trusted_proxies.clone(),
            max_sessions_per_user: config.max_sessions_per_user,
        });
        let operator = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz));
        let metrics_route = get(move || render_metrics(metrics.clone()));
        let mut root = Router::new().route("/", get(crate::gateway::upgrade));
        if let Some(web) = web {
            // Only on `/` (a browser's page load there), and for paths no
            // route takes: the operator's routes stay as they are.
            let web = Arc::new(web);
            root = root
                .route_layer(axum::middleware::from_fn_with_state(
                    Arc::clone(&web),
                    crate::web::page_or_upgrade,
                ))
                .fallback_service(axum::routing::any(crate::web::file).with_state(web));
        }
        let mut public = root.merge(operator.clone());
        if admin_listener.is_none() {
            public = public.route("/metrics", metrics_route.clone());
        }
        let public = public.with_state(Arc::clone(&state));
        tokio::spawn(reaper(Arc::clone(&state)));
        let max_connections = match crate::listener::descriptor_budget() {
            Some(budget) if budget < config.max_connections => {
                tracing::warn!(
                    max_connections = config.max_connections,
                    budget,
                    "the file descriptor limit allows fewer connections than --max-connections; \
                     capping them (raise the limit with ulimit -n or LimitNOFILE)"
                );
                budget
            }
            _ => config.max_connections,
        };
        let public_listener = Listener {
            tls: tls.clone(),
            slots: Arc::new(Semaphore::new(max_connections)),
            per_address: Some(Arc::clone(&state.per_address)),
            trusted_proxies: config.trusted_proxies.clone(),
            handshake_timeout: config.handshake_timeout,
            refusals: Arc::clone(&state.refusals),
            shutdown: state.shutdown.clone(),
            tasks: state.connections.clone(),
        };
        let admin = admin_listener.map(|(listener, admin_addr)| {
            let app = operator
                .route("/metrics", metrics_route)
                .with_state(Arc::clone(&state));
            let admin = Listener {
                tls: None,
                slots: Arc::new(Semaphore::new(ADMIN_MAX_CONNECTIONS)),
                per_address: None,
                trusted_proxies: Vec::new(),
                handshake_timeout: config.handshake_timeout,
                refusals: Arc::clone(&state.refusals),
                shutdown: state.shutdown.clone(),
                tasks: state.connections.clone(),
            };
            tracing::info!(addr = %admin_addr, "admin listener (/metrics, /healthz, /readyz)");
            (tokio::spawn(admin.run(listener, app)), admin_addr)
        });
        let serving = tokio::spawn(public_listener.run(listener, public));
        tracing::info!(%addr, tls = tls.is_some(), name = %state.server_name, "wisp-server listening");
        let (admin, admin_addr) = admin.unzip();
        Ok(Self {
            addr,
            admin_addr,
            tls,
            state,
            serving,
            admin,
            embedded: None,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin listener's address (`--metrics-listen`), if any.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The WebSocket URL clients connect to: `wss://` with TLS.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls.is_some() { "wss" } else { "ws" };
        format!("{scheme}://{}", self.addr)
    }

    /// Reads the TLS certificate and key again (what SIGHUP does): new
    /// connections get the new pair, open ones keep theirs. On an error the
    /// old pair stays in service.
    pub fn reload_tls(&self) -> Result<(), TlsError> {
        let tls = self.tls.as_ref().ok_or(TlsError::NotEnabled)?;
        tls.resolver.reload()?;
        metrics::counter!("wisp_tls_reloads_total").increment(1);
        Ok(())
    }

    /// How many messages the server stores right now (undelivered or
    /// delivered but not yet acknowledged).
    #[cfg(any(test, feature = "test-support"))]
    pub async fn stored_message_count(&self) -> Result<u64, StoreError> {
        self.state.stores.mailbox.stored_count().await
    }

    /// The deployment name clients sign into logins.
    pub fn server_name(&self) -> &str {
        &self.state.server_name
    }

    /// Stops accepting, closes every connection with "going away", waits
    /// for them (up to a grace period) and closes the store.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        self.state.connections.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.state.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the grace period; closing anyway");
        }
        for serving in std::iter::once(self.serving).chain(self.admin) {
            match serving.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(%error, "server loop failed"),
                Err(error) => tracing::error!(%error, "server task failed"),
            }
        }
        if let Some(store) = self.embedded {
            store.close().await;
        }
        tracing::info!("wisp-server stopped");
    }
}

/// The deployment's name: the one the store keeps (it is signed into every
/// login), else the configured one, else a fresh random one.
async fn deployment_name(config: &Config, stores: &Stores) -> Result<String, StoreError> {
    let proposed = config.server_name.clone().unwrap_or_else(|| {
        format!(
            "wisp-{}",
            data_encoding::HEXLOWER.encode(&crate::services::accounts::fresh_nonce()[..6])
        )
    });
    let server_name = stores.accounts.server_name(&proposed).await?;
    if config
        .server_name
        .as_ref()
        .is_some_and(|n| *n != server_name)
    {
        tracing::warn!(
            configured = ?config.server_name,
            stored = %server_name,
            "the store keeps the deployment name it was first given; the configured one is ignored"
        );
    }
    Ok(server_name)
}

/// Binds the listen address; returns the listener and the address bound.
async fn bind(listen: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let bind_error = |source| StartError::Bind {
        addr: listen,
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_error)?;
    let addr = listener.local_addr().map_err(bind_error)?;
    Ok((listener, addr))
}

/// The hub of this node's connections and, with Redis configured, the bus
/// that links it to the other nodes.
async fn start_hub(
    config: &Config,
    cache: &Arc<Cache>,
    shutdown: &CancellationToken,
) -> Result<(Arc<Hub>, Option<Bus>), StoreError> {
    let Some(url) = &config.redis_url else {
        return Ok((Arc::new(Hub::default()), None));
    };
    let (presence_tx, presence_rx) = tokio::sync::mpsc::unbounded_channel();
    let hub = Arc::new(Hub::with_presence(presence_tx));
    let bus = Bus::start(
        url,
        &config.redis_prefix,
        Arc::clone(&hub),
        Arc::clone(cache),
        presence_rx,
        shutdown.clone(),
    )
    .await?;
    Ok((hub, Some(bus)))
}

/// The TLS files, if TLS is configured; both or neither.
fn tls_files(config: &Config) -> Result<Option<TlsFiles>, TlsError> {
    match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
        })),
        (None, None) => Ok(None),
        _ => Err(TlsError::Incomplete),
    }
}

/// Deletes expired messages and friend requests every [`REAPER_INTERVAL`]
/// until shutdown, with a store maintenance pass now and then, and keeps
/// the rate limiters' tables small. Delivery never hands out an expired message however late
/// this runs; the reaper is what makes expired ciphertext leave the disk.
async fn reaper(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(REAPER_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = tick.tick() => {
                if let Err(error) = crate::services::messages::reap(&state).await {
                    tracing::warn!(?error, "reaper pass failed; retrying next tick");
                }
                if let Err(error) = crate::services::friends::reap(&state).await {
                    tracing::warn!(?error, "friend request reaper failed; retrying next tick");
                }
                state.limits.forget_idle();
                ticks = ticks.wrapping_add(1);
                if ticks.is_multiple_of(MAINTAIN_EVERY_TICKS)
                    && state.mailbox_dirty.swap(false, std::sync::atomic::Ordering::Relaxed)
                {
                    let done = state.stores.mailbox.maintain().await.unwrap_or_else(|error| {
                        tracing::warn!(%error, "store maintenance failed; retrying later");
                        false
                    });
                    if !done {
                        state.mailbox_dirty.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    if state.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    // A probe wants an answer quickly, not after the pool gave up.
    match tokio::time::timeout(READY_TIMEOUT, state.stores.accounts.ping()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n"),
        Ok(Err(error)) => {
            tracing::warn!(%error, "not ready: store unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
        }
        Err(_) => {
            tracing::warn!("not ready: store did not answer in time");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable\n")
        }
    }
}

async fn render_metrics(
    handle: Option<metrics_exporter_prometheus::PrometheusHandle>,
) -> impl IntoResponse {
    let body = handle.map(|h| h.render()).unwrap_or_default();
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}
