//! What the chat window shows, without a terminal: friends, requests,
//! conversations and every message's two timers. Pure state: input and SDK
//! events go in, [`Action`]s for the messenger come out, and the clock is
//! passed in, so the timers are tested without waiting.

use std::collections::HashMap;

use crate::safe;
use std::time::{Duration, Instant};

use wisp_client::{
    ClientMsgId, Event, ReceivedMessage, SafetyNumber, SentMessage, UserId, safety_number,
};
use zeroize::Zeroizing;

/// How long a sender still sees "read" (or "expired unread") before the
/// line burns from the screen.
pub(crate) const LINGER: Duration = Duration::from_secs(4);

/// The longest message the composer takes, in bytes of UTF-8 (what the
/// SDK accepts).
pub(crate) const MAX_COMPOSE_BYTES: usize = wisp_proto::limits::MAX_TEXT_BYTES;

/// What the chat asks of the messenger.
#[derive(Debug)]
pub(crate) enum Action {
    /// Encrypt and send; `local` ties the answer to the line on screen.
    Send {
        local: u64,
        to: UserId,
        text: Zeroizing<String>,
    },
    /// Tell the senders these were read (shown on screen; their burn
    /// timers have started here).
    MarkRead(Vec<ReceivedMessage>),
    Accept(UserId),
    Decline(UserId),
    /// Mark `friend` verified (the safety numbers matched), or unmark.
    SetVerified {
        friend: UserId,
        verified: bool,
    },
    /// Fetch the friend list and requests again.
    Refresh,
    /// Give `id` the user's own name for them (`None`: remove it).
    Rename {
        id: UserId,
        name: Option<String>,
    },
    /// Set (or with `None` clear) the user's display name.
    SetDisplayName(Option<String>),
}

/// The names the chat shows: the user's own for others, the ones friends
/// chose, and the user's display name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct NameBook {
    pub(crate) petnames: HashMap<UserId, String>,
    pub(crate) theirs: HashMap<UserId, String>,
    pub(crate) own: Option<String>,
}

/// What the messenger tells the chat.
#[derive(Debug)]
pub(crate) enum Update {
    Event(Event),
    Sent {
        local: u64,
        outcome: Result<SentMessage, String>,
    },
    Roster {
        friends: Vec<(UserId, bool)>,
        incoming: Vec<UserId>,
    },
    Notice(String),
    /// A verified mark was saved (or removed).
    Verified {
        friend: UserId,
        verified: bool,
    },
    /// The names changed (a rename, a friend's display name, ours).
    Names(NameBook),
}

/// The connection as the status line shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Link {
    Connected,
    /// Lost; the messenger is reconnecting with backoff.
    Reconnecting(Option<String>),
}

/// Where the keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Focus {
    /// Arrows pick a friend or request; Enter opens.
    List,
    /// Typing goes into the composer; Enter sends.
    Compose,
    /// Typing goes into a name being given; Enter saves, Esc cancels.
    Naming,
}

/// A name being typed in the chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Naming {
    /// Whose name: a friend's or request's petname, or (`None`) the user's
    /// own display name.
    pub(crate) of: Option<UserId>,
    pub(crate) text: String,
    /// Where the keys went before.
    back: Focus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Friend {
    pub(crate) id: UserId,
    pub(crate) verified: bool,
}

/// One message on screen.
#[derive(Debug)]
pub(crate) struct Line {
    pub(crate) text: Zeroizing<String>,
    /// The hard ceiling (ms since the epoch): gone by then, read or not.
    pub(crate) expires_unix_ms: i64,
    pub(crate) state: LineState,
}

#[derive(Debug)]
pub(crate) enum LineState {
    /// Received, not yet on screen: the sender has no receipt yet.
    Unread(Box<ReceivedMessage>),
    /// Received and shown; burns at `burn_at` (None: at the ceiling).
    Opened { burn_at: Option<Instant> },
    /// Ours, on its way to the server.
    Sending { local: u64 },
    /// Ours, stored by the server, not read yet.
    Sent { client_msg_id: ClientMsgId },
    /// Ours, read by the friend: burns from the screen after [`LINGER`].
    Read { since: Instant },
    /// Ours, expired before the friend read it.
    ExpiredUnread { since: Instant },
    /// Ours, refused or failed.
    Failed { since: Instant, why: String },
}

impl Line {
    /// Ours (sent from here), not a friend's.
    pub(crate) fn outgoing(&self) -> bool {
        !matches!(self.state, LineState::Unread(_) | LineState::Opened { .. })
    }

    fn unread(&self) -> bool {
        matches!(self.state, LineState::Unread(_))
    }
}

/// The whole window's state.
#[derive(Debug)]
pub(crate) struct Chat {
    pub(crate) me: UserId,
    pub(crate) friends: Vec<Friend>,
    pub(crate) requests: Vec<UserId>,
    /// Index into friends, then requests.
    pub(crate) selected: usize,
    pub(crate) open: Option<UserId>,
    pub(crate) focus: Focus,
    pub(crate) composer: Zeroizing<String>,
    pub(crate) help: bool,
    /// The safety number on screen, to compare with a friend's.
    pub(crate) verifying: Option<(UserId, SafetyNumber)>,
    pub(crate) link: Link,
    pub(crate) reconnects: u32,
    pub(crate) notice: Option<(String, Instant)>,
    pub(crate) quit: bool,
    /// A quit was asked for while messages were unread: the next one quits.
    pub(crate) quit_asked: bool,
    /// Lines scrolled up from the newest, in the open conversation.
    pub(crate) scroll: usize,
    /// The names to show.
    pub(crate) names: NameBook,
    /// A name being typed, if any.
    pub(crate) naming: Option<Naming>,
    conversations: HashMap<UserId, Vec<Line>>,
    next_local: u64,
    /// Seconds a message we send stays visible once read.
    pub(crate) view: Option<Duration>,
}

impl Chat {
    pub(crate) fn new(me: UserId, view: Option<Duration>) -> Self {
        Self {
            me,
            friends: Vec::new(),
            requests: Vec::new(),
            selected: 0,
            open: None,
            focus: Focus::List,
            composer: Zeroizing::new(String::new()),
            help: false,
            verifying: None,
            link: Link::Connected,
            reconnects: 0,
            notice: None,
            quit: false,
            quit_asked: false,
            scroll: 0,
            names: NameBook::default(),
            naming: None,
            conversations: HashMap::new(),
            next_local: 0,
            view,
        }
    }

    /// How the chat names `id`, safe to draw: the user's name for them;
    /// else `~` and the name they chose (their own claim); else the start
    /// of the id.
    pub(crate) fn label(&self, id: &UserId) -> String {
        let petname = self.names.petnames.get(id).map(String::as_str);
        let theirs = self.names.theirs.get(id).map(String::as_str);
        crate::output::label(petname, theirs).unwrap_or_else(|| short(id))
    }

    /// Starts typing a name: the user's own for the entry selected in the
    /// list (`of_selected`), or the user's display name.
    pub(crate) fn start_naming(&mut self, of_selected: bool) {
        let of = if of_selected {
            match self.selection() {
                Some(Selected::Friend(id) | Selected::Request(id)) => Some(id),
                None => return,
            }
        } else {
            None
        };
        let text = match of {
            Some(id) => self.names.petnames.get(&id).cloned(),
            None => self.names.own.clone(),
        };
        self.naming = Some(Naming {
            of,
            text: text.unwrap_or_default(),
            back: self.focus,
        });
        self.focus = Focus::Naming;
    }

    /// Types into the name being given, up to the longest name allowed.
    pub(crate) fn type_name(&mut self, c: char) {
        if let Some(naming) = &mut self.naming
            && naming.text.chars().count() < wisp_client::MAX_NAME_CHARS
            && !c.is_control()
        {
            naming.text.push(c);
        }
    }

    /// Ends naming: with `save`, the action that saves the name (empty:
    /// removes it).
    pub(crate) fn finish_naming(&mut self, save: bool) -> Option<Action> {
        let naming = self.naming.take()?;
        self.focus = naming.back;
        if !save {
            return None;
        }
        let name = (!naming.text.trim().is_empty()).then_some(naming.text);
        Some(match naming.of {
            Some(id) => Action::Rename { id, name },
            None => Action::SetDisplayName(name),
        })
    }

    pub(crate) fn lines(&self, friend: &UserId) -> &[Line] {
        self.conversations.get(friend).map_or(&[], Vec::as_slice)
    }

    pub(crate) fn friend(&self, id: &UserId) -> Option<&Friend> {
        self.friends.iter().find(|f| &f.id == id)
    }

    /// Messages from `friend` received and not yet on screen.
    pub(crate) fn unread(&self, friend: &UserId) -> usize {
        self.lines(friend).iter().filter(|l| l.unread()).count()
    }

    /// A new friend list from the server.
    pub(crate) fn set_roster(&mut self, friends: Vec<(UserId, bool)>, incoming: Vec<UserId>) {
        self.friends = friends
            .into_iter()
            .map(|(id, verified)| Friend { id, verified })
            .collect();
        self.requests = incoming;
        // Conversations with people no longer friends go, text and all.
        let keep: Vec<UserId> = self.friends.iter().map(|f| f.id).collect();
        self.conversations.retain(|id, _| keep.contains(id));
        if self.open.is_some_and(|id| !keep.contains(&id)) {
            self.open = None;
            match &mut self.naming {
                Some(naming) => naming.back = Focus::List,
                None => self.focus = Focus::List,
            }
        }
        if self
            .verifying
            .as_ref()
            .is_some_and(|(id, _)| !keep.contains(id))
        {
            self.verifying = None;
        }
        self.selected = self
            .selected
            .min((self.friends.len() + self.requests.len()).saturating_sub(1));
    }

    /// Opens `friend`'s conversation. What was waiting is read as it comes
    /// on screen ([`Chat::reveal`]).
    pub(crate) fn open(&mut self, friend: UserId) {
        self.open = Some(friend);
        self.focus = Focus::Compose;
        self.scroll = 0;
        if let Some(index) = self.friends.iter().position(|f| f.id == friend) {
            self.selected = index;
        }
    }

    /// Whether an overlay (the help, a safety number) covers the
    /// conversation: nothing under it counts as read.
    pub(crate) fn covered(&self) -> bool {
        self.help || self.verifying.is_some()
    }

    /// The mark on `friend` was saved as `verified`.
    pub(crate) fn set_verified(&mut self, friend: UserId, verified: bool, now: Instant) {
        if let Some(entry) = self.friends.iter_mut().find(|f| f.id == friend) {
            entry.verified = verified;
        }
        let who = self.label(&friend);
        let text = if verified {
            format!("{who} is marked verified")
        } else {
            format!("{who} is no longer marked verified")
        };
        self.say(text, now);
    }

    /// Shows the safety number with the friend selected in the list; a
    /// request is accepted first.
    pub(crate) fn verify_selected(&mut self, now: Instant) {
        match self.selection() {
            Some(Selected::Friend(friend)) => {
                self.verifying = Some((friend, safety_number(self.me, friend)));
            }
            Some(Selected::Request(_)) => self.say(
                "accept the request first (a); then v shows the safety number".to_owned(),
                now,
            ),
            None => {}
        }
    }

    /// The lines of the open conversation at `shown` (indices) were drawn
    /// on screen: those unread are read now, their burn timers start, and
    /// their senders get receipts. Nothing counts as shown under an
    /// overlay.
    pub(crate) fn reveal(&mut self, shown: &[usize], now: Instant) -> Vec<Action> {
        let Some(friend) = self.open else {
            return Vec::new();
        };
        if self.covered() {
            return Vec::new();
        }
        let Some(lines) = self.conversations.get_mut(&friend) else {
            return Vec::new();
        };
        let mut read = Vec::new();
        for &index in shown {
            let Some(line) = lines.get_mut(index) else {
                continue;
            };
            let burn_at = match &line.state {
                LineState::Unread(message) => message.view_timer.map(|view| now + view),
                _ => continue,
            };
            if let LineState::Unread(message) =
                std::mem::replace(&mut line.state, LineState::Opened { burn_at })
            {
                read.push(*message);
            }
        }
        if read.is_empty() {
            Vec::new()
        } else {
            vec![Action::MarkRead(read)]
        }
    }

    /// Messages received and not yet shown, in every conversation.
    pub(crate) fn unread_total(&self) -> usize {
        self.conversations
            .values()
            .flatten()
            .filter(|l| l.unread())
            .count()
    }

    /// Quits, unless messages are unread: they live in this process only
    /// (the server burned its copy once this device decrypted it), so the
    /// first request only warns.
    pub(crate) fn ask_quit(&mut self, now: Instant) {
        let unread = self.unread_total();
        if unread == 0 || self.quit_asked {
            self.quit = true;
        } else {
            self.quit_asked = true;
            self.say(
                format!("{unread} unread message(s) will be lost if you quit; quit again to quit"),
                now,
            );
        }
    }

    /// What an SDK event changes; the actions it calls for.
    pub(crate) fn on_event(&mut self, event: Event, now: Instant) -> Vec<Action> {
        match event {
            Event::Message(message) => self.on_message(message),
            Event::Read { by, client_msg_id } => {
                if let Some(line) = self.sent_line(&by, &client_msg_id) {
                    line.state = LineState::Read { since: now };
                }
            }
            Event::ExpiredUnread { to, client_msg_id } => {
                if let Some(line) = self.sent_line(&to, &client_msg_id) {
                    line.state = LineState::ExpiredUnread { since: now };
                    line.text = Zeroizing::new(String::new());
                }
            }
            Event::FriendRequest { from } => {
                // A friend who reinstalled comes back like this too: a new
                // id, nothing of the old friendship, verified or not.
                self.say(
                    format!(
                        "{} (not verified) asks to be your friend",
                        self.label(&from)
                    ),
                    now,
                );
                return vec![Action::Refresh];
            }
            Event::FriendAccepted { by } => {
                self.say(format!("{} is now your friend", self.label(&by)), now);
                return vec![Action::Refresh];
            }
            Event::FriendRemoved { .. } => return vec![Action::Refresh],
            Event::Disconnected { reason } => self.link = Link::Reconnecting(reason),
            Event::Reconnected { .. } => {
                self.link = Link::Connected;
                self.reconnects += 1;
                return vec![Action::Refresh];
            }
            Event::Undecryptable { from, .. } => self.say(
                format!(
                    "a message from {} could not be decrypted; ask them to send it again",
                    self.label(&from)
                ),
                now,
            ),
            Event::ServerError { message } => self.say(safe::line(&message), now),
            // Handled inside the messenger, or nothing to show.
            _ => {}
        }
        Vec::new()
    }

    fn on_message(&mut self, mut message: ReceivedMessage) {
        // One copy of the text, on the line; what stays for the receipt
        // needs none.
        let text = std::mem::take(&mut message.text);
        self.conversations
            .entry(message.from)
            .or_default()
            .push(Line {
                text,
                expires_unix_ms: message.expires_unix_ms.0,
                state: LineState::Unread(Box::new(message)),
            });
    }

    fn sent_line(&mut self, peer: &UserId, id: &ClientMsgId) -> Option<&mut Line> {
        self.conversations.get_mut(peer)?.iter_mut().find(
            |line| matches!(line.state, LineState::Sent { client_msg_id } if &client_msg_id == id),
        )
    }

    /// Takes the composer's text as a message to the open conversation.
    pub(crate) fn submit(&mut self, now_ms: i64) -> Option<Action> {
        let to = self.open?;
        if self.composer.trim().is_empty() {
            return None;
        }
        let text = std::mem::replace(&mut self.composer, Zeroizing::new(String::new()));
        self.quit_asked = false;
        self.scroll = 0;
        self.next_local += 1;
        let local = self.next_local;
        let hour = i64::try_from(wisp_proto::limits::MAX_MESSAGE_TTL.as_millis()).unwrap_or(0);
        self.conversations.entry(to).or_default().push(Line {
            text: text.clone(),
            expires_unix_ms: now_ms + hour,
            state: LineState::Sending { local },
        });
        Some(Action::Send { local, to, text })
    }

    /// The server's answer to a send.
    pub(crate) fn on_sent(
        &mut self,
        local: u64,
        outcome: Result<SentMessage, String>,
        now: Instant,
    ) {
        let line = self
            .conversations
            .values_mut()
            .flatten()
            .find(|line| matches!(line.state, LineState::Sending { local: l } if l == local));
        if let Some(line) = line {
            match outcome {
                Ok(sent) => {
                    line.expires_unix_ms = sent.expires_unix_ms.0;
                    line.state = LineState::Sent {
                        client_msg_id: sent.client_msg_id,
                    };
                }
                Err(why) => {
                    // Not lost: back in the composer, unless something new
                    // was typed meanwhile.
                    if self.composer.is_empty() {
                        self.composer = line.text.clone();
                    }
                    line.state = LineState::Failed { since: now, why };
                }
            }
        }
    }

    pub(crate) fn say(&mut self, text: String, now: Instant) {
        self.notice = Some((text, now));
    }

    /// Burns what ran out: read messages whose view timer ended, anything
    /// past its ceiling, our lines read or expired [`LINGER`] ago.
    pub(crate) fn tick(&mut self, now: Instant, now_ms: i64) {
        for line in self.conversations.values_mut().flatten() {
            // Ours at its ceiling with no receipt: expired unread, whether
            // or not the SDK's own notice has come yet.
            if matches!(line.state, LineState::Sent { .. }) && now_ms >= line.expires_unix_ms {
                line.state = LineState::ExpiredUnread { since: now };
                line.text = Zeroizing::new(String::new());
            }
        }
        for lines in self.conversations.values_mut() {
            lines.retain(|line| !gone(line, now, now_ms));
        }
        if self
            .notice
            .as_ref()
            .is_some_and(|(_, at)| now.duration_since(*at) > Duration::from_secs(8))
        {
            self.notice = None;
        }
    }

    /// Moves the selection in the list by `delta`.
    pub(crate) fn select(&mut self, delta: isize) {
        let count = self.friends.len() + self.requests.len();
        if count == 0 {
            return;
        }
        let next = self.selected.saturating_add_signed(delta);
        self.selected = next.min(count - 1);
    }

    /// The selected entry: a friend, or an incoming request.
    pub(crate) fn selection(&self) -> Option<Selected> {
        if let Some(friend) = self.friends.get(self.selected) {
            return Some(Selected::Friend(friend.id));
        }
        self.requests
            .get(self.selected - self.friends.len())
            .map(|id| Selected::Request(*id))
    }

    /// Types `c` into the composer, unless the message would be too long.
    pub(crate) fn type_char(&mut self, c: char) {
        if self.composer.len() + c.len_utf8() <= MAX_COMPOSE_BYTES {
            self.composer.push(c);
        } else {
            self.say(
                format!("a message holds at most {MAX_COMPOSE_BYTES} bytes"),
                Instant::now(),
            );
        }
    }

    /// Pasted text: line breaks become spaces (Enter would send).
    pub(crate) fn paste(&mut self, text: &str) {
        for c in text.chars() {
            self.type_char(if c == '\n' || c == '\r' { ' ' } else { c });
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Selected {
    Friend(UserId),
    Request(UserId),
}

fn gone(line: &Line, now: Instant, now_ms: i64) -> bool {
    if now_ms >= line.expires_unix_ms && !matches!(line.state, LineState::ExpiredUnread { .. }) {
        // The ceiling: the text goes; ours is told "expired unread" by the
        // SDK if no receipt came, and that shows without the text.
        return true;
    }
    match &line.state {
        LineState::Opened { burn_at } => burn_at.is_some_and(|at| now >= at),
        LineState::Read { since }
        | LineState::ExpiredUnread { since }
        | LineState::Failed { since, .. } => now.duration_since(*since) >= LINGER,
        LineState::Unread(_) | LineState::Sending { .. } | LineState::Sent { .. } => false,
    }
}

/// An id cut to fit a narrow column: its first 12 characters.
pub(crate) use crate::output::short_id as short;

/// `m:ss` (or `h:mm:ss`) left until `until_ms`.
pub(crate) fn countdown(left: Duration) -> String {
    let secs = left.as_secs();
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

#[cfg(test)]
pub(super) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use wisp_client::{MessageId, UnixMillis};

    pub(crate) fn id(n: u8) -> UserId {
        UserId::from_bytes(&[n; UserId::LEN]).unwrap()
    }

    pub(crate) fn message(
        from: UserId,
        text: &str,
        now_ms: i64,
        view: Option<u64>,
    ) -> ReceivedMessage {
        ReceivedMessage {
            id: MessageId(1),
            client_msg_id: ClientMsgId([9; 16]),
            from,
            text: Zeroizing::new(text.to_owned()),
            sent_unix_ms: UnixMillis(now_ms),
            expires_unix_ms: UnixMillis(now_ms + 60_000),
            view_timer: view.map(Duration::from_secs),
        }
    }

    pub(crate) fn chat_with(friend: UserId) -> Chat {
        let mut chat = Chat::new(id(1), Some(Duration::from_secs(30)));
        chat.set_roster(vec![(friend, false)], vec![]);
        chat
    }

    /// Opens `friend`, types and sends "hello", and has the server store
    /// it under client id [3; 16].
    fn send_stored(chat: &mut Chat, friend: UserId, now: Instant) {
        chat.open(friend);
        chat.composer = Zeroizing::new("hello".into());
        let Some(Action::Send { local, .. }) = chat.submit(0) else {
            panic!("a send");
        };
        let sent = SentMessage {
            message_id: MessageId(7),
            client_msg_id: ClientMsgId([3; 16]),
            expires_unix_ms: UnixMillis(3_600_000),
        };
        chat.on_sent(local, Ok(sent), now);
    }

    #[test]
    fn a_message_waits_unread_then_burns_after_its_view_timer_once_shown() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let t0 = Instant::now();
        let now_ms = 1_000_000;
        let actions = chat.on_event(Event::Message(message(bob, "hi", now_ms, Some(5))), t0);
        assert!(
            actions.is_empty(),
            "not read while its conversation is closed"
        );
        assert_eq!(chat.unread(&bob), 1);
        // Unread, it stays however long (below the ceiling).
        chat.tick(t0 + Duration::from_secs(30), now_ms + 30_000);
        assert_eq!(chat.lines(&bob).len(), 1);

        let t1 = t0 + Duration::from_secs(30);
        chat.open(bob);
        // Opened under the help: not shown, so not read.
        chat.help = true;
        assert!(chat.reveal(&[0], t1).is_empty());
        chat.help = false;
        assert!(chat.reveal(&[], t1).is_empty(), "not drawn, not read");
        let actions = chat.reveal(&[0, 7], t1);
        assert!(matches!(actions.as_slice(), [Action::MarkRead(read)] if read.len() == 1));
        assert!(chat.reveal(&[0], t1).is_empty(), "one receipt per message");
        assert_eq!(chat.unread(&bob), 0);
        chat.tick(t1 + Duration::from_secs(4), now_ms + 34_000);
        assert_eq!(chat.lines(&bob).len(), 1, "4 s of its 5");
        chat.tick(t1 + Duration::from_secs(5), now_ms + 35_000);
        assert!(chat.lines(&bob).is_empty(), "burned after 5 s");
    }

    #[test]
    fn an_unread_message_vanishes_at_its_ceiling() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let t0 = Instant::now();
        chat.on_event(Event::Message(message(bob, "hi", 0, None)), t0);
        chat.tick(t0, 59_999);
        assert_eq!(chat.lines(&bob).len(), 1);
        chat.tick(t0, 60_000);
        assert!(chat.lines(&bob).is_empty());
        assert_eq!(chat.unread(&bob), 0);
    }

    #[test]
    fn the_sender_sees_read_then_the_line_burns() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let t0 = Instant::now();
        send_stored(&mut chat, bob, t0);
        assert!(chat.composer.is_empty());
        assert!(matches!(chat.lines(&bob)[0].state, LineState::Sent { .. }));
        chat.on_event(
            Event::Read {
                by: bob,
                client_msg_id: ClientMsgId([3; 16]),
            },
            t0,
        );
        assert!(matches!(chat.lines(&bob)[0].state, LineState::Read { .. }));
        chat.tick(t0 + LINGER - Duration::from_millis(1), 1);
        assert_eq!(chat.lines(&bob).len(), 1, "\"read\" shows a moment");
        chat.tick(t0 + LINGER, 1);
        assert!(chat.lines(&bob).is_empty(), "then it burns");
    }

    #[test]
    fn a_receipt_from_someone_else_changes_nothing() {
        let (bob, carol) = (id(2), id(3));
        let mut chat = chat_with(bob);
        let t0 = Instant::now();
        send_stored(&mut chat, bob, t0);
        chat.on_event(
            Event::Read {
                by: carol,
                client_msg_id: ClientMsgId([3; 16]),
            },
            t0,
        );
        assert!(matches!(chat.lines(&bob)[0].state, LineState::Sent { .. }));
        chat.on_event(
            Event::ExpiredUnread {
                to: bob,
                client_msg_id: ClientMsgId([3; 16]),
            },
            t0,
        );
        assert!(matches!(
            chat.lines(&bob)[0].state,
            LineState::ExpiredUnread { .. }
        ));
    }

    #[test]
    fn a_friend_removed_takes_the_conversation_with_it() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let t0 = Instant::now();
        chat.open(bob);
        chat.on_event(Event::Message(message(bob, "hi", 0, None)), t0);
        chat.set_roster(vec![], vec![id(4)]);
        assert!(chat.lines(&bob).is_empty());
        assert_eq!(chat.open, None);
        assert_eq!(chat.selection(), Some(Selected::Request(id(4))));
    }

    #[test]
    fn the_safety_number_shows_for_a_friend_covers_the_conversation_and_goes_with_them() {
        let (bob, carol) = (id(2), id(3));
        let mut chat = chat_with(bob);
        chat.set_roster(vec![(bob, false)], vec![carol]);
        let t0 = Instant::now();
        chat.on_event(Event::Message(message(bob, "hi", 0, None)), t0);
        chat.open(bob);
        chat.focus = Focus::List;

        chat.verify_selected(t0);
        let (friend, number) = chat.verifying.clone().expect("shown");
        assert_eq!(friend, bob);
        assert_eq!(
            number,
            safety_number(bob, id(1)),
            "what Bob's side computes"
        );
        assert!(chat.covered());
        assert!(chat.reveal(&[0], t0).is_empty(), "nothing is read under it");

        chat.verifying = None;
        chat.select(1);
        chat.verify_selected(t0);
        assert!(chat.verifying.is_none(), "not for a request");
        assert!(
            chat.notice
                .as_ref()
                .is_some_and(|(n, _)| n.contains("accept"))
        );

        chat.select(-1);
        chat.verify_selected(t0);
        assert!(chat.verifying.is_some());
        chat.set_verified(bob, true, t0);
        assert!(chat.friend(&bob).is_some_and(|f| f.verified));
        assert!(
            chat.notice
                .as_ref()
                .is_some_and(|(n, _)| n.contains("is marked verified"))
        );
        chat.set_roster(vec![], vec![]);
        assert!(chat.verifying.is_none(), "an ex-friend's number goes");
    }

    #[test]
    fn our_message_at_its_ceiling_shows_expired_unread_without_text() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let t0 = Instant::now();
        send_stored(&mut chat, bob, t0);
        chat.tick(t0, 3_600_000);
        let line = &chat.lines(&bob)[0];
        assert!(matches!(line.state, LineState::ExpiredUnread { .. }));
        assert!(line.text.is_empty(), "the text is gone at once");
        chat.tick(t0 + LINGER, 3_600_001);
        assert!(chat.lines(&bob).is_empty());
    }

    #[test]
    fn quitting_with_unread_messages_asks_twice_and_a_failed_send_keeps_its_text() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let t0 = Instant::now();
        chat.on_event(Event::Message(message(bob, "hi", 0, None)), t0);
        chat.ask_quit(t0);
        assert!(!chat.quit, "warned first");
        chat.ask_quit(t0);
        assert!(chat.quit);

        let mut chat = chat_with(bob);
        chat.open(bob);
        chat.composer = Zeroizing::new("hello".into());
        let Some(Action::Send { local, .. }) = chat.submit(0) else {
            panic!("a send");
        };
        chat.on_sent(local, Err("refused".into()), t0);
        assert_eq!(chat.composer.as_str(), "hello");
    }

    #[test]
    fn the_composer_holds_what_the_sdk_sends_and_pastes_one_line() {
        let mut chat = chat_with(id(2));
        chat.paste("two\nlines");
        assert_eq!(chat.composer.as_str(), "two lines");
        chat.composer = Zeroizing::new("é".repeat(MAX_COMPOSE_BYTES / 2));
        chat.type_char('é');
        assert_eq!(
            chat.composer.len(),
            MAX_COMPOSE_BYTES,
            "bytes, not characters"
        );
    }

    #[test]
    fn the_status_follows_the_connection_and_counts_reconnects() {
        let mut chat = chat_with(id(2));
        let t0 = Instant::now();
        assert_eq!(chat.link, Link::Connected);
        chat.on_event(
            Event::Disconnected {
                reason: Some("server shutting down".into()),
            },
            t0,
        );
        assert_eq!(
            chat.link,
            Link::Reconnecting(Some("server shutting down".into()))
        );
        let actions = chat.on_event(Event::Reconnected { attempts: 3 }, t0);
        assert_eq!(chat.link, Link::Connected);
        assert_eq!(chat.reconnects, 1);
        assert!(
            matches!(actions.as_slice(), [Action::Refresh]),
            "the list is fetched again after a reconnect"
        );
    }

    #[test]
    fn countdowns_read_as_minutes_and_seconds() {
        assert_eq!(countdown(Duration::from_secs(59 * 60 + 5)), "59:05");
        assert_eq!(countdown(Duration::from_secs(3600)), "1:00:00");
        assert_eq!(countdown(Duration::from_secs(9)), "0:09");
    }

    #[test]
    fn n_names_the_selected_friend_and_capital_n_the_user() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        assert_eq!(chat.label(&bob), short(&bob));
        chat.start_naming(true);
        assert_eq!(chat.focus, Focus::Naming);
        for c in "Bob\x1b".chars() {
            chat.type_name(c);
        }
        match chat.finish_naming(true) {
            Some(Action::Rename { id, name }) => {
                assert_eq!((id, name.as_deref()), (bob, Some("Bob")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(chat.focus, Focus::List);
        chat.names.petnames.insert(bob, "Bob".into());
        assert_eq!(chat.label(&bob), "Bob");
        // Editing starts from the current name; emptied, it removes it.
        chat.start_naming(true);
        assert_eq!(chat.naming.as_ref().map(|n| n.text.as_str()), Some("Bob"));
        chat.naming.as_mut().unwrap().text.clear();
        assert!(matches!(
            chat.finish_naming(true),
            Some(Action::Rename { name: None, .. })
        ));
        chat.start_naming(false);
        for _ in 0..100 {
            chat.type_name('a');
        }
        match chat.finish_naming(true) {
            Some(Action::SetDisplayName(Some(name))) => assert_eq!(name.chars().count(), 64),
            other => panic!("{other:?}"),
        }
        chat.start_naming(false);
        assert!(chat.finish_naming(false).is_none(), "Esc saves nothing");
    }
}
