//! A WebSocket connection with no SDK in between: [`RawConnection`], for
//! feeding a server bytes no SDK would send (malformed, out-of-order,
//! wrong-version frames) and reading exactly what comes back.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::Hello;
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{ClientFrame, ServerFrame, decode_server_frame, encode};

/// A WebSocket connection with no SDK in between.
#[derive(Debug)]
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

    /// Logs in as `identity` on the server named `server_name` (after a
    /// hello), by the challenge-response any client does.
    pub async fn log_in(&mut self, identity: &wisp_client::Identity, server_name: &str) {
        let Reply::LoginChallenge(challenge) = self
            .request(Request::LoginChallenge(
                wisp_proto::frames::LoginChallengeRequest {
                    user_id: identity.user_id().to_vec(),
                },
            ))
            .await
        else {
            panic!("no login challenge");
        };
        let signature = identity.sign_login(server_name, &challenge.nonce);
        let reply = self
            .request(Request::Login(wisp_proto::frames::Login {
                signature: signature.to_vec(),
            }))
            .await;
        assert!(matches!(reply, Reply::LoggedIn(_)), "{reply:?}");
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

    /// The TCP socket under the connection, for writing raw WebSocket
    /// frames no library would (a flood of pings that is never read).
    pub fn into_tcp(self) -> tokio::net::TcpStream {
        match self.socket.into_inner() {
            tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
            _ => panic!("a plain-text connection"),
        }
    }
}
