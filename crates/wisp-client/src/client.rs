//! The typed async API over one connection: connect, register, log in,
//! manage friends, upload and claim keys, send ciphertext, acknowledge, and
//! the [`Events`] stream of [`ServerEvent`]s the server pushes.

use tokio::sync::mpsc;
use wisp_core::{Delivery, Identity, Invitation};
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::{
    Ack, ClaimKeys, DeleteAccount, FriendOp, Hello, KeyBundle, ListFriendRequests, ListFriends,
    Login, LoginChallengeRequest, Ping, Register, RegisterChallengeRequest, Send, UploadKeys,
};
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{
    ClientMsgId, FriendAction, InvitationToken, MessageId, PROTOCOL_VERSION, UnixMillis, UserId,
};

use crate::connection::{Connection, Push};
use crate::error::ClientError;
use crate::tls::ConnectOptions;

/// Something the server told us without being asked: what the transport
/// (a [`Client`]'s [`Events`]) carries. A [`Messenger`](crate::Messenger)
/// turns these into its own [`Event`](crate::Event)s.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// An encrypted message arrived.
    Delivery(Delivery),
    /// Everything waiting at login has been delivered.
    MailboxDrained,
    /// Someone asked to be friends.
    FriendRequest {
        /// Who asked.
        from: UserId,
    },
    /// Someone accepted our request (or asked while we had asked them).
    FriendAccepted {
        /// Who.
        by: UserId,
    },
    /// Someone ended the friendship.
    FriendRemoved {
        /// Who.
        by: UserId,
    },
    /// The server is running out of this user's one-time keys.
    KeysLow {
        /// How many are left.
        remaining: u32,
    },
    /// The server refused a frame it could not tie to a request.
    ServerError {
        /// Its explanation.
        message: String,
    },
    /// The connection ended; this is the last event of the stream.
    Disconnected {
        /// The server's reason, when it gave one.
        reason: Option<String>,
    },
    /// The server closed this session because the account logged in on
    /// more connections than it allows (`--max-sessions-per-user`) and this
    /// was the oldest; the last event of the stream. Reconnecting on one's
    /// own would close another of the account's sessions in turn.
    Superseded {
        /// The server's reason.
        reason: Option<String>,
    },
}

/// A message the server stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The server's id for it.
    pub message_id: MessageId,
    /// When the server burns it, read or not.
    pub expires_unix_ms: UnixMillis,
    /// Whether the server had it already (a retry with the same client
    /// message id): stored once all the same.
    pub duplicate: bool,
}

/// The stream of [`ServerEvent`]s for one connection.
#[derive(Debug)]
pub struct Events {
    pushes: mpsc::Receiver<Push>,
}

impl Events {
    /// The next event; `None` once the connection is gone and every event
    /// was read.
    pub async fn next(&mut self) -> Option<ServerEvent> {
        loop {
            if let Some(event) = event_of(self.pushes.recv().await?) {
                return Some(event);
            }
        }
    }

    /// The next event if one has already arrived, without waiting (to
    /// handle in one go what came together, e.g. acknowledge a batch).
    pub fn try_next(&mut self) -> Option<ServerEvent> {
        while let Ok(push) = self.pushes.try_recv() {
            if let Some(event) = event_of(push) {
                return Some(event);
            }
        }
        None
    }
}

/// The event a push stands for, if this version knows it.
fn event_of(push: Push) -> Option<ServerEvent> {
    match push {
        Push::Closed(ending) if ending.superseded => Some(ServerEvent::Superseded {
            reason: ending.reason,
        }),
        Push::Closed(ending) => Some(ServerEvent::Disconnected {
            reason: ending.reason,
        }),
        Push::Frame(Reply::FriendRequestReceived(e)) => UserId::from_bytes(&e.from)
            .ok()
            .map(|from| ServerEvent::FriendRequest { from }),
        Push::Frame(Reply::FriendAccepted(e)) => UserId::from_bytes(&e.by)
            .ok()
            .map(|by| ServerEvent::FriendAccepted { by }),
        Push::Frame(Reply::FriendRemoved(e)) => UserId::from_bytes(&e.by)
            .ok()
            .map(|by| ServerEvent::FriendRemoved { by }),
        Push::Frame(Reply::Error(e)) => Some(ServerEvent::ServerError { message: e.message }),
        Push::Frame(Reply::Deliver(d)) => UserId::from_bytes(&d.from).ok().map(|from| {
            ServerEvent::Delivery(Delivery {
                message_id: MessageId(d.message_id),
                from,
                ciphertext: d.ciphertext,
                sent_unix_ms: UnixMillis(d.sent_unix_ms),
                expires_unix_ms: UnixMillis(d.expires_unix_ms),
            })
        }),
        Push::Frame(Reply::MailboxDrained(_)) => Some(ServerEvent::MailboxDrained),
        Push::Frame(Reply::KeysLow(k)) => Some(ServerEvent::KeysLow {
            remaining: k.one_time_keys_remaining,
        }),
        Push::Frame(other) => {
            tracing::debug!(?other, "ignoring a push this version does not know");
            None
        }
    }
}

/// A friend, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FriendInfo {
    /// Their id.
    pub id: UserId,
    /// When the friendship began.
    pub since_unix_ms: UnixMillis,
}

/// A pending request, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The other side.
    pub id: UserId,
    /// When it was sent.
    pub created_unix_ms: UnixMillis,
}

/// Pending requests and blocks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PendingInfo {
    /// Requests to us.
    pub incoming: Vec<RequestInfo>,
    /// Requests from us.
    pub outgoing: Vec<RequestInfo>,
    /// Users we blocked.
    pub blocked: Vec<UserId>,
}

/// A connection to a Wisp server, after the version handshake.
#[derive(Debug)]
pub struct Client {
    connection: Connection,
    server_name: String,
    user: Option<UserId>,
    keys_remaining: u32,
}

fn unexpected(reply: &Reply) -> ClientError {
    ClientError::Protocol(format!("unexpected reply {reply:?}"))
}

fn user_from(bytes: &[u8]) -> Result<UserId, ClientError> {
    UserId::from_bytes(bytes).map_err(|e| ClientError::Protocol(e.to_string()))
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:7700`, or
    /// `wss://chat.example.org` trusting the system's roots) and exchanges
    /// protocol versions.
    pub async fn connect(url: &str) -> Result<(Self, Events), ClientError> {
        Self::connect_with(url, &ConnectOptions::new()).await
    }

    /// Like [`Client::connect`], leaving from the local address `local`
    /// when given, for load generators that spread many connections over
    /// several loopback addresses.
    pub async fn connect_from(
        url: &str,
        local: Option<std::net::IpAddr>,
    ) -> Result<(Self, Events), ClientError> {
        Self::connect_with(url, &ConnectOptions::new().from_address(local)).await
    }

    /// Like [`Client::connect`], with `options`: a self-hosted deployment's
    /// CA to trust for `wss://`, a local address. A refused certificate is
    /// [`ClientError::Certificate`].
    pub async fn connect_with(
        url: &str,
        options: &ConnectOptions,
    ) -> Result<(Self, Events), ClientError> {
        let (connection, pushes) = Connection::open(url, options).await?;
        let reply = connection
            .request(Request::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client: concat!("wisp-client/", env!("CARGO_PKG_VERSION")).into(),
            }))
            .await?;
        let Reply::HelloOk(ok) = reply else {
            return Err(unexpected(&reply));
        };
        Ok((
            Self {
                connection,
                server_name: ok.server_name,
                user: None,
                keys_remaining: 0,
            },
            Events { pushes },
        ))
    }

    /// The deployment name the server announced.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// The logged-in user, if any.
    pub fn user_id(&self) -> Option<UserId> {
        self.user
    }

    /// Registers `identity`: solves the server's proof-of-work and proves
    /// possession of the keys. Returns the id the server derived, which
    /// always equals `identity.user_id()`.
    pub async fn register(&self, identity: &Identity) -> Result<UserId, ClientError> {
        let reply = self
            .connection
            .request(Request::RegisterChallenge(RegisterChallengeRequest {}))
            .await?;
        let Reply::RegisterPuzzle(puzzle) = reply else {
            return Err(unexpected(&reply));
        };
        let key = identity.ed25519_key();
        let nonce = puzzle.nonce.clone();
        let difficulty = puzzle.difficulty_bits;
        // CPU work: off the async threads.
        let solution = tokio::task::spawn_blocking(move || {
            wisp_core::solve_registration(&nonce, &key, difficulty)
        })
        .await
        .map_err(|e| ClientError::Protocol(format!("proof-of-work task failed: {e}")))??;
        let signature = identity.sign_registration(&self.server_name, &puzzle.nonce);
        let reply = self
            .connection
            .request(Request::Register(Register {
                ed25519_key: key.to_vec(),
                curve25519_key: identity.curve25519_key().to_vec(),
                signature: signature.to_vec(),
                pow_solution: solution,
                identity_signature: identity.sign_identity_key().to_vec(),
            }))
            .await?;
        let Reply::Registered(registered) = reply else {
            return Err(unexpected(&reply));
        };
        let id = user_from(&registered.user_id)?;
        if id != identity.user_id() {
            return Err(ClientError::Protocol(
                "the server derived a different user id from our key".into(),
            ));
        }
        Ok(id)
    }

    /// Logs in as `identity`, signing for `pinned_server_name`, the
    /// deployment it registered with. Refuses before signing anything if
    /// this server announces another name.
    pub async fn login(
        &mut self,
        identity: &Identity,
        pinned_server_name: &str,
    ) -> Result<(), ClientError> {
        if self.server_name != pinned_server_name {
            return Err(ClientError::WrongServer {
                expected: pinned_server_name.to_owned(),
                actual: self.server_name.clone(),
            });
        }
        let user = identity.user_id();
        let reply = self
            .connection
            .request(Request::LoginChallenge(LoginChallengeRequest {
                user_id: user.to_vec(),
            }))
            .await?;
        let Reply::LoginChallenge(challenge) = reply else {
            return Err(unexpected(&reply));
        };
        let signature = identity.sign_login(pinned_server_name, &challenge.nonce);
        let reply = self
            .connection
            .request(Request::Login(Login {
                signature: signature.to_vec(),
            }))
            .await?;
        let Reply::LoggedIn(logged_in) = reply else {
            return Err(unexpected(&reply));
        };
        self.user = Some(user);
        self.keys_remaining = logged_in.one_time_keys_remaining;
        Ok(())
    }

    async fn friend_op(&self, action: FriendAction, other: UserId) -> Result<bool, ClientError> {
        self.friend_op_with(action, other, None).await
    }

    async fn friend_op_with(
        &self,
        action: FriendAction,
        other: UserId,
        invitation: Option<&InvitationToken>,
    ) -> Result<bool, ClientError> {
        let reply = self
            .connection
            .request(Request::FriendOp(FriendOp {
                action: action as i32,
                user_id: other.to_vec(),
                invitation: invitation
                    .map(|t| t.to_bytes().to_vec())
                    .unwrap_or_default(),
            }))
            .await?;
        match reply {
            Reply::FriendOpResult(result) => Ok(result.friends),
            other => Err(unexpected(&other)),
        }
    }

    /// Asks `to` to be friends. Returns true if that made you friends at
    /// once (they had asked you too).
    pub async fn request_friend(&self, to: UserId) -> Result<bool, ClientError> {
        self.friend_op(FriendAction::Request, to).await
    }

    /// Asks the user `invitation` names to be friends, with its token when
    /// it has one: a request made with a valid invitation gets through even
    /// when strangers filled that user's pending requests. Returns true if
    /// that made you friends at once.
    pub async fn request_friend_invited(
        &self,
        invitation: &Invitation,
    ) -> Result<bool, ClientError> {
        self.friend_op_with(
            FriendAction::Request,
            invitation.user,
            invitation.token.as_ref(),
        )
        .await
    }

    /// Accepts `from`'s request.
    pub async fn accept_friend(&self, from: UserId) -> Result<(), ClientError> {
        self.friend_op(FriendAction::Accept, from).await.map(drop)
    }

    /// Declines `from`'s request.
    pub async fn decline_friend(&self, from: UserId) -> Result<(), ClientError> {
        self.friend_op(FriendAction::Decline, from).await.map(drop)
    }

    /// Withdraws your request to `to`.
    pub async fn cancel_friend_request(&self, to: UserId) -> Result<(), ClientError> {
        self.friend_op(FriendAction::Cancel, to).await.map(drop)
    }

    /// Ends the friendship with `other`.
    pub async fn remove_friend(&self, other: UserId) -> Result<(), ClientError> {
        self.friend_op(FriendAction::Remove, other).await.map(drop)
    }

    /// Blocks `other`: ends any friendship, drops requests both ways, and
    /// silently drops their future requests.
    pub async fn block(&self, other: UserId) -> Result<(), ClientError> {
        self.friend_op(FriendAction::Block, other).await.map(drop)
    }

    /// Lifts a block.
    pub async fn unblock(&self, other: UserId) -> Result<(), ClientError> {
        self.friend_op(FriendAction::Unblock, other).await.map(drop)
    }

    /// Your friends, oldest friendship first.
    pub async fn friends(&self) -> Result<Vec<FriendInfo>, ClientError> {
        let reply = self
            .connection
            .request(Request::ListFriends(ListFriends {}))
            .await?;
        let Reply::FriendList(list) = reply else {
            return Err(unexpected(&reply));
        };
        list.friends
            .into_iter()
            .map(|f| {
                Ok(FriendInfo {
                    id: user_from(&f.user_id)?,
                    since_unix_ms: UnixMillis(f.since_unix_ms),
                })
            })
            .collect()
    }

    /// Your pending requests, both ways, and your blocks.
    pub async fn friend_requests(&self) -> Result<PendingInfo, ClientError> {
        let reply = self
            .connection
            .request(Request::ListFriendRequests(ListFriendRequests {}))
            .await?;
        let Reply::FriendRequests(requests) = reply else {
            return Err(unexpected(&reply));
        };
        let convert = |list: Vec<wisp_proto::frames::PendingRequest>| {
            list.into_iter()
                .map(|r| {
                    Ok(RequestInfo {
                        id: user_from(&r.user_id)?,
                        created_unix_ms: UnixMillis(r.created_unix_ms),
                    })
                })
                .collect::<Result<Vec<_>, ClientError>>()
        };
        Ok(PendingInfo {
            incoming: convert(requests.incoming)?,
            outgoing: convert(requests.outgoing)?,
            blocked: requests
                .blocked
                .iter()
                .map(|b| user_from(b))
                .collect::<Result<_, _>>()?,
        })
    }

    /// One-time keys the server held for us at login.
    pub fn keys_remaining_at_login(&self) -> u32 {
        self.keys_remaining
    }

    /// Uploads signed one-time keys (and a fallback key); returns how many
    /// one-time keys the server now holds.
    pub async fn upload_keys(&self, upload: UploadKeys) -> Result<u32, ClientError> {
        match self.connection.request(Request::UploadKeys(upload)).await? {
            Reply::KeysUploaded(done) => Ok(done.one_time_keys_remaining),
            other => Err(unexpected(&other)),
        }
    }

    /// Claims one of a friend's keys, to start a session. Check it with
    /// [`wisp_core::verify_bundle`] (the [`crate::LocalState`] does) before
    /// use.
    pub async fn claim_keys(&self, friend: UserId) -> Result<KeyBundle, ClientError> {
        match self
            .connection
            .request(Request::ClaimKeys(ClaimKeys {
                user_id: friend.to_vec(),
            }))
            .await?
        {
            Reply::KeyBundle(bundle) => Ok(bundle),
            other => Err(unexpected(&other)),
        }
    }

    /// Hands the server an encrypted message; returns once it is stored
    /// durably. Retrying with the same `client_msg_id` never stores twice.
    pub async fn send_ciphertext(
        &self,
        to: UserId,
        client_msg_id: ClientMsgId,
        ciphertext: Vec<u8>,
        ttl: std::time::Duration,
    ) -> Result<Accepted, ClientError> {
        let ttl_seconds = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
        match self
            .connection
            .request(Request::Send(Send {
                to: to.to_vec(),
                client_msg_id: client_msg_id.0.to_vec(),
                ciphertext,
                ttl_seconds,
            }))
            .await?
        {
            Reply::SendAck(ack) => Ok(Accepted {
                message_id: MessageId(ack.message_id),
                expires_unix_ms: UnixMillis(ack.expires_unix_ms),
                duplicate: ack.duplicate,
            }),
            other => Err(unexpected(&other)),
        }
    }

    /// Tells the server these messages were received: it deletes them.
    pub async fn ack(&self, message_ids: Vec<MessageId>) -> Result<u32, ClientError> {
        let message_ids = message_ids.into_iter().map(|id| id.0).collect();
        match self
            .connection
            .request(Request::Ack(Ack { message_ids }))
            .await?
        {
            Reply::Acked(done) => Ok(done.burned),
            other => Err(unexpected(&other)),
        }
    }

    /// Deletes the logged-in account `me` on the server, for good: its
    /// keys, friendships (each friend is told it ended), requests, blocks
    /// and every message waiting to or from it. The server closes the
    /// connection afterwards, and the identity can never register or log
    /// in again: delete the local key store too
    /// ([`KeyStore::delete`](crate::KeyStore::delete)).
    pub async fn delete_account(&self, me: UserId) -> Result<(), ClientError> {
        match self
            .connection
            .request(Request::DeleteAccount(DeleteAccount {
                user_id: me.to_vec(),
            }))
            .await?
        {
            Reply::AccountDeleted(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }

    /// A round trip, to check the connection.
    pub async fn ping(&self) -> Result<(), ClientError> {
        match self.connection.request(Request::Ping(Ping {})).await? {
            Reply::Pong(_) => Ok(()),
            other => Err(unexpected(&other)),
        }
    }
}
