//! The browser's device, sans IO: what the native `Messenger` does over a
//! socket and a file, as a state machine that takes server frames in and
//! gives client frames, events and the sealed key store out. The page owns
//! the WebSocket and IndexedDB; this owns the identity, the ratchets, the
//! request ids and what each reply means.
//!
//! The one rule for the caller, from [`Step`]: store `sealed` (when there
//! is one) *before* sending `frames`. The ratchet moved, or received
//! messages were taken: a crash after the frames left but before the state
//! was kept could reuse a message key, or burn a message on the server that
//! the stored state has not seen.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use wisp_core::envelope::{EnvelopeError, EnvelopeKey, KdfParams};
use wisp_core::{
    AwaitingReceipt, Content, Delivery, E2eError, Identity, LocalState, NameError, Opened,
    client_msg_id, receipt_ttl, solve_registration_slice,
};
use wisp_proto::client_frame::Body as Request;
use wisp_proto::frames::{
    Ack, ClaimKeys, DeleteAccount, FriendOp, Hello, KeyBundle, ListFriendRequests, ListFriends,
    Login, LoginChallengeRequest, Register, RegisterChallengeRequest, Send,
};
use wisp_proto::limits::{MAX_MESSAGE_TTL, MAX_TEXT_BYTES};
use wisp_proto::server_frame::Body as Reply;
use wisp_proto::{
    ClientFrame, ClientMsgId, FriendAction, InvitationToken, MessageId, PROTOCOL_VERSION,
    UnixMillis, UserId, codec,
};
use zeroize::Zeroizing;

use crate::event::{Event, FriendView, PeerView, SecretText};

/// A session is renewed at most this often per friend.
const RENEWAL_INTERVAL: Duration = Duration::from_secs(60);

/// What one call produced. Store `sealed` first, then send `frames`.
#[derive(Debug, Default)]
pub struct Step {
    /// Encoded `ClientFrame`s, in order.
    pub frames: Vec<Vec<u8>>,
    /// What to tell the user.
    pub events: Vec<Event>,
    /// The key store, re-sealed, when the state changed.
    pub sealed: Option<Vec<u8>>,
}

/// Why the device refused something the page asked.
#[derive(Debug)]
#[non_exhaustive]
pub enum DeviceError {
    /// The passphrase does not open the key store (or it was altered).
    WrongPassphrase,
    /// The passphrase is empty.
    EmptyPassphrase,
    /// The key store is not one this version reads.
    Unreadable(String),
    /// A text, id or timer the page passed is not acceptable.
    Invalid(String),
    /// A petname or display name was refused (see [`wisp_core::check_name`]),
    /// or the petname is another friend's already.
    Name(NameError),
    /// The browser gave no randomness.
    NoRandomness,
}

impl std::error::Error for DeviceError {}

/// Never with a secret in it.
impl std::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WrongPassphrase => f.write_str("wrong passphrase"),
            Self::EmptyPassphrase => f.write_str("the passphrase must not be empty"),
            Self::Unreadable(why) => write!(f, "the stored key store cannot be read: {why}"),
            Self::Invalid(why) => f.write_str(why),
            Self::Name(why) => write!(f, "{why}"),
            Self::NoRandomness => f.write_str("the browser gave no randomness"),
        }
    }
}

impl From<EnvelopeError> for DeviceError {
    fn from(error: EnvelopeError) -> Self {
        match error {
            EnvelopeError::WrongPassphrase => Self::WrongPassphrase,
            EnvelopeError::EmptyPassphrase => Self::EmptyPassphrase,
            EnvelopeError::NoRandomness(_) => Self::NoRandomness,
            other => Self::Unreadable(other.to_string()),
        }
    }
}

/// Where the connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection.
    Offline,
    /// Hello sent.
    Hello,
    /// Registering (puzzle asked, solving, or register sent).
    Registering,
    /// Login asked.
    LoggingIn,
    /// Logged in.
    Ready,
    /// Refused for good on this connection (see [`Event::Fatal`]).
    Stopped,
}

/// What a request in flight was, to read its reply.
#[derive(Debug, Clone)]
enum Pending {
    Hello,
    RegisterChallenge,
    Register,
    LoginChallenge,
    Login,
    Friend { action: FriendAction, peer: UserId },
    ListFriends,
    ListRequests,
    UploadKeys,
    ClaimKeys { peer: UserId },
    Send { client_msg_id: ClientMsgId },
    Ack,
    DeleteAccount,
}

/// A registration puzzle being solved.
#[derive(Debug)]
struct PowJob {
    nonce: Vec<u8>,
    difficulty: u32,
    next: u64,
}

/// Something to seal for a friend once there is a session.
struct Queued {
    client_msg_id: ClientMsgId,
    content: Content,
    /// When it must be gone, fixed when the user wrote it: waiting for keys
    /// or a connection never gives it more time.
    deadline: UnixMillis,
}

/// Sealed and handed to the server, not yet acknowledged: sent again (same
/// id, same bytes, stored once) after a reconnect.
struct InFlight {
    to: UserId,
    ciphertext: Vec<u8>,
    /// The sealed ceiling: a resend asks the server only for the time left.
    deadline: UnixMillis,
    /// What it is, for what its acknowledgement or failure means.
    carries: Carries,
}

/// What a sealed message of ours carries.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Carries {
    /// A text of the user's: its fate is reported.
    Text,
    /// This user's display name as it was sealed: recorded as sent
    /// ([`LocalState::profile_sent`]) only if it is still the current one
    /// when the server takes it (a newer one is on its way otherwise).
    Profile(Option<String>),
    /// A receipt or a renewal: nothing to report.
    Other,
}

impl Carries {
    fn of(content: &Content) -> Self {
        match content {
            Content::Text { .. } => Self::Text,
            Content::Profile { display_name } => Self::Profile(display_name.clone()),
            _ => Self::Other,
        }
    }
}

/// The last lists of requests and blocks, kept to be shown again with new
/// petnames.
#[derive(Debug, Default)]
struct Requests {
    incoming: Vec<UserId>,
    outgoing: Vec<UserId>,
    blocked: Vec<UserId>,
}

/// A friend's text handed to the page, until it is read (receipt) or expires.
#[derive(Debug)]
struct Unread {
    from: UserId,
    expires: UnixMillis,
}

/// The browser's device: identity, ratchets and the protocol state of the
/// current connection. `Debug` shows no key and no text.
pub struct Device {
    state: LocalState,
    key: EnvelopeKey,
    phase: Phase,
    next_request: u64,
    pending: BTreeMap<u64, Pending>,
    server_name: Option<String>,
    pow: Option<PowJob>,
    waiting_for_keys: BTreeMap<UserId, Vec<Queued>>,
    renewals: BTreeSet<UserId>,
    renewed: BTreeMap<UserId, UnixMillis>,
    in_flight: BTreeMap<ClientMsgId, InFlight>,
    /// Texts sent and not yet read.
    outgoing: AwaitingReceipt,
    unread: BTreeMap<ClientMsgId, Unread>,
    friends: BTreeMap<UserId, i64>,
    requests: Option<Requests>,
    /// The first friend list after a login squares what the state keeps
    /// per friend with it ([`LocalState::friendship_data`]).
    prune_friendships: bool,
    dirty: bool,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("user_id", &self.state.identity.user_id())
            .field("phase", &self.phase)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

fn user_text(id: UserId) -> String {
    id.to_string()
}

fn msg_text(id: ClientMsgId) -> String {
    id.to_string()
}

fn parse_user(text: &str) -> Result<UserId, DeviceError> {
    wisp_core::parse_invitation(text).map_err(|e| DeviceError::Invalid(e.to_string()))
}

fn parse_msg_id(text: &str) -> Result<ClientMsgId, DeviceError> {
    data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .ok()
        .and_then(|bytes| ClientMsgId::from_bytes(&bytes))
        .ok_or_else(|| DeviceError::Invalid(format!("\"{text}\" is not a message id")))
}

fn action_name(action: FriendAction) -> &'static str {
    match action {
        FriendAction::Request => "request",
        FriendAction::Accept => "accept",
        FriendAction::Decline => "decline",
        FriendAction::Cancel => "cancel",
        FriendAction::Remove => "remove",
        FriendAction::Block => "block",
        FriendAction::Unblock => "unblock",
        FriendAction::Unspecified => "unspecified",
    }
}

/// Reads an action's name as [`action_name`] writes it.
pub fn parse_action(name: &str) -> Result<FriendAction, DeviceError> {
    Ok(match name {
        "request" => FriendAction::Request,
        "accept" => FriendAction::Accept,
        "decline" => FriendAction::Decline,
        "cancel" => FriendAction::Cancel,
        "remove" => FriendAction::Remove,
        "block" => FriendAction::Block,
        "unblock" => FriendAction::Unblock,
        other => {
            return Err(DeviceError::Invalid(format!(
                "no friend action \"{other}\""
            )));
        }
    })
}

fn random_msg_id(now: UnixMillis) -> Result<ClientMsgId, DeviceError> {
    let mut random = [0u8; 10];
    getrandom::fill(&mut random).map_err(|_| DeviceError::NoRandomness)?;
    Ok(client_msg_id(now, random))
}

impl Device {
    /// A new identity, sealed under `passphrase` with `kdf` (the CLI's
    /// [`KdfParams::default`] in the browser; cheaper ones in tests). Take
    /// [`Device::sealed`] and store it.
    pub fn create(passphrase: &str, kdf: KdfParams) -> Result<Self, DeviceError> {
        let key = EnvelopeKey::derive(passphrase, kdf)?;
        Ok(Self::with(LocalState::new(Identity::generate()), key))
    }

    /// Opens a stored key store with `passphrase`.
    pub fn unlock(passphrase: &str, sealed: &[u8]) -> Result<Self, DeviceError> {
        let (key, pickle) = EnvelopeKey::open(passphrase, sealed)?;
        // The parser's own text may quote the decrypted state: not shown.
        let state = LocalState::from_pickle(&pickle).map_err(|_| {
            DeviceError::Unreadable(
                "the key store opened but this version cannot read what it holds".into(),
            )
        })?;
        Ok(Self::with(state, key))
    }

    fn with(state: LocalState, key: EnvelopeKey) -> Self {
        Self {
            state,
            key,
            phase: Phase::Offline,
            next_request: 0,
            pending: BTreeMap::new(),
            server_name: None,
            pow: None,
            waiting_for_keys: BTreeMap::new(),
            renewals: BTreeSet::new(),
            renewed: BTreeMap::new(),
            in_flight: BTreeMap::new(),
            outgoing: AwaitingReceipt::default(),
            unread: BTreeMap::new(),
            friends: BTreeMap::new(),
            requests: None,
            prune_friendships: false,
            dirty: false,
        }
    }

    /// The state sealed under the passphrase, to store.
    pub fn sealed(&self) -> Result<Vec<u8>, DeviceError> {
        Ok(self.key.seal(&self.state.pickle())?)
    }

    /// This device's id.
    pub fn user_id(&self) -> UserId {
        self.state.identity.user_id()
    }

    /// Whether the identity is registered (with the server it names).
    pub fn is_registered(&self) -> bool {
        self.state.server_name.is_some()
    }

    /// Whether the connection is logged in.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// A signed invitation link for this identity, valid until `expires`.
    pub fn invitation_link(&self, expires: UnixMillis) -> Result<String, DeviceError> {
        let token = self
            .state
            .identity
            .sign_invitation(expires)
            .map_err(|_| DeviceError::NoRandomness)?;
        Ok(wisp_core::signed_invitation_link(self.user_id(), &token))
    }

    /// Whether `friend` is marked verified.
    pub fn is_verified(&self, friend: &str) -> Result<bool, DeviceError> {
        Ok(self.state.is_verified(&parse_user(friend)?))
    }

    /// Marks `friend` verified (or not); only a friend can be marked.
    pub fn set_verified(&mut self, friend: &str, verified: bool) -> Result<Step, DeviceError> {
        let friend = parse_user(friend)?;
        if verified && !self.friends.contains_key(&friend) {
            return Err(DeviceError::Invalid(format!("{friend} is not a friend")));
        }
        let mut step = Step::default();
        if self.state.set_verified(friend, verified) {
            self.dirty = true;
            step.events.push(self.friends_event());
        }
        self.finish(step)
    }

    fn request(&mut self, step: &mut Step, pending: Pending, body: Request) {
        self.next_request += 1;
        let request_id = self.next_request;
        self.pending.insert(request_id, pending);
        step.frames.push(codec::encode(&ClientFrame {
            request_id,
            body: Some(body),
        }));
    }

    /// Seals the state into the step when it changed.
    fn finish(&mut self, mut step: Step) -> Result<Step, DeviceError> {
        if self.dirty {
            step.sealed = Some(self.sealed()?);
            self.dirty = false;
        }
        Ok(step)
    }

    /// A WebSocket to the server just opened: the hello to send.
    pub fn connected(&mut self) -> Step {
        self.pending.clear();
        self.pow = None;
        self.server_name = None;
        self.phase = Phase::Hello;
        let mut step = Step::default();
        step.events.push(Event::Status { status: "hello" });
        self.request(
            &mut step,
            Pending::Hello,
            Request::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                client: concat!("wisp-web/", env!("CARGO_PKG_VERSION")).into(),
            }),
        );
        step
    }

    /// The WebSocket closed: requests in flight are forgotten (sends are
    /// made again after the next login, with the same ids).
    pub fn disconnected(&mut self) {
        self.pending.clear();
        self.pow = None;
        if self.phase != Phase::Stopped {
            self.phase = Phase::Offline;
        }
    }

    /// Whether the server refused this session for good (no reconnect).
    pub fn is_stopped(&self) -> bool {
        self.phase == Phase::Stopped
    }

    /// Candidates tried so far on the registration puzzle, and the expected
    /// total (`2^difficulty`), for a progress bar.
    pub fn pow_progress(&self) -> Option<(u64, u64)> {
        self.pow
            .as_ref()
            .map(|job| (job.next, 1u64 << job.difficulty.min(63)))
    }

    /// Works on the registration puzzle for up to `attempts` candidates;
    /// when solved, the step carries the registration.
    pub fn work(&mut self, attempts: u64) -> Result<Step, DeviceError> {
        let mut step = Step::default();
        let Some(job) = self.pow.as_mut() else {
            return Ok(step);
        };
        let key = self.state.identity.ed25519_key();
        match solve_registration_slice(&job.nonce, &key, job.difficulty, job.next, attempts) {
            Ok(None) => {
                job.next = job.next.saturating_add(attempts);
                Ok(step)
            }
            Ok(Some(solution)) => {
                let nonce = std::mem::take(&mut job.nonce);
                self.pow = None;
                let server_name = self.server_name.clone().unwrap_or_default();
                let identity = &self.state.identity;
                let register = Register {
                    ed25519_key: key.to_vec(),
                    curve25519_key: identity.curve25519_key().to_vec(),
                    signature: identity.sign_registration(&server_name, &nonce).to_vec(),
                    pow_solution: solution,
                    identity_signature: identity.sign_identity_key().to_vec(),
                };
                self.request(&mut step, Pending::Register, Request::Register(register));
                Ok(step)
            }
            Err(error) => {
                self.pow = None;
                self.stop(&mut step, "POW_FAILED", error.to_string());
                Ok(step)
            }
        }
    }

    fn stop(&mut self, step: &mut Step, code: &str, message: String) {
        self.phase = Phase::Stopped;
        self.pending.clear();
        step.events.push(Event::Fatal {
            code: code.into(),
            message,
        });
    }

    /// Asks for a friend operation (`request` takes an invitation link with
    /// its token, or a bare id).
    pub fn friend(&mut self, action: FriendAction, peer: &str) -> Result<Step, DeviceError> {
        let invitation = wisp_core::parse_invitation_link(peer)
            .map_err(|e| DeviceError::Invalid(e.to_string()))?;
        if invitation.user == self.user_id() {
            return Err(DeviceError::Invalid("that is your own id".into()));
        }
        let token = match action {
            FriendAction::Request => invitation.token.as_ref().map(InvitationToken::to_bytes),
            _ => None,
        };
        let mut step = Step::default();
        self.request(
            &mut step,
            Pending::Friend {
                action,
                peer: invitation.user,
            },
            Request::FriendOp(FriendOp {
                action: action as i32,
                user_id: invitation.user.to_vec(),
                invitation: token.map(|t| t.to_vec()).unwrap_or_default(),
            }),
        );
        // Ending a friendship forgets its mark and names, as the native
        // Messenger does: the petname too on a removal, not on a block
        // (it names them in the list of blocks).
        if matches!(action, FriendAction::Remove | FriendAction::Block) {
            self.dirty |= self.state.forget_friendship(invitation.user);
        }
        if action == FriendAction::Remove {
            self.dirty |= self.state.set_petname(invitation.user, None) == Ok(true);
        }
        self.finish(step)
    }

    /// Deletes this account on the server for good (its keys, friendships,
    /// requests and messages); [`Event::AccountDeleted`] says it is done,
    /// and the server closes the connection. The caller then deletes the
    /// stored key store.
    pub fn delete_account(&mut self) -> Result<Step, DeviceError> {
        if self.phase != Phase::Ready {
            return Err(DeviceError::Invalid(
                "not connected: the account can be deleted once online".into(),
            ));
        }
        let mut step = Step::default();
        self.request(
            &mut step,
            Pending::DeleteAccount,
            Request::DeleteAccount(DeleteAccount {
                user_id: self.user_id().to_vec(),
            }),
        );
        Ok(step)
    }

    /// Lists friends and requests again.
    pub fn refresh(&mut self) -> Step {
        let mut step = Step::default();
        self.list(&mut step);
        step
    }

    fn list(&mut self, step: &mut Step) {
        if self.phase != Phase::Ready {
            return;
        }
        self.request(
            step,
            Pending::ListFriends,
            Request::ListFriends(ListFriends {}),
        );
        self.request(
            step,
            Pending::ListRequests,
            Request::ListFriendRequests(ListFriendRequests {}),
        );
    }

    /// Sends `text` to `to`, shown for `view` once read (zero: until its
    /// ceiling), living at most `ttl` unread.
    pub fn send_text(
        &mut self,
        to: &str,
        text: &str,
        view: Duration,
        ttl: Duration,
        now: UnixMillis,
    ) -> Result<Step, DeviceError> {
        let to = parse_user(to)?;
        if text.trim().is_empty() {
            return Err(DeviceError::Invalid("nothing to send".into()));
        }
        if text.len() > MAX_TEXT_BYTES {
            return Err(DeviceError::Invalid(format!(
                "a message holds at most {MAX_TEXT_BYTES} bytes, not {}",
                text.len()
            )));
        }
        if ttl.is_zero() || ttl > MAX_MESSAGE_TTL {
            return Err(DeviceError::Invalid(format!(
                "a message lives between 1 s and {} s",
                MAX_MESSAGE_TTL.as_secs()
            )));
        }
        if view > MAX_MESSAGE_TTL {
            return Err(DeviceError::Invalid(
                "a view timer is at most an hour".into(),
            ));
        }
        let client_msg_id = random_msg_id(now)?;
        let mut step = Step::default();
        step.events.push(Event::Queued {
            to: user_text(to),
            client_msg_id: msg_text(client_msg_id),
            expires_unix_ms: now.plus(ttl).0,
        });
        let content = Content::Text {
            body: Zeroizing::new(text.to_owned()),
            view_timer: (!view.is_zero()).then_some(view),
        };
        self.send_content(&mut step, to, client_msg_id, content, ttl, now);
        self.finish(step)
    }

    /// Tells `client_msg_id`'s sender it was read (an end-to-end receipt);
    /// call it when the message is shown.
    pub fn mark_read(&mut self, client_msg_id: &str, now: UnixMillis) -> Result<Step, DeviceError> {
        let id = parse_msg_id(client_msg_id)?;
        let mut step = Step::default();
        let Some(unread) = self.unread.remove(&id) else {
            return Ok(step);
        };
        if unread.expires > now {
            let ttl = receipt_ttl(unread.expires, now);
            let receipt_id = random_msg_id(now)?;
            self.send_content(
                &mut step,
                unread.from,
                receipt_id,
                Content::ReadReceipt(vec![id]),
                ttl,
                now,
            );
        }
        self.finish(step)
    }

    /// Seals `content` for `to` now if there is a session, or after
    /// claiming one of their keys.
    fn send_content(
        &mut self,
        step: &mut Step,
        to: UserId,
        client_msg_id: ClientMsgId,
        content: Content,
        ttl: Duration,
        now: UnixMillis,
    ) {
        let queued = Queued {
            client_msg_id,
            content,
            deadline: now.plus(ttl),
        };
        if self.state.has_session(to) && !self.waiting_for_keys.contains_key(&to) {
            self.seal_and_send(step, to, queued, now);
            return;
        }
        let claiming = self.waiting_for_keys.contains_key(&to);
        self.waiting_for_keys.entry(to).or_default().push(queued);
        if !claiming {
            self.claim(step, to);
        }
    }

    fn claim(&mut self, step: &mut Step, peer: UserId) {
        if self.phase == Phase::Ready {
            self.request(
                step,
                Pending::ClaimKeys { peer },
                Request::ClaimKeys(ClaimKeys {
                    user_id: peer.to_vec(),
                }),
            );
        }
    }

    fn seal_and_send(&mut self, step: &mut Step, to: UserId, queued: Queued, now: UnixMillis) {
        let carries = Carries::of(&queued.content);
        let is_text = carries == Carries::Text;
        let id = queued.client_msg_id;
        let Some(left) = time_left(queued.deadline, now) else {
            if is_text {
                expired_unread(step, to, id);
            }
            return;
        };
        match self.state.seal(to, id, queued.content, now, left) {
            Ok(ciphertext) => {
                // The ratchet moved: sealed into this step, kept before sending.
                self.dirty = true;
                self.in_flight.insert(
                    id,
                    InFlight {
                        to,
                        ciphertext,
                        deadline: queued.deadline,
                        carries,
                    },
                );
                self.send_in_flight(step, id, now);
            }
            Err(error) => {
                if is_text {
                    step.events.push(Event::SendFailed {
                        to: user_text(to),
                        client_msg_id: msg_text(id),
                        code: "ENCRYPT".into(),
                        message: error.to_string(),
                    });
                }
            }
        }
    }

    fn send_in_flight(&mut self, step: &mut Step, client_msg_id: ClientMsgId, now: UnixMillis) {
        if self.phase != Phase::Ready {
            return;
        }
        let Some(flight) = self.in_flight.get(&client_msg_id) else {
            return;
        };
        // Only the time left: the server's copy is gone by the sealed
        // ceiling too, however late it was (re)sent.
        let Some(left) = time_left(flight.deadline, now) else {
            if let Some(flight) = self.in_flight.remove(&client_msg_id)
                && flight.carries == Carries::Text
            {
                expired_unread(step, flight.to, client_msg_id);
            }
            return;
        };
        let send = Send {
            to: flight.to.to_vec(),
            client_msg_id: client_msg_id.0.to_vec(),
            ciphertext: flight.ciphertext.clone(),
            ttl_seconds: u32::try_from(left.as_secs()).unwrap_or(u32::MAX),
        };
        self.request(step, Pending::Send { client_msg_id }, Request::Send(send));
    }

    /// Time passed: texts of ours past their ceiling without a receipt are
    /// reported expired unread; unread texts past theirs are forgotten.
    pub fn tick(&mut self, now: UnixMillis) -> Step {
        let mut step = Step::default();
        for (to, id) in self.outgoing.expired(now) {
            expired_unread(&mut step, to, id);
        }
        // Texts that never reached the server in time (no connection, no
        // keys): gone as well, and said so.
        let late: Vec<ClientMsgId> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(flight) = self.in_flight.remove(&id)
                && flight.carries == Carries::Text
            {
                expired_unread(&mut step, flight.to, id);
            }
        }
        for (peer, queued) in &mut self.waiting_for_keys {
            for item in queued.iter().filter(|q| q.deadline <= now) {
                if matches!(item.content, Content::Text { .. }) {
                    expired_unread(&mut step, *peer, item.client_msg_id);
                }
            }
            queued.retain(|q| q.deadline > now);
        }
        self.unread.retain(|_, u| u.expires > now);
        step
    }

    /// A frame from the server.
    pub fn receive(&mut self, bytes: &[u8], now: UnixMillis) -> Result<Step, DeviceError> {
        let mut step = Step::default();
        let frame = match codec::decode_server_frame(bytes) {
            Ok(frame) => frame,
            Err(error) => {
                step.events.push(Event::Error {
                    context: "server",
                    code: "BAD_FRAME".into(),
                    message: error.to_string(),
                });
                return Ok(step);
            }
        };
        let pending = match frame.request_id {
            0 => None,
            id => self.pending.remove(&id),
        };
        let Some(body) = frame.body else {
            return Ok(step);
        };
        match (pending, body) {
            (Some(pending), Reply::Error(error)) => self.on_error(&mut step, pending, &error),
            (None, Reply::Error(error)) => step.events.push(Event::Error {
                context: "server",
                code: wisp_proto::error::code_name(error.code),
                message: error.message,
            }),
            (Some(Pending::Hello), Reply::HelloOk(ok)) => self.on_hello(&mut step, ok.server_name),
            (Some(Pending::RegisterChallenge), Reply::RegisterPuzzle(puzzle)) => {
                step.events.push(Event::Pow {
                    difficulty: puzzle.difficulty_bits,
                });
                self.pow = Some(PowJob {
                    nonce: puzzle.nonce,
                    difficulty: puzzle.difficulty_bits,
                    next: 0,
                });
            }
            (Some(Pending::Register), Reply::Registered(registered)) => {
                if registered.user_id != self.user_id().to_vec() {
                    self.stop(
                        &mut step,
                        "PROTOCOL",
                        "the server derived another id from our key".into(),
                    );
                } else {
                    self.state.server_name = self.server_name.clone();
                    self.dirty = true;
                    step.events.push(Event::Registered {
                        user_id: user_text(self.user_id()),
                    });
                    self.log_in(&mut step);
                }
            }
            (Some(Pending::LoginChallenge), Reply::LoginChallenge(challenge)) => {
                let name = self.server_name.clone().unwrap_or_default();
                let signature = self.state.identity.sign_login(&name, &challenge.nonce);
                self.request(
                    &mut step,
                    Pending::Login,
                    Request::Login(Login {
                        signature: signature.to_vec(),
                    }),
                );
            }
            (Some(Pending::Login), Reply::LoggedIn(logged_in)) => {
                self.on_logged_in(&mut step, logged_in.one_time_keys_remaining, now);
            }
            (Some(Pending::UploadKeys), Reply::KeysUploaded(_)) => {
                self.state.keys_published();
                self.dirty = true;
            }
            (Some(Pending::ListFriends), Reply::FriendList(list)) => {
                self.friends = list
                    .friends
                    .iter()
                    .filter_map(|f| Some((UserId::from_bytes(&f.user_id).ok()?, f.since_unix_ms)))
                    .collect();
                // Marks of ids that are no longer friends go (a friendship
                // that ended while this device was away told it nothing);
                // after a login, whatever else is kept per friend too (their
                // display name, which of ours they have).
                // A friendship made again while this device was away keeps
                // nothing of the old one either.
                if std::mem::take(&mut self.prune_friendships) {
                    let since = self.friends.iter().map(|(id, at)| (*id, UnixMillis(*at)));
                    self.dirty |= self.state.observe_friends(since.collect::<Vec<_>>());
                } else {
                    let strangers: Vec<UserId> = self.state.verified().copied().collect();
                    for id in strangers {
                        if !self.friends.contains_key(&id) && self.state.forget_friendship(id) {
                            self.dirty = true;
                        }
                    }
                }
                step.events.push(self.friends_event());
                // New friends, or a change they have not confirmed.
                let friends: Vec<UserId> = self.friends.keys().copied().collect();
                self.send_display_name(&mut step, friends, now);
            }
            (Some(Pending::ListRequests), Reply::FriendRequests(requests)) => {
                let ids = |list: &[wisp_proto::frames::PendingRequest]| {
                    list.iter()
                        .filter_map(|r| UserId::from_bytes(&r.user_id).ok())
                        .collect()
                };
                self.requests = Some(Requests {
                    incoming: ids(&requests.incoming),
                    outgoing: ids(&requests.outgoing),
                    blocked: requests
                        .blocked
                        .iter()
                        .filter_map(|b| UserId::from_bytes(b).ok())
                        .collect(),
                });
                step.events.extend(self.requests_event());
            }
            (Some(Pending::Friend { action, peer }), Reply::FriendOpResult(result)) => {
                step.events.push(Event::FriendOpDone {
                    action: action_name(action),
                    id: user_text(peer),
                    friends: result.friends,
                });
                self.list(&mut step);
            }
            (Some(Pending::ClaimKeys { peer }), Reply::KeyBundle(bundle)) => {
                self.on_bundle(&mut step, peer, &bundle, now);
            }
            (Some(Pending::Send { client_msg_id }), Reply::SendAck(ack)) => {
                if let Some(flight) = self.in_flight.remove(&client_msg_id) {
                    // Never later than the ceiling sealed inside.
                    let expires = UnixMillis(ack.expires_unix_ms.min(flight.deadline.0));
                    match flight.carries {
                        Carries::Text => {
                            self.outgoing.sent(client_msg_id, flight.to, expires);
                            step.events.push(Event::Sent {
                                to: user_text(flight.to),
                                client_msg_id: msg_text(client_msg_id),
                                expires_unix_ms: expires.0,
                            });
                        }
                        Carries::Profile(name) if name.as_deref() == self.state.display_name() => {
                            // Due again only if no receipt comes by then.
                            self.state.profile_sent(flight.to, client_msg_id, expires);
                            self.dirty = true;
                        }
                        Carries::Profile(_) | Carries::Other => {}
                    }
                }
            }
            (Some(Pending::Ack), Reply::Acked(_)) => {}
            (Some(Pending::DeleteAccount), Reply::AccountDeleted(_)) => {
                // Nothing more to say to this server under this identity.
                self.phase = Phase::Stopped;
                self.pending.clear();
                self.in_flight.clear();
                self.waiting_for_keys.clear();
                self.outgoing.clear();
                step.events.push(Event::AccountDeleted);
            }
            (None, Reply::Deliver(deliver)) => self.on_deliver(&mut step, deliver, now),
            (None, Reply::MailboxDrained(_)) => step.events.push(Event::MailboxDrained),
            (None, Reply::FriendRequestReceived(r)) => {
                if let Ok(from) = UserId::from_bytes(&r.from) {
                    step.events.push(Event::FriendRequest {
                        from: user_text(from),
                    });
                }
                self.list(&mut step);
            }
            (None, Reply::FriendAccepted(a)) => {
                if let Ok(by) = UserId::from_bytes(&a.by) {
                    step.events
                        .push(Event::FriendAccepted { by: user_text(by) });
                }
                self.list(&mut step);
            }
            (None, Reply::FriendRemoved(r)) => {
                if let Ok(by) = UserId::from_bytes(&r.by) {
                    if self.state.forget_friendship(by) {
                        self.dirty = true;
                    }
                    step.events.push(Event::FriendRemoved { by: user_text(by) });
                }
                self.list(&mut step);
            }
            (None, Reply::KeysLow(low)) => self.top_up(&mut step, low.one_time_keys_remaining, now),
            (_, other) => step.events.push(Event::Error {
                context: "server",
                code: "UNEXPECTED".into(),
                message: format!("unexpected reply: {}", reply_name(&other)),
            }),
        }
        self.finish(step)
    }

    fn on_hello(&mut self, step: &mut Step, server_name: String) {
        if let Some(pinned) = self.state.server_name.as_deref()
            && pinned != server_name
        {
            let message = format!(
                "this identity is registered with \"{pinned}\", but this server is \"{server_name}\""
            );
            self.stop(step, "WRONG_SERVER", message);
            return;
        }
        self.server_name = Some(server_name);
        if self.is_registered() {
            self.log_in(step);
        } else {
            self.phase = Phase::Registering;
            step.events.push(Event::Status {
                status: "registering",
            });
            self.request(
                step,
                Pending::RegisterChallenge,
                Request::RegisterChallenge(RegisterChallengeRequest {}),
            );
        }
    }

    fn log_in(&mut self, step: &mut Step) {
        self.phase = Phase::LoggingIn;
        step.events.push(Event::Status {
            status: "logging_in",
        });
        self.request(
            step,
            Pending::LoginChallenge,
            Request::LoginChallenge(LoginChallengeRequest {
                user_id: self.user_id().to_vec(),
            }),
        );
    }

    fn on_logged_in(&mut self, step: &mut Step, keys_remaining: u32, now: UnixMillis) {
        self.phase = Phase::Ready;
        step.events.push(Event::Ready {
            user_id: user_text(self.user_id()),
            server_name: self.server_name.clone().unwrap_or_default(),
        });
        self.top_up(step, keys_remaining, now);
        self.prune_friendships = true;
        self.list(step);
        // What a lost connection cut off: the same ids and bytes again.
        let ids: Vec<ClientMsgId> = self.in_flight.keys().copied().collect();
        for id in ids {
            self.send_in_flight(step, id, now);
        }
        let peers: Vec<UserId> = self.waiting_for_keys.keys().copied().collect();
        for peer in peers {
            self.claim(step, peer);
        }
    }

    fn top_up(&mut self, step: &mut Step, server_has: u32, now: UnixMillis) {
        let server_has = usize::try_from(server_has).unwrap_or(usize::MAX);
        if let Some(upload) = self.state.prepare_key_upload(server_has, now) {
            // The private halves are sealed into this step, kept before upload.
            self.dirty = true;
            self.request(step, Pending::UploadKeys, Request::UploadKeys(upload));
        }
    }

    fn on_bundle(&mut self, step: &mut Step, peer: UserId, bundle: &KeyBundle, now: UnixMillis) {
        let queued = self.waiting_for_keys.remove(&peer).unwrap_or_default();
        let renewing = self.renewals.remove(&peer);
        match self.state.start_session(peer, bundle) {
            Ok(()) => {
                self.dirty = true;
                if renewing {
                    self.renewed.insert(peer, now);
                    if let Ok(id) = random_msg_id(now) {
                        let renewal = Queued {
                            client_msg_id: id,
                            content: Content::Renewal,
                            deadline: now.plus(MAX_MESSAGE_TTL),
                        };
                        self.seal_and_send(step, peer, renewal, now);
                    }
                }
                for item in queued {
                    self.seal_and_send(step, peer, item, now);
                }
            }
            Err(error) => {
                let (code, message) = match &error {
                    E2eError::ForgedKey(_) => {
                        step.events.push(Event::ForgedKey {
                            peer: user_text(peer),
                        });
                        ("FORGED_KEY", error.to_string())
                    }
                    _ => ("ENCRYPT", error.to_string()),
                };
                self.fail_queued(step, peer, queued, code, &message);
            }
        }
    }

    fn fail_queued(
        &mut self,
        step: &mut Step,
        peer: UserId,
        queued: Vec<Queued>,
        code: &str,
        message: &str,
    ) {
        for item in queued {
            if matches!(item.content, Content::Text { .. }) {
                step.events.push(Event::SendFailed {
                    to: user_text(peer),
                    client_msg_id: msg_text(item.client_msg_id),
                    code: code.into(),
                    message: message.into(),
                });
            }
        }
    }

    fn on_deliver(
        &mut self,
        step: &mut Step,
        deliver: wisp_proto::frames::Deliver,
        now: UnixMillis,
    ) {
        let Ok(from) = UserId::from_bytes(&deliver.from) else {
            return;
        };
        let delivery = Delivery {
            message_id: MessageId(deliver.message_id),
            from,
            ciphertext: deliver.ciphertext,
            sent_unix_ms: UnixMillis(deliver.sent_unix_ms),
            expires_unix_ms: UnixMillis(deliver.expires_unix_ms),
        };
        match self.state.open(&delivery, now) {
            Opened::Text(message) => {
                self.unread.insert(
                    message.client_msg_id,
                    Unread {
                        from,
                        expires: message.expires_unix_ms,
                    },
                );
                step.events.push(Event::Message {
                    message_id: message.id.0.to_string(),
                    client_msg_id: msg_text(message.client_msg_id),
                    from: user_text(from),
                    text: SecretText(message.text.clone()),
                    sent_unix_ms: message.sent_unix_ms.0,
                    expires_unix_ms: message.expires_unix_ms.0,
                    view_seconds: message
                        .view_timer
                        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                });
            }
            Opened::Read { by, client_msg_ids } => {
                for id in self.outgoing.read(by, client_msg_ids) {
                    step.events.push(Event::Read {
                        by: user_text(by),
                        client_msg_id: msg_text(id),
                    });
                }
            }
            Opened::Profile {
                from,
                client_msg_id,
                display_name,
                expires_unix_ms,
            } => {
                // The receipt stops their device sending it again.
                let ttl = receipt_ttl(expires_unix_ms, now);
                if let Ok(receipt_id) = random_msg_id(now) {
                    let receipt = Content::ReadReceipt(vec![client_msg_id]);
                    self.send_content(step, from, receipt_id, receipt, ttl, now);
                }
                step.events.push(Event::DisplayName {
                    from: user_text(from),
                    display_name,
                });
                step.events.push(self.friends_event());
            }
            Opened::Undecryptable(_) => {
                step.events.push(Event::Undecryptable {
                    from: user_text(from),
                });
                self.renew(step, from, now);
            }
            _ => {}
        }
        // Handled (the state says so): sealed into this step, kept before
        // the server burns it.
        self.dirty = true;
        self.state.prune_seen(now);
        self.request(
            step,
            Pending::Ack,
            Request::Ack(Ack {
                message_ids: vec![delivery.message_id.0],
            }),
        );
    }

    /// Starts a fresh session with `peer` after an undecryptable message, at
    /// most once per [`RENEWAL_INTERVAL`].
    fn renew(&mut self, step: &mut Step, peer: UserId, now: UnixMillis) {
        if self
            .renewed
            .get(&peer)
            .is_some_and(|at| now.since(*at) < RENEWAL_INTERVAL)
            || self.renewals.contains(&peer)
        {
            return;
        }
        self.renewals.insert(peer);
        if let std::collections::btree_map::Entry::Vacant(entry) = self.waiting_for_keys.entry(peer)
        {
            entry.insert(Vec::new());
            self.claim(step, peer);
        }
    }

    fn on_error(&mut self, step: &mut Step, pending: Pending, error: &wisp_proto::frames::Error) {
        let code = wisp_proto::error::code_name(error.code);
        let message = error.message.clone();
        match pending {
            Pending::Hello
            | Pending::RegisterChallenge
            | Pending::Register
            | Pending::LoginChallenge
            | Pending::Login => {
                let message = if code == "AUTH_FAILED" {
                    format!(
                        "the server refused this identity's login ({message}); it may have been deleted"
                    )
                } else {
                    message
                };
                self.stop(step, &code, message);
            }
            Pending::Send { client_msg_id } => {
                if let Some(flight) = self.in_flight.remove(&client_msg_id)
                    && flight.carries == Carries::Text
                {
                    step.events.push(Event::SendFailed {
                        to: user_text(flight.to),
                        client_msg_id: msg_text(client_msg_id),
                        code,
                        message,
                    });
                }
            }
            Pending::ClaimKeys { peer } => {
                self.renewals.remove(&peer);
                let queued = self.waiting_for_keys.remove(&peer).unwrap_or_default();
                self.fail_queued(step, peer, queued, &code, &message);
            }
            Pending::Friend { .. } => step.events.push(Event::Error {
                context: "friend",
                code,
                message,
            }),
            Pending::DeleteAccount => step.events.push(Event::Error {
                context: "account",
                code,
                message,
            }),
            Pending::UploadKeys => step.events.push(Event::Error {
                context: "keys",
                code,
                message,
            }),
            Pending::ListFriends | Pending::ListRequests | Pending::Ack => {
                step.events.push(Event::Error {
                    context: "server",
                    code,
                    message,
                });
            }
        }
    }

    fn friends_event(&self) -> Event {
        Event::Friends {
            friends: self
                .friends
                .iter()
                .map(|(id, since)| FriendView {
                    id: user_text(*id),
                    since_unix_ms: *since,
                    verified: self.state.is_verified(id),
                    petname: self.state.petname(id).map(str::to_owned),
                    display_name: self.state.friend_display_name(id).map(str::to_owned),
                })
                .collect(),
        }
    }

    /// The requests and blocks last listed, with their names; `None`
    /// before the first list.
    fn requests_event(&self) -> Option<Event> {
        let requests = self.requests.as_ref()?;
        let views = |ids: &[UserId]| {
            ids.iter()
                .map(|id| PeerView {
                    id: user_text(*id),
                    petname: self.state.petname(id).map(str::to_owned),
                    display_name: self.state.friend_display_name(id).map(str::to_owned),
                })
                .collect()
        };
        Some(Event::Requests {
            incoming: views(&requests.incoming),
            outgoing: views(&requests.outgoing),
            blocked: views(&requests.blocked),
        })
    }

    /// This user's display name, if they chose one.
    pub fn display_name(&self) -> Option<&str> {
        self.state.display_name()
    }

    /// Sets this user's display name (`None`, or only white space, clears
    /// it), keeps it, and sends it end-to-end to every friend who is due
    /// it; offline, the next login sends it. Refused, changing nothing,
    /// when it breaks [`wisp_core::check_name`]'s rules.
    pub fn set_display_name(
        &mut self,
        name: Option<&str>,
        now: UnixMillis,
    ) -> Result<Step, DeviceError> {
        let name = name.filter(|n| !n.trim().is_empty());
        let mut step = Step::default();
        if self
            .state
            .set_display_name(name)
            .map_err(DeviceError::Name)?
        {
            self.dirty = true;
            let friends: Vec<UserId> = self.friends.keys().copied().collect();
            self.send_display_name(&mut step, friends, now);
        }
        self.finish(step)
    }

    /// The user's own name for `id`, if they gave one.
    pub fn petname(&self, id: &str) -> Result<Option<String>, DeviceError> {
        Ok(self.state.petname(&parse_user(id)?).map(str::to_owned))
    }

    /// Gives `id` the petname `name` (kept on this device only), or removes
    /// it with `None` or only white space; the lists are told again.
    /// Refused when the name breaks [`wisp_core::check_name`]'s rules or
    /// another id has it already (regardless of case).
    pub fn set_petname(&mut self, id: &str, name: Option<&str>) -> Result<Step, DeviceError> {
        let id = parse_user(id)?;
        let name = name.filter(|n| !n.trim().is_empty());
        let mut step = Step::default();
        if self
            .state
            .set_petname(id, name)
            .map_err(DeviceError::Name)?
        {
            self.dirty = true;
            step.events.push(self.friends_event());
            step.events.extend(self.requests_event());
        }
        self.finish(step)
    }

    /// Seals this user's display name for those of `friends` who are due it
    /// ([`LocalState::profiles_due`]) and to whom the same one is not
    /// already on its way; sent only while logged in (the next login's
    /// friend list sends what is due then).
    fn send_display_name(&mut self, step: &mut Step, friends: Vec<UserId>, now: UnixMillis) {
        if self.phase != Phase::Ready {
            return;
        }
        let current = self.state.display_name().map(str::to_owned);
        for friend in self.state.profiles_due(friends, now) {
            if self.profile_on_its_way(friend, current.as_deref()) {
                continue;
            }
            let Ok(id) = random_msg_id(now) else {
                return;
            };
            let content = self.state.profile_content();
            self.send_content(step, friend, id, content, MAX_MESSAGE_TTL, now);
        }
    }

    /// Whether the display name `name` is sealed or waiting for keys for
    /// `to`, not yet taken by the server.
    fn profile_on_its_way(&self, to: UserId, name: Option<&str>) -> bool {
        let same = |carried: &Option<String>| carried.as_deref() == name;
        self.in_flight
            .values()
            .any(|f| f.to == to && matches!(&f.carries, Carries::Profile(n) if same(n)))
            || self.waiting_for_keys.get(&to).is_some_and(|queued| {
                queued.iter().any(|q| {
                    matches!(&q.content, Content::Profile { display_name } if same(display_name))
                })
            })
    }
}

fn reply_name(reply: &Reply) -> &'static str {
    match reply {
        Reply::Error(_) => "Error",
        Reply::HelloOk(_) => "HelloOk",
        Reply::Pong(_) => "Pong",
        Reply::RegisterPuzzle(_) => "RegisterPuzzle",
        Reply::Registered(_) => "Registered",
        Reply::LoginChallenge(_) => "LoginChallenge",
        Reply::LoggedIn(_) => "LoggedIn",
        Reply::FriendOpResult(_) => "FriendOpResult",
        Reply::FriendList(_) => "FriendList",
        Reply::FriendRequests(_) => "FriendRequests",
        Reply::KeysUploaded(_) => "KeysUploaded",
        Reply::KeyBundle(_) => "KeyBundle",
        Reply::SendAck(_) => "SendAck",
        Reply::Acked(_) => "Acked",
        _ => "an event",
    }
}

/// The safety number of `a` and `b` (ids or links), groups separated by
/// spaces.
pub fn safety_text(a: &str, b: &str) -> Result<String, DeviceError> {
    let number = wisp_core::safety_number(parse_user(a)?, parse_user(b)?);
    Ok(number.groups().collect::<Vec<_>>().join(" "))
}

/// `text` as a QR code: the width in the first byte, then one byte per
/// module (1 dark, 0 light), row by row.
pub fn qr_modules(text: &str) -> Result<Vec<u8>, DeviceError> {
    let code = qrcode::QrCode::new(text.as_bytes())
        .map_err(|e| DeviceError::Invalid(format!("cannot make a QR code: {e}")))?;
    let width =
        u8::try_from(code.width()).map_err(|_| DeviceError::Invalid("QR code too large".into()))?;
    let mut out = Vec::with_capacity(1 + code.width() * code.width());
    out.push(width);
    out.extend(
        code.to_colors()
            .into_iter()
            .map(|c| u8::from(c == qrcode::Color::Dark)),
    );
    Ok(out)
}

/// The whole seconds left until `deadline` (rounded down: the server keeps
/// nothing past it), or `None` when less than a second is left.
fn time_left(deadline: UnixMillis, now: UnixMillis) -> Option<Duration> {
    let millis = u64::try_from(deadline.0.saturating_sub(now.0)).ok()?;
    let seconds = millis / 1000;
    (seconds > 0).then(|| Duration::from_secs(seconds).min(MAX_MESSAGE_TTL))
}

/// Our text `client_msg_id` to `to` is gone unread.
fn expired_unread(step: &mut Step, to: UserId, client_msg_id: ClientMsgId) {
    step.events.push(Event::ExpiredUnread {
        to: user_text(to),
        client_msg_id: msg_text(client_msg_id),
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use wisp_proto::frames::{
        Deliver, Error as ErrorFrame, FriendList, HelloOk, KeysUploaded, LoggedIn, LoginChallenge,
        RegisterPuzzle, Registered, SendAck, SignedKey,
    };
    use wisp_proto::{ErrorCode, ServerFrame};

    /// Cheap parameters so the tests stay fast; the format is the same.
    const TEST_KDF: KdfParams = KdfParams {
        m_kib: 64,
        t: 1,
        p: 1,
    };
    const NOW: UnixMillis = UnixMillis(1_800_000_000_000);
    const SERVER: &str = "wisp-test";

    fn frames(step: &Step) -> Vec<(u64, Request)> {
        step.frames
            .iter()
            .map(|bytes| {
                let frame = codec::decode_client_frame(bytes).unwrap();
                (frame.request_id, frame.body.unwrap())
            })
            .collect()
    }

    fn reply(request_id: u64, body: Reply) -> Vec<u8> {
        codec::encode(&ServerFrame {
            request_id,
            body: Some(body),
        })
    }

    /// The server's answer to the Hello that `step` (a fresh connection's)
    /// sent, naming the deployment `server_name`; the device's next step.
    fn hello_ok(device: &mut Device, step: &Step, server_name: &str, now: UnixMillis) -> Step {
        let [(hello, Request::Hello(_))] = frames(step)[..] else {
            panic!("no hello")
        };
        let ok = HelloOk {
            protocol_version: PROTOCOL_VERSION,
            server_name: server_name.into(),
            max_frame_bytes: 65536,
        };
        device
            .receive(&reply(hello, Reply::HelloOk(ok)), now)
            .unwrap()
    }

    /// A device driven through registration and login against a scripted
    /// server; returns it with the keys it uploaded.
    fn logged_in() -> (Device, wisp_proto::frames::UploadKeys) {
        let mut device = Device::create("correct horse", TEST_KDF).unwrap();
        let step = device.connected();
        let step = hello_ok(&mut device, &step, SERVER, NOW);
        let [(challenge, Request::RegisterChallenge(_))] = frames(&step)[..] else {
            panic!("no register challenge")
        };
        let puzzle = RegisterPuzzle {
            nonce: vec![7; 32],
            difficulty_bits: 6,
        };
        let step = device
            .receive(&reply(challenge, Reply::RegisterPuzzle(puzzle)), NOW)
            .unwrap();
        assert!(step.events.contains(&Event::Pow { difficulty: 6 }));
        let mut register = None;
        for _ in 0..1000 {
            let step = device.work(16).unwrap();
            if let Some(found) = frames(&step).pop() {
                register = Some(found);
                break;
            }
            assert!(device.pow_progress().unwrap().0 > 0);
        }
        let Some((register_id, Request::Register(register))) = register else {
            panic!("not solved")
        };
        let key = device.state.identity.ed25519_key();
        assert!(wisp_proto::pow::check(
            &[7; 32],
            &key,
            6,
            register.pow_solution
        ));
        let registered = Registered {
            user_id: device.user_id().to_vec(),
        };
        let step = device
            .receive(&reply(register_id, Reply::Registered(registered)), NOW)
            .unwrap();
        assert!(step.sealed.is_some(), "the pinned server name is kept");
        let [(login_challenge, Request::LoginChallenge(_))] = frames(&step)[..] else {
            panic!("no login challenge")
        };
        let step = device
            .receive(
                &reply(
                    login_challenge,
                    Reply::LoginChallenge(LoginChallenge { nonce: vec![1; 32] }),
                ),
                NOW,
            )
            .unwrap();
        let [(login, Request::Login(_))] = frames(&step)[..] else {
            panic!("no login")
        };
        let logged = LoggedIn {
            user_id: device.user_id().to_vec(),
            one_time_keys_remaining: 0,
        };
        let step = device
            .receive(&reply(login, Reply::LoggedIn(logged)), NOW)
            .unwrap();
        assert!(device.is_ready());
        assert!(
            step.sealed.is_some(),
            "keys are kept before they are uploaded"
        );
        let sent = frames(&step);
        let upload = sent
            .iter()
            .find_map(|(id, body)| match body {
                Request::UploadKeys(upload) => Some((*id, upload.clone())),
                _ => None,
            })
            .unwrap();
        assert!(
            sent.iter()
                .any(|(_, b)| matches!(b, Request::ListFriends(_)))
        );
        let uploaded = KeysUploaded {
            one_time_keys_remaining: 50,
        };
        device
            .receive(&reply(upload.0, Reply::KeysUploaded(uploaded)), NOW)
            .unwrap();
        (device, upload.1)
    }

    /// The server's friend list for `device`: `friend` only. The device's
    /// step (what it sends to friends now known).
    fn befriend(device: &mut Device, friend: UserId) -> Step {
        let list = FriendList {
            friends: vec![wisp_proto::frames::Friend {
                user_id: friend.to_vec(),
                since_unix_ms: 1,
            }],
        };
        device.pending.insert(999, Pending::ListFriends);
        device
            .receive(&reply(999, Reply::FriendList(list)), NOW)
            .unwrap()
    }

    fn bundle_of(owner: &Device, upload: &wisp_proto::frames::UploadKeys) -> KeyBundle {
        KeyBundle {
            user_id: owner.user_id().to_vec(),
            ed25519_key: owner.state.identity.ed25519_key().to_vec(),
            curve25519_key: owner.state.identity.curve25519_key().to_vec(),
            identity_signature: owner.state.identity.sign_identity_key().to_vec(),
            one_time_key: upload.one_time_keys.first().cloned(),
            fallback: false,
        }
    }

    /// Sends `text` from `from` to `to` through a scripted server: the
    /// claim (if any) and the send; returns the deliver frame for `to`.
    fn send(
        from: &mut Device,
        to: &Device,
        to_keys: &wisp_proto::frames::UploadKeys,
        text: &str,
        ttl: Duration,
        next_message_id: u64,
    ) -> (String, Vec<u8>) {
        let step = from
            .send_text(
                &to.user_id().to_string(),
                text,
                Duration::from_secs(5),
                ttl,
                NOW,
            )
            .unwrap();
        let Some(Event::Queued { client_msg_id, .. }) = step.events.first().cloned() else {
            panic!("not queued")
        };
        let mut sent = frames(&step);
        if let [(claim, Request::ClaimKeys(_))] = sent[..] {
            let step = from
                .receive(&reply(claim, Reply::KeyBundle(bundle_of(to, to_keys))), NOW)
                .unwrap();
            assert!(step.sealed.is_some(), "the ratchet is kept before sending");
            sent = frames(&step);
        } else {
            assert!(step.sealed.is_some(), "the ratchet is kept before sending");
        }
        let [(send_id, Request::Send(send))] = &sent[..] else {
            panic!("no send: {sent:?}")
        };
        let ack = SendAck {
            message_id: next_message_id,
            expires_unix_ms: NOW.plus(ttl).0,
            duplicate: false,
        };
        let step = from
            .receive(&reply(*send_id, Reply::SendAck(ack)), NOW)
            .unwrap();
        if text.is_empty() {
            assert!(step.events.is_empty());
        }
        let deliver = Deliver {
            message_id: next_message_id,
            from: from.user_id().to_vec(),
            ciphertext: send.ciphertext.clone(),
            sent_unix_ms: NOW.0,
            expires_unix_ms: NOW.plus(ttl).0,
        };
        (client_msg_id, reply(0, Reply::Deliver(deliver)))
    }

    #[test]
    fn two_devices_chat_read_and_the_sender_hears_it() {
        let (mut alice, alice_keys) = logged_in();
        let (mut bob, bob_keys) = logged_in();
        befriend(&mut alice, bob.user_id());
        befriend(&mut bob, alice.user_id());
        let hour = Duration::from_secs(3600);
        let (id, deliver) = send(
            &mut alice,
            &bob,
            &bob_keys,
            "the door code is 4711",
            hour,
            1,
        );
        let step = bob.receive(&deliver, NOW).unwrap();
        assert!(step.sealed.is_some(), "kept before the server burns it");
        let Some(Event::Message {
            text,
            client_msg_id,
            view_seconds,
            ..
        }) = step.events.first()
        else {
            panic!("no message: {:?}", step.events)
        };
        assert_eq!(text.0.as_str(), "the door code is 4711");
        assert_eq!(client_msg_id, &id);
        assert_eq!(*view_seconds, 5);
        assert!(
            !format!("{:?}", step.events).contains("4711"),
            "Debug hides text"
        );
        assert!(
            frames(&step)
                .iter()
                .any(|(_, b)| matches!(b, Request::Ack(a) if a.message_ids == [1]))
        );
        // A redelivery (after a reconnect) is acknowledged, never shown twice.
        let again = bob.receive(&deliver, NOW).unwrap();
        assert!(again.events.is_empty());
        // Bob reads it: Alice's device gets the receipt.
        let step = bob.mark_read(&id, NOW).unwrap();
        let [(receipt_id, Request::Send(receipt))] = &frames(&step)[..] else {
            panic!("no receipt")
        };
        let ack = SendAck {
            message_id: 2,
            expires_unix_ms: NOW.plus(hour).0,
            duplicate: false,
        };
        let acked = bob
            .receive(&reply(*receipt_id, Reply::SendAck(ack)), NOW)
            .unwrap();
        assert!(acked.events.is_empty(), "a receipt is not a text of ours");
        let deliver = Deliver {
            message_id: 2,
            from: bob.user_id().to_vec(),
            ciphertext: receipt.ciphertext.clone(),
            sent_unix_ms: NOW.0,
            expires_unix_ms: NOW.plus(hour).0,
        };
        let step = alice
            .receive(&reply(0, Reply::Deliver(deliver)), NOW)
            .unwrap();
        assert_eq!(
            step.events,
            vec![Event::Read {
                by: bob.user_id().to_string(),
                client_msg_id: id
            }]
        );
        // And back: Bob answers over the session Alice opened.
        let (_, deliver) = send(&mut bob, &alice, &alice_keys, "ok", hour, 3);
        let step = alice.receive(&deliver, NOW).unwrap();
        assert!(
            matches!(&step.events[..], [Event::Message { text, .. }] if text.0.as_str() == "ok")
        );
        let _ = alice_keys;
    }

    #[test]
    fn a_text_never_read_expires_unread_for_its_sender() {
        let (mut alice, _) = logged_in();
        let (bob, bob_keys) = logged_in();
        befriend(&mut alice, bob.user_id());
        let ttl = Duration::from_secs(5);
        let (id, _) = send(&mut alice, &bob, &bob_keys, "soon gone", ttl, 1);
        assert!(alice.tick(NOW).events.is_empty());
        assert_eq!(
            alice.tick(NOW.plus(ttl)).events,
            vec![Event::ExpiredUnread {
                to: bob.user_id().to_string(),
                client_msg_id: id
            }]
        );
        assert!(alice.tick(NOW.plus(ttl * 2)).events.is_empty(), "told once");
    }

    #[test]
    fn a_forged_key_is_a_warning_and_nothing_is_sent() {
        let (mut alice, _) = logged_in();
        let (bob, bob_keys) = logged_in();
        let step = alice
            .send_text(
                &bob.user_id().to_string(),
                "hi",
                Duration::ZERO,
                Duration::from_secs(60),
                NOW,
            )
            .unwrap();
        let [(claim, Request::ClaimKeys(_))] = frames(&step)[..] else {
            panic!("no claim")
        };
        let mut forged = bundle_of(&bob, &bob_keys);
        // The server swaps in a key of its own, signed by nobody.
        forged.one_time_key = Some(SignedKey {
            public_key: vec![9; 32],
            signature: vec![0; 64],
        });
        let step = alice
            .receive(&reply(claim, Reply::KeyBundle(forged)), NOW)
            .unwrap();
        assert!(step.frames.is_empty());
        assert!(step.events.contains(&Event::ForgedKey {
            peer: bob.user_id().to_string()
        }));
        assert!(
            step.events
                .iter()
                .any(|e| matches!(e, Event::SendFailed { code, .. } if code == "FORGED_KEY"))
        );
    }

    /// Drops `device`'s connection and logs it in again at `now`: the
    /// login's step (what it sends again, what it reports).
    fn log_in_again(device: &mut Device, now: UnixMillis) -> Step {
        device.disconnected();
        let step = device.connected();
        let step = hello_ok(device, &step, SERVER, now);
        let [(challenge, Request::LoginChallenge(_))] = frames(&step)[..] else {
            panic!("a registered identity logs in")
        };
        let step = device
            .receive(
                &reply(
                    challenge,
                    Reply::LoginChallenge(LoginChallenge { nonce: vec![2; 32] }),
                ),
                now,
            )
            .unwrap();
        let [(login, _)] = frames(&step)[..] else {
            panic!()
        };
        let logged = LoggedIn {
            user_id: device.user_id().to_vec(),
            one_time_keys_remaining: 50,
        };
        device
            .receive(&reply(login, Reply::LoggedIn(logged)), now)
            .unwrap()
    }

    fn sends_of(step: &Step) -> Vec<Send> {
        frames(step)
            .into_iter()
            .filter_map(|(_, b)| match b {
                Request::Send(s) => Some(s),
                _ => None,
            })
            .collect()
    }

    /// Alice's text to a new Bob living `ttl`, sealed and sent at [`NOW`].
    fn sent_to_bob(ttl: Duration) -> (Device, Send) {
        let (mut alice, _) = logged_in();
        let (bob, bob_keys) = logged_in();
        let step = alice
            .send_text(&bob.user_id().to_string(), "hi", Duration::ZERO, ttl, NOW)
            .unwrap();
        let [(claim, _)] = frames(&step)[..] else {
            panic!()
        };
        let step = alice
            .receive(
                &reply(claim, Reply::KeyBundle(bundle_of(&bob, &bob_keys))),
                NOW,
            )
            .unwrap();
        let [(_, Request::Send(first))] = &frames(&step)[..] else {
            panic!()
        };
        let first = first.clone();
        (alice, first)
    }

    #[test]
    fn sends_cut_off_by_a_drop_go_again_with_the_same_id_after_login() {
        let (mut alice, first) = sent_to_bob(Duration::from_secs(60));
        assert_eq!(first.ttl_seconds, 60);
        let step = log_in_again(&mut alice, NOW);
        assert_eq!(sends_of(&step), vec![first]);
    }

    #[test]
    fn a_late_resend_asks_only_for_the_time_left_and_a_text_past_its_ceiling_is_gone() {
        let (mut alice, first) = sent_to_bob(Duration::from_secs(60));
        // 45.5 s later: the same bytes, for the 14 whole seconds left.
        let step = log_in_again(&mut alice, NOW.plus(Duration::from_millis(45_500)));
        let again = sends_of(&step);
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].ciphertext, first.ciphertext);
        assert_eq!(again[0].ttl_seconds, 14);
        // Past the ceiling: nothing is sent again; the sender hears it
        // expired unread.
        let step = log_in_again(&mut alice, NOW.plus(Duration::from_secs(61)));
        assert!(sends_of(&step).is_empty());
        assert!(
            step.events
                .iter()
                .any(|e| matches!(e, Event::ExpiredUnread { .. })),
            "{:?}",
            step.events
        );
        // And a tick while offline says so too, once.
        let (mut carol, _) = sent_to_bob(Duration::from_secs(60));
        carol.disconnected();
        let step = carol.tick(NOW.plus(Duration::from_secs(60)));
        let expired = step
            .events
            .iter()
            .filter(|e| matches!(e, Event::ExpiredUnread { .. }))
            .count();
        assert_eq!(expired, 1);
        assert!(
            carol
                .tick(NOW.plus(Duration::from_secs(61)))
                .events
                .is_empty()
        );
    }

    #[test]
    fn another_deployment_or_a_refused_login_stops_the_session() {
        let (mut alice, _) = logged_in();
        alice.disconnected();
        let step = alice.connected();
        let step = hello_ok(&mut alice, &step, "elsewhere", NOW);
        assert!(step.frames.is_empty());
        assert!(matches!(&step.events[..], [Event::Fatal { code, .. }] if code == "WRONG_SERVER"));
        assert!(alice.is_stopped());

        let (mut bob, _) = logged_in();
        bob.disconnected();
        let step = bob.connected();
        let step = hello_ok(&mut bob, &step, SERVER, NOW);
        let [(challenge, _)] = frames(&step)[..] else {
            panic!()
        };
        let refused = ErrorFrame {
            code: ErrorCode::AuthFailed as i32,
            message: "unknown id".into(),
            retry_after_ms: 0,
        };
        let step = bob
            .receive(&reply(challenge, Reply::Error(refused)), NOW)
            .unwrap();
        assert!(matches!(&step.events[..], [Event::Fatal { code, .. }] if code == "AUTH_FAILED"));
        assert!(bob.is_stopped());
    }

    #[test]
    fn the_key_store_reopens_only_with_its_passphrase_and_keeps_marks() {
        let (mut alice, _) = logged_in();
        let bob = Identity::generate().user_id();
        assert!(
            alice.set_verified(&bob.to_string(), true).is_err(),
            "not a friend"
        );
        befriend(&mut alice, bob);
        let step = alice.set_verified(&bob.to_string(), true).unwrap();
        let sealed = step.sealed.unwrap();
        assert!(matches!(
            Device::unlock("wrong", &sealed),
            Err(DeviceError::WrongPassphrase)
        ));
        let reopened = Device::unlock("correct horse", &sealed).unwrap();
        assert_eq!(reopened.user_id(), alice.user_id());
        assert!(reopened.is_registered());
        assert!(reopened.is_verified(&bob.to_string()).unwrap());
        // Sealed bytes carry no key in the clear.
        let text = String::from_utf8_lossy(&sealed);
        assert!(text.contains("wisp-keystore"));
        assert!(!text.contains("account"));
    }

    #[test]
    fn texts_ttls_and_ids_are_checked_before_anything_is_sealed() {
        let (mut alice, _) = logged_in();
        let bob = Identity::generate().user_id().to_string();
        let minute = Duration::from_secs(60);
        assert!(
            alice
                .send_text(&bob, " ", Duration::ZERO, minute, NOW)
                .is_err()
        );
        assert!(
            alice
                .send_text(&bob, "x", Duration::ZERO, Duration::ZERO, NOW)
                .is_err()
        );
        assert!(
            alice
                .send_text(&bob, "x", Duration::ZERO, minute * 61, NOW)
                .is_err()
        );
        let long = "x".repeat(MAX_TEXT_BYTES + 1);
        assert!(
            alice
                .send_text(&bob, &long, Duration::ZERO, minute, NOW)
                .is_err()
        );
        assert!(
            alice
                .send_text("nobody", "x", Duration::ZERO, minute, NOW)
                .is_err()
        );
        assert!(alice.mark_read("zz", NOW).is_err());
        let own = alice.user_id().to_string();
        assert!(alice.friend(FriendAction::Request, &own).is_err());
    }

    #[test]
    fn deleting_the_account_names_it_and_ends_the_session() {
        let (mut alice, _) = logged_in();
        let step = alice.delete_account().unwrap();
        let [(id, Request::DeleteAccount(delete))] = &frames(&step)[..] else {
            panic!("no delete")
        };
        assert_eq!(delete.user_id, alice.user_id().to_vec());
        let done = reply(
            *id,
            Reply::AccountDeleted(wisp_proto::frames::AccountDeleted {}),
        );
        let step = alice.receive(&done, NOW).unwrap();
        assert_eq!(step.events, vec![Event::AccountDeleted]);
        assert!(alice.is_stopped(), "no reconnect under a deleted identity");
        alice.disconnected();
        assert!(alice.delete_account().is_err(), "offline");
    }

    #[test]
    fn a_friend_request_carries_the_invitation_token() {
        let (mut alice, _) = logged_in();
        let (bob, _) = logged_in();
        let link = bob
            .invitation_link(NOW.plus(Duration::from_secs(60)))
            .unwrap();
        let step = alice.friend(FriendAction::Request, &link).unwrap();
        let [(_, Request::FriendOp(op))] = &frames(&step)[..] else {
            panic!()
        };
        assert_eq!(op.user_id, bob.user_id().to_vec());
        assert_eq!(op.invitation.len(), InvitationToken::LEN);
    }

    #[test]
    fn safety_numbers_match_the_cores_and_qr_codes_are_square() {
        let (a, b) = (
            Identity::generate().user_id(),
            Identity::generate().user_id(),
        );
        let text = safety_text(&a.to_string(), &b.to_string()).unwrap();
        assert_eq!(text, safety_text(&b.to_string(), &a.to_string()).unwrap());
        assert_eq!(
            text.replace(' ', ""),
            wisp_core::safety_number(a, b).digits()
        );
        assert_eq!(text.split(' ').count(), 12);
        let modules = qr_modules("http://127.0.0.1:7700/#/add/x").unwrap();
        let width = usize::from(modules[0]);
        assert_eq!(modules.len(), 1 + width * width);
        assert!(modules[1..].iter().all(|m| *m <= 1));
    }

    /// Takes the sends of `step` from `from` to `to` through a scripted
    /// server: the claim of `to`'s keys when asked, then each send
    /// acknowledged; returns the deliver frames for `to`, message ids
    /// counting from `first_message_id`.
    fn relay(
        from: &mut Device,
        to: &Device,
        to_keys: &wisp_proto::frames::UploadKeys,
        step: &Step,
        first_message_id: u64,
    ) -> Vec<Vec<u8>> {
        let mut sent = frames(step);
        let claim = sent.iter().find_map(|(id, body)| match body {
            Request::ClaimKeys(_) => Some(*id),
            _ => None,
        });
        if let Some(claim) = claim {
            let bundle = Reply::KeyBundle(bundle_of(to, to_keys));
            sent.extend(frames(&from.receive(&reply(claim, bundle), NOW).unwrap()));
        }
        let mut delivers = Vec::new();
        for (request_id, body) in sent {
            let Request::Send(send) = body else { continue };
            assert_eq!(send.to, to.user_id().to_vec());
            let message_id = first_message_id + delivers.len() as u64;
            let expires = NOW.plus(Duration::from_secs(u64::from(send.ttl_seconds)));
            let ack = SendAck {
                message_id,
                expires_unix_ms: expires.0,
                duplicate: false,
            };
            from.receive(&reply(request_id, Reply::SendAck(ack)), NOW)
                .unwrap();
            let deliver = Deliver {
                message_id,
                from: from.user_id().to_vec(),
                ciphertext: send.ciphertext,
                sent_unix_ms: NOW.0,
                expires_unix_ms: expires.0,
            };
            delivers.push(reply(0, Reply::Deliver(deliver)));
        }
        delivers
    }

    fn friend_view(step: &Step, id: UserId) -> FriendView {
        step.events
            .iter()
            .rev()
            .find_map(|e| match e {
                Event::Friends { friends } => friends.iter().find(|f| f.id == id.to_string()),
                _ => None,
            })
            .cloned()
            .unwrap_or_else(|| panic!("no friends event with {id}: {:?}", step.events))
    }

    #[test]
    fn a_received_display_name_is_cleaned_told_to_the_page_and_confirmed() {
        let (mut alice, _) = logged_in();
        let (mut bob, bob_keys) = logged_in();
        befriend(&mut alice, bob.user_id());
        befriend(&mut bob, alice.user_id());
        // A sender that skips the rules (a modified client): what reaches
        // the page is cleaned all the same.
        alice
            .state
            .start_session(bob.user_id(), &bundle_of(&bob, &bob_keys))
            .unwrap();
        let profile_id = ClientMsgId([7; 16]);
        let hostile = Content::Profile {
            display_name: Some("<img src=x onerror=alert(1)>\u{202e}evil\nbob: hi".into()),
        };
        let ten_minutes = Duration::from_secs(600);
        let ciphertext = alice
            .state
            .seal(bob.user_id(), profile_id, hostile, NOW, ten_minutes)
            .unwrap();
        let deliver = Deliver {
            message_id: 5,
            from: alice.user_id().to_vec(),
            ciphertext,
            sent_unix_ms: NOW.0,
            expires_unix_ms: NOW.plus(ten_minutes).0,
        };
        let step = bob
            .receive(&reply(0, Reply::Deliver(deliver)), NOW)
            .unwrap();
        let cleaned = "<img src=x onerror=alert(1)> evil bob: hi";
        assert!(step.events.contains(&Event::DisplayName {
            from: alice.user_id().to_string(),
            display_name: Some(cleaned.into()),
        }));
        let view = friend_view(&step, alice.user_id());
        assert_eq!(view.display_name.as_deref(), Some(cleaned));
        assert_eq!(view.petname, None);
        let json = serde_json::to_string(&step.events).unwrap();
        assert!(
            !json.contains('\u{202e}') && !json.contains("\\n"),
            "{json}"
        );
        assert!(step.sealed.is_some(), "the name is kept before the ack");
        // A receipt naming the profile, living as long as it does; and the
        // delivery acknowledged.
        let sends = sends_of(&step);
        let [receipt] = &sends[..] else {
            panic!("no receipt: {:?}", frames(&step))
        };
        assert_eq!(receipt.to, alice.user_id().to_vec());
        assert_eq!(receipt.ttl_seconds, 600);
        assert!(
            frames(&step)
                .iter()
                .any(|(_, b)| matches!(b, Request::Ack(a) if a.message_ids == [5]))
        );
        let delivery = Delivery {
            message_id: MessageId(6),
            from: bob.user_id(),
            ciphertext: receipt.ciphertext.clone(),
            sent_unix_ms: NOW,
            expires_unix_ms: NOW.plus(ten_minutes),
        };
        let Opened::Read { client_msg_ids, .. } = alice.state.open(&delivery, NOW) else {
            panic!("not a receipt")
        };
        assert_eq!(client_msg_ids, vec![profile_id]);
        // Kept in the key store.
        let reopened = Device::unlock("correct horse", &bob.sealed().unwrap()).unwrap();
        assert_eq!(
            reopened.state.friend_display_name(&alice.user_id()),
            Some(cleaned)
        );
    }

    #[test]
    fn a_display_name_goes_to_friends_due_it_and_not_again_after_the_receipt() {
        let (mut alice, alice_keys) = logged_in();
        let (mut bob, bob_keys) = logged_in();
        assert!(sends_of(&befriend(&mut alice, bob.user_id())).is_empty());
        befriend(&mut bob, alice.user_id());
        assert!(
            alice.set_display_name(Some("\u{202e}Alice"), NOW).is_err(),
            "refused as typed"
        );
        let step = alice.set_display_name(Some("  Alice "), NOW).unwrap();
        assert!(step.sealed.is_some());
        assert_eq!(alice.display_name(), Some("Alice"));
        // Claiming Bob's keys; a friend list meanwhile sends nothing more.
        assert!(frames(&befriend(&mut alice, bob.user_id())).is_empty());
        let delivers = relay(&mut alice, &bob, &bob_keys, &step, 1);
        assert_eq!(delivers.len(), 1, "one profile for one friend");
        // Taken by the server, not yet confirmed: not due again.
        assert!(sends_of(&befriend(&mut alice, bob.user_id())).is_empty());

        let step = bob.receive(&delivers[0], NOW).unwrap();
        assert!(step.events.contains(&Event::DisplayName {
            from: alice.user_id().to_string(),
            display_name: Some("Alice".into()),
        }));
        let receipts = relay(&mut bob, &alice, &alice_keys, &step, 2);
        assert_eq!(receipts.len(), 1);
        let step = alice.receive(&receipts[0], NOW).unwrap();
        assert!(step.sealed.is_some(), "the confirmation is kept");
        assert!(step.events.is_empty(), "{:?}", step.events);

        // Confirmed: neither a friend list nor a later login sends it again,
        // even past the hour the message lived.
        assert!(sends_of(&befriend(&mut alice, bob.user_id())).is_empty());
        let later = NOW.plus(Duration::from_secs(7200));
        let step = log_in_again(&mut alice, later);
        assert!(sends_of(&step).is_empty());
        assert!(sends_of(&befriend(&mut alice, bob.user_id())).is_empty());

        // A change (clearing included) is due again.
        let step = alice.set_display_name(None, NOW).unwrap();
        assert_eq!(alice.display_name(), None);
        assert_eq!(sends_of(&step).len(), 1);
        // Offline, a change waits for the login's friend list.
        alice.disconnected();
        let step = alice.set_display_name(Some("Ally"), NOW).unwrap();
        assert!(step.frames.is_empty() && step.sealed.is_some());
        let step = log_in_again(&mut alice, NOW);
        assert!(
            sends_of(&step).len() == 1,
            "only the cut-off clearing goes again at login"
        );
        assert_eq!(sends_of(&befriend(&mut alice, bob.user_id())).len(), 1);
    }

    #[test]
    fn petnames_are_kept_shown_unique_and_refused_with_a_reason() {
        let (mut alice, _) = logged_in();
        let (bob, carol) = (
            Identity::generate().user_id(),
            Identity::generate().user_id(),
        );
        befriend(&mut alice, bob);
        let step = alice.set_petname(&bob.to_string(), Some(" Bob ")).unwrap();
        assert!(step.sealed.is_some());
        assert_eq!(friend_view(&step, bob).petname.as_deref(), Some("Bob"));
        // Another id cannot have it, whatever the case.
        let clash = alice
            .set_petname(&carol.to_string(), Some("BOB"))
            .unwrap_err();
        assert!(matches!(clash, DeviceError::Name(NameError::Taken(holder)) if holder == bob));
        assert!(clash.to_string().contains("already given to"), "{clash}");
        let forbidden = alice
            .set_petname(&carol.to_string(), Some("evil\u{202e}txt"))
            .unwrap_err();
        assert!(
            forbidden.to_string().contains("text-direction"),
            "{forbidden}"
        );
        let like_id = alice
            .set_petname(&carol.to_string(), Some(&bob.to_string()))
            .unwrap_err();
        assert!(matches!(like_id, DeviceError::Name(NameError::LooksLikeId)));
        let own = alice.user_id().to_string();
        assert!(alice.set_petname(&own, Some("me")).is_err());
        assert!(alice.set_petname("nobody", Some("x")).is_err());
        // Freed, it can go to someone else; blank removes, and nothing
        // changed nothing.
        let step = alice.set_petname(&bob.to_string(), None).unwrap();
        assert_eq!(friend_view(&step, bob).petname, None);
        assert!(
            alice
                .set_petname(&bob.to_string(), Some("  "))
                .unwrap()
                .sealed
                .is_none()
        );
        alice.set_petname(&carol.to_string(), Some("Bob")).unwrap();
        // Requests show it too, and a new petname lists them again.
        alice.pending.insert(998, Pending::ListRequests);
        let requests = wisp_proto::frames::FriendRequests {
            incoming: vec![wisp_proto::frames::PendingRequest {
                user_id: carol.to_vec(),
                created_unix_ms: 1,
            }],
            outgoing: Vec::new(),
            blocked: Vec::new(),
        };
        let step = alice
            .receive(&reply(998, Reply::FriendRequests(requests)), NOW)
            .unwrap();
        let Some(Event::Requests { incoming, .. }) = step.events.first() else {
            panic!("{:?}", step.events)
        };
        assert_eq!(incoming[0].petname.as_deref(), Some("Bob"));
        let step = alice
            .set_petname(&carol.to_string(), Some("Carol"))
            .unwrap();
        assert!(step.events.iter().any(|e| matches!(e,
            Event::Requests { incoming, .. } if incoming[0].petname.as_deref() == Some("Carol"))));
        // Kept in the key store.
        let reopened = Device::unlock("correct horse", &step.sealed.unwrap()).unwrap();
        assert_eq!(
            reopened.petname(&carol.to_string()).unwrap().as_deref(),
            Some("Carol")
        );
    }

    /// Bob, who has Alice's display name "Alice" and calls her "Ally".
    fn bob_knows_alices_name() -> (Device, Device) {
        let (mut alice, _) = logged_in();
        let (mut bob, bob_keys) = logged_in();
        befriend(&mut alice, bob.user_id());
        befriend(&mut bob, alice.user_id());
        let step = alice.set_display_name(Some("Alice"), NOW).unwrap();
        let delivers = relay(&mut alice, &bob, &bob_keys, &step, 1);
        bob.receive(&delivers[0], NOW).unwrap();
        bob.set_petname(&alice.user_id().to_string(), Some("Ally"))
            .unwrap();
        assert_eq!(
            bob.state.friend_display_name(&alice.user_id()),
            Some("Alice")
        );
        (alice, bob)
    }

    #[test]
    fn what_a_friendship_kept_goes_when_it_ends_or_the_login_list_lacks_them() {
        let carol = Identity::generate().user_id();
        // A list after the login's leaves display names alone (one from a
        // friendship newer than the list may have come first); the
        // login's list without Alice drops hers, not the petname.
        let (alice, mut bob) = bob_knows_alices_name();
        befriend(&mut bob, carol);
        assert_eq!(
            bob.state.friend_display_name(&alice.user_id()),
            Some("Alice")
        );
        log_in_again(&mut bob, NOW);
        let step = befriend(&mut bob, carol);
        assert!(step.sealed.is_some());
        assert_eq!(bob.state.friend_display_name(&alice.user_id()), None);
        let alice_id = alice.user_id().to_string();
        assert_eq!(bob.petname(&alice_id).unwrap().as_deref(), Some("Ally"));

        // The server says the friendship ended: forgotten at once.
        let (alice, mut bob) = bob_knows_alices_name();
        let removed = wisp_proto::frames::FriendRemoved {
            by: alice.user_id().to_vec(),
        };
        let step = bob
            .receive(&reply(0, Reply::FriendRemoved(removed)), NOW)
            .unwrap();
        assert!(step.sealed.is_some());
        assert_eq!(bob.state.friend_display_name(&alice.user_id()), None);

        // Removing a friend drops the petname too; blocking keeps it.
        let (alice, mut bob) = bob_knows_alices_name();
        let alice_id = alice.user_id().to_string();
        let step = bob.friend(FriendAction::Block, &alice_id).unwrap();
        assert!(step.sealed.is_some());
        assert_eq!(bob.state.friend_display_name(&alice.user_id()), None);
        assert_eq!(bob.petname(&alice_id).unwrap().as_deref(), Some("Ally"));
        bob.friend(FriendAction::Remove, &alice_id).unwrap();
        assert_eq!(bob.petname(&alice_id).unwrap(), None);
    }
}
