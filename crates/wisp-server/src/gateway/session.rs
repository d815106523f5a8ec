//! One connection's protocol state machine: bytes in, a reply out. No
//! sockets here; [`super::connection`] owns the transport.
//!
//! Phases: awaiting `Hello` → anonymous (register, log in) → logged in
//! (everything else). Each request gets exactly one reply with its id.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::ws::close_code;
use wisp_proto::client_frame::Body as In;
use wisp_proto::frames::{
    AccountDeleted, Acked, Friend, FriendList, FriendOpResult, FriendRequests, HelloOk,
    KeysUploaded, LoggedIn, LoginChallenge, PendingRequest, Pong, RegisterPuzzle, Registered,
    SendAck,
};
use wisp_proto::server_frame::Body as Out;
use wisp_proto::{
    ClientFrame, ErrorCode, FriendAction, MAX_FRAME_BYTES, PROTOCOL_VERSION, ServerFrame, UserId,
    decode_client_frame,
};

use crate::error::WireError;
use crate::services::accounts::{self, Puzzle, Registration};
use crate::services::{friends, keys, messages};
use crate::state::AppState;

/// Bad frames a connection may send before it is closed.
const MAX_PROTOCOL_ERRORS: u32 = 8;
/// Failed logins a connection may make before it is closed.
const MAX_FAILED_LOGINS: u32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingHello,
    Anonymous,
    LoggedIn(UserId),
}

/// Why the server is closing a connection, as a WebSocket close frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Close {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
}

/// What handling one frame produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) reply: ServerFrame,
    /// Set when this frame logged the connection in.
    pub(crate) logged_in: Option<UserId>,
    /// Set when the connection must close after the reply.
    pub(crate) close: Option<Close>,
    /// Message ids this frame acknowledged (they leave the delivery window).
    pub(crate) acked: Vec<u64>,
}

#[derive(Debug)]
pub(crate) struct Session {
    state: Arc<AppState>,
    peer: IpAddr,
    phase: Phase,
    puzzle: Option<Puzzle>,
    login_challenge: Option<accounts::LoginChallenge>,
    failed_logins: u32,
    protocol_errors: u32,
    acked: Vec<u64>,
    /// Set by a request after which the connection closes.
    closing: Option<Close>,
}

fn reply(request_id: u64, body: Out) -> ServerFrame {
    ServerFrame {
        request_id,
        body: Some(body),
    }
}

fn user_arg(bytes: &[u8]) -> Result<UserId, WireError> {
    UserId::from_bytes(bytes).map_err(|e| WireError::new(ErrorCode::InvalidArgument, e.to_string()))
}

impl Session {
    pub(crate) fn new(state: Arc<AppState>, peer: IpAddr) -> Self {
        Self {
            state,
            peer,
            phase: Phase::AwaitingHello,
            puzzle: None,
            login_challenge: None,
            failed_logins: 0,
            protocol_errors: 0,
            acked: Vec::new(),
            closing: None,
        }
    }

    pub(crate) fn is_logged_in(&self) -> bool {
        matches!(self.phase, Phase::LoggedIn(_))
    }

    /// Answers a frame that was not binary (the protocol is binary only).
    pub(crate) fn handle_text(&mut self) -> Outcome {
        self.protocol_error(WireError::new(
            ErrorCode::BadFrame,
            "text frames are not part of the protocol; send binary protobuf frames",
        ))
    }

    /// Handles one binary frame.
    pub(crate) async fn handle(&mut self, bytes: &[u8]) -> Outcome {
        let frame = match decode_client_frame(bytes) {
            Ok(frame) => frame,
            Err(error) => return self.protocol_error(error.into()),
        };
        let request_id = frame.request_id;
        if request_id == 0 {
            return self.protocol_error(WireError::new(
                ErrorCode::BadFrame,
                "request_id must be non-zero",
            ));
        }
        let before = self.phase;
        let mut close = None;
        let body = match self.dispatch(frame).await {
            Ok(body) => body,
            Err(error) => {
                close = self.close_after(&error);
                metrics::counter!("wisp_requests_refused_total", "code" => error.code.as_str_name())
                    .increment(1);
                Out::Error(error.to_frame())
            }
        };
        let logged_in = match (before, self.phase) {
            (Phase::Anonymous, Phase::LoggedIn(user)) => Some(user),
            _ => None,
        };
        Outcome {
            reply: reply(request_id, body),
            logged_in,
            close: close.or_else(|| self.closing.take()),
            acked: std::mem::take(&mut self.acked),
        }
    }

    fn protocol_error(&mut self, error: WireError) -> Outcome {
        self.protocol_errors += 1;
        metrics::counter!("wisp_requests_refused_total", "code" => error.code.as_str_name())
            .increment(1);
        let close = (self.protocol_errors >= MAX_PROTOCOL_ERRORS).then_some(Close {
            code: close_code::PROTOCOL,
            reason: "too many malformed frames",
        });
        Outcome {
            reply: reply(0, Out::Error(error.to_frame())),
            logged_in: None,
            close,
            acked: Vec::new(),
        }
    }

    fn close_after(&mut self, error: &WireError) -> Option<Close> {
        match error.code {
            ErrorCode::UnsupportedVersion => Some(Close {
                code: close_code::PROTOCOL,
                reason: "unsupported protocol version",
            }),
            ErrorCode::AuthFailed => {
                self.failed_logins += 1;
                (self.failed_logins >= MAX_FAILED_LOGINS).then_some(Close {
                    code: close_code::POLICY,
                    reason: "too many failed logins",
                })
            }
            ErrorCode::HelloRequired | ErrorCode::AuthRequired => {
                self.protocol_errors += 1;
                (self.protocol_errors >= MAX_PROTOCOL_ERRORS).then_some(Close {
                    code: close_code::PROTOCOL,
                    reason: "too many out-of-order frames",
                })
            }
            _ => None,
        }
    }

    /// Answers one request according to the connection's phase.
    async fn dispatch(&mut self, frame: ClientFrame) -> Result<Out, WireError> {
        let Some(body) = frame.body else {
            return Err(WireError::new(ErrorCode::BadFrame, "frame has no body"));
        };
        match self.phase {
            Phase::AwaitingHello => self.before_hello(body),
            // Registering and logging in happen once a connection: boxed,
            // like the rare requests once logged in (see `logged_in`).
            Phase::Anonymous => Box::pin(self.before_login(body)).await,
            Phase::LoggedIn(me) => self.logged_in(me, body).await,
        }
    }

    /// Before `Hello`: only `Hello` itself.
    fn before_hello(&mut self, body: In) -> Result<Out, WireError> {
        let In::Hello(hello) = body else {
            return Err(WireError::new(
                ErrorCode::HelloRequired,
                "send Hello with the protocol version first",
            ));
        };
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(WireError::new(
                ErrorCode::UnsupportedVersion,
                format!(
                    "this server speaks protocol version {PROTOCOL_VERSION}, not {}; update your client",
                    hello.protocol_version
                ),
            ));
        }
        self.phase = Phase::Anonymous;
        Ok(Out::HelloOk(HelloOk {
            protocol_version: PROTOCOL_VERSION,
            server_name: self.state.server_name.clone(),
            max_frame_bytes: u32::try_from(MAX_FRAME_BYTES).unwrap_or(u32::MAX),
        }))
    }

    /// After `Hello`, before login: register, or log in.
    async fn before_login(&mut self, body: In) -> Result<Out, WireError> {
        match body {
            In::Hello(_) => Err(hello_again()),
            In::Ping(_) => Ok(Out::Pong(Pong {})),
            In::RegisterChallenge(_) => {
                let puzzle = accounts::new_puzzle(&self.state);
                let reply = RegisterPuzzle {
                    nonce: puzzle.nonce.to_vec(),
                    difficulty_bits: puzzle.difficulty,
                };
                self.puzzle = Some(puzzle);
                Ok(Out::RegisterPuzzle(reply))
            }
            In::Register(register) => {
                let user = accounts::register(
                    &self.state,
                    self.peer,
                    self.puzzle.take(),
                    Registration {
                        ed25519_key: &register.ed25519_key,
                        curve25519_key: &register.curve25519_key,
                        signature: &register.signature,
                        pow_solution: register.pow_solution,
                        identity_signature: &register.identity_signature,
                    },
                )
                .await?;
                Ok(Out::Registered(Registered {
                    user_id: user.to_vec(),
                }))
            }
            In::LoginChallenge(request) => {
                let user = user_arg(&request.user_id)?;
                let nonce = accounts::fresh_nonce();
                self.login_challenge = Some(accounts::LoginChallenge { user, nonce });
                Ok(Out::LoginChallenge(LoginChallenge {
                    nonce: nonce.to_vec(),
                }))
            }
            In::Login(login) => {
                let challenge = self.login_challenge.take();
                let user = accounts::login(&self.state, challenge, &login.signature).await?;
                self.phase = Phase::LoggedIn(user);
                tracing::debug!(%user, "logged in");
                Ok(Out::LoggedIn(LoggedIn {
                    user_id: user.to_vec(),
                    one_time_keys_remaining: keys::remaining(&self.state, user).await?,
                }))
            }
            In::FriendOp(_)
            | In::ListFriends(_)
            | In::ListFriendRequests(_)
            | In::UploadKeys(_)
            | In::ClaimKeys(_)
            | In::DeleteAccount(_)
            | In::Send(_)
            | In::Ack(_) => Err(WireError::new(
                ErrorCode::AuthRequired,
                "log in before using this request",
            )),
        }
    }

    /// Logged in as `me`: friends, keys and messages.
    ///
    /// A future is as large as the largest one it may await, and the
    /// connection holds this one for as long as it lives: the rare requests
    /// (friends, keys, the account) are boxed, so that an idle connection
    /// is only as large as sending and acknowledging need.
    async fn logged_in(&mut self, me: UserId, body: In) -> Result<Out, WireError> {
        match body {
            In::Hello(_) => Err(hello_again()),
            In::Ping(_) => Ok(Out::Pong(Pong {})),
            In::RegisterChallenge(_) | In::Register(_) | In::LoginChallenge(_) | In::Login(_) => {
                Err(WireError::new(
                    ErrorCode::InvalidArgument,
                    "this connection is already logged in",
                ))
            }
            In::FriendOp(op) => {
                let action = FriendAction::try_from(op.action).map_err(|_| {
                    WireError::new(ErrorCode::InvalidArgument, "unknown friend action")
                })?;
                let other = user_arg(&op.user_id)?;
                let applying = friends::apply(&self.state, me, action, other, &op.invitation);
                let friends = Box::pin(applying).await?;
                Ok(Out::FriendOpResult(FriendOpResult { friends }))
            }
            In::ListFriends(_) => Box::pin(self.friend_list(me)).await,
            In::ListFriendRequests(_) => Box::pin(self.friend_requests(me)).await,
            In::UploadKeys(upload) => {
                let remaining = Box::pin(keys::upload(&self.state, me, upload)).await?;
                Ok(Out::KeysUploaded(KeysUploaded {
                    one_time_keys_remaining: remaining,
                }))
            }
            In::ClaimKeys(claim) => {
                let other = user_arg(&claim.user_id)?;
                let bundle = Box::pin(keys::claim(&self.state, me, other)).await?;
                Ok(Out::KeyBundle(bundle))
            }
            In::Send(send) => {
                let accepted = messages::send(&self.state, me, send).await?;
                Ok(Out::SendAck(SendAck {
                    message_id: accepted.id.0,
                    expires_unix_ms: accepted.expires_at.0,
                    duplicate: accepted.duplicate,
                }))
            }
            In::DeleteAccount(delete) => {
                if user_arg(&delete.user_id)? != me {
                    return Err(WireError::new(
                        ErrorCode::InvalidArgument,
                        "user_id must be the id this connection is logged in as",
                    ));
                }
                Box::pin(accounts::delete(&self.state, me)).await?;
                self.phase = Phase::Anonymous;
                self.closing = Some(super::connection::ACCOUNT_DELETED);
                Ok(Out::AccountDeleted(AccountDeleted {}))
            }
            In::Ack(ack) => {
                let burned = messages::ack(&self.state, me, &ack.message_ids).await?;
                self.acked = ack.message_ids;
                Ok(Out::Acked(Acked {
                    burned: u32::try_from(burned).unwrap_or(u32::MAX),
                }))
            }
        }
    }

    async fn friend_list(&self, me: UserId) -> Result<Out, WireError> {
        let friends = friends::list(&self.state, me).await?;
        Ok(Out::FriendList(FriendList {
            friends: friends
                .into_iter()
                .map(|f| Friend {
                    user_id: f.user.to_vec(),
                    since_unix_ms: f.since.0,
                })
                .collect(),
        }))
    }

    async fn friend_requests(&self, me: UserId) -> Result<Out, WireError> {
        let pending = friends::pending(&self.state, me).await?;
        let entries = |list: Vec<crate::store::RequestEntry>| {
            list.into_iter()
                .map(|r| PendingRequest {
                    user_id: r.user.to_vec(),
                    created_unix_ms: r.created.0,
                })
                .collect()
        };
        Ok(Out::FriendRequests(FriendRequests {
            incoming: entries(pending.incoming),
            outgoing: entries(pending.outgoing),
            blocked: pending.blocked.iter().map(UserId::to_vec).collect(),
        }))
    }
}

fn hello_again() -> WireError {
    WireError::new(
        ErrorCode::HelloRequired,
        "Hello was already received on this connection",
    )
}
