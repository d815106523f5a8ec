//! Server configuration: command-line flags, then `WISP_*` environment
//! variables, then an optional TOML file, then defaults that run out of the
//! box (127.0.0.1:7700, SQLite under ./wisp-data).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// Default data directory (relative to the working directory).
pub const DEFAULT_DATA_DIR: &str = "wisp-data";
/// Default proof-of-work difficulty in bits: about a quarter of a million
/// hashes, well under a second on a phone.
pub const DEFAULT_POW_DIFFICULTY: u32 = 18;
/// Default registrations allowed per source address per minute.
pub const DEFAULT_REGISTER_LIMIT: u32 = 10;
/// Default messages one user may send per minute.
pub const DEFAULT_SEND_LIMIT: u32 = 600;
/// Default cap on simultaneous connections.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;
/// Default cap on simultaneous connections from one address (an IPv6
/// client: from one /64).
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 64;
/// Default time a new connection has for its TLS handshake and its HTTP
/// request up to the WebSocket upgrade.
pub const DEFAULT_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Default cap on connections one user may have logged in at once.
pub const DEFAULT_MAX_SESSIONS_PER_USER: usize = 5;
/// Default cap on the ciphertext bytes waiting in one recipient's mailbox.
pub const DEFAULT_MAX_MAILBOX_BYTES: u64 = 8 << 20;
/// Default cap on the ciphertext bytes one sender has waiting, in all.
pub const DEFAULT_MAX_OUTBOX_BYTES: u64 = 4 << 20;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The resolved configuration a server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address for the WebSocket and HTTP endpoints.
    pub listen: SocketAddr,
    /// Where the embedded store keeps its SQLite file.
    pub data_dir: PathBuf,
    /// The built web app (`web/dist`) served to browsers at `/`; `None`
    /// serves no pages, only the WebSocket and the operator endpoints.
    pub web_root: Option<PathBuf>,
    /// The deployment's name; generated and stored on first start if unset.
    pub server_name: Option<String>,
    /// Proof-of-work bits required to register; 0 turns it off.
    pub pow_difficulty: u32,
    /// Registrations per source address per minute; 0 turns the limit off.
    pub register_limit: u32,
    /// Messages one user may send per minute (bursts up to the same); 0
    /// turns the limit off.
    pub send_limit: u32,
    /// Simultaneous connections before new ones are refused.
    pub max_connections: usize,
    /// Simultaneous connections from one client address (behind a trusted
    /// proxy: from one forwarded client); 0 turns the cap off.
    pub max_connections_per_address: usize,
    /// PEM certificate chain to serve TLS with (with `tls_key`).
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// A separate admin address for `/metrics`, `/healthz` and `/readyz`;
    /// when set, `/metrics` is not served on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Time a new connection has for its TLS handshake and HTTP request up
    /// to the upgrade (not a flag; tests shorten it).
    pub handshake_timeout: std::time::Duration,
    /// Connections one user may have logged in at once; a login beyond it
    /// closes the user's oldest connection.
    pub max_sessions_per_user: usize,
    /// Ciphertext bytes that may wait in one recipient's mailbox, from all
    /// senders together.
    pub max_mailbox_bytes: u64,
    /// Ciphertext bytes one sender may have waiting, in all mailboxes
    /// together.
    pub max_outbox_bytes: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// PostgreSQL for accounts, friends and keys (cluster backend).
    pub postgres_url: Option<String>,
    /// Redis for mailboxes and cross-node notifications (cluster backend).
    pub redis_url: Option<String>,
    /// Prefix of every Redis key and channel.
    pub redis_prefix: String,
    /// Redis replicas each mailbox write must reach before it is
    /// acknowledged (Redis `WAIT`); 0 waits for none.
    pub redis_replicas: u32,
    /// Load balancers whose `X-Forwarded-For` is believed: for a connection
    /// from one of these, the client's address (for the per-address
    /// registration limit) is the last one in that header that is not
    /// itself a trusted proxy.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            server_name: None,
            pow_difficulty: DEFAULT_POW_DIFFICULTY,
            register_limit: DEFAULT_REGISTER_LIMIT,
            send_limit: DEFAULT_SEND_LIMIT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            tls_cert: None,
            tls_key: None,
            metrics_listen: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_sessions_per_user: DEFAULT_MAX_SESSIONS_PER_USER,
            max_mailbox_bytes: DEFAULT_MAX_MAILBOX_BYTES,
            max_outbox_bytes: DEFAULT_MAX_OUTBOX_BYTES,
            log_format: LogFormat::Text,
            postgres_url: None,
            redis_url: None,
            redis_prefix: "wisp".to_owned(),
            redis_replicas: 0,
            trusted_proxies: Vec::new(),
            web_root: None,
        }
    }
}

/// `wisp-server`: the Wisp messenger server.
///
/// With no flags it listens on 127.0.0.1:7700 and keeps its state in
/// ./wisp-data/wisp.sqlite3. Every flag can also be set by its environment
/// variable or in the TOML file given with --config (flags win over the
/// environment, which wins over the file).
#[derive(Debug, Parser)]
#[command(name = "wisp-server", version, about, long_about)]
pub struct Args {
    /// Address to listen on for WebSocket clients and /healthz, /readyz (and
    /// /metrics unless --metrics-listen is set) [default: 127.0.0.1:7700]
    #[arg(long, env = "WISP_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// PEM certificate chain (leaf first) to serve TLS (1.3 and 1.2) on the
    /// listen address, WebSocket and HTTP alike; give --tls-key too.
    /// Reloaded with the key on SIGHUP. Without both, plain text (behind a
    /// TLS-terminating balancer)
    #[arg(long, env = "WISP_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert
    #[arg(long, env = "WISP_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,

    /// A separate admin address serving /metrics, /healthz and /readyz, e.g.
    /// 10.0.0.5:9700 or 127.0.0.1:9700; then /metrics is not served on the
    /// public listen address (recommended: metrics tell anyone who can read
    /// them how busy the server is) [default: none, /metrics on --listen]
    #[arg(long, env = "WISP_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<SocketAddr>,

    /// Directory for the embedded SQLite store [default: ./wisp-data]
    #[arg(long, env = "WISP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Serve the web app built in DIR (`scripts/web-build.sh` makes
    /// web/dist): a browser opening the listen address gets DIR/index.html,
    /// with a strict Content-Security-Policy; the WebSocket stays at `/`.
    /// Read once at start [default: none, no pages]
    #[arg(long, env = "WISP_WEB_ROOT", value_name = "DIR")]
    pub web_root: Option<PathBuf>,

    /// TOML file with any of: listen, tls_cert, tls_key, metrics_listen,
    /// data_dir, web_root, server_name, pow_difficulty, register_limit, send_limit,
    /// max_connections, max_connections_per_address, max_sessions_per_user,
    /// max_mailbox_bytes, max_outbox_bytes, log_format,
    /// postgres_url, redis_url, redis_prefix, redis_replicas, trusted_proxies
    #[arg(long, env = "WISP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The deployment's name, signed into every login. Set it the same on all
    /// nodes of a deployment; if unset, a random name is generated on first
    /// start and kept in the store
    #[arg(long, env = "WISP_SERVER_NAME", value_name = "NAME")]
    pub server_name: Option<String>,

    /// Proof-of-work bits a client must solve to register; 0 turns it off
    /// [default: 18]
    #[arg(long, env = "WISP_POW_DIFFICULTY", value_name = "BITS",
          value_parser = clap::value_parser!(u32).range(0..=wisp_proto::limits::MAX_POW_DIFFICULTY as i64))]
    pub pow_difficulty: Option<u32>,

    /// Registrations allowed per source address per minute; 0 turns the limit
    /// off [default: 10]
    #[arg(long, env = "WISP_REGISTER_LIMIT", value_name = "PER_MINUTE")]
    pub register_limit: Option<u32>,

    /// Messages one user may send per minute; 0 turns the limit off
    /// [default: 600]
    #[arg(long, env = "WISP_SEND_LIMIT", value_name = "PER_MINUTE")]
    pub send_limit: Option<u32>,

    /// Simultaneous connections before new ones are refused [default: 100000]
    #[arg(long, env = "WISP_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Simultaneous connections from one address (IPv6: one /64), counted
    /// from accept, handshakes included; behind --trusted-proxy, per
    /// forwarded client. 0 turns the cap off [default: 64]
    #[arg(long, env = "WISP_MAX_CONNECTIONS_PER_ADDRESS", value_name = "N")]
    pub max_connections_per_address: Option<usize>,

    /// Connections one user may have logged in at once; a login beyond it
    /// closes that user's oldest connection (close code 1008) [default: 5]
    #[arg(long, env = "WISP_MAX_SESSIONS_PER_USER", value_name = "N")]
    pub max_sessions_per_user: Option<usize>,

    /// Ciphertext bytes that may wait unread in one user's mailbox, from all
    /// senders together; past it, sends to that user are refused with
    /// MAILBOX_FULL. At least the largest message (65536) [default: 8388608]
    #[arg(long, env = "WISP_MAX_MAILBOX_BYTES", value_name = "BYTES")]
    pub max_mailbox_bytes: Option<u64>,

    /// Ciphertext bytes one user may have waiting unread, in all mailboxes
    /// together; past it, that user's sends are refused with MAILBOX_FULL.
    /// At least the largest message (65536) [default: 4194304]
    #[arg(long, env = "WISP_MAX_OUTBOX_BYTES", value_name = "BYTES")]
    pub max_outbox_bytes: Option<u64>,

    /// Log format; the level comes from WISP_LOG or RUST_LOG (default: info)
    #[arg(long, env = "WISP_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Cluster backend: PostgreSQL for accounts, friends and keys, e.g.
    /// postgres://wisp@db/wisp (give --redis-url too). Without both, the
    /// embedded SQLite store is used
    #[arg(long, env = "WISP_POSTGRES_URL", value_name = "URL")]
    pub postgres_url: Option<String>,

    /// Cluster backend: Redis for mailboxes and cross-node notifications
    /// (give --postgres-url too). One server: redis://cache:6379; a
    /// Sentinel set, followed through failovers:
    /// redis+sentinel://s1:26379,s2:26379,s3:26379/SERVICE; a Redis
    /// Cluster: redis+cluster://c1:7000,c2:7000,c3:7000. Credentials go
    /// before the hosts (redis+sentinel://:PASSWORD@s1:26379/SERVICE)
    #[arg(long, env = "WISP_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel, to share one Redis between
    /// deployments [default: wisp]
    #[arg(long, env = "WISP_REDIS_PREFIX", value_name = "PREFIX")]
    pub redis_prefix: Option<String>,

    /// Redis replicas every mailbox write must reach (Redis WAIT, up to 1 s)
    /// before a message is acknowledged to its sender, so a failover loses
    /// no acknowledged message. With a primary and two replicas under
    /// Sentinel, 1 [default: 0]
    #[arg(long, env = "WISP_REDIS_REPLICAS", value_name = "N")]
    pub redis_replicas: Option<u32>,

    /// A load balancer (address or CIDR, e.g. 10.0.0.0/24) whose
    /// X-Forwarded-For header names the real client, so registrations are
    /// limited per client rather than per balancer. Repeat the flag, or
    /// separate with commas. Only list proxies that overwrite or append to
    /// the header; anyone else could forge it [default: none]
    #[arg(
        long = "trusted-proxy",
        env = "WISP_TRUSTED_PROXIES",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = parse_proxy
    )]
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_listen: Option<SocketAddr>,
    max_connections_per_address: Option<usize>,
    data_dir: Option<PathBuf>,
    web_root: Option<PathBuf>,
    server_name: Option<String>,
    pow_difficulty: Option<u32>,
    register_limit: Option<u32>,
    send_limit: Option<u32>,
    max_connections: Option<usize>,
    max_sessions_per_user: Option<usize>,
    max_mailbox_bytes: Option<u64>,
    max_outbox_bytes: Option<u64>,
    log_format: Option<LogFormat>,
    postgres_url: Option<String>,
    redis_url: Option<String>,
    redis_prefix: Option<String>,
    redis_replicas: Option<u32>,
    trusted_proxies: Option<Vec<String>>,
}

/// A proxy's address or network: `10.0.0.5` or `10.0.0.0/24`.
fn parse_proxy(s: &str) -> Result<ipnet::IpNet, String> {
    s.parse::<ipnet::IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("`{s}` is not an address or a network like 10.0.0.0/24"))
}

/// Why the configuration could not be resolved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys.
    #[error("config file {path} is invalid: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's explanation.
        message: String,
    },
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

impl Args {
    /// Merges flags and environment (already in `self`) over the config file
    /// and defaults.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let config = self.over(file)?;
        config.check()?;
        Ok(config)
    }

    /// Each setting from `self` (flags and environment), else from `file`,
    /// else the default.
    fn over(self, file: FileConfig) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        Ok(Config {
            listen: self.listen.or(file.listen).unwrap_or(defaults.listen),
            data_dir: self.data_dir.or(file.data_dir).unwrap_or(defaults.data_dir),
            server_name: self.server_name.or(file.server_name),
            pow_difficulty: self
                .pow_difficulty
                .or(file.pow_difficulty)
                .unwrap_or(defaults.pow_difficulty),
            register_limit: self
                .register_limit
                .or(file.register_limit)
                .unwrap_or(defaults.register_limit),
            send_limit: self
                .send_limit
                .or(file.send_limit)
                .unwrap_or(defaults.send_limit),
            max_connections: self
                .max_connections
                .or(file.max_connections)
                .unwrap_or(defaults.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(file.max_connections_per_address)
                .unwrap_or(defaults.max_connections_per_address),
            tls_cert: self.tls_cert.or(file.tls_cert),
            tls_key: self.tls_key.or(file.tls_key),
            web_root: self.web_root.or(file.web_root),
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            handshake_timeout: defaults.handshake_timeout,
            max_sessions_per_user: self
                .max_sessions_per_user
                .or(file.max_sessions_per_user)
                .unwrap_or(defaults.max_sessions_per_user),
            max_mailbox_bytes: self
                .max_mailbox_bytes
                .or(file.max_mailbox_bytes)
                .unwrap_or(defaults.max_mailbox_bytes),
            max_outbox_bytes: self
                .max_outbox_bytes
                .or(file.max_outbox_bytes)
                .unwrap_or(defaults.max_outbox_bytes),
            log_format: self
                .log_format
                .or(file.log_format)
                .unwrap_or(defaults.log_format),
            postgres_url: self.postgres_url.or(file.postgres_url),
            redis_url: self.redis_url.or(file.redis_url),
            redis_prefix: self
                .redis_prefix
                .or(file.redis_prefix)
                .unwrap_or(defaults.redis_prefix),
            redis_replicas: self
                .redis_replicas
                .or(file.redis_replicas)
                .unwrap_or(defaults.redis_replicas),
            trusted_proxies: if self.trusted_proxies.is_empty() {
                match file.trusted_proxies {
                    Some(list) => list
                        .iter()
                        .map(|s| parse_proxy(s))
                        .collect::<Result<_, _>>()
                        .map_err(|why| ConfigError::Invalid(format!("trusted_proxies: {why}")))?,
                    None => defaults.trusted_proxies,
                }
            } else {
                self.trusted_proxies
            },
        })
    }
}

impl Config {
    /// Refuses settings that do not go together or are out of range.
    fn check(&self) -> Result<(), ConfigError> {
        if self.postgres_url.is_some() != self.redis_url.is_some() {
            return Err(ConfigError::Invalid(
                "the cluster backend needs both --postgres-url and --redis-url".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "TLS needs both --tls-cert and --tls-key (tls_cert and tls_key)".into(),
            ));
        }
        if self
            .metrics_listen
            .is_some_and(|admin| admin == self.listen && admin.port() != 0)
        {
            return Err(ConfigError::Invalid(
                "metrics_listen must differ from listen".into(),
            ));
        }
        if self.pow_difficulty > wisp_proto::limits::MAX_POW_DIFFICULTY {
            return Err(ConfigError::Invalid(format!(
                "pow_difficulty {} is over the most clients will solve ({})",
                self.pow_difficulty,
                wisp_proto::limits::MAX_POW_DIFFICULTY
            )));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "max_connections must be at least 1".into(),
            ));
        }
        if self.max_sessions_per_user == 0 {
            return Err(ConfigError::Invalid(
                "max_sessions_per_user must be at least 1".into(),
            ));
        }
        for (name, value) in [
            ("max_mailbox_bytes", self.max_mailbox_bytes),
            ("max_outbox_bytes", self.max_outbox_bytes),
        ] {
            let largest = wisp_proto::limits::MAX_CIPHERTEXT_BYTES as u64;
            if value < largest {
                return Err(ConfigError::Invalid(format!(
                    "{name} {value} is under the largest message ({largest} bytes)"
                )));
            }
        }
        if self
            .server_name
            .as_deref()
            .is_some_and(|n| n.is_empty() || n.len() > 255)
        {
            return Err(ConfigError::Invalid(
                "server_name must be 1 to 255 bytes".into(),
            ));
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_gives_the_embedded_defaults() {
        let config = Args::parse_from(["wisp-server"]).resolve().unwrap();
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.pow_difficulty, DEFAULT_POW_DIFFICULTY);
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wisp.toml");
        std::fs::write(&file, "pow_difficulty = 4\nregister_limit = 7\n").unwrap();
        let config = Args::parse_from([
            "wisp-server",
            "--config",
            file.to_str().unwrap(),
            "--pow-difficulty",
            "2",
        ])
        .resolve()
        .unwrap();
        assert_eq!(config.pow_difficulty, 2);
        assert_eq!(config.register_limit, 7);
    }

    #[test]
    fn unknown_keys_in_the_file_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wisp.toml");
        std::fs::write(&file, "listne = \"127.0.0.1:1\"\n").unwrap();
        let err = Args::parse_from(["wisp-server", "--config", file.to_str().unwrap()])
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("listne"), "{err}");
    }

    #[test]
    fn tls_admin_and_per_address_settings_resolve() {
        let config = Args::parse_from(["wisp-server"]).resolve().unwrap();
        assert_eq!(
            config.max_connections_per_address,
            DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
        );
        assert!(config.tls_cert.is_none() && config.metrics_listen.is_none());

        let err = Args::parse_from(["wisp-server", "--tls-cert", "a.pem"])
            .resolve()
            .unwrap_err();
        assert!(err.to_string().contains("--tls-key"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wisp.toml");
        std::fs::write(
            &file,
            "tls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nmetrics_listen = \"127.0.0.1:9700\"\n\
             max_connections_per_address = 0\n",
        )
        .unwrap();
        let config = Args::parse_from(["wisp-server", "--config", file.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(config.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(config.tls_key, Some(PathBuf::from("k.pem")));
        assert_eq!(
            config.metrics_listen,
            Some("127.0.0.1:9700".parse().unwrap())
        );
        assert_eq!(config.max_connections_per_address, 0);

        let err = Args::parse_from([
            "wisp-server",
            "--listen",
            "127.0.0.1:9700",
            "--metrics-listen",
            "127.0.0.1:9700",
        ])
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("metrics_listen"), "{err}");
    }

    #[test]
    fn sessions_per_user_come_from_the_flag_or_the_file_and_zero_is_refused() {
        let defaults = Args::parse_from(["wisp-server"]).resolve().unwrap();
        assert_eq!(
            defaults.max_sessions_per_user,
            DEFAULT_MAX_SESSIONS_PER_USER
        );
        let flag = Args::parse_from(["wisp-server", "--max-sessions-per-user", "2"])
            .resolve()
            .unwrap();
        assert_eq!(flag.max_sessions_per_user, 2);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wisp.toml");
        std::fs::write(&file, "max_sessions_per_user = 3\n").unwrap();
        let from_file = Args::parse_from(["wisp-server", "--config", file.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(from_file.max_sessions_per_user, 3);
        let zero = Args::parse_from(["wisp-server", "--max-sessions-per-user", "0"]).resolve();
        assert!(zero.is_err());
    }

    #[test]
    fn too_hard_a_puzzle_is_refused() {
        assert!(Args::try_parse_from(["wisp-server", "--pow-difficulty", "40"]).is_err());
    }

    #[test]
    fn trusted_proxies_and_replicas_come_from_flags_or_the_file() {
        let config = Args::parse_from([
            "wisp-server",
            "--trusted-proxy",
            "10.0.0.0/24,10.0.1.5",
            "--trusted-proxy",
            "fd00::/8",
        ])
        .resolve()
        .unwrap();
        assert_eq!(config.trusted_proxies.len(), 3);
        assert!(Args::try_parse_from(["wisp-server", "--trusted-proxy", "10.0.0.0/99"]).is_err());

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wisp.toml");
        std::fs::write(
            &file,
            "trusted_proxies = [\"192.168.0.0/16\", \"::1\"]\nredis_replicas = 1\n",
        )
        .unwrap();
        let config = Args::parse_from(["wisp-server", "--config", file.to_str().unwrap()])
            .resolve()
            .unwrap();
        assert_eq!(
            config.trusted_proxies,
            vec![
                "192.168.0.0/16".parse().unwrap(),
                "::1/128".parse().unwrap()
            ]
        );
        assert_eq!(config.redis_replicas, 1);
    }
}
