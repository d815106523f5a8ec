//! Draws a [`Chat`] with ratatui: friends and requests on the left, the
//! open conversation with each message's countdowns on the right, the
//! composer, a status line, and over them the help or a friend's safety
//! number. Fits 80×24.

use std::ops::Range;
use std::time::{Duration, Instant};

use ratatui::Frame;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line as TextLine, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

use unicode_width::UnicodeWidthChar;

use wisp_client::{SafetyNumber, UserId};

use super::model::{Chat, Focus, Line, LineState, Link, Selected, countdown, short};
use crate::safe;

const SIDEBAR_WIDTH: u16 = 24;

/// What a frame showed of the open conversation.
#[derive(Debug, Default)]
pub(crate) struct Drawn {
    /// Indices of its messages whose text is on screen.
    pub(crate) shown: Vec<usize>,
    /// How far up it can scroll.
    pub(crate) max_scroll: usize,
}

pub(crate) fn draw(frame: &mut Frame<'_>, chat: &Chat, now: Instant, now_ms: i64) -> Drawn {
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Min(5),
            Constraint::Length(3),
            Constraint::Length(1),
        ])
        .split(frame.area());
    let columns = Layout::default()
        .direction(Direction::Horizontal)
        .constraints([Constraint::Length(SIDEBAR_WIDTH), Constraint::Min(20)])
        .split(rows[0]);
    sidebar(frame, chat, columns[0]);
    let drawn = conversation(frame, chat, columns[1], now, now_ms);
    composer(frame, chat, rows[1]);
    status(frame, chat, rows[2]);
    if let Some((friend, number)) = &chat.verifying {
        let verified = chat.friend(friend).is_some_and(|f| f.verified);
        verify(frame, friend, number, verified);
    }
    if chat.help {
        help(frame);
    }
    drawn
}

fn sidebar(frame: &mut Frame<'_>, chat: &Chat, area: Rect) {
    let mut items: Vec<ListItem<'_>> = chat
        .friends
        .iter()
        .map(|friend| {
            let mark = if friend.verified { "✓" } else { " " };
            let unread = match chat.unread(&friend.id) {
                0 => String::new(),
                n => format!(" ({n})"),
            };
            let style = if chat.open == Some(friend.id) {
                Style::default().add_modifier(Modifier::BOLD)
            } else {
                Style::default()
            };
            ListItem::new(format!("{mark}{}{unread}", chat.label(&friend.id))).style(style)
        })
        .collect();
    items.extend(chat.requests.iter().map(|id| {
        let who = match chat.names.petnames.get(id) {
            Some(_) => chat.label(id),
            None => short(id)[..8].to_owned(),
        };
        ListItem::new(format!("?{who} new, asks"))
    }));
    let title = if chat.requests.is_empty() {
        format!(" Friends {}/20 ", chat.friends.len())
    } else {
        format!(
            " Friends {}/20 · {} req ",
            chat.friends.len(),
            chat.requests.len()
        )
    };
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(title))
        .highlight_style(Style::default().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default();
    if chat.focus == Focus::List && chat.friends.len() + chat.requests.len() > 0 {
        state.select(Some(chat.selected));
    }
    frame.render_stateful_widget(list, area, &mut state);
}

/// The open conversation, newest at the bottom, scrolled up by
/// `chat.scroll` rows; or, when there is none to show, a note in its place.
fn conversation(
    frame: &mut Frame<'_>,
    chat: &Chat,
    area: Rect,
    now: Instant,
    now_ms: i64,
) -> Drawn {
    let friend = match (request_in_view(chat), chat.open) {
        (Some(id), _) => {
            frame.render_widget(request(chat, id), area);
            return Drawn::default();
        }
        (None, None) => {
            frame.render_widget(welcome(chat), area);
            return Drawn::default();
        }
        (None, Some(friend)) => friend,
    };
    let width = usize::from(area.width.saturating_sub(2)).max(1);
    let height = usize::from(area.height.saturating_sub(2));
    let (mut rows, text_rows) = message_rows(chat, friend, width, now, now_ms);
    let max_scroll = rows.len().saturating_sub(height);
    let end = rows.len() - chat.scroll.min(max_scroll);
    let start = end.saturating_sub(height);
    let shown = shown(&text_rows, start..end, height);
    let title = conversation_title(chat, friend, max_scroll);
    let visible: Vec<TextLine<'_>> = rows.drain(start..end).collect();
    let paragraph =
        Paragraph::new(visible).block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(paragraph, area);
    Drawn { shown, max_scroll }
}

/// The request selected in the list, if the list has the focus.
fn request_in_view(chat: &Chat) -> Option<UserId> {
    match chat.selection() {
        Some(Selected::Request(id)) if chat.focus == Focus::List => Some(id),
        _ => None,
    }
}

/// A friend request, with the whole id to check against what they gave
/// you.
fn request(chat: &Chat, id: UserId) -> Paragraph<'static> {
    let named = match chat.names.petnames.get(&id) {
        Some(_) => format!(" (your name for them: {})", chat.label(&id)),
        None => String::new(),
    };
    let text = format!(
        "A friend request from\n\n{id}{named}\n\nan identity you have not verified. Check \
         the id against the one they gave you (someone who reinstalled Wisp comes back \
         under a new id). a accepts, d declines, n names them."
    );
    Paragraph::new(text)
        .wrap(Wrap { trim: true })
        .block(Block::default().borders(Borders::ALL).title(" Request "))
}

/// What to do while no conversation is open.
fn welcome(chat: &Chat) -> Paragraph<'static> {
    let text = if chat.friends.is_empty() && chat.requests.is_empty() {
        "No friends yet. Share `wisp invite` with someone, or add them with `wisp friend add ID`."
    } else {
        "Pick a friend with ↑/↓ and Enter; friend requests are the entries marked with a ?"
    };
    Paragraph::new(text)
        .wrap(Wrap { trim: true })
        .block(Block::default().borders(Borders::ALL).title(" Wisp "))
}

/// Every screen row of the conversation with `friend` (each message's
/// text cut to `width`, then its timers), and for each message the rows
/// of its text.
fn message_rows(
    chat: &Chat,
    friend: UserId,
    width: usize,
    now: Instant,
    now_ms: i64,
) -> (Vec<TextLine<'static>>, Vec<Range<usize>>) {
    let mut rows: Vec<TextLine<'static>> = Vec::new();
    let mut text_rows = Vec::new();
    for line in chat.lines(&friend) {
        let (marker, text, style) = message_text(line, chat.covered());
        let first = rows.len();
        // The message's own line breaks and the rows it wraps onto are
        // indented under its marker: only the chat starts a row at ◂ or ▸.
        let shown = safe::wrap_block(marker, &text, Some(width));
        rows.extend(
            shown
                .split('\n')
                .map(|piece| TextLine::from(Span::styled(piece.to_owned(), style))),
        );
        text_rows.push(first..rows.len());
        rows.push(timer_line(line, now, now_ms));
    }
    (rows, text_rows)
}

/// The messages (indices) shown in the rows `view` of a pane `height`
/// rows high: all of their text is on screen, or as much of it as the
/// pane can hold.
fn shown(text_rows: &[Range<usize>], view: Range<usize>, height: usize) -> Vec<usize> {
    text_rows
        .iter()
        .enumerate()
        .filter(|(_, text)| {
            let visible = text
                .end
                .min(view.end)
                .saturating_sub(text.start.max(view.start));
            visible > 0 && (visible == text.len() || visible == height)
        })
        .map(|(index, _)| index)
        .collect()
}

/// The conversation's title: who, whether verified, and whether newer
/// messages are below.
fn conversation_title(chat: &Chat, friend: UserId, max_scroll: usize) -> String {
    let verified = chat.friend(&friend).is_some_and(|f| f.verified);
    let named = match chat.label(&friend) {
        label if label == short(&friend) => label,
        label => format!("{label} · {}", short(&friend)),
    };
    let title = format!(
        " {named} {} ",
        if verified {
            "✓ verified"
        } else {
            "· not verified (v in the list)"
        }
    );
    if chat.scroll > 0 && max_scroll > 0 {
        format!("{title}· PgDn for newer ")
    } else {
        title
    }
}

/// A message as shown: its marker, its text (under an overlay, unread text
/// stays hidden: it would not count as read), its style.
fn message_text(line: &Line, covered: bool) -> (&'static str, String, Style) {
    let italic = Style::default().add_modifier(Modifier::ITALIC);
    match &line.state {
        LineState::Unread(_) if covered => ("◂ ", "(new message)".to_owned(), italic),
        LineState::ExpiredUnread { .. } => ("▸ ", "(message expired unread)".to_owned(), italic),
        _ if line.outgoing() => ("▸ ", line.text.to_string(), Style::default()),
        _ => (
            "◂ ",
            line.text.to_string(),
            Style::default().add_modifier(Modifier::BOLD),
        ),
    }
}

fn timer_line(line: &Line, now: Instant, now_ms: i64) -> TextLine<'static> {
    let ceiling = Duration::from_millis(u64::try_from(line.expires_unix_ms - now_ms).unwrap_or(0));
    let gone = format!("gone in {}", countdown(ceiling));
    let text = match &line.state {
        LineState::Unread(_) => format!("  unread · {gone}"),
        LineState::Opened { burn_at: Some(at) } => format!(
            "  read · burns in {} · {gone}",
            countdown(at.saturating_duration_since(now))
        ),
        LineState::Opened { burn_at: None } => format!("  read · {gone}"),
        LineState::Sending { .. } => "  sending…".to_owned(),
        LineState::Sent { .. } => format!("  sent · not read yet · {gone}"),
        LineState::Read { .. } => "  read · burned".to_owned(),
        LineState::ExpiredUnread { .. } => "  expired unread".to_owned(),
        LineState::Failed { why, .. } => format!("  not sent: {}", safe::line(why)),
    };
    TextLine::from(Span::styled(
        text,
        Style::default().add_modifier(Modifier::DIM),
    ))
}

fn composer(frame: &mut Frame<'_>, chat: &Chat, area: Rect) {
    let burns = match chat.view {
        Some(view) => format!("burns {}s after read", view.as_secs()),
        None => "burns at its hour's end".to_owned(),
    };
    let (title, typed) = match (&chat.naming, chat.open, chat.focus) {
        (Some(naming), _, _) => {
            let whose = match naming.of {
                Some(id) => format!("your name for {} (stays on this device)", short(&id)),
                None => "your display name (your friends see it)".to_owned(),
            };
            (
                format!(" {whose} · Enter saves, empty removes · Esc cancels "),
                safe::line(&naming.text),
            )
        }
        (None, Some(_), Focus::Compose) => (
            format!(" Message · {burns} · Enter sends · Esc list "),
            chat.composer.to_string(),
        ),
        (None, Some(_), _) => (
            format!(" Message · {burns} · Tab to write "),
            chat.composer.to_string(),
        ),
        (None, None, _) => (" Message ".to_owned(), String::new()),
    };
    // The end of what was typed, so the cursor stays in view.
    let width = usize::from(area.width.saturating_sub(3));
    let mut cells = 0;
    let mut tail: Vec<char> = Vec::new();
    for c in typed.chars().rev() {
        let w = c.width().unwrap_or(0);
        if cells + w > width {
            break;
        }
        cells += w;
        tail.push(c);
    }
    let shown: String = tail.into_iter().rev().collect();
    let paragraph =
        Paragraph::new(shown).block(Block::default().borders(Borders::ALL).title(title));
    frame.render_widget(paragraph, area);
    if chat.focus == Focus::Naming || (chat.focus == Focus::Compose && chat.open.is_some()) {
        let x = area.x + 1 + u16::try_from(cells).unwrap_or(0);
        frame.set_cursor_position((x.min(area.right().saturating_sub(2)), area.y + 1));
    }
}

fn status(frame: &mut Frame<'_>, chat: &Chat, area: Rect) {
    let link = match &chat.link {
        Link::Connected if chat.reconnects > 0 => {
            format!("● connected ({} reconnects)", chat.reconnects)
        }
        Link::Connected => "● connected".to_owned(),
        Link::Reconnecting(Some(reason)) => format!("○ reconnecting ({})", safe::line(reason)),
        Link::Reconnecting(None) => "○ reconnecting…".to_owned(),
    };
    let help = if chat.focus == Focus::Compose {
        "F1 help"
    } else {
        "? help"
    };
    let tail = match &chat.notice {
        Some((notice, _)) => safe::line(notice),
        None => format!("you are {} · {help} · Ctrl-C quits", short(&chat.me)),
    };
    frame.render_widget(
        Paragraph::new(format!("{link} │ {tail}"))
            .style(Style::default().add_modifier(Modifier::REVERSED)),
        area,
    );
}

const HELP: &str = "\
In the list
  ↑ ↓ / k j   pick a friend or request
  Enter       open the conversation
  Tab         back to the open conversation
  a / d       accept / decline a request
  v           safety number, to verify a friend
  n / N       your name for them / your own name
In a conversation
  Enter       send
  PgUp PgDn   scroll
  Esc / Tab   back to the list
  F1          this help
  Ctrl-C, q in the list  quit (twice if unread)

Messages burn once read: a received message
vanishes when its burn timer ends; every
message is gone an hour after sending at
most, read or not. Nothing is written to
disk, and the screen is cleared on exit.

?, Esc or F1 closes this help.";

fn help(frame: &mut Frame<'_>) {
    let popup = centred(frame.area(), 50, 24);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(HELP).block(Block::default().borders(Borders::ALL).title(" Help ")),
        popup,
    );
}

/// The safety number with `friend`, to compare with the one on their
/// screen, and whether it is marked as matching.
fn verify(frame: &mut Frame<'_>, friend: &UserId, number: &SafetyNumber, verified: bool) {
    let groups: Vec<&str> = number.groups().collect();
    let mut text = vec![
        TextLine::from("Your safety number with"),
        TextLine::from(friend.to_string()),
        TextLine::from(""),
    ];
    text.extend(groups.chunks(4).map(|row| {
        TextLine::from(Span::styled(
            row.join(" "),
            Style::default().add_modifier(Modifier::BOLD),
        ))
        .centered()
    }));
    text.extend([
        TextLine::from(""),
        TextLine::from(if verified {
            "✓ marked verified: it matched"
        } else {
            "not verified yet"
        }),
        TextLine::from(""),
        TextLine::from("Compare it with the number on their screen, in person or on a call (`wisp verify ID` draws it as a QR code to scan). Mark it only if every digit matches."),
        TextLine::from(""),
        TextLine::from("m marks verified · u unmarks · Esc closes"),
    ]);
    let popup = centred(frame.area(), 52, 17);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" Verify ")),
        popup,
    );
}

/// A box of at most `width`×`height` in the middle of `area`.
fn centred(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use ratatui::backend::TestBackend;

    use super::super::model::tests::{chat_with, id, message};
    use super::*;
    use wisp_client::Event;

    /// Draws `chat` on an 80×24 test terminal: what the frame reports, and
    /// the screen as text, one row per line.
    fn draw_once(chat: &Chat) -> (Drawn, String) {
        let mut terminal = ratatui::Terminal::new(TestBackend::new(80, 24)).unwrap();
        let mut drawn = Drawn::default();
        terminal
            .draw(|frame| drawn = draw(frame, chat, Instant::now(), 0))
            .unwrap();
        let buffer = terminal.backend().buffer();
        let screen = (0..24)
            .map(|y| (0..80).map(|x| buffer[(x, y)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n");
        (drawn, screen)
    }

    #[test]
    fn the_safety_number_fits_80_by_24_whole_and_hides_unread_text() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        chat.on_event(
            Event::Message(message(bob, "secret words", 0, None)),
            Instant::now(),
        );
        chat.open(bob);
        chat.focus = Focus::List;
        chat.verify_selected(Instant::now());
        let number = chat.verifying.as_ref().unwrap().1.clone();
        let (drawn, screen) = draw_once(&chat);
        let groups: Vec<&str> = number.groups().collect();
        for row in groups.chunks(4) {
            assert!(screen.contains(&row.join(" ")), "{row:?} in\n{screen}");
        }
        assert!(screen.contains(&bob.to_string()), "the whole id:\n{screen}");
        assert!(screen.contains("not verified yet"), "{screen}");
        assert!(screen.contains("m marks verified"), "{screen}");
        assert!(
            !screen.contains("secret words"),
            "unread text stays hidden:\n{screen}"
        );
        assert!(
            chat.reveal(&drawn.shown, Instant::now()).is_empty(),
            "nothing is read under it"
        );

        chat.set_roster(vec![(bob, true)], vec![]);
        assert!(draw_once(&chat).1.contains("✓ marked verified"));
    }

    #[test]
    fn only_messages_whose_text_is_on_screen_count_as_shown() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let now = Instant::now();
        // 30 messages of 2 text rows each (plus a timer row): 90 rows for
        // a pane of 18.
        for n in 0..30 {
            let text = format!("{n:02} {}", "x".repeat(70));
            chat.on_event(Event::Message(message(bob, &text, 0, None)), now);
        }
        chat.open(bob);
        let (drawn, _) = draw_once(&chat);
        assert_eq!(drawn.shown, (24..30).collect::<Vec<_>>(), "the newest six");
        assert_eq!(drawn.max_scroll, 90 - 18);

        chat.scroll = 4;
        let (drawn, _) = draw_once(&chat);
        // Rows 68..86: message 22's text (66..68) is off, 23's (69..71) on,
        // 28's (84..86) on, 29's gone below.
        assert_eq!(drawn.shown, (23..29).collect::<Vec<_>>());

        chat.help = true;
        chat.scroll = 0;
        assert!(
            chat.reveal(&draw_once(&chat).0.shown, now).is_empty(),
            "nothing is read under the help"
        );
    }

    #[test]
    fn a_hostile_message_shows_as_inert_text_under_its_sender() {
        let bob = id(2);
        let mut chat = chat_with(bob);
        let hostile = "see you\n▸ I never said this\r◂ forged\x1b[2J\x1b]0;owned\x07 \u{202e}evil";
        chat.on_event(
            Event::Message(message(bob, hostile, 0, None)),
            Instant::now(),
        );
        chat.open(bob);
        let (drawn, screen) = draw_once(&chat);
        assert_eq!(drawn.shown, vec![0]);
        let rows: Vec<String> = screen
            .lines()
            .map(|row| row.chars().skip(usize::from(SIDEBAR_WIDTH) + 1).collect())
            .collect();
        let starts = |marker: &str| rows.iter().filter(|r| r.starts_with(marker)).count();
        assert_eq!(starts("◂"), 1, "one message from Bob:\n{screen}");
        assert_eq!(starts("▸"), 0, "none from us:\n{screen}");
        assert!(screen.contains("    ▸ I never said this"), "{screen}");
        assert!(screen.contains(r"\x1b[2J\x1b]0;owned\x07"), "{screen}");
        assert!(screen.contains(r"\u{202e}evil"), "{screen}");
        assert!(
            !screen.chars().any(|c| c.is_control() && c != '\n'),
            "{screen:?}"
        );
    }

    #[test]
    fn names_show_in_the_list_and_the_title_marked_when_they_are_theirs() {
        let (bob, carol) = (id(2), id(3));
        let mut chat = chat_with(bob);
        chat.set_roster(vec![(bob, false), (carol, false)], vec![]);
        chat.names.petnames.insert(bob, "Bob".into());
        chat.names.theirs.insert(bob, "Robert".into());
        chat.names.theirs.insert(carol, "Carol\u{202e}x".into());
        chat.open(bob);
        let (_, screen) = draw_once(&chat);
        assert!(screen.contains(" Bob · "), "the title:\n{screen}");
        assert!(!screen.contains("Robert"), "a petname wins:\n{screen}");
        assert!(
            screen.contains(r"~Carol\u{202e}x"),
            "theirs, marked:\n{screen}"
        );
    }
}
