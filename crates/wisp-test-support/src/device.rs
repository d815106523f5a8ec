//! Users of a test server: a [`Device`] (a `Messenger` and the home that
//! holds its encrypted state, as the CLI runs it) or a [`TestUser`] (a
//! plain SDK `Client`, for the wire protocol without end-to-end
//! encryption), making friends of two, and reading a refusal's code.

use std::time::Duration;

use wisp_client::{
    Client, ConnectOptions, Event, Events, Identity, KdfParams, KeyStore, LocalState, Messenger,
};

/// Cheap key derivation for test key stores; the format is the real one.
pub const TEST_KDF: KdfParams = KdfParams {
    m_kib: 1024,
    t: 1,
    p: 1,
};

/// A device: a messenger and the home holding its encrypted state (under
/// the passphrase "pw").
#[derive(Debug)]
pub struct Device {
    pub messenger: Messenger,
    pub home: tempfile::TempDir,
}

impl Device {
    pub fn id(&self) -> wisp_proto::UserId {
        self.messenger.user_id()
    }

    /// The next event, within 10 s.
    pub async fn event(&mut self) -> Event {
        tokio::time::timeout(Duration::from_secs(10), self.messenger.next_event())
            .await
            .expect("an event within 10 s")
            .expect("connection open")
    }

    /// The next message's text, confirmed (burned on the server) without a
    /// read receipt (which would be a message of its own).
    pub async fn next_text(&mut self) -> String {
        loop {
            if let Event::Message(message) = self.event().await {
                self.messenger.confirm().await.expect("confirm");
                return message.text.to_string();
            }
        }
    }

    /// Texts of received messages until the mailbox is drained, reading
    /// each (sending a read receipt).
    pub async fn read_all(&mut self) -> Vec<String> {
        let mut texts = Vec::new();
        loop {
            match self.event().await {
                Event::Message(message) => {
                    texts.push(message.text.to_string());
                    self.messenger.mark_read(&message).await.expect("receipt");
                }
                Event::MailboxDrained => return texts,
                _ => {}
            }
        }
    }
}

/// A new device registered with the server at `url`.
pub async fn device_at(url: &str) -> Device {
    device_with(url, &ConnectOptions::new()).await
}

/// A new device registered with the server at `url`, connecting (and
/// reconnecting) with `options` (a CA to trust for `wss://`).
pub async fn device_with(url: &str, options: &ConnectOptions) -> Device {
    let home = tempfile::tempdir().expect("home");
    let identity = Identity::generate();
    let (client, _) = Client::connect_with(url, options).await.expect("connect");
    client.register(&identity).await.expect("register");
    let mut state = LocalState::new(identity);
    state.server_name = Some(client.server_name().to_owned());
    let store = KeyStore::create(home.path(), "pw", TEST_KDF, &state).expect("key store");
    let messenger = Messenger::connect_with(url, options, store, state)
        .await
        .expect("messenger");
    Device { messenger, home }
}

/// `home`'s device, logged in anew at `url` (after a restart of either).
pub async fn reopen_at(url: &str, home: tempfile::TempDir) -> Device {
    let (store, state) = KeyStore::open(home.path(), "pw").expect("reopen");
    let messenger = Messenger::connect(url, store, state)
        .await
        .expect("messenger");
    Device { messenger, home }
}

/// Two new friends at `url`, the second gone offline: returns the first,
/// the second's id, and the home that holds the second's state.
pub async fn friends_one_offline(url: &str) -> (Device, wisp_proto::UserId, tempfile::TempDir) {
    let alice = device_at(url).await;
    let bob = device_at(url).await;
    befriend_devices(&alice, &bob).await;
    let id = bob.id();
    (alice, id, bob.home)
}

/// Makes two devices friends.
pub async fn befriend_devices(a: &Device, b: &Device) {
    a.messenger
        .client()
        .request_friend(b.id())
        .await
        .expect("request");
    b.messenger
        .client()
        .accept_friend(a.id())
        .await
        .expect("accept");
}

/// A user speaking through a plain SDK connection.
#[derive(Debug)]
pub struct TestUser {
    pub client: Client,
    pub events: Events,
    pub identity: Identity,
}

impl TestUser {
    pub fn id(&self) -> wisp_proto::UserId {
        self.identity.user_id()
    }
}

/// Makes two users friends.
pub async fn befriend(a: &TestUser, b: &TestUser) {
    a.client.request_friend(b.id()).await.expect("request");
    b.client.accept_friend(a.id()).await.expect("accept");
}

/// The error code of a refused SDK call.
pub fn code_of<T: std::fmt::Debug>(
    result: Result<T, wisp_client::ClientError>,
) -> wisp_proto::ErrorCode {
    match result {
        Err(error) => error
            .code()
            .unwrap_or_else(|| panic!("not a refusal: {error}")),
        Ok(value) => panic!("expected a refusal, got {value:?}"),
    }
}
