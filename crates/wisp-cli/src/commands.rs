//! What each command does, on top of the SDK.

use std::path::PathBuf;

use serde_json::json;
use std::time::Duration;

use wisp_client::{
    Client, ClientError, ConnectOptions, ErrorCode, Event, Identity, Invitation, InvitationToken,
    KdfParams, KeyStore, KeyStoreError, LocalState, Messenger, NameError, SafetyNumber, UnixMillis,
    UserId, check_name, now_ms, parse_invitation, parse_invitation_link, signed_invitation_link,
};
use wisp_proto::limits::{FRIEND_REQUEST_LIFETIME, INVITATION_LIFETIME, MAX_MESSAGE_TTL};
use zeroize::Zeroizing;

use crate::args::{AccountCommand, Cli, Command, FriendCommand, ProfileCommand};
use crate::output::{CliError, json_line, named, who};
use crate::safe;

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let home = home_dir(cli.home)?;
    let remote = Remote::new(cli.server, cli.ca_cert);
    match cli.command {
        Command::Register => register(&home, &remote).await,
        Command::Id => {
            let state = peek_store(&home).await?;
            println!("{}", state.identity.user_id());
            Ok(())
        }
        Command::Invite { json } => invite(&home, json).await,
        Command::Verify {
            id,
            mark,
            unmark,
            json,
        } => {
            let change = match (mark, unmark) {
                (true, _) => Some(true),
                (_, true) => Some(false),
                _ => None,
            };
            verify(&home, &remote, &id, change, json).await
        }
        Command::Friend(command) => friend(&home, &remote, command).await,
        Command::Profile(command) => profile(&home, &remote, command).await,
        Command::Account(AccountCommand::Delete { yes }) => {
            delete_account(&home, &remote, yes).await
        }
        Command::Send {
            id,
            text,
            ttl,
            view,
        } => send(&home, &remote, &id, &text, ttl, view).await,
        Command::Recv { wait, json } => recv(&home, &remote, wait, json).await,
        Command::Chat { id, view, ttl } => chat(&home, &remote, id.as_deref(), view, ttl).await,
    }
}

/// The server to talk to: its URL, and what to trust for `wss://`. The CA
/// file is read when a command first connects, so commands that work
/// offline (`id`, `invite`) do not depend on it.
#[derive(Debug)]
pub struct Remote {
    url: String,
    ca_cert: Option<PathBuf>,
    options: std::sync::OnceLock<ConnectOptions>,
}

impl Remote {
    /// The server at `url`, trusting the system's roots and the CA
    /// certificates in the PEM file `ca_cert` if given.
    pub fn new(url: String, ca_cert: Option<PathBuf>) -> Self {
        Self {
            url,
            ca_cert,
            options: std::sync::OnceLock::new(),
        }
    }

    /// The connect options, built once (every connection of the command,
    /// and every reconnect of the chat, shares its TLS configuration).
    fn options(&self) -> Result<&ConnectOptions, CliError> {
        if let Some(options) = self.options.get() {
            return Ok(options);
        }
        let options = match &self.ca_cert {
            Some(path) => ConnectOptions::new().with_ca_file(path)?,
            None => ConnectOptions::new(),
        };
        Ok(self.options.get_or_init(|| options))
    }
}

async fn messenger(home: &std::path::Path, server: &Remote) -> Result<Messenger, CliError> {
    let (store, state) = open_store(home).await?;
    if state.server_name.is_none() {
        return Err(CliError::failed(
            "this identity is not registered yet; run `wisp register` first",
        ));
    }
    Ok(Messenger::connect_with(&server.url, server.options()?, store, state).await?)
}

async fn send(
    home: &std::path::Path,
    server: &Remote,
    to: &str,
    text: &str,
    ttl: u64,
    view: u64,
) -> Result<(), CliError> {
    let ttl = checked_ttl(ttl)?;
    let mut messenger = messenger(home, server).await?;
    let to = resolve(messenger.state(), to)?;
    let view = (view > 0).then(|| Duration::from_secs(view));
    let sent = messenger.send_text(to, text, ttl, view).await?;
    messenger.settle().await?;
    println!(
        "sent to {}; it burns once read and expires at {}",
        who(messenger.state(), &to),
        rfc3339(sent.expires_unix_ms)
    );
    Ok(())
}

async fn chat(
    home: &std::path::Path,
    server: &Remote,
    open: Option<&str>,
    view: u64,
    ttl: u64,
) -> Result<(), CliError> {
    let ttl = checked_ttl(ttl)?;
    let messenger = messenger(home, server).await?;
    let open = open.map(|id| resolve(messenger.state(), id)).transpose()?;
    let view = (view > 0).then(|| Duration::from_secs(view));
    crate::chat::run(messenger, open, ttl, view).await
}

async fn recv(
    home: &std::path::Path,
    server: &Remote,
    wait: u64,
    json: bool,
) -> Result<(), CliError> {
    let mut messenger = messenger(home, server).await?;
    // Until the mailbox is drained, wait as long as it takes (bounded by
    // the request timeout of the connection); then `wait` seconds more.
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        // Burn what was shown before waiting: a confirmation cut off by the
        // deadline below would leave the process to exit before the server
        // answered.
        messenger.confirm().await?;
        let next = match deadline {
            None => tokio::time::timeout(Duration::from_secs(60), messenger.next_event()).await,
            Some(at) => tokio::time::timeout_at(at, messenger.next_event()).await,
        };
        let event = match next {
            Ok(Some(event)) => event,
            Ok(None) => return Err(CliError::from(ClientError::Closed(None))),
            Err(_) if deadline.is_some() => {
                // What the deadline cut off on its way out is shown first:
                // settling acknowledges (burns) it.
                while let Some(event) = messenger.queued_event() {
                    show_received(&mut messenger, event, json).await?;
                }
                // Receipts for friends' display names go before exiting.
                messenger.settle().await?;
                return Ok(());
            }
            Err(_) => {
                return Err(CliError::from(ClientError::Timeout(Duration::from_secs(
                    60,
                ))));
            }
        };
        if show_received(&mut messenger, event, json).await? {
            deadline = Some(tokio::time::Instant::now() + Duration::from_secs(wait));
        }
    }
}

/// Shows one event of `wisp recv` (a message is marked read); returns
/// whether it says the mailbox is drained.
async fn show_received(
    messenger: &mut Messenger,
    event: Event,
    json: bool,
) -> Result<bool, CliError> {
    match event {
        Event::MailboxDrained => return Ok(true),
        Event::Message(message) => {
            let state = messenger.state();
            if json {
                json_line(&json!({
                    "id": message.id.0,
                    "from": message.from.to_string(),
                    "text": message.text.as_str(),
                    "sent_at": rfc3339(message.sent_unix_ms),
                    "expires_at": rfc3339(message.expires_unix_ms),
                    "sent_unix_ms": message.sent_unix_ms.0,
                    "expires_unix_ms": message.expires_unix_ms.0,
                    "view_seconds": message.view_timer.map_or(0, |d| d.as_secs()),
                    "from_name": state.petname(&message.from),
                    "from_display_name": state.friend_display_name(&message.from),
                }));
            } else {
                let prefix = format!("{}: ", who(state, &message.from));
                let shown = safe::wrap_block(&prefix, &message.text, safe::terminal_width());
                println!("{shown}");
            }
            messenger.mark_read(&message).await?;
        }
        Event::Undecryptable { from, reason, .. } => {
            eprintln!(
                "warning: a message from {} could not be decrypted ({}); a new session has \
                 been set up, ask them to send it again",
                who(messenger.state(), &from),
                safe::line(&reason)
            );
        }
        Event::Disconnected { reason } | Event::Superseded { reason } => {
            return Err(CliError::from(ClientError::Closed(reason)));
        }
        _ => {}
    }
    Ok(false)
}

/// A time as RFC 3339 UTC, e.g. 2026-11-23T22:49:46.123Z.
fn rfc3339(at: UnixMillis) -> String {
    let ms = u64::try_from(at.0).unwrap_or(0);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn home_dir(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(home) = flag {
        return Ok(home);
    }
    directories::ProjectDirs::from("", "", "wisp")
        .map(|dirs| dirs.data_dir().to_owned())
        .ok_or_else(|| {
            CliError::failed("cannot find a home directory for your keys; pass --home DIR")
        })
}

/// The passphrase: `WISP_PASSPHRASE` when set, else a hidden prompt.
fn passphrase(confirm: bool) -> Result<Zeroizing<String>, CliError> {
    if let Ok(value) = std::env::var("WISP_PASSPHRASE") {
        return Ok(Zeroizing::new(value));
    }
    let prompt = |text: &str| {
        rpassword::prompt_password(text)
            .map(Zeroizing::new)
            .map_err(|e| {
                CliError::failed(format!(
                    "cannot read the passphrase ({e}); set WISP_PASSPHRASE or run in a terminal"
                ))
            })
    };
    let first = prompt("Passphrase for your Wisp keys: ")?;
    if confirm {
        let again = prompt("Repeat the passphrase: ")?;
        if *again != *first {
            return Err(CliError::failed(
                "the two passphrases differ; nothing was created",
            ));
        }
    }
    Ok(first)
}

/// Opens the store in `home` (locking it) with the user's passphrase.
async fn open_store(home: &std::path::Path) -> Result<(KeyStore, LocalState), CliError> {
    with_passphrase(home, KeyStore::open).await
}

/// Asks for the passphrase and runs the key derivation (deliberately slow)
/// off the async threads.
async fn with_passphrase<T: Send + 'static>(
    home: &std::path::Path,
    unlock: fn(&std::path::Path, &str) -> Result<T, KeyStoreError>,
) -> Result<T, CliError> {
    let secret = store_passphrase(home)?;
    unlock_with(home, &secret, unlock).await
}

/// The passphrase of the store in `home`, once it is known to exist.
fn store_passphrase(home: &std::path::Path) -> Result<Zeroizing<String>, CliError> {
    if !KeyStore::exists_in(home) {
        return Err(KeyStoreError::Missing(home.to_owned()).into());
    }
    passphrase(false)
}

/// Runs the key derivation with a passphrase already asked for.
async fn unlock_with<T: Send + 'static>(
    home: &std::path::Path,
    secret: &Zeroizing<String>,
    unlock: impl FnOnce(&std::path::Path, &str) -> Result<T, KeyStoreError> + Send + 'static,
) -> Result<T, CliError> {
    let (home, secret) = (home.to_owned(), secret.clone());
    tokio::task::spawn_blocking(move || unlock(&home, &secret))
        .await
        .map_err(|e| CliError::failed(format!("key store task failed: {e}")))?
        .map_err(CliError::from)
}

async fn register(home: &std::path::Path, server: &Remote) -> Result<(), CliError> {
    let (store, mut state) = if KeyStore::exists_in(home) {
        open_store(home).await?
    } else {
        let secret = passphrase(true)?;
        let owned_home = home.to_owned();
        let created = tokio::task::spawn_blocking(move || {
            let state = LocalState::new(Identity::generate());
            KeyStore::create(&owned_home, &secret, KdfParams::default(), &state)
                .map(|store| (store, state))
        })
        .await
        .map_err(|e| CliError::failed(format!("key store task failed: {e}")))??;
        eprintln!("created a new identity in {}", home.display());
        created
    };
    let id = state.identity.user_id();
    if let Some(name) = &state.server_name {
        return Err(CliError::failed(format!(
            "this identity is already registered (id {id}, server \"{name}\"); nothing to do"
        )));
    }
    let (client, _events) = Client::connect_with(&server.url, server.options()?).await?;
    match client.register(&state.identity).await {
        Ok(_) => {}
        // Registration proves possession of the private key, so keys that
        // are registered already were registered by us (an earlier run whose
        // reply was lost).
        Err(error) if error.code() == Some(ErrorCode::AlreadyRegistered) => {
            eprintln!("this identity was registered already; recording that");
        }
        Err(error) => return Err(error.into()),
    }
    let server_name = client.server_name().to_owned();
    state.server_name = Some(server_name.clone());
    store.save(&state)?;
    drop(client);
    // Log in once to put one-time keys on the server, so friends can start
    // end-to-end sessions with us while we are away.
    Messenger::connect_with(&server.url, server.options()?, store, state).await?;
    eprintln!(
        "registered with server \"{}\"; your id:",
        safe::line(&server_name)
    );
    println!("{id}");
    Ok(())
}

/// `wisp account delete`: the account on the server, then the key store
/// here. The store stays locked throughout, so no other command of this
/// home uses the identity meanwhile.
async fn delete_account(
    home: &std::path::Path,
    server: &Remote,
    yes: bool,
) -> Result<(), CliError> {
    let (store, state) = open_store(home).await?;
    let id = state.identity.user_id();
    if !yes {
        eprintln!(
            "This deletes account {id} for good: your friends, requests and waiting messages \
             on the server, and your keys on this device. The id can never be used again."
        );
        eprint!("Type your id to confirm: ");
        let mut typed = String::new();
        std::io::stdin()
            .read_line(&mut typed)
            .map_err(|e| CliError::failed(format!("cannot read the confirmation: {e}")))?;
        if typed.trim() != id.to_string() {
            return Err(CliError::failed(
                "not deleted: what you typed is not your id (or pass --yes)",
            ));
        }
    }
    let client = logged_in(&state, server).await?;
    client.delete_account(id).await?;
    drop(client);
    let path = store.path().to_owned();
    store.delete()?;
    eprintln!(
        "account {id} deleted on the server; {} removed",
        path.display()
    );
    Ok(())
}

/// Reads the identity without locking the store (for commands that change
/// nothing local, so they work while `wisp chat` holds it).
async fn peek_store(home: &std::path::Path) -> Result<LocalState, CliError> {
    with_passphrase(home, KeyStore::peek).await
}

/// Connects and logs in with the identity in `state`.
async fn logged_in(state: &LocalState, server: &Remote) -> Result<Client, CliError> {
    let Some(pinned) = state.server_name.as_deref() else {
        return Err(CliError::failed(
            "this identity is not registered yet; run `wisp register` first",
        ));
    };
    let (mut client, _events) = Client::connect_with(&server.url, server.options()?).await?;
    client.login(&state.identity, pinned).await?;
    Ok(client)
}

/// `wisp invite`: the user's id as a link and a QR code; needs only the
/// local identity.
async fn invite(home: &std::path::Path, json: bool) -> Result<(), CliError> {
    let state = peek_store(home).await?;
    let id = state.identity.user_id();
    let lifetime = i64::try_from(INVITATION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    let expires = UnixMillis(now_ms().0.saturating_add(lifetime));
    let token = state
        .identity
        .sign_invitation(expires)
        .map_err(|e| CliError::failed(format!("cannot sign an invitation: no randomness: {e}")))?;
    let link = signed_invitation_link(id, &token);
    if json {
        json_line(&json!({
            "id": id.to_string(),
            "link": link,
            "expires_unix_ms": expires.0,
        }));
        return Ok(());
    }
    // Upper case codes in QR's compact alphanumeric mode; the link reads
    // back in either case.
    let code = crate::qr::render(&link.to_ascii_uppercase())?;
    print!("{link}\n{code}");
    eprintln!(
        "whoever has this link or scans the code adds you with `wisp friend add <link>`; \
         for {} days their request gets through even if strangers filled your requests",
        INVITATION_LIFETIME.as_secs() / 86_400
    );
    Ok(())
}

/// `wisp verify`: the safety number with a friend, and their verified mark.
async fn verify(
    home: &std::path::Path,
    server: &Remote,
    friend: &str,
    change: Option<bool>,
    json: bool,
) -> Result<(), CliError> {
    let (friend, number, verified, name) = match change {
        // Changing the mark saves the store: open it, with its lock.
        Some(verified) => {
            let mut messenger = messenger(home, server).await?;
            let friend = resolve(messenger.state(), friend)?;
            // A mark can always be taken back, friend or not.
            if verified {
                ensure_friend(messenger.client(), friend).await?;
            }
            messenger.set_verified(friend, verified)?;
            let name = named(messenger.state(), &friend);
            (friend, messenger.safety_number(friend), verified, name)
        }
        // Only showing it: read the store, so this works beside `wisp chat`.
        None => {
            let state = peek_store(home).await?;
            let friend = resolve(&state, friend)?;
            let client = logged_in(&state, server).await?;
            ensure_friend(&client, friend).await?;
            let number = wisp_client::safety_number(state.identity.user_id(), friend);
            let name = named(&state, &friend);
            (friend, number, state.is_verified(&friend), name)
        }
    };
    if json {
        json_line(&json!({
            "id": friend.to_string(),
            "safety_number": number.digits(),
            "verified": verified,
            "name": name.petname,
        }));
        return Ok(());
    }
    let shown = name.with_id(&friend);
    match change {
        Some(true) => println!("marked {shown} as verified"),
        Some(false) => println!("{shown} is no longer marked as verified"),
        None => print_safety_number(friend, &shown, &number, verified)?,
    }
    Ok(())
}

fn print_safety_number(
    friend: UserId,
    shown: &str,
    number: &SafetyNumber,
    verified: bool,
) -> Result<(), CliError> {
    let code = crate::qr::render(&number.qr_payload())?;
    let status = if verified { "verified" } else { "not verified" };
    println!("safety number with {shown}:\n\n{number}\n\n{code}");
    println!("{shown} is {status}");
    println!(
        "compare this number with them in person or on a call (a name proves nothing; this \
         number does); if it matches on both devices, run `wisp verify {friend} --mark`"
    );
    Ok(())
}

/// Changes the key store's state with `change`, taking the store's lock
/// only for that (so the friend commands work beside `wisp chat`
/// otherwise), and saves it if `change` says it changed anything. Returns
/// the store and the state, still locked, for what comes next.
async fn update_store(
    home: &std::path::Path,
    secret: &Zeroizing<String>,
    change: impl FnOnce(&mut LocalState) -> Result<bool, NameError> + Send + 'static,
) -> Result<(KeyStore, LocalState), CliError> {
    let update = move |home: &std::path::Path, passphrase: &str| {
        let (store, mut state) = KeyStore::open(home, passphrase)?;
        match change(&mut state) {
            Ok(true) => store.save(&state)?,
            Ok(false) => {}
            Err(error) => return Ok(Err(error)),
        }
        Ok(Ok((store, state)))
    };
    unlock_with(home, secret, update)
        .await?
        .map_err(|e| CliError::failed(e.to_string()))
}

/// Refuses an id that is not among the server's friends of this user.
async fn ensure_friend(client: &Client, id: UserId) -> Result<(), CliError> {
    if client.friends().await?.iter().any(|f| f.id == id) {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{id} is not your friend; safety numbers are compared with friends only"
        )))
    }
}

fn checked_ttl(ttl: u64) -> Result<Duration, CliError> {
    if ttl == 0 || ttl > MAX_MESSAGE_TTL.as_secs() {
        return Err(CliError::failed(format!(
            "--ttl must be 1 to {} seconds (messages never live longer than an hour)",
            MAX_MESSAGE_TTL.as_secs()
        )));
    }
    Ok(Duration::from_secs(ttl))
}

/// Every command's id argument: a bare id, an invitation link, or the name
/// the user gave someone.
fn resolve(state: &LocalState, text: &str) -> Result<UserId, CliError> {
    match parse_invitation(text) {
        Ok(id) => Ok(id),
        Err(error) => state.find_petname(text).ok_or_else(|| {
            CliError::failed(format!(
                "{error}; nor is it a name you gave anyone (`wisp friend list` shows your \
                 friends and your names for them)"
            ))
        }),
    }
}

/// A name the user typed for someone, checked before anything else is
/// done: one line, not an id, and not another's name on this device.
fn checked_petname(state: &LocalState, id: UserId, name: &str) -> Result<String, CliError> {
    state.check_petname(id, name).map_err(|error| {
        let hint = match &error {
            NameError::Taken(holder) => format!(" (\"{}\")", who(state, holder)),
            NameError::OwnId => " (yours for your friends: `wisp profile name NAME`)".to_owned(),
            _ => String::new(),
        };
        CliError::failed(format!("{error}{hint}"))
    })
}

/// `wisp friend ...`: a change to a relationship, a name, or one of the
/// lists.
async fn friend(
    home: &std::path::Path,
    server: &Remote,
    command: FriendCommand,
) -> Result<(), CliError> {
    // Read without locking, so these work beside `wisp chat`.
    let secret = store_passphrase(home)?;
    let state = unlock_with(home, &secret, KeyStore::peek).await?;
    let (change, id, name) = match &command {
        FriendCommand::List { json } => {
            let client = logged_in(&state, server).await?;
            return list_friends(&client, &state, *json).await;
        }
        FriendCommand::Requests { json } => {
            let client = logged_in(&state, server).await?;
            return list_requests(&client, &state, *json).await;
        }
        FriendCommand::Blocked { json } => {
            let client = logged_in(&state, server).await?;
            return list_blocked(&client, &state, *json).await;
        }
        FriendCommand::Rename { id, name } => {
            return rename(home, &secret, &state, id, name).await;
        }
        FriendCommand::Add { id, name } => (FriendChange::Add, id, name.as_deref()),
        FriendCommand::Accept { id, name } => (FriendChange::Accept, id, name.as_deref()),
        FriendCommand::Decline { id } => (FriendChange::Decline, id, None),
        FriendCommand::Cancel { id } => (FriendChange::Cancel, id, None),
        FriendCommand::Remove { id } => (FriendChange::Remove, id, None),
        FriendCommand::Block { id } => (FriendChange::Block, id, None),
        FriendCommand::Unblock { id } => (FriendChange::Unblock, id, None),
    };
    let token = match change {
        FriendChange::Add => parse_invitation_link(id).ok().and_then(|link| link.token),
        _ => None,
    };
    let id = resolve(&state, id)?;
    // A name is checked before the server hears of anything.
    let name = name
        .map(|name| checked_petname(&state, id, name))
        .transpose()?;
    let client = logged_in(&state, server).await?;
    let outcome = change.apply(&client, id, token).await?;
    drop(client);
    let (store, state) = match update_store(home, &secret, move |state| {
        let mut changed = false;
        if change.ends_friendship() {
            changed |= state.forget_friendship(id);
        }
        if change.drops_name() {
            changed |= state.set_petname(id, None)?;
        }
        if let Some(name) = name {
            changed |= state.set_petname(id, Some(&name))?;
        }
        Ok(changed)
    })
    .await
    {
        Ok(locked) => locked,
        Err(error) => {
            // The change itself was made on the server.
            println!("{}", outcome.say(&who(&state, &id)));
            eprintln!(
                "warning: your names and marks on this device were not updated: {} (if \
                 `wisp chat` is open, name them there with n)",
                safe::line(&error.to_string())
            );
            return Ok(());
        }
    };
    println!("{}", outcome.say(&who(&state, &id)));
    if outcome == Outcome::NowFriends && state.display_name().is_some() {
        // Log in once more, holding the store: the connect sends the new
        // friend this user's display name.
        let mut messenger =
            Messenger::connect_with(&server.url, server.options()?, store, state).await?;
        messenger.settle().await?;
    }
    Ok(())
}

/// `wisp friend rename`: sets or removes a petname; needs no server.
async fn rename(
    home: &std::path::Path,
    secret: &Zeroizing<String>,
    state: &LocalState,
    id: &str,
    name: &str,
) -> Result<(), CliError> {
    let id = resolve(state, id)?;
    let name = if name.trim().is_empty() {
        None
    } else {
        Some(checked_petname(state, id, name)?)
    };
    let shown = name.as_deref().map(safe::line);
    update_store(home, secret, move |state| {
        state.set_petname(id, name.as_deref())
    })
    .await?;
    match shown {
        Some(name) => println!("{id} is now \"{name}\" on this device"),
        None => println!("{id} has no name of yours any more"),
    }
    Ok(())
}

/// `wisp profile ...`: the display name friends see.
async fn profile(
    home: &std::path::Path,
    server: &Remote,
    command: ProfileCommand,
) -> Result<(), CliError> {
    match command {
        ProfileCommand::Show { json } => {
            let state = peek_store(home).await?;
            let name = state.display_name();
            if json {
                json_line(&json!({ "display_name": name }));
            } else {
                match name {
                    Some(name) => println!("{}", safe::line(name)),
                    None => eprintln!("no display name; choose one with `wisp profile name NAME`"),
                }
            }
            Ok(())
        }
        ProfileCommand::Name { name } => {
            let name = (!name.trim().is_empty()).then_some(name);
            if let Some(name) = &name {
                // Refused before asking for the passphrase.
                check_name(name).map_err(|e| CliError::failed(e.to_string()))?;
            }
            let mut messenger = messenger(home, server).await?;
            messenger.set_display_name(name.as_deref()).await?;
            messenger.settle().await?;
            match messenger.display_name() {
                Some(name) => println!(
                    "your display name is now \"{}\"; your friends get it end-to-end encrypted",
                    safe::line(name)
                ),
                None => println!("you have no display name now; your friends are told"),
            }
            Ok(())
        }
    }
}

/// A `wisp friend` command that changes a relationship with one user.
#[derive(Debug, Clone, Copy)]
enum FriendChange {
    Add,
    Accept,
    Decline,
    Cancel,
    Remove,
    Block,
    Unblock,
}

/// What a [`FriendChange`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    NowFriends,
    RequestSent,
    Declined,
    Withdrawn,
    Removed,
    Blocked,
    Unblocked,
}

impl Outcome {
    /// What to tell the user, naming the other as `who`.
    fn say(self, who: &str) -> String {
        match self {
            Self::NowFriends => format!("you are now friends with {who}"),
            // The server answers alike whether or not the id is
            // registered, so this says nothing about who holds it.
            Self::RequestSent => format!(
                "friend request sent to {who}; it waits for their answer for {} days",
                FRIEND_REQUEST_LIFETIME.as_secs() / 86_400
            ),
            Self::Declined => format!("declined the request from {who}"),
            Self::Withdrawn => format!("withdrew your request to {who}"),
            Self::Removed => format!("{who} is no longer your friend"),
            Self::Blocked => format!("blocked {who}"),
            Self::Unblocked => format!("unblocked {who}"),
        }
    }
}

impl FriendChange {
    /// Whether the friendship ends, or starts afresh: either way the device
    /// keeps no verified mark and no display name of the old one.
    fn ends_friendship(self) -> bool {
        matches!(self, Self::Add | Self::Accept | Self::Remove | Self::Block)
    }

    /// Whether the user is done with them: the name they gave goes too (a
    /// blocked user keeps theirs, to be recognised in the list of blocks).
    fn drops_name(self) -> bool {
        matches!(self, Self::Decline | Self::Cancel | Self::Remove)
    }

    /// Asks the server for the change with `id`.
    async fn apply(
        self,
        client: &Client,
        id: UserId,
        token: Option<InvitationToken>,
    ) -> Result<Outcome, CliError> {
        Ok(match self {
            Self::Add => {
                let invitation = Invitation { user: id, token };
                if client.request_friend_invited(&invitation).await? {
                    Outcome::NowFriends
                } else {
                    Outcome::RequestSent
                }
            }
            Self::Accept => {
                client.accept_friend(id).await?;
                Outcome::NowFriends
            }
            Self::Decline => {
                client.decline_friend(id).await?;
                Outcome::Declined
            }
            Self::Cancel => {
                client.cancel_friend_request(id).await?;
                Outcome::Withdrawn
            }
            Self::Remove => {
                client.remove_friend(id).await?;
                Outcome::Removed
            }
            Self::Block => {
                client.block(id).await?;
                Outcome::Blocked
            }
            Self::Unblock => {
                client.unblock(id).await?;
                Outcome::Unblocked
            }
        })
    }
}

/// `wisp friend list`: friends, with names and verified marks.
async fn list_friends(client: &Client, state: &LocalState, json: bool) -> Result<(), CliError> {
    for friend in client.friends().await? {
        let verified = state.is_verified(&friend.id);
        if json {
            json_line(&json!({
                "id": friend.id.to_string(),
                "since_unix_ms": friend.since_unix_ms.0,
                "verified": verified,
                "name": state.petname(&friend.id),
                "display_name": state.friend_display_name(&friend.id),
            }));
        } else {
            let mark = if verified { " (verified)" } else { "" };
            println!("{}{mark}", named(state, &friend.id).after_id(&friend.id));
        }
    }
    Ok(())
}

/// `wisp friend requests`: pending requests, to this user and from them.
async fn list_requests(client: &Client, state: &LocalState, json: bool) -> Result<(), CliError> {
    let pending = client.friend_requests().await?;
    let all = pending
        .incoming
        .iter()
        .map(|r| ("incoming", r))
        .chain(pending.outgoing.iter().map(|r| ("outgoing", r)));
    for (direction, request) in all {
        if json {
            json_line(&json!({
                "id": request.id.to_string(),
                "direction": direction,
                "created_unix_ms": request.created_unix_ms.0,
                "name": state.petname(&request.id),
            }));
        } else {
            println!(
                "{direction} {}",
                named(state, &request.id).after_id(&request.id)
            );
        }
    }
    Ok(())
}

/// `wisp friend blocked`: the users this user blocked.
async fn list_blocked(client: &Client, state: &LocalState, json: bool) -> Result<(), CliError> {
    for id in client.friend_requests().await?.blocked {
        if json {
            json_line(&json!({ "id": id.to_string(), "name": state.petname(&id) }));
        } else {
            println!("{}", named(state, &id).after_id(&id));
        }
    }
    Ok(())
}
