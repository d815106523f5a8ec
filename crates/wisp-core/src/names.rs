//! Names people recognise, kept by the device, never by the server.
//!
//! - A **petname** is the user's own name for a friend: typed on this
//!   device, kept only in its sealed [`LocalState`], never sent anywhere,
//!   unique on the device (compared without regard to case), so a command
//!   can take it where it takes an id.
//! - A **display name** is what a user calls themselves. It travels to each
//!   friend inside the end-to-end encryption ([`crate::Content::Profile`])
//!   when the friendship starts and whenever it changes, until the friend's
//!   device confirms it with a receipt. A friend's display name is only
//!   their claim (anyone can call themselves "Alice"): front ends show it
//!   marked as theirs, and a petname, when the user gave one, wins.
//!
//! Every name is one line of at most [`MAX_NAME_CHARS`] characters with no
//! control, formatting-override or line-breaking characters: what the user
//! types is refused otherwise ([`check_name`]); what a friend sends is
//! cleaned up ([`clean_received_name`]), never trusted.

use std::collections::BTreeMap;

use wisp_proto::{ClientMsgId, UnixMillis, UserId};

use crate::state::LocalState;

/// The longest name, in characters (Unicode scalar values).
pub const MAX_NAME_CHARS: usize = 64;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Nothing but white space.
    #[error("a name cannot be empty")]
    Empty,
    /// More than [`MAX_NAME_CHARS`] characters.
    #[error("a name has at most {MAX_NAME_CHARS} characters")]
    TooLong,
    /// A control, bidirectional-override, zero-width or line-breaking
    /// character.
    #[error("a name cannot hold control, line-breaking or text-direction characters")]
    Forbidden,
    /// It reads as a user id or an invitation link, so a command taking
    /// either could not tell which was meant.
    #[error("a name cannot look like a user id or a wisp:// link")]
    LooksLikeId,
    /// Another friend on this device already has this name.
    #[error("the name is already given to {0}; names are unique on a device")]
    Taken(UserId),
    /// A petname for this device's own user.
    #[error("that is your own id; petnames are for the people you talk to")]
    OwnId,
}

/// Whether `c` may not appear in a name: C0 and C1 controls, DEL, the
/// bidirectional embeddings, overrides, isolates and marks, zero-width and
/// invisible formatting characters, and line and paragraph separators.
pub fn is_forbidden_in_name(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Formatting characters that reorder, hide or break text without being
/// seen: what a terminal or a page must never take from a peer as is.
pub fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'              // soft hyphen
        | '\u{034F}'            // combining grapheme joiner
        | '\u{061C}'            // Arabic letter mark
        | '\u{115F}' | '\u{1160}' // Hangul fillers
        | '\u{17B4}' | '\u{17B5}' // Khmer inherent vowels
        | '\u{180B}'..='\u{180F}' // Mongolian variation selectors, vowel separator
        | '\u{200B}'..='\u{200F}' // zero-width space, joiners, LRM, RLM
        | '\u{2028}' | '\u{2029}' // line and paragraph separators
        | '\u{202A}'..='\u{202E}' // embeddings and overrides
        | '\u{2060}'..='\u{206F}' // word joiner, invisible operators, isolates
        | '\u{3164}'            // Hangul filler
        | '\u{FEFF}'            // zero-width no-break space
        | '\u{FFA0}'            // halfwidth Hangul filler
        | '\u{1BCA0}'..='\u{1BCA3}' // shorthand format controls
        | '\u{1D173}'..='\u{1D17A}' // musical formatting
        | '\u{E0000}'..='\u{E007F}' // tags (they can smuggle invisible text)
        | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
    )
}

/// Checks a name the user typed: trimmed, one line, at most
/// [`MAX_NAME_CHARS`] characters, nothing invisible, and not mistakable for
/// an id. Returns it trimmed.
pub fn check_name(text: &str) -> Result<String, NameError> {
    let name = text.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.chars().any(is_forbidden_in_name) {
        return Err(NameError::Forbidden);
    }
    if crate::parse_invitation(name).is_ok()
        || name
            .to_ascii_lowercase()
            .starts_with(crate::INVITATION_PREFIX)
    {
        return Err(NameError::LooksLikeId);
    }
    Ok(name.to_owned())
}

/// A display name as a friend sent it, made safe to keep and show:
/// forbidden characters dropped, runs of white space made one space, cut
/// to [`MAX_NAME_CHARS`] characters. `None` when nothing is left (the
/// friend cleared their name, or sent only what was dropped).
pub fn clean_received_name(text: &str) -> Option<String> {
    let mut name = String::new();
    for word in text
        .split(|c: char| c.is_whitespace() || is_forbidden_in_name(c))
        .filter(|w| !w.is_empty())
    {
        if !name.is_empty() {
            name.push(' ');
        }
        name.push_str(word);
    }
    let name: String = name.chars().take(MAX_NAME_CHARS).collect();
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

/// What the device knows of names: its petnames for others, its own
/// display name and what its friends' devices confirmed of it, and the
/// display names friends sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Names {
    /// The user's own names for others.
    pub(crate) petnames: BTreeMap<UserId, String>,
    /// The user's display name, sent to friends.
    pub(crate) display_name: Option<String>,
    /// Bumped at each change of the display name (0: never set).
    pub(crate) revision: u32,
    /// The revision each friend's device confirmed.
    pub(crate) delivered: BTreeMap<UserId, u32>,
    /// Profile messages on their way: to whom, which revision, until when.
    pub(crate) in_flight: BTreeMap<ClientMsgId, ProfileInFlight>,
    /// The display names friends sent (already cleaned).
    pub(crate) received: BTreeMap<UserId, String>,
    /// When each friendship the data above belongs to began (the server's
    /// `since`): a friendship ended and made again while the device was
    /// away has another, and what was kept of the old one is void.
    pub(crate) since: BTreeMap<UserId, UnixMillis>,
}

/// A profile message sent and not yet confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProfileInFlight {
    pub(crate) to: UserId,
    pub(crate) revision: u32,
    pub(crate) expires: UnixMillis,
}

impl LocalState {
    /// The user's own name for `id`, if they gave one.
    pub fn petname(&self, id: &UserId) -> Option<&str> {
        self.names.petnames.get(id).map(String::as_str)
    }

    /// Every petname, by id.
    pub fn petnames(&self) -> impl Iterator<Item = (&UserId, &str)> {
        self.names.petnames.iter().map(|(id, n)| (id, n.as_str()))
    }

    /// Gives `id` the petname `name` ([`check_name`], unique on the device
    /// regardless of case), or removes it with `None`. Returns whether
    /// anything changed (so the caller knows whether to save).
    pub fn set_petname(&mut self, id: UserId, name: Option<&str>) -> Result<bool, NameError> {
        let Some(name) = name else {
            return Ok(self.names.petnames.remove(&id).is_some());
        };
        let name = self.check_petname(id, name)?;
        Ok(self.names.petnames.insert(id, name.clone()).as_ref() != Some(&name))
    }

    /// Whether `name` may become `id`'s petname, changing nothing: the
    /// name as [`LocalState::set_petname`] would keep it, or why not (the
    /// rules of [`check_name`], another's name already, or the user's own
    /// id). For front ends that check before asking the server for
    /// anything.
    pub fn check_petname(&self, id: UserId, name: &str) -> Result<String, NameError> {
        if id == self.identity.user_id() {
            return Err(NameError::OwnId);
        }
        let name = check_name(name)?;
        match self.find_petname(&name) {
            Some(holder) if holder != id => Err(NameError::Taken(holder)),
            _ => Ok(name),
        }
    }

    /// Whose petname `name` is (ignoring case and surrounding space).
    pub fn find_petname(&self, name: &str) -> Option<UserId> {
        let wanted = name.trim().to_lowercase();
        self.names
            .petnames
            .iter()
            .find(|(_, n)| n.to_lowercase() == wanted)
            .map(|(id, _)| *id)
    }

    /// The display name this user chose, if any.
    pub fn display_name(&self) -> Option<&str> {
        self.names.display_name.as_deref()
    }

    /// Sets (or with `None` clears) this user's display name
    /// ([`check_name`]); every friend is due the change
    /// ([`LocalState::profiles_due`]). Returns whether anything changed.
    pub fn set_display_name(&mut self, name: Option<&str>) -> Result<bool, NameError> {
        let name = name.map(check_name).transpose()?;
        if name == self.names.display_name {
            return Ok(false);
        }
        self.names.display_name = name;
        self.names.revision = self.names.revision.saturating_add(1);
        Ok(true)
    }

    /// The display name `friend` sent (their own claim, cleaned), if any.
    pub fn friend_display_name(&self, friend: &UserId) -> Option<&str> {
        self.names.received.get(friend).map(String::as_str)
    }

    /// Which of `friends` are due this user's display name now: those whose
    /// device has not confirmed the current one and to whom none is on its
    /// way (one that expired unconfirmed is sent again). Nothing is due
    /// while the user never chose a name.
    pub fn profiles_due(
        &self,
        friends: impl IntoIterator<Item = UserId>,
        now: UnixMillis,
    ) -> Vec<UserId> {
        let revision = self.names.revision;
        if revision == 0 {
            return Vec::new();
        }
        let cleared = self.names.display_name.is_none();
        friends
            .into_iter()
            .filter(|friend| self.names.delivered.get(friend) != Some(&revision))
            // No name now, and none ever went to this friend: nothing to
            // clear on their side.
            .filter(|friend| !cleared || self.names.delivered.contains_key(friend))
            .filter(|friend| {
                !self.names.in_flight.values().any(|sent| {
                    sent.to == *friend && sent.revision == revision && sent.expires > now
                })
            })
            .collect()
    }

    /// What to send a friend who is due the display name: the content, to
    /// seal with [`LocalState::seal`] under `client_msg_id`; the caller
    /// records it with [`LocalState::profile_sent`] once the server took it.
    pub fn profile_content(&self) -> crate::Content {
        crate::Content::Profile {
            display_name: self.names.display_name.clone(),
        }
    }

    /// Records that the current display name went to `to` as
    /// `client_msg_id`, living until `expires`; its receipt completes it.
    pub fn profile_sent(&mut self, to: UserId, client_msg_id: ClientMsgId, expires: UnixMillis) {
        // One on its way per friend: the newest replaces an older one.
        self.names.in_flight.retain(|_, sent| sent.to != to);
        self.names.in_flight.insert(
            client_msg_id,
            ProfileInFlight {
                to,
                revision: self.names.revision,
                expires,
            },
        );
    }

    /// A receipt from `by` naming `ids`: those of our profile messages are
    /// confirmed. Returns whether any was (the state changed).
    pub(crate) fn profile_receipt(&mut self, by: UserId, ids: &[ClientMsgId]) -> bool {
        let mut changed = false;
        for id in ids {
            if let Some(sent) = self.names.in_flight.get(id).copied()
                && sent.to == by
            {
                self.names.in_flight.remove(id);
                self.names.delivered.insert(by, sent.revision);
                changed = true;
            }
        }
        changed
    }

    /// Keeps the display name `friend` sent (cleaned), or forgets it when
    /// they cleared theirs.
    pub(crate) fn received_display_name(&mut self, friend: UserId, name: Option<String>) {
        match name {
            Some(name) => self.names.received.insert(friend, name),
            None => self.names.received.remove(&friend),
        };
    }

    /// Forgets what belonged to a friendship with `id` that ended: their
    /// verified mark, their display name, and which of ours they have (a
    /// new friendship sends it again). The petname is not touched: front
    /// ends drop it when the user removes the friend or drops a request,
    /// and keep it for a block (it labels the list of blocked users).
    pub fn forget_friendship(&mut self, id: UserId) -> bool {
        let verified = self.set_verified(id, false);
        let received = self.names.received.remove(&id).is_some();
        let delivered = self.names.delivered.remove(&id).is_some();
        self.names.since.remove(&id);
        let before = self.names.in_flight.len();
        self.names.in_flight.retain(|_, sent| sent.to != id);
        verified || received || delivered || before != self.names.in_flight.len()
    }

    /// Squares what is kept per friend with the server's list of friends
    /// and when each friendship began: drops it for ids no longer friends,
    /// and for friendships begun again since it was kept (the friend's
    /// device no longer has our display name). Returns whether anything
    /// changed. Call it with the list a device gets at login; a later list
    /// may lag a display name that came meanwhile.
    pub fn observe_friends(
        &mut self,
        friends: impl IntoIterator<Item = (UserId, UnixMillis)>,
    ) -> bool {
        let friends: BTreeMap<UserId, UnixMillis> = friends.into_iter().collect();
        let mut changed = false;
        for id in self.friendship_data() {
            let current = friends.get(&id);
            match (current, self.names.since.get(&id)) {
                (None, _) => changed |= self.forget_friendship(id),
                (Some(now), Some(kept)) if now != kept => changed |= self.forget_friendship(id),
                // Begun while the device was online (no start seen yet):
                // whether it was begun again meanwhile is unknown, so the
                // display name goes once more (the rest stays).
                (Some(_), None) => changed |= self.names.delivered.remove(&id).is_some(),
                (Some(_), Some(_)) => {}
            }
        }
        let before = std::mem::take(&mut self.names.since);
        self.names.since = friends;
        changed || before != self.names.since
    }

    /// The ids this state keeps friendship data for (a verified mark, a
    /// display name, a confirmed or pending profile): what to check against
    /// the server's list of friends at connect.
    pub fn friendship_data(&self) -> std::collections::BTreeSet<UserId> {
        self.verified()
            .copied()
            .chain(self.names.received.keys().copied())
            .chain(self.names.delivered.keys().copied())
            .chain(self.names.in_flight.values().map(|s| s.to))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;

    fn id() -> UserId {
        Identity::generate().user_id()
    }

    #[test]
    fn typed_names_are_one_trimmed_visible_line_that_is_not_an_id() {
        assert_eq!(check_name("  Alice Martin "), Ok("Alice Martin".into()));
        assert_eq!(check_name("李小龍 🐉"), Ok("李小龍 🐉".into()));
        assert_eq!(check_name("   "), Err(NameError::Empty));
        assert_eq!(check_name(&"a".repeat(65)), Err(NameError::TooLong));
        assert!(check_name(&"é".repeat(64)).is_ok(), "characters, not bytes");
        for bad in [
            "a\nb",
            "a\rb",
            "\x1b[2J",
            "a\u{7f}",
            "a\u{9b}b",
            "evil\u{202e}txt",
            "a\u{2066}b",
            "a\u{200b}b",
            "a\u{2028}b",
            "a\tb",
        ] {
            assert_eq!(check_name(bad), Err(NameError::Forbidden), "{bad:?}");
        }
        let someone = id();
        assert_eq!(
            check_name(&someone.to_string()),
            Err(NameError::LooksLikeId)
        );
        assert_eq!(check_name("wisp://add/x"), Err(NameError::LooksLikeId));
        assert_eq!(check_name("WISP://ADD/x"), Err(NameError::LooksLikeId));
    }

    #[test]
    fn received_names_are_cleaned_never_refused() {
        assert_eq!(
            clean_received_name("  Bob\n\x1b[31mthe\u{202e}  builder\t"),
            Some("Bob [31mthe builder".into())
        );
        assert_eq!(clean_received_name("\u{200b}\n \x07"), None);
        assert_eq!(clean_received_name(""), None);
        let long = "x".repeat(500);
        assert_eq!(clean_received_name(&long).unwrap().chars().count(), 64);
    }

    #[test]
    fn petnames_are_unique_without_regard_to_case() {
        let mut state = LocalState::new(Identity::generate());
        let (bob, carol) = (id(), id());
        assert_eq!(state.set_petname(bob, Some("Bob")), Ok(true));
        assert_eq!(state.set_petname(bob, Some("Bob")), Ok(false));
        assert_eq!(
            state.set_petname(carol, Some(" bob ")),
            Err(NameError::Taken(bob))
        );
        assert_eq!(state.find_petname("BOB"), Some(bob));
        assert_eq!(state.set_petname(bob, Some("Bobby")), Ok(true));
        assert_eq!(state.set_petname(carol, Some("Bob")), Ok(true));
        assert_eq!(state.petname(&carol), Some("Bob"));
        assert_eq!(state.set_petname(carol, None), Ok(true));
        assert_eq!(state.find_petname("bob"), None);
        let me = state.identity.user_id();
        assert_eq!(state.set_petname(me, Some("Me")), Err(NameError::OwnId));
        assert_eq!(
            state.check_petname(carol, " Bobby "),
            Err(NameError::Taken(bob))
        );
        assert_eq!(state.check_petname(bob, " Bobby "), Ok("Bobby".into()));
    }

    #[test]
    fn a_display_name_is_due_to_each_friend_until_confirmed() {
        let mut state = LocalState::new(Identity::generate());
        let (bob, carol) = (id(), id());
        let now = UnixMillis(1_000);
        assert!(state.profiles_due([bob, carol], now).is_empty(), "no name");
        assert_eq!(state.set_display_name(Some("Alice")), Ok(true));
        assert_eq!(state.set_display_name(Some("Alice")), Ok(false));
        assert_eq!(state.profiles_due([bob, carol], now), vec![bob, carol]);
        let to_bob = ClientMsgId([1; 16]);
        state.profile_sent(bob, to_bob, UnixMillis(5_000));
        assert_eq!(state.profiles_due([bob, carol], now), vec![carol]);
        // Unconfirmed by its expiry: due again.
        assert_eq!(
            state.profiles_due([bob, carol], UnixMillis(5_000)),
            vec![bob, carol]
        );
        // A receipt from someone else does not confirm it.
        assert!(!state.profile_receipt(carol, &[to_bob]));
        assert!(state.profile_receipt(bob, &[to_bob]));
        assert_eq!(state.profiles_due([bob, carol], now), vec![carol]);
        // A change is due to everyone who had the name, clearing included;
        // a friend who never had one needs no clearing.
        assert_eq!(state.set_display_name(None), Ok(true));
        assert_eq!(state.profiles_due([bob, carol], now), vec![bob]);
        // A friendship that ends forgets what the friend had.
        assert_eq!(state.set_display_name(Some("Alice again")), Ok(true));
        state.profile_sent(bob, ClientMsgId([2; 16]), UnixMillis(9_000));
        assert!(state.profile_receipt(bob, &[ClientMsgId([2; 16])]));
        assert!(state.profiles_due([bob], now).is_empty());
        assert!(state.forget_friendship(bob));
        assert_eq!(state.profiles_due([bob], now), vec![bob]);
    }

    #[test]
    fn a_friendship_made_again_while_away_voids_what_was_kept() {
        let mut state = LocalState::new(Identity::generate());
        let (bob, carol) = (id(), id());
        let now = UnixMillis(1_000);
        state.set_display_name(Some("Alice")).unwrap();
        let deliver = |state: &mut LocalState| {
            for (friend, n) in [(bob, 1), (carol, 2)] {
                state.profile_sent(friend, ClientMsgId([n; 16]), UnixMillis(9_000));
                assert!(state.profile_receipt(friend, &[ClientMsgId([n; 16])]));
                state.received_display_name(friend, Some(format!("friend {n}")));
            }
        };
        deliver(&mut state);
        // Friendships whose start this device never saw (begun while it was
        // online): the name goes once more, nothing else is dropped.
        assert!(state.observe_friends([(bob, UnixMillis(10)), (carol, UnixMillis(20))]));
        assert_eq!(state.profiles_due([bob, carol], now), vec![bob, carol]);
        assert_eq!(state.friend_display_name(&bob), Some("friend 1"));
        deliver(&mut state);
        assert!(!state.observe_friends([(bob, UnixMillis(10)), (carol, UnixMillis(20))]));
        assert!(state.profiles_due([bob, carol], now).is_empty());
        // Bob removed Alice and asked again while she was away; Carol stays.
        assert!(state.observe_friends([(bob, UnixMillis(30)), (carol, UnixMillis(20))]));
        assert_eq!(state.profiles_due([bob, carol], now), vec![bob]);
        assert_eq!(state.friend_display_name(&bob), None);
        assert_eq!(state.friend_display_name(&carol), Some("friend 2"));
        // Carol is gone.
        assert!(state.observe_friends([(bob, UnixMillis(30))]));
        assert_eq!(state.friend_display_name(&carol), None);
    }
}
