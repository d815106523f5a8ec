//! The messenger: a logged-in connection plus this device's encrypted state,
//! speaking end-to-end encrypted messages that burn.
//!
//! Sending: check the limits, make sure there is a session with the friend
//! (claiming and checking one of their keys if not), encrypt, *persist the
//! ratchet*, then hand the ciphertext to the server; a lost connection is
//! retried with the same client message id, which the server stores once.
//!
//! Receiving: each delivery is checked against the messages already handled
//! (a redelivery after a reconnect is acknowledged, never shown twice),
//! decrypted in memory by the core ([`LocalState::open`]) and handed to the
//! application as [`Event::Message`].
//! Only once the application has taken it (its next call to
//! [`Messenger::next_event`], [`Messenger::mark_read`], a send, or
//! [`Messenger::confirm`]) is the new state persisted and the message
//! acknowledged, so the server burns it. A crash in between loses nothing:
//! the state on disk is the one before the message, which comes again and
//! decrypts again. A message that cannot be decrypted is reported as
//! [`Event::Undecryptable`] and a fresh session is set up with the sender,
//! so the next message gets through.
//!
//! Timers: the hard ceiling (at most 60 minutes, enforced here as well as on
//! the server) and the sender's burn-on-read timer travel inside the
//! encryption. The sender's device tracks what it sent: a read receipt
//! becomes [`Event::Read`], no receipt by the ceiling becomes
//! [`Event::ExpiredUnread`].

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wisp_core::{
    AwaitingReceipt, Content, Delivery, LocalState, Opened, ReceivedMessage, SafetyNumber,
    receipt_ttl, safety_number,
};
use wisp_proto::limits::{LOW_ONE_TIME_KEYS, MAX_MESSAGE_TTL, MAX_TEXT_BYTES};
use wisp_proto::{ClientMsgId, ErrorCode, MessageId, UnixMillis, UserId};

use crate::client::{Client, Events, ServerEvent};
use crate::error::ClientError;
use crate::keystore::KeyStore;
use crate::tls::ConnectOptions;

/// What a [`Messenger`] tells the application: decrypted messages, receipts,
/// expiries, changes to the circle of friends, and the connection's state.
/// Only what a front end can receive from a messenger; the transport's own
/// pushes are [`ServerEvent`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A friend's message, decrypted. Its text lives in memory only.
    Message(ReceivedMessage),
    /// A friend read a message you sent (an end-to-end read receipt); drop
    /// your copy.
    Read {
        /// Who read it.
        by: UserId,
        /// Your id for the message.
        client_msg_id: ClientMsgId,
    },
    /// A message you sent expired before any read receipt came.
    ExpiredUnread {
        /// To whom.
        to: UserId,
        /// Your id for the message.
        client_msg_id: ClientMsgId,
    },
    /// A message arrived that could not be decrypted. It is reported, never
    /// silently dropped, and a fresh session with the sender is set up.
    Undecryptable {
        /// Who sent it.
        from: UserId,
        /// The server's id for it.
        message_id: MessageId,
        /// Why.
        reason: String,
    },
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
    /// Someone ended the friendship (their verified mark and display name
    /// are dropped).
    FriendRemoved {
        /// Who.
        by: UserId,
    },
    /// A friend sent their display name (their own choice, cleaned: one
    /// line, at most 64 characters); `None` when they cleared it. It is
    /// kept in the key store ([`Messenger::friend_display_name`]); a
    /// receipt goes back by itself.
    DisplayName {
        /// Who.
        from: UserId,
        /// The name as kept.
        display_name: Option<String>,
    },
    /// The server refused a frame it could not tie to a request.
    ServerError {
        /// Its explanation.
        message: String,
    },
    /// The connection ended. The next call to [`Messenger::next_event`]
    /// reconnects by itself.
    Disconnected {
        /// The server's reason, when it gave one.
        reason: Option<String>,
    },
    /// The server closed this device's session because the account logged
    /// in on more devices than it allows, and this was the oldest. The
    /// messenger does not reconnect by itself (that would close another
    /// device's session in turn, and so on): [`Messenger::next_event`]
    /// returns `None` from now on, until [`Messenger::reconnect`] (or a
    /// send, which reconnects) takes the session back.
    Superseded {
        /// The server's reason.
        reason: Option<String>,
    },
    /// Connected and logged in again after a disconnect; what was pending
    /// meanwhile is delivered next.
    Reconnected {
        /// Attempts it took.
        attempts: u32,
    },
}

/// Sending attempts over fresh connections before giving up.
const SEND_ATTEMPTS: usize = 3;

/// A session is renewed at most this often per friend.
const RENEWAL_INTERVAL: Duration = Duration::from_secs(60);

/// The system clock as [`UnixMillis`], the unit of every time the SDK
/// hands out (`expires_unix_ms`, `sent_unix_ms`). The one place the SDK
/// reads the clock; the core takes the time from here.
pub fn now_ms() -> UnixMillis {
    UnixMillis(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0),
    )
}

/// A fresh client message id ([`wisp_core::client_msg_id`]): the time now,
/// then 80 random bits.
pub fn new_client_msg_id() -> ClientMsgId {
    use rand::Rng;
    let mut random = [0u8; 10];
    rand::rng().fill_bytes(&mut random);
    wisp_core::client_msg_id(now_ms(), random)
}

/// A message the server accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SentMessage {
    /// The server's id for it.
    pub message_id: MessageId,
    /// Our id for it (read receipts name it).
    pub client_msg_id: ClientMsgId,
    /// When it expires, read or not.
    pub expires_unix_ms: UnixMillis,
}

/// A logged-in device that sends and receives end-to-end encrypted messages.
#[derive(Debug)]
pub struct Messenger {
    url: String,
    /// Kept for reconnects: the same trust (and TLS configuration).
    options: ConnectOptions,
    client: Client,
    events: Events,
    store: KeyStore,
    state: LocalState,
    /// Texts sent and not yet read.
    outgoing: AwaitingReceipt,
    pending_events: VecDeque<Event>,
    renewed: HashMap<UserId, Instant>,
    /// Received and handed out, not yet persisted and acknowledged.
    unconfirmed: Vec<MessageId>,
    /// Set after [`Event::Disconnected`] was handed out: the next
    /// `next_event` reconnects first.
    disconnected: bool,
    /// Set when the server closed this session for newer ones of the
    /// account: nothing reconnects until the application asks.
    superseded: bool,
    /// Failed attempts since the disconnect, and when the next one is due:
    /// kept here so a `next_event` dropped mid-backoff resumes it.
    reconnect_attempts: u32,
    next_attempt: Option<tokio::time::Instant>,
    /// Work events asked for, kept here until done so a dropped
    /// `next_event` does not lose it: a top-up of one-time keys (what the
    /// server had left), and sessions to renew.
    keys_low: Option<u32>,
    renewals: BTreeSet<UserId>,
    /// Receipts owed for friends' display names.
    name_receipts: Receipts,
    /// Set by a reconnect or a new friendship: the next chores square
    /// friendship data with the server's friends and send the display name
    /// to those due it ([`Messenger::sync_friendships`]).
    friends_sync_due: bool,
}

/// The first wait before reconnecting; doubled each failure up to
/// [`RECONNECT_MAX_DELAY`], each wait drawn at random below its bound (full
/// jitter) so a node's clients do not all return at once.
const RECONNECT_FIRST_DELAY: Duration = Duration::from_millis(100);
const RECONNECT_MAX_DELAY: Duration = Duration::from_secs(30);

/// The wait before reconnect attempt `attempt` (1-based): random in
/// `[0, min(first * 2^(attempt-1), max)]`.
pub fn reconnect_delay(attempt: u32) -> Duration {
    use rand::RngExt;
    let bound = RECONNECT_FIRST_DELAY
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(RECONNECT_MAX_DELAY);
    let millis = u64::try_from(bound.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

impl Messenger {
    /// Connects to `url`, logs in with the registered identity in `state`,
    /// tops up the one-time keys on the server, and drops the verified
    /// marks of ids that are no longer friends.
    pub async fn connect(
        url: &str,
        store: KeyStore,
        state: LocalState,
    ) -> Result<Self, ClientError> {
        Self::connect_with(url, &ConnectOptions::new(), store, state).await
    }

    /// Like [`Messenger::connect`], with `options` (a CA to trust for
    /// `wss://`), which every reconnect uses too.
    pub async fn connect_with(
        url: &str,
        options: &ConnectOptions,
        store: KeyStore,
        state: LocalState,
    ) -> Result<Self, ClientError> {
        let (client, events) = login(url, options, &state).await?;
        let mut messenger = Self {
            url: url.to_owned(),
            options: options.clone(),
            client,
            events,
            store,
            state,
            outgoing: AwaitingReceipt::default(),
            pending_events: VecDeque::new(),
            renewed: HashMap::new(),
            unconfirmed: Vec::new(),
            disconnected: false,
            superseded: false,
            reconnect_attempts: 0,
            next_attempt: None,
            keys_low: None,
            renewals: BTreeSet::new(),
            name_receipts: BTreeMap::new(),
            friends_sync_due: false,
        };
        let remaining = messenger.client.keys_remaining_at_login();
        messenger.top_up_keys(remaining).await?;
        if let Err(error) = messenger.sync_friendships().await {
            // Only a cleanup and a courtesy: marks and names are shown for
            // friends only, and the display name goes at the next connect.
            tracing::warn!(%error, "could not sync friendship data with the server's friends");
        }
        Ok(messenger)
    }

    /// Squares what the device keeps per friend with the server's list of
    /// friends: drops the verified marks and display names of ids that are
    /// no longer friends (a friendship that ended while this device was
    /// away told it nothing), and sends this user's display name to the
    /// friends who are due it (new friends; a change they have not
    /// confirmed). Costs a round trip only when there is something to
    /// check.
    async fn sync_friendships(&mut self) -> Result<(), ClientError> {
        let kept = self.state.friendship_data();
        if kept.is_empty() && self.state.display_name().is_none() {
            return Ok(());
        }
        let friends = self.client.friends().await?;
        if self
            .state
            .observe_friends(friends.iter().map(|f| (f.id, f.since_unix_ms)))
        {
            self.store.save(&self.state)?;
        }
        self.send_display_name(friends.into_iter().map(|f| f.id))
            .await;
        Ok(())
    }

    /// Sends this user's display name to those of `friends` who are due it
    /// ([`LocalState::profiles_due`]); a friend it cannot reach now gets
    /// it at a later connect.
    async fn send_display_name(&mut self, friends: impl IntoIterator<Item = UserId>) {
        for friend in self.state.profiles_due(friends, now_ms()) {
            let id = new_client_msg_id();
            let content = self.state.profile_content();
            match self.send_sealed(friend, content, MAX_MESSAGE_TTL, id).await {
                Ok(sent) => {
                    self.state.profile_sent(friend, id, sent.expires_unix_ms);
                    if let Err(error) = self.store.save(&self.state) {
                        tracing::warn!(%error, "could not save the key store");
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "could not send the display name to a friend");
                }
            }
        }
    }

    /// This user's display name, if they chose one.
    pub fn display_name(&self) -> Option<&str> {
        self.state.display_name()
    }

    /// Sets (or with `None` clears) this user's display name, saves the key
    /// store, and sends it to every friend, end-to-end encrypted (each
    /// friend's device confirms it; one that does not within the message's
    /// hour gets it again at a later connect). Refused, changing nothing,
    /// when the name breaks [`wisp_core::check_name`]'s rules.
    pub async fn set_display_name(&mut self, name: Option<&str>) -> Result<(), ClientError> {
        let before = self.state.display_name().map(str::to_owned);
        if !self.state.set_display_name(name)? {
            return Ok(());
        }
        if let Err(error) = self.store.save(&self.state) {
            // What is in memory stays what is on disk.
            let _ = self.state.set_display_name(before.as_deref());
            return Err(error.into());
        }
        // Saved: what fails from here goes at a later connect.
        match self.client.friends().await {
            Ok(friends) => {
                let friends: Vec<UserId> = friends.into_iter().map(|f| f.id).collect();
                self.send_display_name(friends).await;
            }
            Err(error) => {
                tracing::warn!(%error, "could not list friends to send the display name");
            }
        }
        Ok(())
    }

    /// The display name `friend` sent (their own claim), if any.
    pub fn friend_display_name(&self, friend: &UserId) -> Option<&str> {
        self.state.friend_display_name(friend)
    }

    /// The user's own name for `id`, if they gave one.
    pub fn petname(&self, id: &UserId) -> Option<&str> {
        self.state.petname(id)
    }

    /// Whose petname `name` is, if anyone's.
    pub fn find_petname(&self, name: &str) -> Option<UserId> {
        self.state.find_petname(name)
    }

    /// Gives `id` the petname `name`, or removes it with `None`, and saves
    /// the key store. The name stays on this device; it is refused when it
    /// breaks [`wisp_core::check_name`]'s rules or another friend has it.
    pub fn set_petname(&mut self, id: UserId, name: Option<&str>) -> Result<(), ClientError> {
        let before = self.state.petname(&id).map(str::to_owned);
        if self.state.set_petname(id, name)?
            && let Err(error) = self.store.save(&self.state)
        {
            let _ = self.state.set_petname(id, before.as_deref());
            return Err(error.into());
        }
        Ok(())
    }

    /// The state this messenger keeps (names, verified marks), read-only.
    pub fn state(&self) -> &LocalState {
        &self.state
    }

    /// An event already queued for the application, without waiting or
    /// touching the network: what a one-shot front end shows before it
    /// settles and exits, since [`Messenger::settle`] acknowledges every
    /// message received, queued or not.
    pub fn queued_event(&mut self) -> Option<Event> {
        self.pending_events.pop_front()
    }

    /// Does now what would otherwise wait for the next
    /// [`Messenger::next_event`]: confirms what was received, and sends the
    /// receipts and display names that are due. For one-shot front ends
    /// before they exit.
    pub async fn settle(&mut self) -> Result<(), ClientError> {
        self.confirm().await?;
        self.chores().await;
        Ok(())
    }

    /// The safety number of this device's user and `friend`: what the two
    /// compare, in person or on a call, before [`Messenger::set_verified`].
    pub fn safety_number(&self, friend: UserId) -> SafetyNumber {
        safety_number(self.user_id(), friend)
    }

    /// Whether `friend` is marked as verified.
    pub fn is_verified(&self, friend: &UserId) -> bool {
        self.state.is_verified(friend)
    }

    /// Marks `friend` as verified (the user compared the safety number with
    /// them and it matched), or removes the mark, and saves the key store.
    /// The caller checks that `friend` is a friend; marks of ids that are
    /// not are dropped at the next [`Messenger::connect`].
    pub fn set_verified(&mut self, friend: UserId, verified: bool) -> Result<(), ClientError> {
        if self.state.set_verified(friend, verified)
            && let Err(error) = self.store.save(&self.state)
        {
            // What is in memory stays what is on disk.
            self.state.set_verified(friend, !verified);
            return Err(error.into());
        }
        Ok(())
    }

    /// Ends the friendship with `friend` (see [`Client::remove_friend`]),
    /// drops their verified mark and display name, and the petname the
    /// user gave them.
    pub async fn remove_friend(&mut self, friend: UserId) -> Result<(), ClientError> {
        self.client.remove_friend(friend).await?;
        let unnamed = self.state.set_petname(friend, None)?;
        if self.state.forget_friendship(friend) || unnamed {
            self.save_after_friendship_ended();
        }
        Ok(())
    }

    /// Blocks `other` (see [`Client::block`]), which ends any friendship,
    /// and drops their verified mark and display name (the petname stays,
    /// naming them in the list of blocked users).
    pub async fn block(&mut self, other: UserId) -> Result<(), ClientError> {
        self.client.block(other).await?;
        self.forget_friendship(other);
        Ok(())
    }

    /// Accepts `from`'s friend request (see [`Client::accept_friend`]) and
    /// sends them this user's display name.
    pub async fn accept_friend(&mut self, from: UserId) -> Result<(), ClientError> {
        self.client.accept_friend(from).await?;
        self.send_display_name([from]).await;
        Ok(())
    }

    /// Drops what the device kept of a friendship with `id` that ended; a
    /// failure to save is logged (it is dropped at the next connect anyway).
    fn forget_friendship(&mut self, id: UserId) {
        if self.state.forget_friendship(id) {
            self.save_after_friendship_ended();
        }
    }

    /// Saves the key store; a failure is logged (what a friendship kept is
    /// dropped at the next connect anyway).
    fn save_after_friendship_ended(&mut self) {
        if let Err(error) = self.store.save(&self.state) {
            tracing::warn!(%error, "could not save the key store after a friendship ended");
        }
    }

    /// How many received messages wait to be confirmed; for tests of the
    /// confirmation's cancel-safety.
    #[cfg(any(test, feature = "test-support"))]
    pub fn unconfirmed_count(&self) -> usize {
        self.unconfirmed.len()
    }

    /// The underlying connection, for friend management.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// This device's user id.
    pub fn user_id(&self) -> UserId {
        self.state.identity.user_id()
    }

    /// Connects again (after [`Event::Disconnected`]); what was pending is
    /// delivered again and recognised. If the application was told of the
    /// drop, [`Event::Reconnected`] is queued for it, whichever path (the
    /// event loop or a send) reconnected.
    pub async fn reconnect(&mut self) -> Result<(), ClientError> {
        let (client, events) = login(&self.url, &self.options, &self.state).await?;
        self.client = client;
        self.events = events;
        self.superseded = false;
        if self.disconnected {
            self.disconnected = false;
            self.next_attempt = None;
            let failed = std::mem::take(&mut self.reconnect_attempts);
            self.pending_events.push_back(Event::Reconnected {
                attempts: failed.saturating_add(1),
            });
        }
        let remaining = self.client.keys_remaining_at_login();
        if let Err(error) = self.top_up_keys(remaining).await {
            // Connected all the same; the server says again when keys run low.
            tracing::warn!(%error, "could not top up one-time keys after reconnecting");
        }
        // Friendships may have changed while the connection was down (their
        // pushes are lost with it), and a display name may be due again:
        // the next chores see to it.
        self.friends_sync_due = true;
        Ok(())
    }

    /// Reconnects, waiting longer (with jitter) after each failure, for as
    /// long as it takes; the caller bounds it with a timeout if it must.
    /// Cancel-safe: the failures so far and the next attempt's time are
    /// kept, so a dropped call resumes the same backoff.
    async fn reconnect_with_backoff(&mut self) {
        while self.disconnected {
            let attempt = self.reconnect_attempts.saturating_add(1);
            let due = *self
                .next_attempt
                .get_or_insert_with(|| tokio::time::Instant::now() + reconnect_delay(attempt));
            tokio::time::sleep_until(due).await;
            self.next_attempt = None;
            if let Err(error) = self.reconnect().await {
                self.reconnect_attempts = attempt;
                tracing::debug!(%error, attempt, "reconnect failed; backing off");
            }
        }
    }

    async fn top_up_keys(&mut self, server_has: u32) -> Result<(), ClientError> {
        if (server_has as usize) >= LOW_ONE_TIME_KEYS {
            return Ok(());
        }
        let Some(upload) = self.state.prepare_key_upload(server_has as usize, now_ms()) else {
            return Ok(());
        };
        // The private halves must be on disk before the public ones are out.
        self.store.save(&self.state)?;
        self.client.upload_keys(upload).await?;
        self.state.keys_published();
        self.store.save(&self.state)?;
        Ok(())
    }

    /// Encrypts and sends `text` to friend `to`. It lives at most `ttl`
    /// (≤ 60 minutes) and, once read, `view_timer` (if any). Returns when the
    /// server has stored it.
    pub async fn send_text(
        &mut self,
        to: UserId,
        text: &str,
        ttl: Duration,
        view_timer: Option<Duration>,
    ) -> Result<SentMessage, ClientError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(ClientError::Refused {
                code: Some(ErrorCode::MessageTooLarge),
                message: format!("a message may have at most {MAX_TEXT_BYTES} bytes of text"),
                retry_after: None,
            });
        }
        let content = Content::Text {
            body: zeroize::Zeroizing::new(text.to_owned()),
            view_timer,
        };
        let sent = self
            .send_sealed(to, content, ttl, new_client_msg_id())
            .await?;
        self.outgoing
            .sent(sent.client_msg_id, to, sent.expires_unix_ms);
        Ok(sent)
    }

    /// Seals `content` for `to` (starting a session first if there is
    /// none), persists the ratchet, and hands the ciphertext to the server,
    /// retrying over fresh connections.
    async fn send_sealed(
        &mut self,
        to: UserId,
        content: Content,
        ttl: Duration,
        client_msg_id: ClientMsgId,
    ) -> Result<SentMessage, ClientError> {
        if self.disconnected || self.superseded {
            self.reconnect().await?;
        }
        // What was received is in the state about to be saved: acknowledge it.
        self.confirm().await?;
        if ttl > MAX_MESSAGE_TTL || ttl.is_zero() {
            return Err(ClientError::Refused {
                code: Some(ErrorCode::TtlTooLong),
                message: format!(
                    "a message lives between 1 s and {} s, not {} s",
                    MAX_MESSAGE_TTL.as_secs(),
                    ttl.as_secs()
                ),
                retry_after: None,
            });
        }
        if !self.state.has_session(to) {
            let bundle = self.client.claim_keys(to).await?;
            // A key the friend did not sign stops here, as E2eError::ForgedKey.
            self.state.start_session(to, &bundle)?;
        }
        let ciphertext = self.state.seal(to, client_msg_id, content, now_ms(), ttl)?;
        // The ratchet moved: persist before anything leaves the device, so a
        // crash can never make us reuse a message key.
        self.store.save(&self.state)?;
        self.send_with_retries(to, client_msg_id, ciphertext, ttl)
            .await
    }

    /// Hands `ciphertext` to the server; a lost connection is retried over a
    /// fresh one with the same id, which the server stores once.
    async fn send_with_retries(
        &mut self,
        to: UserId,
        client_msg_id: ClientMsgId,
        ciphertext: Vec<u8>,
        ttl: Duration,
    ) -> Result<SentMessage, ClientError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .client
                .send_ciphertext(to, client_msg_id, ciphertext.clone(), ttl)
                .await
            {
                Ok(accepted) => {
                    return Ok(SentMessage {
                        message_id: accepted.message_id,
                        client_msg_id,
                        expires_unix_ms: accepted.expires_unix_ms,
                    });
                }
                Err(ClientError::Closed(_) | ClientError::Timeout(_))
                    if attempt < SEND_ATTEMPTS =>
                {
                    // Same id, same ciphertext: the server stores it once.
                    tokio::time::sleep(Duration::from_millis(100 * attempt as u64)).await;
                    self.reconnect().await?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Tells the sender `message` was read (an end-to-end read receipt), so
    /// their device burns its copy.
    pub async fn mark_read(&mut self, message: &ReceivedMessage) -> Result<(), ClientError> {
        self.mark_read_all(std::slice::from_ref(message)).await
    }

    /// Tells each sender which of `messages` were read: one receipt per
    /// sender, naming all of theirs (not one message per message read).
    /// Messages already past their expiry need none.
    pub async fn mark_read_all(&mut self, messages: &[ReceivedMessage]) -> Result<(), ClientError> {
        self.confirm().await?;
        let now = now_ms();
        let mut by_sender = Receipts::new();
        for message in messages.iter().filter(|m| m.expires_unix_ms > now) {
            owe_receipt(
                &mut by_sender,
                message.from,
                message.client_msg_id,
                message.expires_unix_ms,
            );
        }
        // Every sender gets theirs even if one fails (an ex-friend): the
        // first failure is returned at the end.
        let mut outcome = Ok(());
        for (sender, receipt) in by_sender {
            let sent = self.send_receipt(sender, receipt).await;
            if let (Err(error), Ok(())) = (sent, &outcome) {
                outcome = Err(error);
            }
        }
        outcome
    }

    /// Sends `sender` one receipt naming the messages in `receipt`; it lives
    /// as long as the longest-lived of them ([`wisp_core::receipt_ttl`]).
    async fn send_receipt(
        &mut self,
        sender: UserId,
        (client_msg_ids, latest): (Vec<ClientMsgId>, UnixMillis),
    ) -> Result<SentMessage, ClientError> {
        let ttl = receipt_ttl(latest, now_ms());
        let content = Content::ReadReceipt(client_msg_ids);
        self.send_sealed(sender, content, ttl, new_client_msg_id())
            .await
    }

    /// The next thing to tell the application: a message, a receipt, an
    /// expiry, a friend event, a disconnect. `None` once the connection is
    /// gone and everything was told.
    ///
    /// Cancel-safe, so a front end can `select!` it against its own input
    /// and call the sending methods in between: an event is handed out
    /// whole or stays queued for the next call, and work it started is
    /// resumed by the next call (a confirmation is made again, a reconnect
    /// keeps its backoff, a key top-up or session renewal is retried).
    pub async fn next_event(&mut self) -> Option<Event> {
        if self.superseded && self.pending_events.is_empty() {
            return None;
        }
        // After a drop the application was told of: back first (which
        // queues Event::Reconnected).
        self.reconnect_with_backoff().await;
        // The application has taken every event handed out before.
        if let Err(error) = self.confirm().await {
            tracing::warn!(%error, "could not confirm received messages; they will come again");
        }
        self.chores().await;
        loop {
            if let Some(event) = self.pending_events.pop_front() {
                return Some(event);
            }
            let wait = self.outgoing.next_expiry().map(|at| at.since(now_ms()));
            let event = tokio::select! {
                event = self.events.next() => event?,
                () = tokio::time::sleep(wait.unwrap_or(Duration::MAX)), if wait.is_some() => {
                    self.expire_outgoing();
                    continue;
                }
            };
            if let Some(event) = self.on_server_event(event).await {
                return Some(event);
            }
        }
    }

    /// What a push from the server means for the application, after the
    /// work it asks for; `None` for what it need not see (yet).
    async fn on_server_event(&mut self, event: ServerEvent) -> Option<Event> {
        match event {
            ServerEvent::Delivery(delivery) => {
                self.receive(delivery);
                // Any renewal a message asked for (so the sender's next
                // message can be read) before it is told; both survive a
                // drop meanwhile.
                self.chores().await;
                None
            }
            ServerEvent::Disconnected { reason } => {
                self.disconnected = true;
                Some(Event::Disconnected { reason })
            }
            ServerEvent::Superseded { reason } => {
                self.superseded = true;
                Some(Event::Superseded { reason })
            }
            ServerEvent::FriendRemoved { by } => {
                self.forget_friendship(by);
                Some(Event::FriendRemoved { by })
            }
            ServerEvent::KeysLow { remaining } => {
                self.keys_low = Some(remaining);
                self.chores().await;
                None
            }
            ServerEvent::MailboxDrained => Some(Event::MailboxDrained),
            ServerEvent::FriendRequest { from } => Some(Event::FriendRequest { from }),
            ServerEvent::FriendAccepted { by } => {
                // The new friend is due this user's display name.
                self.friends_sync_due = true;
                self.chores().await;
                Some(Event::FriendAccepted { by })
            }
            ServerEvent::ServerError { message } => Some(Event::ServerError { message }),
        }
    }

    fn expire_outgoing(&mut self) {
        for (to, client_msg_id) in self.outgoing.expired(now_ms()) {
            self.pending_events
                .push_back(Event::ExpiredUnread { to, client_msg_id });
        }
    }

    /// Persists what was received and handed out so far, then acknowledges
    /// it to the server, which burns it. Runs by itself at the next
    /// [`Messenger::next_event`], [`Messenger::mark_read`] or send; call it
    /// before dropping the messenger. If persisting fails nothing is
    /// acknowledged: the messages come again.
    ///
    /// Cancel-safe: the ids are forgotten only once the server answered, so
    /// a call dropped mid-way (a timeout around [`Messenger::next_event`])
    /// leaves them for the next one. Burning twice is harmless.
    pub async fn confirm(&mut self) -> Result<(), ClientError> {
        if self.unconfirmed.is_empty() {
            return Ok(());
        }
        self.state.prune_seen(now_ms());
        self.store.save(&self.state)?;
        // `&mut self` is held across the await: nothing is added meanwhile.
        let outcome = self.client.ack(self.unconfirmed.clone()).await;
        self.unconfirmed.clear();
        if let Err(error) = outcome {
            // They stay on the server, come again after a reconnect, and are
            // recognised as handled then.
            tracing::warn!(%error, "could not acknowledge messages");
        }
        Ok(())
    }

    /// Opens a delivery and queues what it means for the application; its
    /// id waits to be confirmed, whatever it was.
    fn receive(&mut self, delivery: Delivery) {
        self.unconfirmed.push(delivery.message_id);
        match self.state.open(&delivery, now_ms()) {
            Opened::Text(message) => self.pending_events.push_back(Event::Message(message)),
            Opened::Read { by, client_msg_ids } => {
                for client_msg_id in self.outgoing.read(by, client_msg_ids) {
                    self.pending_events
                        .push_back(Event::Read { by, client_msg_id });
                }
            }
            Opened::Profile {
                from,
                client_msg_id,
                display_name,
                expires_unix_ms,
            } => {
                owe_receipt(
                    &mut self.name_receipts,
                    from,
                    client_msg_id,
                    expires_unix_ms,
                );
                self.pending_events
                    .push_back(Event::DisplayName { from, display_name });
            }
            Opened::Undecryptable(error) => {
                // A fresh session is set up before this is told.
                self.renewals.insert(delivery.from);
                self.pending_events.push_back(Event::Undecryptable {
                    from: delivery.from,
                    message_id: delivery.message_id,
                    reason: error.to_string(),
                });
            }
            _ => {}
        }
    }

    /// Does what events asked for: the key top-up, then the renewals; each
    /// is forgotten only once done (or failed), not when a dropped call
    /// cut it off.
    async fn chores(&mut self) {
        if let Some(remaining) = self.keys_low {
            if let Err(error) = self.top_up_keys(remaining).await {
                // The server says again when keys run low.
                tracing::warn!(%error, "could not top up one-time keys");
            }
            self.keys_low = None;
        }
        while let Some(&peer) = self.renewals.first() {
            self.renew_session(peer).await;
            self.renewals.remove(&peer);
        }
        while let Some((&friend, receipt)) = self.name_receipts.first_key_value() {
            if let Err(error) = self.send_receipt(friend, receipt.clone()).await {
                // The friend's device sends the name again later.
                tracing::warn!(%error, "could not confirm a friend's display name");
            }
            self.name_receipts.remove(&friend);
        }
        if self.friends_sync_due {
            if let Err(error) = self.sync_friendships().await {
                tracing::warn!(%error, "could not sync friendship data with the server's friends");
            }
            self.friends_sync_due = false;
        }
    }

    /// Starts a fresh session with `peer` and tells them with a message that
    /// carries no content, so their next message reaches us. At most once
    /// per [`RENEWAL_INTERVAL`] per friend, counted from the end of the last
    /// attempt.
    async fn renew_session(&mut self, peer: UserId) {
        if self
            .renewed
            .get(&peer)
            .is_some_and(|at| at.elapsed() < RENEWAL_INTERVAL)
        {
            return;
        }
        let result = async {
            let bundle = self.client.claim_keys(peer).await?;
            self.state.start_session(peer, &bundle)?;
            self.send_sealed(peer, Content::Renewal, MAX_MESSAGE_TTL, new_client_msg_id())
                .await
        }
        .await;
        self.renewed.insert(peer, Instant::now());
        if let Err(error) = result {
            tracing::warn!(%error, "could not renew the session");
        }
    }
}

/// Receipts to send, by sender: the ids they name and the latest expiry
/// among those messages.
type Receipts = BTreeMap<UserId, (Vec<ClientMsgId>, UnixMillis)>;

/// Adds `client_msg_id` (expiring at `expires`) to what `sender` is owed.
fn owe_receipt(
    receipts: &mut Receipts,
    sender: UserId,
    client_msg_id: ClientMsgId,
    expires: UnixMillis,
) {
    let (ids, latest) = receipts.entry(sender).or_default();
    ids.push(client_msg_id);
    *latest = (*latest).max(expires);
}

async fn login(
    url: &str,
    options: &ConnectOptions,
    state: &LocalState,
) -> Result<(Client, Events), ClientError> {
    let Some(pinned) = state.server_name.as_deref() else {
        return Err(ClientError::Protocol(
            "this identity is not registered yet; register it first".into(),
        ));
    };
    let (mut client, events) = Client::connect_with(url, options).await?;
    client.login(&state.identity, pinned).await?;
    Ok((client, events))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_grow_are_capped_and_jittered() {
        for attempt in 1..40 {
            let bound = RECONNECT_FIRST_DELAY
                .saturating_mul(1u32 << (attempt - 1).min(16))
                .min(RECONNECT_MAX_DELAY);
            for _ in 0..20 {
                assert!(reconnect_delay(attempt) <= bound);
            }
        }
        // Jitter: a hundred draws at the cap are not all the same.
        let draws: std::collections::HashSet<_> = (0..100).map(|_| reconnect_delay(30)).collect();
        assert!(draws.len() > 50);
    }

    #[test]
    fn client_msg_ids_start_with_the_time_and_do_not_repeat() {
        let before = u64::try_from(now_ms().0).unwrap();
        let ids: Vec<ClientMsgId> = (0..1000).map(|_| new_client_msg_id()).collect();
        let after = u64::try_from(now_ms().0).unwrap();
        for id in &ids {
            let mut millis = [0u8; 8];
            millis[2..].copy_from_slice(&id.0[..6]);
            let millis = u64::from_be_bytes(millis);
            assert!(
                (before..=after).contains(&millis),
                "{millis} not in {before}..={after}"
            );
        }
        // Sorted by time: each id's time is no earlier than the last one's.
        assert!(ids.windows(2).all(|w| w[0].0[..6] <= w[1].0[..6]));
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
    }
}
