//! What each command does, on top of the SDK.

use std::path::PathBuf;

use serde_json::json;
use std::time::Duration;

use wisp_client::{
    Client, ClientError, ConnectOptions, ErrorCode, Event, Identity, Invitation, InvitationToken,
    KdfParams, KeyStore, KeyStoreError, LocalState, Messenger, SafetyNumber, UnixMillis, UserId,
    now_ms, parse_invitation, parse_invitation_link, signed_invitation_link,
};
use wisp_proto::limits::{FRIEND_REQUEST_LIFETIME, INVITATION_LIFETIME, MAX_MESSAGE_TTL};
use zeroize::Zeroizing;

use crate::args::{AccountCommand, Cli, Command, FriendCommand};
use crate::output::{CliError, json_line};

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
    let to = parse_id(to)?;
    let ttl = checked_ttl(ttl)?;
    let mut messenger = messenger(home, server).await?;
    let view = (view > 0).then(|| Duration::from_secs(view));
    let sent = messenger.send_text(to, text, ttl, view).await?;
    messenger.confirm().await?;
    println!(
        "sent to {to}; it burns once read and expires at {}",
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
    let open = open.map(parse_id).transpose()?;
    let ttl = checked_ttl(ttl)?;
    let messenger = messenger(home, server).await?;
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
                messenger.confirm().await?;
                return Ok(());
            }
            Err(_) => {
                return Err(CliError::from(ClientError::Timeout(Duration::from_secs(
                    60,
                ))));
            }
        };
        match event {
            Event::MailboxDrained => {
                deadline = Some(tokio::time::Instant::now() + Duration::from_secs(wait));
            }
            Event::Message(message) => {
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
                    }));
                } else {
                    println!("{}: {}", message.from, message.text.as_str());
                }
                messenger.mark_read(&message).await?;
            }
            Event::Undecryptable { from, reason, .. } => {
                eprintln!(
                    "warning: a message from {from} could not be decrypted ({reason}); a new session has been set up, ask them to send it again"
                );
            }
            Event::Disconnected { reason } | Event::Superseded { reason } => {
                return Err(CliError::from(ClientError::Closed(reason)));
            }
            _ => {}
        }
    }
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
    eprintln!("registered with server \"{server_name}\"; your id:");
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
    let friend = parse_id(friend)?;
    let (number, verified) = match change {
        // Changing the mark saves the store: open it, with its lock.
        Some(verified) => {
            let mut messenger = messenger(home, server).await?;
            // A mark can always be taken back, friend or not.
            if verified {
                ensure_friend(messenger.client(), friend).await?;
            }
            messenger.set_verified(friend, verified)?;
            (messenger.safety_number(friend), verified)
        }
        // Only showing it: read the store, so this works beside `wisp chat`.
        None => {
            let state = peek_store(home).await?;
            let client = logged_in(&state, server).await?;
            ensure_friend(&client, friend).await?;
            let number = wisp_client::safety_number(state.identity.user_id(), friend);
            (number, state.is_verified(&friend))
        }
    };
    if json {
        json_line(&json!({
            "id": friend.to_string(),
            "safety_number": number.digits(),
            "verified": verified,
        }));
        return Ok(());
    }
    match change {
        Some(true) => println!("marked {friend} as verified"),
        Some(false) => println!("{friend} is no longer marked as verified"),
        None => print_safety_number(friend, &number, verified)?,
    }
    Ok(())
}

fn print_safety_number(
    friend: UserId,
    number: &SafetyNumber,
    verified: bool,
) -> Result<(), CliError> {
    let code = crate::qr::render(&number.qr_payload())?;
    let status = if verified { "verified" } else { "not verified" };
    println!("safety number with {friend}:\n\n{number}\n\n{code}");
    println!("{friend} is {status}");
    println!(
        "compare this number with {friend} in person or on a call; if it matches on both \
         devices, run `wisp verify {friend} --mark`"
    );
    Ok(())
}

/// Drops `id`'s verified mark, taking the store's lock only for that (so
/// the friend commands work beside `wisp chat` otherwise). The friend
/// command itself succeeded, so a failure here is a warning: a mark of
/// someone who is no longer a friend also goes at the next connect.
async fn forget_verified(home: &std::path::Path, secret: &Zeroizing<String>, id: UserId) {
    let forget = move |home: &std::path::Path, passphrase: &str| {
        let (store, mut state) = KeyStore::open(home, passphrase)?;
        if state.set_verified(id, false) {
            store.save(&state)?;
        }
        Ok(())
    };
    if let Err(error) = unlock_with(home, secret, forget).await {
        eprintln!("warning: could not drop the verified mark of {id}: {error}");
    }
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

/// Every command's id argument: a bare id or an invitation link.
fn parse_id(text: &str) -> Result<UserId, CliError> {
    parse_invitation(text).map_err(|e| CliError::failed(e.to_string()))
}

/// `wisp friend ...`: a change to a relationship, or one of the lists.
async fn friend(
    home: &std::path::Path,
    server: &Remote,
    command: FriendCommand,
) -> Result<(), CliError> {
    // Check the argument before asking for a passphrase or connecting.
    let change = FriendChange::of(&command)?;
    let token = match &command {
        FriendCommand::Add { id } => {
            parse_invitation_link(id)
                .map_err(|e| CliError::failed(e.to_string()))?
                .token
        }
        _ => None,
    };
    // Read without locking, so these work beside `wisp chat`.
    let secret = store_passphrase(home)?;
    let state = unlock_with(home, &secret, KeyStore::peek).await?;
    let client = logged_in(&state, server).await?;
    if let Some((change, id)) = change {
        let done = change.apply(&client, id, token).await?;
        if change.drops_mark() && state.is_verified(&id) {
            forget_verified(home, &secret, id).await;
        }
        println!("{done}");
        return Ok(());
    }
    match command {
        FriendCommand::List { json } => list_friends(&client, &state, json).await,
        FriendCommand::Requests { json } => list_requests(&client, json).await,
        FriendCommand::Blocked { json } => list_blocked(&client, json).await,
        _ => Err(CliError::failed("this command needs a user id")),
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

impl FriendChange {
    /// The change `command` asks for, with the id it names (checked);
    /// `None` for the lists.
    fn of(command: &FriendCommand) -> Result<Option<(Self, UserId)>, CliError> {
        let (change, id) = match command {
            FriendCommand::Add { id } => (Self::Add, id),
            FriendCommand::Accept { id } => (Self::Accept, id),
            FriendCommand::Decline { id } => (Self::Decline, id),
            FriendCommand::Cancel { id } => (Self::Cancel, id),
            FriendCommand::Remove { id } => (Self::Remove, id),
            FriendCommand::Block { id } => (Self::Block, id),
            FriendCommand::Unblock { id } => (Self::Unblock, id),
            FriendCommand::List { .. }
            | FriendCommand::Requests { .. }
            | FriendCommand::Blocked { .. } => return Ok(None),
        };
        Ok(Some((change, parse_id(id)?)))
    }

    /// Whether the friendship ends, or starts afresh: either way it keeps
    /// no verified mark.
    fn drops_mark(self) -> bool {
        matches!(self, Self::Add | Self::Accept | Self::Remove | Self::Block)
    }

    /// Asks the server for the change with `id`; says what happened.
    async fn apply(
        self,
        client: &Client,
        id: UserId,
        token: Option<InvitationToken>,
    ) -> Result<String, CliError> {
        Ok(match self {
            Self::Add => {
                let invitation = Invitation { user: id, token };
                if client.request_friend_invited(&invitation).await? {
                    format!("you are now friends with {id}")
                } else {
                    // The server answers alike whether or not the id is
                    // registered, so this says nothing about who holds it.
                    format!(
                        "friend request sent to {id}; it waits for their answer for {} days",
                        FRIEND_REQUEST_LIFETIME.as_secs() / 86_400
                    )
                }
            }
            Self::Accept => {
                client.accept_friend(id).await?;
                format!("you are now friends with {id}")
            }
            Self::Decline => {
                client.decline_friend(id).await?;
                format!("declined the request from {id}")
            }
            Self::Cancel => {
                client.cancel_friend_request(id).await?;
                format!("withdrew your request to {id}")
            }
            Self::Remove => {
                client.remove_friend(id).await?;
                format!("{id} is no longer your friend")
            }
            Self::Block => {
                client.block(id).await?;
                format!("blocked {id}")
            }
            Self::Unblock => {
                client.unblock(id).await?;
                format!("unblocked {id}")
            }
        })
    }
}

/// `wisp friend list`: friends, with their verified marks.
async fn list_friends(client: &Client, state: &LocalState, json: bool) -> Result<(), CliError> {
    for friend in client.friends().await? {
        let verified = state.is_verified(&friend.id);
        if json {
            json_line(&json!({
                "id": friend.id.to_string(),
                "since_unix_ms": friend.since_unix_ms.0,
                "verified": verified,
            }));
        } else if verified {
            println!("{} (verified)", friend.id);
        } else {
            println!("{}", friend.id);
        }
    }
    Ok(())
}

/// `wisp friend requests`: pending requests, to this user and from them.
async fn list_requests(client: &Client, json: bool) -> Result<(), CliError> {
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
            }));
        } else {
            println!("{direction} {}", request.id);
        }
    }
    Ok(())
}

/// `wisp friend blocked`: the users this user blocked.
async fn list_blocked(client: &Client, json: bool) -> Result<(), CliError> {
    for id in client.friend_requests().await?.blocked {
        if json {
            json_line(&json!({ "id": id.to_string() }));
        } else {
            println!("{id}");
        }
    }
    Ok(())
}
