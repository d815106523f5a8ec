//! The command-line interface. Command names, flags, JSON fields and exit
//! codes are a public interface scripts depend on: extend, never rename.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The default server URL.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:7700";

/// wisp: end-to-end encrypted messages that burn once read, for a circle of
/// at most 20 friends, without a phone number.
#[derive(Debug, Parser)]
#[command(
    name = "wisp",
    version,
    about,
    after_help = "\
The passphrase that protects your keys is read from WISP_PASSPHRASE when set;
otherwise you are asked for it (input hidden).

A wss:// server is reached over TLS, trusting the system's root
certificates, plus --ca-cert FILE (or WISP_CA_CERT) for a deployment with
its own CA; a certificate that is untrusted, expired or for another name
is refused (exit code 3), never retried in plain text.

Exit codes: 0 success; 1 refused by the server or failed (also: an
unreadable or invalid --ca-cert file); 2 bad usage; 3 server unreachable,
its certificate refused, or connection lost; 4 key store problem (no identity,
wrong passphrase); 5 a friend's key is forged (not signed by their identity:
someone may be intercepting; nothing was sent; compare the safety number
with `wisp verify ID`).

Names: wherever a command takes an ID it also takes the name you gave that
friend (`wisp friend add ID --name Bob`, `wisp friend rename ID Bob`); names
stay on this device. A name marked ~ (as in `~Alice`) is the one the friend
chose for themselves (`wisp profile name`): anyone can choose any name, and
only the safety number (`wisp verify`) proves who they are. Text from the
network (messages, names, server errors) is printed with control and
text-direction characters shown escaped, and a message's further lines
indented under its sender."
)]
pub struct Cli {
    /// Directory holding your encrypted identity [default: the platform data
    /// directory, e.g. ~/.local/share/wisp]
    #[arg(long, env = "WISP_HOME", global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Server to talk to
    #[arg(long, env = "WISP_SERVER", global = true, value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,

    /// For a wss:// server: also trust the CA certificate(s) in this PEM
    /// file (a self-hosted deployment's own CA), besides the system's roots
    #[arg(long, env = "WISP_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create your identity (if this home has none) and register it with the
    /// server; prints your user id as the last line
    Register,
    /// Print your user id
    Id,
    /// Print your invitation link and its QR code (works offline)
    ///
    /// The first line is the link wisp://add/<your id>/<token>; below it,
    /// the same link as a QR code to scan. Whoever gets it adds you with
    /// `wisp friend add <link>`. The token, signed by your identity key,
    /// lets their request through for 30 days even if strangers filled
    /// your pending requests.
    Invite {
        /// Print one JSON object instead: {"id", "link", "expires_unix_ms"}
        #[arg(long)]
        json: bool,
    },
    /// Show the safety number to compare with a friend; --mark them as
    /// verified
    ///
    /// Prints the safety number of you and your friend (12 groups of 5
    /// digits, the same on both devices, different for every other pair), a
    /// QR code of it, and whether the friend is marked verified. Compare it
    /// with them in person or on a call: if it matches on both devices, no
    /// one (not even the server) stands between you; then run
    /// `wisp verify ID --mark`. Friends only; needs the server.
    Verify {
        /// Your friend's user id, name, or wisp://add/ link
        id: String,
        /// Record that the safety number matched: the friend is verified
        #[arg(long, conflicts_with = "unmark")]
        mark: bool,
        /// Remove the verified mark
        #[arg(long)]
        unmark: bool,
        /// Print one JSON object instead: {"id", "safety_number" (60 digits),
        /// "verified", "name" (yours for them, or null)}
        #[arg(long)]
        json: bool,
    },
    /// Manage your circle of friends (at most 20) and your names for them
    #[command(subcommand)]
    Friend(FriendCommand),
    /// Your display name, the one your friends see
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Your account on the server
    #[command(subcommand)]
    Account(AccountCommand),
    /// Send an end-to-end encrypted message to a friend; exits 0 once the
    /// server has stored it
    Send {
        /// Your friend's user id, name, or wisp://add/ link
        id: String,
        /// The message
        text: String,
        /// Seconds the message may live, read or not (at most 3600)
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        ttl: u64,
        /// Seconds the message stays visible once read (0: until it expires)
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        view: u64,
    },
    /// Open the full-screen chat: friends with unread counts, conversations
    /// with each message's countdowns, requests to accept or decline.
    /// Keys: ↑/↓ pick, Enter opens or sends, Esc back, n names the friend,
    /// N sets your display name, ? help, Ctrl-C quits
    Chat {
        /// A friend whose conversation opens at start (id, name, or
        /// wisp://add/ link)
        id: Option<String>,
        /// Seconds the messages you send stay visible once read (0: until
        /// they expire)
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        view: u64,
        /// Seconds the messages you send may live, read or not (at most 3600)
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        ttl: u64,
    },
    /// Print the messages waiting for you and burn them (a second recv
    /// prints nothing)
    Recv {
        /// Keep listening this many seconds after the waiting messages
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
        /// One JSON object per line: {"id", "from", "text", "sent_at",
        /// "expires_at", "sent_unix_ms", "expires_unix_ms", "view_seconds",
        /// "from_name" (your name for the sender, or null),
        /// "from_display_name" (the name they chose, or null)}
        #[arg(long)]
        json: bool,
    },
}

/// `wisp account ...`
#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Delete your account for good, on the server and on this device
    ///
    /// The server deletes everything it holds about you: your keys, your
    /// friendships (each friend sees you removed them), pending requests,
    /// blocks, and every message waiting to or from you. Then your key
    /// store is deleted from this device. Your id can never register or
    /// log in again. Asks you to type your id to confirm, unless --yes.
    Delete {
        /// Do not ask: delete at once (for scripts)
        #[arg(long)]
        yes: bool,
    },
}

/// `wisp friend ...`
#[derive(Debug, Subcommand)]
pub enum FriendCommand {
    /// Ask someone to be your friend (becomes a friendship at once if they
    /// asked you too)
    Add {
        /// Their user id, or their invitation link wisp://add/<ID>/<TOKEN>
        /// (see `wisp invite`). The server answers alike whether or not the
        /// id is registered: a mistyped id just stays pending until the
        /// request expires (7 days)
        id: String,
        /// Your name for them, kept on this device only (see `rename`)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Accept a friend request
    Accept {
        /// Who asked (id or name)
        id: String,
        /// Your name for them, kept on this device only (see `rename`)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
    },
    /// Give someone your own name for them, or with "" remove it
    ///
    /// The name stays on this device (in your encrypted key store); it is
    /// never sent anywhere. It is one line of at most 64 characters, not
    /// like an id, and unique among your names (regardless of case). Every
    /// command that takes an id takes it too, and every list shows it.
    Rename {
        /// Their user id (or current name, or wisp://add/ link)
        id: String,
        /// The new name; "" removes it
        name: String,
    },
    /// Decline a friend request (your name for them goes too)
    Decline {
        /// Who asked (id or name)
        id: String,
    },
    /// Withdraw a friend request you sent (your name for them goes too)
    Cancel {
        /// Whom you asked (id or name)
        id: String,
    },
    /// End a friendship (your name for them goes too)
    Remove {
        /// The friend (id or name)
        id: String,
    },
    /// Block someone: ends any friendship, drops requests both ways, and
    /// silently drops their future requests
    Block {
        /// Whom to block (id or name)
        id: String,
    },
    /// Lift a block
    Unblock {
        /// Whom to unblock (id or name)
        id: String,
    },
    /// List your friends, with your names for them (or, marked ~, the
    /// names they chose); those you verified (`wisp verify`) are marked
    /// "(verified)"
    List {
        /// One JSON object per line: {"id", "since_unix_ms", "verified",
        /// "name" (yours for them, or null), "display_name" (theirs, or
        /// null)}
        #[arg(long)]
        json: bool,
    },
    /// List pending friend requests, to you and from you
    Requests {
        /// One JSON object per line: {"id", "direction": "incoming"|"outgoing",
        /// "created_unix_ms", "name" (yours for them, or null)}
        #[arg(long)]
        json: bool,
    },
    /// List the users you have blocked
    Blocked {
        /// One JSON object per line: {"id", "name" (yours for them, or null)}
        #[arg(long)]
        json: bool,
    },
}

/// `wisp profile ...`
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Choose the name your friends see, or with "" remove it
    ///
    /// It goes to each friend inside the end-to-end encryption (now, and
    /// to each new friend), never readable by the server. One line of at
    /// most 64 characters. Friends see it marked as your own choice until
    /// they give you a name of theirs.
    Name {
        /// Your display name; "" removes it
        name: String,
    },
    /// Show your display name
    Show {
        /// Print one JSON object instead: {"display_name" (or null)}
        #[arg(long)]
        json: bool,
    },
}
