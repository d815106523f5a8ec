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

Exit codes: 0 success; 1 refused by the server or failed; 2 bad usage;
3 server unreachable or connection lost; 4 key store problem (no identity,
wrong passphrase)."
)]
pub struct Cli {
    /// Directory holding your encrypted identity [default: the platform data
    /// directory, e.g. ~/.local/share/wisp]
    #[arg(long, env = "WISP_HOME", global = true, value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Server to talk to
    #[arg(long, env = "WISP_SERVER", global = true, value_name = "URL", default_value = DEFAULT_SERVER)]
    pub server: String,

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
    /// Manage your circle of friends (at most 20)
    #[command(subcommand)]
    Friend(FriendCommand),
    /// Send an end-to-end encrypted message to a friend; exits 0 once the
    /// server has stored it
    Send {
        /// Your friend's user id
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
    /// Print the messages waiting for you and burn them (a second recv
    /// prints nothing)
    Recv {
        /// Keep listening this many seconds after the waiting messages
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
        /// One JSON object per line: {"id", "from", "text", "sent_at",
        /// "expires_at", "sent_unix_ms", "expires_unix_ms", "view_seconds"}
        #[arg(long)]
        json: bool,
    },
}

/// `wisp friend ...`
#[derive(Debug, Subcommand)]
pub enum FriendCommand {
    /// Ask someone to be your friend (becomes a friendship at once if they
    /// asked you too)
    Add {
        /// Their user id
        id: String,
    },
    /// Accept a friend request
    Accept {
        /// Who asked
        id: String,
    },
    /// Decline a friend request
    Decline {
        /// Who asked
        id: String,
    },
    /// Withdraw a friend request you sent
    Cancel {
        /// Whom you asked
        id: String,
    },
    /// End a friendship
    Remove {
        /// The friend
        id: String,
    },
    /// Block someone: ends any friendship, drops requests both ways, and
    /// silently drops their future requests
    Block {
        /// Whom to block
        id: String,
    },
    /// Lift a block
    Unblock {
        /// Whom to unblock
        id: String,
    },
    /// List your friends
    List {
        /// One JSON object per line: {"id", "since_unix_ms"}
        #[arg(long)]
        json: bool,
    },
    /// List pending friend requests, to you and from you
    Requests {
        /// One JSON object per line: {"id", "direction": "incoming"|"outgoing", "created_unix_ms"}
        #[arg(long)]
        json: bool,
    },
    /// List the users you have blocked
    Blocked {
        /// One JSON object per line: {"id"}
        #[arg(long)]
        json: bool,
    },
}
