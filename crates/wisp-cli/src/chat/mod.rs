//! `wisp chat`: a full-screen terminal chat on the SDK's event stream.
//!
//! Two tasks: this one owns the terminal and the [`model::Chat`] state; a
//! second owns the [`Messenger`], turning [`model::Action`]s into SDK calls
//! and SDK events into [`model::Update`]s. The screen is the terminal's
//! alternate screen, so no message text stays in the scrollback after exit,
//! and no message text is ever written to disk.

mod model;
mod ui;

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use ratatui::crossterm::event::{
    DisableBracketedPaste, EnableBracketedPaste, Event as TermEvent, EventStream, KeyCode,
    KeyEvent, KeyEventKind, KeyModifiers,
};
use ratatui::crossterm::execute;
use ratatui::crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use tokio::sync::mpsc;
use wisp_client::{Event, Messenger, UserId, now_ms};

use crate::output::CliError;
use model::{Action, Chat, Focus, NameBook, Selected, Update};

/// How often countdowns are redrawn and timers checked.
const TICK: Duration = Duration::from_millis(250);

/// Runs the chat until the user quits. `open` is a friend whose
/// conversation opens at start; `ttl` and `view` apply to what is sent.
pub(crate) async fn run(
    messenger: Messenger,
    open: Option<UserId>,
    ttl: Duration,
    view: Option<Duration>,
) -> Result<(), CliError> {
    let me = messenger.user_id();
    // Unbounded: the screen never waits on the network.
    let (actions_tx, actions_rx) = mpsc::unbounded_channel();
    let (updates_tx, mut updates) = mpsc::channel(256);
    let driver = tokio::spawn(drive(messenger, actions_rx, updates_tx, ttl, view));
    let mut signals = Signals::new()?;

    let mut screen =
        Screen::enter().map_err(|e| CliError::failed(format!("cannot use this terminal: {e}")))?;
    let mut chat = Chat::new(me, view);
    let mut pending_open = open;
    let mut keys = EventStream::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let outcome = loop {
        let read = match show(&mut screen, &mut chat) {
            Ok(read) => read,
            Err(error) => break Err(error),
        };
        if !read.is_empty() {
            for action in read {
                let _ = actions_tx.send(action);
            }
            continue;
        }
        if chat.quit {
            break Ok(());
        }
        let step = tokio::select! {
            _ = tick.tick() => {
                chat.tick(Instant::now(), now_ms().0);
                Step::Continue(Vec::new())
            }
            () = signals.next() => {
                chat.quit = true;
                Step::Continue(Vec::new())
            }
            input = keys.next() => on_input(&mut chat, input),
            update = updates.recv() => on_message(&mut chat, update, &mut pending_open),
        };
        match step {
            Step::Continue(actions) => {
                for action in actions {
                    let _ = actions_tx.send(action);
                }
            }
            Step::Break(outcome) => break outcome,
        }
    };
    drop(actions_tx);
    drop(screen);
    // The driver sends the receipts still queued, confirms what was shown
    // (burning it on the server), and ends once it sees the channel closed.
    // A forged key seen meanwhile is repeated on stderr and in the exit code.
    let forged = tokio::time::timeout(Duration::from_secs(5), driver).await;
    match forged {
        Ok(Ok(Some(warning))) if outcome.is_ok() => Err(warning),
        _ => outcome,
    }
}

/// After an input or an update: go on, with actions for the messenger, or
/// end the chat with this outcome.
type Step = ControlFlow<Result<(), CliError>, Vec<Action>>;

/// Draws the chat. What is on screen now is read: returns the receipts
/// that go out for it (its burn timers start).
fn show(screen: &mut Screen, chat: &mut Chat) -> Result<Vec<Action>, CliError> {
    let now = Instant::now();
    let mut drawn = ui::Drawn::default();
    screen
        .terminal
        .draw(|frame| drawn = ui::draw(frame, chat, now, now_ms().0))
        .map_err(|error| CliError::failed(format!("cannot draw: {error}")))?;
    chat.scroll = chat.scroll.min(drawn.max_scroll);
    Ok(chat.reveal(&drawn.shown, now))
}

/// Terminal input: a key, pasted text, or the end of input.
fn on_input(chat: &mut Chat, input: Option<std::io::Result<TermEvent>>) -> Step {
    match input {
        Some(Ok(TermEvent::Key(key))) => Step::Continue(on_key(chat, key)),
        Some(Ok(TermEvent::Paste(text))) => {
            if chat.focus == Focus::Compose && chat.open.is_some() {
                chat.paste(&text);
            } else if chat.focus == Focus::Naming {
                text.chars().for_each(|c| chat.type_name(c));
            }
            Step::Continue(Vec::new())
        }
        Some(Ok(_)) => Step::Continue(Vec::new()),
        Some(Err(error)) => Step::Break(Err(CliError::failed(format!(
            "terminal input failed: {error}"
        )))),
        None => Step::Break(Ok(())),
    }
}

/// An update from the messenger's task (`None`: it ended). The first
/// friend list opens the conversation asked for at start, `pending_open`.
fn on_message(chat: &mut Chat, update: Option<Update>, pending_open: &mut Option<UserId>) -> Step {
    let Some(update) = update else {
        return Step::Break(Err(CliError::failed("the connection to the server ended")));
    };
    if let Update::Event(Event::Superseded { .. }) = update {
        // Reconnecting here would close another device's session in turn.
        return Step::Break(Err(CliError::failed(
            "this chat was closed: your account logged in on more devices than the server allows, \
             and this was the oldest session; run `wisp chat` again to take it back",
        )));
    }
    let roster = matches!(update, Update::Roster { .. });
    let actions = on_update(chat, update);
    if roster && let Some(friend) = pending_open.take() {
        if chat.friend(&friend).is_some() {
            chat.open(friend);
        } else {
            let who = chat.label(&friend);
            chat.say(format!("{who} is not your friend (yet)"), Instant::now());
        }
    }
    Step::Continue(actions)
}

fn on_update(chat: &mut Chat, update: Update) -> Vec<Action> {
    let now = Instant::now();
    match update {
        Update::Event(event) => chat.on_event(event, now),
        Update::Sent { local, outcome } => {
            chat.on_sent(local, outcome, now);
            Vec::new()
        }
        Update::Roster { friends, incoming } => {
            chat.set_roster(friends, incoming);
            Vec::new()
        }
        Update::Notice(text) => {
            chat.say(text, now);
            Vec::new()
        }
        Update::Verified { friend, verified } => {
            chat.set_verified(friend, verified, now);
            Vec::new()
        }
        Update::Names(names) => {
            chat.names = names;
            Vec::new()
        }
    }
}

fn on_key(chat: &mut Chat, key: KeyEvent) -> Vec<Action> {
    if key.kind != KeyEventKind::Press {
        return Vec::new();
    }
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c' | 'q')) {
        chat.ask_quit(Instant::now());
        return Vec::new();
    }
    if chat.help {
        if matches!(key.code, KeyCode::Esc | KeyCode::F(1) | KeyCode::Char('?')) {
            chat.help = false;
        }
        return Vec::new();
    }
    if key.code == KeyCode::F(1) {
        chat.help = true;
        return Vec::new();
    }
    if let Some((friend, _)) = &chat.verifying {
        let friend = *friend;
        match key.code {
            KeyCode::Char(c @ ('m' | 'u')) => {
                return vec![Action::SetVerified {
                    friend,
                    verified: c == 'm',
                }];
            }
            KeyCode::Esc | KeyCode::Char('v' | 'q') => chat.verifying = None,
            _ => {}
        }
        return Vec::new();
    }
    match chat.focus {
        Focus::List => match key.code {
            KeyCode::Up | KeyCode::Char('k') => chat.select(-1),
            KeyCode::Down | KeyCode::Char('j') => chat.select(1),
            KeyCode::Char('?') => chat.help = true,
            KeyCode::Char('q') => chat.ask_quit(Instant::now()),
            KeyCode::Tab if chat.open.is_some() => chat.focus = Focus::Compose,
            KeyCode::Enter => match chat.selection() {
                Some(Selected::Friend(friend)) => chat.open(friend),
                Some(Selected::Request(_)) => {
                    chat.say(
                        "a accepts this request, d declines it".to_owned(),
                        Instant::now(),
                    );
                }
                None => {}
            },
            KeyCode::Char('v') => chat.verify_selected(Instant::now()),
            KeyCode::Char('n') => chat.start_naming(true),
            KeyCode::Char('N') => chat.start_naming(false),
            KeyCode::Char(c @ ('a' | 'd')) => {
                if let Some(Selected::Request(id)) = chat.selection() {
                    return vec![if c == 'a' {
                        Action::Accept(id)
                    } else {
                        Action::Decline(id)
                    }];
                }
            }
            _ => {}
        },
        Focus::Compose => match key.code {
            KeyCode::Esc | KeyCode::Tab => chat.focus = Focus::List,
            KeyCode::PageUp => chat.scroll += 5,
            KeyCode::PageDown => chat.scroll = chat.scroll.saturating_sub(5),
            KeyCode::Enter => return chat.submit(now_ms().0).into_iter().collect(),
            KeyCode::Backspace => {
                chat.composer.pop();
            }
            KeyCode::Char(c) if !ctrl => chat.type_char(c),
            _ => {}
        },
        Focus::Naming => match key.code {
            KeyCode::Esc => {
                chat.finish_naming(false);
            }
            KeyCode::Enter => return chat.finish_naming(true).into_iter().collect(),
            KeyCode::Backspace => {
                if let Some(naming) = &mut chat.naming {
                    naming.text.pop();
                }
            }
            KeyCode::Char(c) if !ctrl => chat.type_name(c),
            _ => {}
        },
    }
    Vec::new()
}

/// Owns the messenger: performs actions, forwards events. `next_event` is
/// cancel-safe, so an action may interrupt the wait for one. Returns the
/// warning for a forged key, if a send met one.
async fn drive(
    mut messenger: Messenger,
    mut actions: mpsc::UnboundedReceiver<Action>,
    updates: mpsc::Sender<Update>,
    ttl: Duration,
    view: Option<Duration>,
) -> Option<CliError> {
    let mut forged = None;
    roster(&messenger, &updates).await;
    loop {
        let update = tokio::select! {
            biased;
            action = actions.recv() => match action {
                Some(action) => {
                    perform(&mut messenger, action, &updates, (ttl, view), &mut forged).await
                }
                None => break,
            },
            event = messenger.next_event() => match event {
                Some(event) => {
                    if matches!(event, Event::DisplayName { .. }) {
                        let _ = updates.send(Update::Names(names(&messenger))).await;
                    }
                    Some(Update::Event(event))
                }
                None => break,
            },
        };
        if let Some(update) = update
            && updates.send(update).await.is_err()
        {
            break;
        }
    }
    let _ = messenger.confirm().await;
    forged
}

async fn perform(
    messenger: &mut Messenger,
    action: Action,
    updates: &mpsc::Sender<Update>,
    (ttl, view): (Duration, Option<Duration>),
    forged: &mut Option<CliError>,
) -> Option<Update> {
    match action {
        Action::Send { local, to, text } => {
            let outcome = messenger
                .send_text(to, &text, ttl, view)
                .await
                .map_err(|e| {
                    // A forged key is a warning, shown here and again on exit.
                    let error = CliError::from(e);
                    if error.exit_code() != crate::output::EXIT_FORGED_KEY {
                        return error.to_string();
                    }
                    let shown = format!("{}: {error}", error.label());
                    *forged = Some(error);
                    shown
                });
            Some(Update::Sent { local, outcome })
        }
        Action::MarkRead(messages) => messenger
            .mark_read_all(&messages)
            .await
            .err()
            .map(|e| Update::Notice(format!("could not send a read receipt: {e}"))),
        Action::Accept(id) => {
            // The new friend gets this user's display name too.
            let done = messenger.accept_friend(id).await;
            roster(messenger, updates).await;
            done.err()
                .map(|e| Update::Notice(format!("could not accept: {e}")))
        }
        Action::Decline(id) => {
            let done = messenger.client().decline_friend(id).await;
            roster(messenger, updates).await;
            done.err()
                .map(|e| Update::Notice(format!("could not decline: {e}")))
        }
        Action::SetVerified { friend, verified } => {
            // Saved in this process's key store: a `wisp verify --mark`
            // beside the chat would find the store locked.
            Some(match messenger.set_verified(friend, verified) {
                Ok(()) => Update::Verified { friend, verified },
                Err(e) => Update::Notice(format!("could not save the mark: {e}")),
            })
        }
        Action::Refresh => {
            roster(messenger, updates).await;
            None
        }
        Action::Rename { id, name } => Some(match messenger.set_petname(id, name.as_deref()) {
            Ok(()) => {
                let _ = updates.send(Update::Names(names(messenger))).await;
                Update::Notice(match name {
                    Some(_) => "name saved on this device (never sent anywhere)".to_owned(),
                    None => "name removed".to_owned(),
                })
            }
            Err(e) => Update::Notice(format!("name not saved: {e}")),
        }),
        Action::SetDisplayName(name) => {
            let done = messenger.set_display_name(name.as_deref()).await;
            let _ = updates.send(Update::Names(names(messenger))).await;
            Some(Update::Notice(match (done, name) {
                (Ok(()), Some(_)) => {
                    "your display name is saved and goes to your friends, encrypted".to_owned()
                }
                (Ok(()), None) => "your display name is removed; your friends are told".to_owned(),
                (Err(e), _) => format!("display name not saved: {e}"),
            }))
        }
    }
}

/// The names the messenger's key store holds, for the screen.
fn names(messenger: &Messenger) -> NameBook {
    let state = messenger.state();
    NameBook {
        petnames: state
            .petnames()
            .map(|(id, name)| (*id, name.to_owned()))
            .collect(),
        theirs: state
            .friendship_data()
            .into_iter()
            .filter_map(|id| Some((id, state.friend_display_name(&id)?.to_owned())))
            .collect(),
        own: state.display_name().map(str::to_owned),
    }
}

/// Sends the friend list (with verified marks) and incoming requests.
async fn roster(messenger: &Messenger, updates: &mpsc::Sender<Update>) {
    let client = messenger.client();
    let update = match tokio::try_join!(client.friends(), client.friend_requests()) {
        Ok((friends, pending)) => Update::Roster {
            friends: friends
                .into_iter()
                .map(|f| (f.id, messenger.is_verified(&f.id)))
                .collect(),
            incoming: pending.incoming.into_iter().map(|r| r.id).collect(),
        },
        Err(error) => Update::Notice(format!("could not load friends: {error}")),
    };
    let _ = updates.send(Update::Names(names(messenger))).await;
    let _ = updates.send(update).await;
}

/// The terminal in raw mode on the alternate screen; restored on drop,
/// and by the panic hook if the chat panics.
struct Screen {
    terminal: Terminal<CrosstermBackend<std::io::Stdout>>,
}

impl Screen {
    fn enter() -> std::io::Result<Self> {
        let terminal = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        enable_raw_mode()?;
        // From here on the guard restores the terminal, whatever fails next.
        let mut screen = Self { terminal };
        execute!(
            screen.terminal.backend_mut(),
            EnterAlternateScreen,
            EnableBracketedPaste
        )?;
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Off the alternate screen first, so the report is readable;
            // then end the process: drawing must not go on on the normal
            // screen (and into its scrollback).
            leave();
            previous(info);
            std::process::exit(101);
        }));
        screen.terminal.clear()?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        // Wiped before leaving, though the alternate screen keeps nothing.
        let _ = self.terminal.clear();
        let _ = self.terminal.show_cursor();
        leave();
    }
}

fn leave() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen
    );
}

/// SIGTERM, SIGHUP and SIGINT end the chat like Ctrl-C (the terminal is
/// restored, what was shown is confirmed), instead of killing it raw.
struct Signals {
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self, CliError> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| {
            signal(kind).map_err(|e| CliError::failed(format!("cannot listen for signals: {e}")))
        };
        Ok(Self {
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
            int: listen(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

impl std::fmt::Debug for Signals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signals")
    }
}

impl std::fmt::Debug for Screen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Screen")
    }
}
