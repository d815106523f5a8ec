//! `wisp-bench idle`: many logged-in users doing nothing, and what each
//! costs the server in memory (its resident set, from `/proc`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures_util::{StreamExt, TryStreamExt, stream};
use indicatif::ProgressBar;
use serde::Serialize;
use wisp_client::{Client, ConnectOptions, Events, Identity};

use crate::proc::rss_kib;

/// Connections per loopback source address (well under the ephemeral port
/// range of one address).
const PER_SOURCE_ADDRESS: usize = 20_000;

/// Logins in flight at once.
const LOGINS_IN_FLIGHT: usize = 64;

/// What holding the users cost.
#[derive(Debug, Clone, Serialize)]
pub struct IdleSummary {
    pub users: usize,
    /// Logins per second while connecting them.
    pub logins_per_s: f64,
    /// 99th percentile of one login (connect, hello, challenge, signed
    /// answer), in milliseconds, with [`LOGINS_IN_FLIGHT`] at a time.
    pub login_p99_ms: f64,
    /// Loopback source addresses used.
    pub source_addresses: usize,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    /// Server memory per idle logged-in user.
    pub kib_per_connection: Option<f64>,
}

impl IdleSummary {
    pub fn render(&self) -> String {
        let memory = match (
            self.server_rss_before_kib,
            self.server_rss_after_kib,
            self.kib_per_connection,
        ) {
            (Some(before), Some(after), Some(each)) => format!(
                "server resident memory {before} KiB before, {after} KiB with every user connected: {each:.1} KiB per idle connection"
            ),
            _ => "server memory not measured (give --server-pid)".to_owned(),
        };
        format!(
            "{} idle users logged in ({:.0} logins/s, p99 {:.2} ms per login, from {} source address(es))\n{memory}",
            self.users, self.logins_per_s, self.login_p99_ms, self.source_addresses
        )
    }
}

/// The 99th percentile of `took`, in milliseconds (nearest rank).
fn p99_ms(took: &mut [Duration]) -> f64 {
    if took.is_empty() {
        return 0.0;
    }
    took.sort_unstable();
    let rank = (took.len() * 99).div_ceil(100).max(1);
    took[rank - 1].as_secs_f64() * 1000.0
}

/// The source address for connection `i`: the system's choice for the
/// first [`PER_SOURCE_ADDRESS`], then (when the server is on loopback)
/// 127.0.0.2, 127.0.0.3, … for each further block.
fn source(server: &str, i: usize) -> Option<IpAddr> {
    let block = i / PER_SOURCE_ADDRESS;
    if block == 0 {
        return None;
    }
    let rest = server
        .strip_prefix("ws://")
        .or_else(|| server.strip_prefix("wss://"))?;
    let host = rest.split(['/', ':']).next()?;
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return None;
    }
    let x = u8::try_from(1 + block).ok()?;
    Some(IpAddr::from([127, 0, 0, x]))
}

/// A user logged in: the connection, and how long its login took.
type LoggedIn = ((Client, Events), Duration);

/// Logs every identity in on `server`, [`LOGINS_IN_FLIGHT`] at a time,
/// each over a connection of its own (spread over source addresses).
async fn log_in_all(
    server: &str,
    options: &ConnectOptions,
    identities: Vec<Identity>,
    bar: &ProgressBar,
) -> anyhow::Result<Vec<LoggedIn>> {
    stream::iter(identities.into_iter().enumerate())
        .map(|(i, identity)| async move {
            let options = options.clone().from_address(source(server, i));
            let started = Instant::now();
            let (mut client, events) = Client::connect_with(server, &options).await?;
            let name = client.server_name().to_owned();
            client.login(&identity, &name).await?;
            let took = started.elapsed();
            bar.inc(1);
            anyhow::Ok(((client, events), took))
        })
        .buffer_unordered(LOGINS_IN_FLIGHT)
        .try_collect()
        .await
}

/// Registers `users` users, measures the server, logs them all in, and
/// measures again; holds them for `hold` before letting go.
pub async fn idle(
    server: &str,
    options: &ConnectOptions,
    users: usize,
    server_pid: Option<u32>,
    hold: Duration,
    quiet: bool,
) -> anyhow::Result<IdleSummary> {
    if users == 0 {
        bail!("give --users 1 or more");
    }
    let bar = crate::run::progress(quiet, users as u64, "registering");
    let identities = crate::run::register(&[server.to_owned()], options, users, &bar).await?;
    bar.finish();
    // Let the registration connections close before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = server_pid.map(rss_kib).transpose()?;

    let bar = crate::run::progress(quiet, users as u64, "logging in");
    let started = Instant::now();
    let (held, mut logins): (Vec<_>, Vec<Duration>) = log_in_all(server, options, identities, &bar)
        .await?
        .into_iter()
        .unzip();
    let took = started.elapsed();
    bar.finish();
    // Let the server settle (login bookkeeping, allocator) before reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server_pid.map(rss_kib).transpose()?;
    tokio::time::sleep(hold).await;
    drop(held);
    Ok(IdleSummary {
        users,
        logins_per_s: users as f64 / took.as_secs_f64(),
        login_p99_ms: p99_ms(&mut logins),
        source_addresses: users.div_ceil(PER_SOURCE_ADDRESS),
        server_rss_before_kib: before,
        server_rss_after_kib: after,
        kib_per_connection: before
            .zip(after)
            .map(|(b, a)| a.saturating_sub(b) as f64 / users as f64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_p99_is_the_nearest_rank() {
        let mut took: Vec<Duration> = (1..=200).map(Duration::from_millis).collect();
        took.reverse();
        assert_eq!(p99_ms(&mut took), 198.0);
        assert_eq!(p99_ms(&mut [Duration::from_millis(7)]), 7.0);
        assert_eq!(p99_ms(&mut []), 0.0);
    }

    #[test]
    fn loopback_connections_spread_over_source_addresses() {
        assert_eq!(source("ws://127.0.0.1:7700", 0), None);
        assert_eq!(
            source("ws://127.0.0.1:7700", PER_SOURCE_ADDRESS),
            Some(IpAddr::from([127, 0, 0, 2]))
        );
        assert_eq!(source("ws://10.0.0.1:7700", PER_SOURCE_ADDRESS), None);
    }
}
