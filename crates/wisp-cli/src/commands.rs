//! What each command does, on top of the SDK.

use std::path::PathBuf;

use serde_json::json;
use std::time::Duration;

use wisp_client::{
    Client, ClientError, ErrorCode, Event, Identity, KdfParams, KeyStore, KeyStoreError,
    LocalState, Messenger, UserId,
};
use wisp_proto::limits::MAX_MESSAGE_TTL;
use zeroize::Zeroizing;

use crate::args::{Cli, Command, FriendCommand};
use crate::output::{CliError, json_line};

/// Runs one parsed command.
pub async fn run(cli: Cli) -> Result<(), CliError> {
    let home = home_dir(cli.home)?;
    match cli.command {
        Command::Register => register(&home, &cli.server).await,
        Command::Id => {
            let state = peek_store(&home).await?;
            println!("{}", state.identity.user_id());
            Ok(())
        }
        Command::Friend(command) => friend(&home, &cli.server, command).await,
        Command::Send {
            id,
            text,
            ttl,
            view,
        } => send(&home, &cli.server, &id, &text, ttl, view).await,
        Command::Recv { wait, json } => recv(&home, &cli.server, wait, json).await,
    }
}

async fn messenger(home: &std::path::Path, server: &str) -> Result<Messenger, CliError> {
    let (store, state) = open_store(home).await?;
    if state.server_name.is_none() {
        return Err(CliError::failed(
            "this identity is not registered yet; run `wisp register` first",
        ));
    }
    Ok(Messenger::connect(server, store, state).await?)
}

async fn send(
    home: &std::path::Path,
    server: &str,
    to: &str,
    text: &str,
    ttl: u64,
    view: u64,
) -> Result<(), CliError> {
    let to = parse_id(to)?;
    if ttl == 0 || ttl > MAX_MESSAGE_TTL.as_secs() {
        return Err(CliError::failed(format!(
            "--ttl must be 1 to {} seconds (messages never live longer than an hour)",
            MAX_MESSAGE_TTL.as_secs()
        )));
    }
    let mut messenger = messenger(home, server).await?;
    let view = (view > 0).then(|| Duration::from_secs(view));
    let sent = messenger
        .send_text(to, text, Duration::from_secs(ttl), view)
        .await?;
    messenger.confirm().await?;
    println!(
        "sent to {to}; it burns once read and expires at {}",
        rfc3339(sent.expires_unix_ms)
    );
    Ok(())
}

async fn recv(home: &std::path::Path, server: &str, wait: u64, json: bool) -> Result<(), CliError> {
    let mut messenger = messenger(home, server).await?;
    // Until the mailbox is drained, wait as long as it takes (bounded by
    // the request timeout of the connection); then `wait` seconds more.
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
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
                        "id": message.id,
                        "from": message.from.to_string(),
                        "text": message.text.as_str(),
                        "sent_at": rfc3339(message.sent_unix_ms),
                        "expires_at": rfc3339(message.expires_unix_ms),
                        "sent_unix_ms": message.sent_unix_ms,
                        "expires_unix_ms": message.expires_unix_ms,
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
            Event::Disconnected { reason } => {
                return Err(CliError::from(ClientError::Closed(reason)));
            }
            _ => {}
        }
    }
}

/// Milliseconds since the epoch as RFC 3339 UTC, e.g. 2026-11-23T22:49:46.123Z.
fn rfc3339(unix_ms: i64) -> String {
    let ms = u64::try_from(unix_ms).unwrap_or(0);
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
    if !KeyStore::exists_in(home) {
        return Err(KeyStoreError::Missing(home.to_owned()).into());
    }
    let secret = passphrase(false)?;
    let home = home.to_owned();
    tokio::task::spawn_blocking(move || unlock(&home, &secret))
        .await
        .map_err(|e| CliError::failed(format!("key store task failed: {e}")))?
        .map_err(CliError::from)
}

async fn register(home: &std::path::Path, server: &str) -> Result<(), CliError> {
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
    let (client, _events) = Client::connect(server).await?;
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
    Messenger::connect(server, store, state).await?;
    eprintln!("registered with server \"{server_name}\"; your id:");
    println!("{id}");
    Ok(())
}

/// Reads the identity without locking the store (for commands that change
/// nothing local, so they work while `wisp chat` holds it).
async fn peek_store(home: &std::path::Path) -> Result<LocalState, CliError> {
    with_passphrase(home, KeyStore::peek).await
}

/// Reads the identity, connects and logs in.
async fn logged_in(home: &std::path::Path, server: &str) -> Result<Client, CliError> {
    let state = peek_store(home).await?;
    let Some(pinned) = state.server_name.as_deref() else {
        return Err(CliError::failed(
            "this identity is not registered yet; run `wisp register` first",
        ));
    };
    let (mut client, _events) = Client::connect(server).await?;
    client.login(&state.identity, pinned).await?;
    Ok(client)
}

fn parse_id(text: &str) -> Result<UserId, CliError> {
    text.parse()
        .map_err(|e| CliError::failed(format!("\"{text}\" is not a user id: {e}")))
}

async fn friend(
    home: &std::path::Path,
    server: &str,
    command: FriendCommand,
) -> Result<(), CliError> {
    // Check the argument before asking for a passphrase or connecting.
    let target = match &command {
        FriendCommand::Add { id }
        | FriendCommand::Accept { id }
        | FriendCommand::Decline { id }
        | FriendCommand::Cancel { id }
        | FriendCommand::Remove { id }
        | FriendCommand::Block { id }
        | FriendCommand::Unblock { id } => Some(parse_id(id)?),
        FriendCommand::List { .. }
        | FriendCommand::Requests { .. }
        | FriendCommand::Blocked { .. } => None,
    };
    let client = logged_in(home, server).await?;
    match (command, target) {
        (FriendCommand::Add { .. }, Some(id)) => {
            if client.request_friend(id).await? {
                println!("you are now friends with {id}");
            } else {
                println!("friend request sent to {id}");
            }
        }
        (FriendCommand::Accept { .. }, Some(id)) => {
            client.accept_friend(id).await?;
            println!("you are now friends with {id}");
        }
        (FriendCommand::Decline { .. }, Some(id)) => {
            client.decline_friend(id).await?;
            println!("declined the request from {id}");
        }
        (FriendCommand::Cancel { .. }, Some(id)) => {
            client.cancel_friend_request(id).await?;
            println!("withdrew your request to {id}");
        }
        (FriendCommand::Remove { .. }, Some(id)) => {
            client.remove_friend(id).await?;
            println!("{id} is no longer your friend");
        }
        (FriendCommand::Block { .. }, Some(id)) => {
            client.block(id).await?;
            println!("blocked {id}");
        }
        (FriendCommand::Unblock { .. }, Some(id)) => {
            client.unblock(id).await?;
            println!("unblocked {id}");
        }
        (FriendCommand::List { json }, _) => {
            for friend in client.friends().await? {
                if json {
                    json_line(&json!({
                        "id": friend.id.to_string(),
                        "since_unix_ms": friend.since_unix_ms,
                    }));
                } else {
                    println!("{}", friend.id);
                }
            }
        }
        (FriendCommand::Requests { json }, _) => {
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
                        "created_unix_ms": request.created_unix_ms,
                    }));
                } else {
                    println!("{direction} {}", request.id);
                }
            }
        }
        (FriendCommand::Blocked { json }, _) => {
            for id in client.friend_requests().await?.blocked {
                if json {
                    json_line(&json!({ "id": id.to_string() }));
                } else {
                    println!("{id}");
                }
            }
        }
        (_, None) => return Err(CliError::failed("this command needs a user id")),
    }
    Ok(())
}
