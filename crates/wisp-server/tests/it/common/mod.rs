//! Test harness: real servers on loopback port 0 over a real SQLite file in
//! a temporary directory, real clients from the SDK, and a raw WebSocket
//! connection for feeding the server bytes no SDK would send.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use std::time::Instant;

use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio_tungstenite::tungstenite::Message;

use wisp_client::{Client, Event, Events, Identity, KdfParams, KeyStore, LocalState, Messenger};
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::Hello;
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{ClientFrame, ServerFrame, decode_server_frame, encode};
use wisp_server::clock::SystemClock;
use wisp_server::{Config, Server};

pub mod redis_set;
pub mod traffic;

/// Test servers use an easy puzzle and no registration limit unless a test
/// says otherwise.
pub const TEST_POW_BITS: u32 = 4;

pub struct TestServer {
    pub server: Server,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
    /// Set when the server runs on the cluster backend; cleaned up on drop.
    cluster: Option<ClusterBackend>,
}

/// Which storage backend a test's server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The embedded SQLite file.
    Sqlite,
    /// PostgreSQL and Redis, the local ones.
    Cluster,
}

/// A PostgreSQL schema and a Redis key prefix of one test's own.
pub struct ClusterBackend {
    pub pg_url: String,
    pub redis_url: String,
    pub schema: String,
    pub prefix: String,
}

fn unavailable(what: &str, url: &str, why: &str) -> Option<ClusterBackend> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("no {what} at {url} ({why}), and CI=true: the cluster backend must be tested in CI");
    }
    eprintln!("skipped: no {what} at {url} ({why})");
    None
}

impl ClusterBackend {
    /// A fresh schema and prefix; None (after saying so) without PostgreSQL
    /// or Redis, except in CI, where that fails the test.
    pub async fn create() -> Option<Self> {
        use sqlx::Connection;
        let pg_url = std::env::var("WISP_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let redis_url = std::env::var("WISP_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let mut admin = match tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect(&pg_url),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return unavailable("PostgreSQL", &pg_url, &e.to_string()),
            Err(_) => return unavailable("PostgreSQL", &pg_url, "timed out"),
        };
        let ping = redis::Client::open(redis_url.as_str()).and_then(|c| {
            c.get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        });
        if let Err(e) = ping {
            return unavailable("Redis", &redis_url, &e.to_string());
        }
        let tag = format!("{:016x}", rand::random::<u64>());
        let schema = format!("wisp_test_{tag}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut admin)
            .await
            .expect("create schema");
        Some(Self {
            pg_url,
            redis_url,
            schema,
            prefix: format!("wisp-test-{tag}"),
        })
    }

    /// A node's stores.
    pub async fn stores(&self) -> wisp_server::store::Stores {
        self.stores_on(&self.redis_url).await
    }

    /// A node's stores, with mailboxes in the Redis at `redis_url` (a
    /// Sentinel set or a Redis Cluster the test started).
    pub async fn stores_on(&self, redis_url: &str) -> wisp_server::store::Stores {
        use std::str::FromStr;
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.pg_url)
            .expect("url")
            .options([("search_path", self.schema.as_str())]);
        let relational = wisp_server::store::postgres::PgStore::connect_with(options)
            .await
            .expect("postgres");
        let mailbox = wisp_server::store::redis_mailbox::RedisMailbox::connect_with_prefix(
            redis_url,
            &self.prefix,
        )
        .await
        .expect("redis");
        wisp_server::store::Stores {
            accounts: Arc::new(relational.clone()),
            friends: Arc::new(relational.clone()),
            prekeys: Arc::new(relational),
            mailbox: Arc::new(mailbox),
        }
    }

    /// The environment that points a `wisp-server` binary at this
    /// cluster's schema and key prefix (with an easy puzzle and no limits).
    pub fn node_env(&self) -> Vec<(&'static str, String)> {
        let separator = if self.pg_url.contains('?') { '&' } else { '?' };
        vec![
            (
                "WISP_POSTGRES_URL",
                format!(
                    "{}{separator}options[search_path]={}",
                    self.pg_url, self.schema
                ),
            ),
            ("WISP_REDIS_URL", self.redis_url.clone()),
            ("WISP_REDIS_PREFIX", self.prefix.clone()),
            ("WISP_POW_DIFFICULTY", "0".into()),
            ("WISP_REGISTER_LIMIT", "0".into()),
            ("WISP_SEND_LIMIT", "0".into()),
        ]
    }

    /// Puts `config` on this cluster's Redis (for the cross-node bus).
    pub fn configure(&self, config: &mut Config) {
        config.redis_url = Some(self.redis_url.clone());
        config.redis_prefix = self.prefix.clone();
    }
}

impl Drop for ClusterBackend {
    fn drop(&mut self) {
        // Drop the schema and the keys, from a thread of its own: drop runs
        // inside the test's runtime, which must not block on async work.
        let (pg_url, redis_url) = (self.pg_url.clone(), self.redis_url.clone());
        let (schema, prefix) = (self.schema.clone(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(async {
                    use sqlx::Connection;
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&pg_url).await {
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                            "DROP SCHEMA IF EXISTS {schema} CASCADE"
                        )))
                        .execute(&mut admin)
                        .await;
                    }
                });
            }
            if let Ok(client) = redis::Client::open(redis_url.as_str())
                && let Ok(mut conn) = client.get_connection()
            {
                let keys: Vec<String> = redis::cmd("KEYS")
                    .arg(format!("{prefix}:*"))
                    .query(&mut conn)
                    .unwrap_or_default();
                if !keys.is_empty() {
                    let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(&mut conn);
                }
            }
        });
        let _ = cleanup.join();
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::start_with_clock(tweak, Arc::new(SystemClock)).await
    }

    /// A server on `backend`; None when that backend is not available here
    /// (outside CI).
    pub async fn start_on(
        backend: Backend,
        tweak: impl FnOnce(&mut Config),
        clock: Arc<dyn wisp_server::clock::Clock>,
    ) -> Option<Self> {
        match backend {
            Backend::Sqlite => Some(Self::start_with_clock(tweak, clock).await),
            Backend::Cluster => {
                let cluster = ClusterBackend::create().await?;
                let dir = tempfile::tempdir().expect("temp dir");
                let mut config = Self::test_config(&dir);
                cluster.configure(&mut config);
                tweak(&mut config);
                let server = Server::start_with(&config, cluster.stores().await, clock)
                    .await
                    .expect("server starts");
                Some(Self {
                    server,
                    data_dir: config.data_dir,
                    _dir: dir,
                    cluster: Some(cluster),
                })
            }
        }
    }

    fn test_config(dir: &tempfile::TempDir) -> Config {
        Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("data"),
            pow_difficulty: TEST_POW_BITS,
            register_limit: 0,
            send_limit: 0,
            ..Config::default()
        }
    }

    pub async fn start_with_clock(
        tweak: impl FnOnce(&mut Config),
        clock: Arc<dyn wisp_server::clock::Clock>,
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Self::test_config(&dir);
        tweak(&mut config);
        let server = Server::start_with_clock(&config, clock)
            .await
            .expect("server starts");
        Self {
            server,
            data_dir: config.data_dir,
            _dir: dir,
            cluster: None,
        }
    }

    /// Wraps a server started some other way; `dir` holds its data.
    pub fn wrap(server: Server, dir: tempfile::TempDir) -> Self {
        Self {
            server,
            data_dir: dir.path().to_owned(),
            _dir: dir,
            cluster: None,
        }
    }

    /// A new registered device with its own encrypted key store, logged in
    /// as a [`Messenger`] (which puts its one-time keys on the server).
    pub async fn device(&self) -> Device {
        device_at(&self.url()).await
    }

    /// Opens `device`'s key store again and logs in anew (a restart).
    pub async fn reopen(&self, home: tempfile::TempDir) -> Device {
        reopen_at(&self.url(), home).await
    }

    /// A second plain connection logged in as `device`'s identity.
    pub async fn login_same(&self, device: &Device) -> Client {
        self.raw_login(&device.home).await.0
    }

    /// A plain SDK connection (no Messenger) logged in with the identity in
    /// `home`.
    pub async fn raw_login(&self, home: &tempfile::TempDir) -> (Client, Events) {
        let state = KeyStore::peek(home.path(), "pw").expect("peek");
        let (mut client, events) = Client::connect(&self.url()).await.expect("connect");
        client
            .login(&state.identity, &self.name())
            .await
            .expect("login");
        (client, events)
    }

    pub async fn stored(&self) -> u64 {
        self.server.stored_message_count().await.expect("count")
    }

    pub fn url(&self) -> String {
        self.server.ws_url()
    }

    pub fn name(&self) -> String {
        self.server.server_name().to_owned()
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

/// Cheap key derivation for test key stores; the format is the real one.
pub const TEST_KDF: KdfParams = KdfParams {
    m_kib: 1024,
    t: 1,
    p: 1,
};

/// A device: a messenger and the home holding its encrypted state.
pub struct Device {
    pub messenger: Messenger,
    pub home: tempfile::TempDir,
}

impl Device {
    pub fn id(&self) -> wisp_proto::UserId {
        self.messenger.user_id()
    }

    /// The next event, within 10 s.
    pub async fn event(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(10), self.messenger.next_event())
            .await
            .expect("an event within 10 s")
            .expect("connection open")
    }

    /// The next message's text, confirmed (burned on the server) without a
    /// read receipt (which would be a message of its own).
    pub async fn next_text(&mut self) -> String {
        loop {
            if let Event::Message(message) = self.event().await {
                self.messenger.confirm().await.expect("confirm");
                return message.text.to_string();
            }
        }
    }

    /// Texts of received messages until the mailbox is drained, reading
    /// each (sending a read receipt).
    pub async fn read_all(&mut self) -> Vec<String> {
        let mut texts = Vec::new();
        loop {
            match self.event().await {
                Event::Message(message) => {
                    texts.push(message.text.to_string());
                    self.messenger.mark_read(&message).await.expect("receipt");
                }
                Event::MailboxDrained => return texts,
                _ => {}
            }
        }
    }
}

/// A new device registered with the server at `url`.
pub async fn device_at(url: &str) -> Device {
    let home = tempfile::tempdir().expect("home");
    let identity = Identity::generate();
    let (client, _) = Client::connect(url).await.expect("connect");
    client.register(&identity).await.expect("register");
    let mut state = LocalState::new(identity);
    state.server_name = Some(client.server_name().to_owned());
    let store = KeyStore::create(home.path(), "pw", TEST_KDF, &state).expect("key store");
    let messenger = Messenger::connect(url, store, state)
        .await
        .expect("messenger");
    Device { messenger, home }
}

/// `home`'s device, logged in anew at `url` (after a restart of either).
pub async fn reopen_at(url: &str, home: tempfile::TempDir) -> Device {
    let (store, state) = KeyStore::open(home.path(), "pw").expect("reopen");
    let messenger = Messenger::connect(url, store, state)
        .await
        .expect("messenger");
    Device { messenger, home }
}

/// Two new friends at `url`, the second gone offline: returns the first,
/// the second's id, and the home that holds the second's state.
pub async fn friends_one_offline(url: &str) -> (Device, wisp_proto::UserId, tempfile::TempDir) {
    let alice = device_at(url).await;
    let bob = device_at(url).await;
    befriend_devices(&alice, &bob).await;
    let id = bob.id();
    (alice, id, bob.home)
}

/// `GET path` on a server's HTTP port; the whole response as text.
pub fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    response
}

/// Makes two devices friends.
pub async fn befriend_devices(a: &Device, b: &Device) {
    a.messenger
        .client()
        .request_friend(b.id())
        .await
        .expect("request");
    b.messenger
        .client()
        .accept_friend(a.id())
        .await
        .expect("accept");
}

pub struct TestUser {
    pub client: Client,
    pub events: Events,
    pub identity: Identity,
}

impl TestUser {
    pub fn id(&self) -> wisp_proto::UserId {
        self.identity.user_id()
    }
}

/// Makes two users friends.
pub async fn befriend(a: &TestUser, b: &TestUser) {
    a.client.request_friend(b.id()).await.expect("request");
    b.client.accept_friend(a.id()).await.expect("accept");
}

/// A WebSocket connection with no SDK in between.
pub struct RawConnection {
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

/// What arrived on a raw connection.
#[derive(Debug)]
pub enum Received {
    Frame(ServerFrame),
    Closed { code: u16, reason: String },
}

impl RawConnection {
    pub async fn open(url: &str) -> Self {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("connect");
        Self { socket, next_id: 1 }
    }

    /// Opens with extra handshake headers (e.g. X-Forwarded-For) and says
    /// hello.
    pub async fn open_with_headers(url: &str, headers: &[(&'static str, &str)]) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut request = url.into_client_request().expect("request");
        for (name, value) in headers {
            request
                .headers_mut()
                .append(*name, value.parse().expect("header value"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .expect("connect");
        let mut conn = Self { socket, next_id: 1 };
        conn.hello().await;
        conn
    }

    /// Opens and says hello with the current version.
    pub async fn open_with_hello(url: &str) -> Self {
        let mut conn = Self::open(url).await;
        conn.hello().await;
        conn
    }

    async fn hello(&mut self) {
        let reply = self
            .request(Request::Hello(Hello {
                protocol_version: wisp_proto::PROTOCOL_VERSION,
                client: "raw-test".into(),
            }))
            .await;
        assert!(matches!(reply, Reply::HelloOk(_)), "{reply:?}");
    }

    pub async fn send_bytes(&mut self, bytes: Vec<u8>) {
        self.socket
            .send(Message::Binary(bytes.into()))
            .await
            .expect("send");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    pub async fn send(&mut self, body: Request) -> u64 {
        let request_id = self.next_id;
        self.next_id += 1;
        let frame = ClientFrame {
            request_id,
            body: Some(body),
        };
        self.send_bytes(encode(&frame)).await;
        request_id
    }

    /// Sends a request and returns the body of its reply.
    pub async fn request(&mut self, body: Request) -> Reply {
        let id = self.send(body).await;
        match self.receive().await {
            Received::Frame(frame) => {
                assert_eq!(frame.request_id, id, "reply matches request");
                frame.body.expect("reply body")
            }
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    pub async fn receive(&mut self) -> Received {
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("server answers within 10 s");
            match next {
                Some(Ok(Message::Binary(bytes))) => {
                    return Received::Frame(decode_server_frame(&bytes).expect("valid frame"));
                }
                Some(Ok(Message::Close(frame))) => {
                    let (code, reason) = frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new()));
                    return Received::Closed { code, reason };
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Received::Closed {
                        code: 1006,
                        reason: e.to_string(),
                    };
                }
                None => {
                    return Received::Closed {
                        code: 1006,
                        reason: "stream ended".into(),
                    };
                }
            }
        }
    }

    /// Receives a frame and returns its error code, panicking on anything
    /// but an error frame.
    pub async fn expect_error(&mut self) -> (u64, wisp_proto::ErrorCode) {
        match self.receive().await {
            Received::Frame(ServerFrame {
                request_id,
                body: Some(Reply::Error(error)),
            }) => (
                request_id,
                wisp_proto::ErrorCode::try_from(error.code).expect("known code"),
            ),
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
}

/// The error code of a refused SDK call.
pub fn code_of<T: std::fmt::Debug>(
    result: Result<T, wisp_client::ClientError>,
) -> wisp_proto::ErrorCode {
    match result {
        Err(error) => error
            .code()
            .unwrap_or_else(|| panic!("not a refusal: {error}")),
        Ok(value) => panic!("expected a refusal, got {value:?}"),
    }
}

/// A node's settings for tests: any free loopback port, an easy puzzle and
/// no rate limits.
pub fn open_node_config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("address"),
        pow_difficulty: 0,
        register_limit: 0,
        send_limit: 0,
        ..Config::default()
    }
}

/// `found`, or else None after saying the test is skipped, except with
/// CI=true, where a missing tool fails the test (`hint` says who installs
/// it).
pub fn tool_or_skip<T>(what: &str, found: Option<T>, hint: &str) -> Option<T> {
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("no {what}, and CI=true: {hint}");
        }
        eprintln!("skipped: no {what} ({hint})");
    }
    found
}

/// `wisp-server` processes started with the same environment.
pub struct NodeProcesses {
    /// Each node, `None` once a test killed it.
    pub processes: Vec<Option<ServerProcess>>,
    pub urls: Vec<String>,
    pub logs: Vec<std::sync::mpsc::Receiver<String>>,
    _dirs: Vec<tempfile::TempDir>,
}

/// Starts `n` nodes, each in a directory of its own, with `env`.
pub fn spawn_nodes(n: usize, env: &[(&'static str, String)]) -> NodeProcesses {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut nodes = NodeProcesses {
        processes: Vec::new(),
        urls: Vec::new(),
        logs: Vec::new(),
        _dirs: Vec::new(),
    };
    for _ in 0..n {
        let dir = tempfile::tempdir().expect("node directory");
        let (process, addr, log) = spawn(dir.path(), &env);
        nodes.processes.push(Some(process));
        nodes.urls.push(format!("ws://{addr}"));
        nodes.logs.push(log);
        nodes._dirs.push(dir);
    }
    nodes
}

/// The server process, killed if the test ends before it exits.
pub struct ServerProcess(pub Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Starts the binary and reads its JSON log until it says where it listens.
/// Starts the `wisp-server` binary in `cwd` on a free loopback port, with
/// JSON logs and `env` on top; returns once it logs where it listens.
pub fn spawn(
    cwd: &std::path::Path,
    env: &[(&str, &str)],
) -> (ServerProcess, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let child = Command::new(env!("CARGO_BIN_EXE_wisp-server"))
        .current_dir(cwd)
        // Port 0: the defaults are checked by the config tests; here the
        // test must not collide with a server someone runs on 7700.
        .env("WISP_LISTEN", "127.0.0.1:0")
        .env("WISP_LOG_FORMAT", "json")
        .env("WISP_LOG", "info")
        .envs(env.iter().copied())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = ServerProcess(child);
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Keep draining after the test stopped listening: a full pipe would
        // block the server's logging, and with it the server.
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("server logs that it listens within 30 s");
        let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
        if json["fields"]["message"] == "wisp-server listening" {
            let addr = json["fields"]["addr"].as_str().unwrap().parse().unwrap();
            return (child, addr, rx);
        }
    }
}
