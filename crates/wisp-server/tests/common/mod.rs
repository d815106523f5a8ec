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

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wisp_client::{Client, Events, Identity};
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::Hello;
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{ClientFrame, ServerFrame, decode_server_frame, encode};
use wisp_server::{Config, Server};

/// Test servers use an easy puzzle and no registration limit unless a test
/// says otherwise.
pub const TEST_POW_BITS: u32 = 4;

pub struct TestServer {
    pub server: Server,
    pub data_dir: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            listen: "127.0.0.1:0".parse().expect("addr"),
            data_dir: dir.path().join("data"),
            pow_difficulty: TEST_POW_BITS,
            register_limit: 0,
            ..Config::default()
        };
        tweak(&mut config);
        let server = Server::start(&config).await.expect("server starts");
        Self {
            server,
            data_dir: config.data_dir,
            _dir: dir,
        }
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

    /// Opens and says hello with the current version.
    pub async fn open_with_hello(url: &str) -> Self {
        let mut conn = Self::open(url).await;
        let reply = conn
            .request(Request::Hello(Hello {
                protocol_version: wisp_proto::PROTOCOL_VERSION,
                client: "raw-test".into(),
            }))
            .await;
        assert!(matches!(reply, Reply::HelloOk(_)), "{reply:?}");
        conn
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
