//! A WebSocket connection to a server: sends requests with fresh ids,
//! matches replies to them, and hands server pushes to an event stream.
//! Every frame goes through the `wisp_proto` codec.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wisp_proto::client_frame::Body as Request;
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{
    ClientFrame, ErrorCode, MAX_FRAME_BYTES, ServerFrame, decode_server_frame, encode,
};

use crate::error::ClientError;
use crate::tls::{ConnectOptions, certificate_problem};

/// How long a request waits for its reply.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Server pushes waiting for the application before reading pauses (and the
/// server, seeing its queue fill, closes the connection: nothing is lost,
/// the client reconnects).
const EVENT_QUEUE: usize = 1024;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ServerFrame>>>>;

/// A frame the server pushed on its own (request id 0).
#[derive(Debug)]
pub(crate) enum Push {
    Frame(Reply),
    Closed(Ending),
}

/// How a connection ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ending {
    /// The server's reason, when it gave one.
    pub(crate) reason: Option<String>,
    /// Closed because newer sessions of the account took its place (close
    /// code 1008 with the server's "too many sessions" reason).
    pub(crate) superseded: bool,
}

/// The start of the reason the server gives when it closes a session
/// because the account logged in on more connections than it allows.
const SUPERSEDED: &str = "too many sessions";

/// One open connection.
#[derive(Debug)]
pub(crate) struct Connection {
    outbound: mpsc::Sender<Message>,
    pending: Pending,
    /// Set by the reader when the connection is gone, before it drops the
    /// waiters: a request made after that fails at once instead of waiting.
    gone: Arc<AtomicBool>,
    next_id: AtomicU64,
    close_reason: Arc<Mutex<Option<String>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The socket a connection runs over.
type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the reader task shares with the [`Connection`].
struct Reader {
    pending: Pending,
    close_reason: Arc<Mutex<Option<String>>>,
    gone: Arc<AtomicBool>,
    pushes: mpsc::Sender<Push>,
}

impl Connection {
    /// Connects; returns the connection and the receiver of pushes. With
    /// a local address in `options`, the TCP connection leaves from it: a
    /// load generator spreads many connections over several loopback
    /// addresses when one runs out of ports.
    pub(crate) async fn open(
        url: &str,
        options: &ConnectOptions,
    ) -> Result<(Self, mpsc::Receiver<Push>), ClientError> {
        let socket = connect(url, options).await?;
        let (sink, stream) = socket.split();
        let (outbound, outbound_rx) = mpsc::channel::<Message>(64);
        let (push_tx, push_rx) = mpsc::channel(EVENT_QUEUE);
        let pending: Pending = Arc::default();
        let close_reason: Arc<Mutex<Option<String>>> = Arc::default();
        let gone = Arc::new(AtomicBool::new(false));
        tokio::spawn(write(sink, outbound_rx));
        let reader = Reader {
            pending: Arc::clone(&pending),
            close_reason: Arc::clone(&close_reason),
            gone: Arc::clone(&gone),
            pushes: push_tx,
        };
        tokio::spawn(reader.run(stream));
        Ok((
            Self {
                outbound,
                pending,
                gone,
                next_id: AtomicU64::new(1),
                close_reason,
            },
            push_rx,
        ))
    }

    fn closed(&self) -> ClientError {
        ClientError::Closed(lock(&self.close_reason).clone())
    }

    /// Sends `body` and waits for its reply; a server refusal becomes
    /// [`ClientError::Refused`].
    pub(crate) async fn request(&self, body: Request) -> Result<Reply, ClientError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(request_id, tx);
        if self.gone.load(Ordering::SeqCst) {
            lock(&self.pending).remove(&request_id);
            return Err(self.closed());
        }
        let frame = ClientFrame {
            request_id,
            body: Some(body),
        };
        if self
            .outbound
            .send(Message::Binary(encode(&frame).into()))
            .await
            .is_err()
        {
            lock(&self.pending).remove(&request_id);
            return Err(self.closed());
        }
        let reply = match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(self.closed()),
            Err(_) => {
                lock(&self.pending).remove(&request_id);
                return Err(ClientError::Timeout(REQUEST_TIMEOUT));
            }
        };
        match reply.body {
            Some(Reply::Error(error)) => Err(ClientError::Refused {
                code: ErrorCode::try_from(error.code).ok(),
                message: error.message,
                retry_after: (error.retry_after_ms > 0)
                    .then(|| Duration::from_millis(error.retry_after_ms)),
            }),
            Some(body) => Ok(body),
            None => Err(ClientError::Protocol("reply without a body".into())),
        }
    }
}

/// Opens the WebSocket to `url`: plain for `ws://`, TLS for `wss://`
/// (never plain), from the local address in `options` if given.
async fn connect(url: &str, options: &ConnectOptions) -> Result<Socket, ClientError> {
    // Read in small chunks: the default 128 KiB buffer is zeroed before
    // every read, far more work than a chat frame.
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    let failed = |reason: String| ClientError::Connect {
        url: url.to_owned(),
        reason,
    };
    let scheme = Scheme::of(url).map_err(failed)?;
    let connector = match scheme {
        Scheme::Plain => Connector::Plain,
        Scheme::Tls => Connector::Rustls(options.tls_config()?),
    };
    let refused = |error: tokio_tungstenite::tungstenite::Error| match certificate_problem(&error) {
        Some(problem) => ClientError::Certificate {
            url: url.to_owned(),
            problem,
        },
        None => failed(error.to_string()),
    };
    let Some(local) = options.local() else {
        return tokio_tungstenite::connect_async_tls_with_config(
            url,
            Some(config),
            true,
            Some(connector),
        )
        .await
        .map(|(socket, _)| socket)
        .map_err(refused);
    };
    let stream = connect_tcp_from(url, scheme, local).await.map_err(failed)?;
    tokio_tungstenite::client_async_tls_with_config(url, stream, Some(config), Some(connector))
        .await
        .map(|(socket, _)| socket)
        .map_err(refused)
}

/// Whether a URL asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Plain,
    Tls,
}

impl Scheme {
    fn of(url: &str) -> Result<Self, String> {
        let lower = url.get(..6).unwrap_or(url).to_ascii_lowercase();
        if lower.starts_with("wss://") {
            Ok(Scheme::Tls)
        } else if lower.starts_with("ws://") {
            Ok(Scheme::Plain)
        } else {
            Err("the server URL must start with ws:// or wss://".to_owned())
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Scheme::Plain => 80,
            Scheme::Tls => 443,
        }
    }
}

/// A TCP connection to a URL's host that leaves from `local`.
async fn connect_tcp_from(
    url: &str,
    scheme: Scheme,
    local: std::net::IpAddr,
) -> Result<tokio::net::TcpStream, String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    // "host:port", "[v6]:port", or either without a port.
    let has_port = authority.rsplit_once(':').is_some_and(|(host, port)| {
        !port.contains(']') && !host.is_empty() && port.parse::<u16>().is_ok()
    });
    let authority = if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:{}", scheme.default_port())
    };
    let remote = tokio::net::lookup_host(authority.as_str())
        .await
        .map_err(|e| e.to_string())?
        .find(|addr| addr.is_ipv4() == local.is_ipv4())
        .ok_or_else(|| "no address of the same family".to_owned())?;
    let tcp = if local.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| e.to_string())?;
    // Ports of this address still in TIME_WAIT from earlier connections may
    // be taken again.
    tcp.set_reuseaddr(true).map_err(|e| e.to_string())?;
    tcp.bind(std::net::SocketAddr::new(local, 0))
        .map_err(|e| format!("bind {local}: {e}"))?;
    let stream = tcp.connect(remote).await.map_err(|e| e.to_string())?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// The writer task: sends what requests queue until the connection drops.
async fn write(mut sink: SplitSink<Socket, Message>, mut outbound: mpsc::Receiver<Message>) {
    while let Some(message) = outbound.recv().await {
        if sink.send(message).await.is_err() {
            break;
        }
    }
    let _ = sink.close().await;
}

impl Reader {
    /// The reader task: routes replies to their requests and pushes to the
    /// event stream until the connection ends, then wakes every request
    /// still waiting and sends the last push, [`Push::Closed`].
    async fn run(self, stream: SplitStream<Socket>) {
        let ending = self.route(stream).await;
        *lock(&self.close_reason) = ending.reason.clone();
        self.gone.store(true, Ordering::SeqCst);
        // Dropping the waiters wakes every request still in flight.
        lock(&self.pending).clear();
        let _ = self.pushes.try_send(Push::Closed(ending));
    }

    /// Reads frames until the connection ends; returns how it ended.
    async fn route(&self, mut stream: SplitStream<Socket>) -> Ending {
        let reason = |reason: String| Ending {
            reason: Some(reason),
            superseded: false,
        };
        while let Some(message) = stream.next().await {
            let bytes = match message {
                Ok(Message::Binary(bytes)) => bytes,
                Ok(Message::Close(frame)) => {
                    let Some(frame) = frame else {
                        return Ending::default();
                    };
                    return Ending {
                        superseded: frame.code == CloseCode::Policy
                            && frame.reason.starts_with(SUPERSEDED),
                        reason: Some(frame.reason.to_string()).filter(|r| !r.is_empty()),
                    };
                }
                Ok(_) => continue,
                Err(e) => return reason(e.to_string()),
            };
            let frame = match decode_server_frame(&bytes) {
                Ok(frame) => frame,
                Err(error) => {
                    tracing::warn!(%error, "server sent an undecodable frame");
                    continue;
                }
            };
            if frame.request_id == 0 {
                // Pushes never hold up replies. An application that stopped
                // reading events (but still holds the stream) gets a
                // disconnect rather than a silent gap; one that dropped the
                // stream does not want them.
                if let Some(body) = frame.body {
                    match self.pushes.try_send(Push::Frame(body)) {
                        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            return reason("events were not read; reconnect".to_owned());
                        }
                    }
                }
                continue;
            }
            let waiter = lock(&self.pending).remove(&frame.request_id);
            if let Some(waiter) = waiter {
                let _ = waiter.send(frame);
            }
        }
        Ending::default()
    }
}
