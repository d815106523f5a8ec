//! `wisp-server`: runs the server until SIGINT or SIGTERM; SIGHUP reloads
//! the TLS certificate and key.

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{self, LevelFilter};
use wisp_server::{Args, LogFormat, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Args::parse().resolve()?;
    init_logging(config.log_format);
    let server = Server::start(&config)
        .await
        .context("wisp-server could not start")?;
    tracing::info!(
        data_dir = %config.data_dir.display(),
        pow_difficulty = config.pow_difficulty,
        register_limit = config.register_limit,
        "ready; connect clients to {}",
        server.ws_url()
    );
    tokio::select! {
        () = shutdown_signal() => {}
        () = reload_on_hangup(&server) => {}
    }
    tracing::info!("shutting down");
    server.shutdown().await;
    Ok(())
}

/// Logs at the level WISP_LOG (or RUST_LOG) asks for, but never more than
/// [`DEPENDENCY_LOG_CAP`] from any crate but Wisp's own: dependencies'
/// debug and trace output includes frame and query contents (the
/// WebSocket library prints every frame it sends, ciphertext and all), and
/// no setting may put that in a log.
fn init_logging(format: LogFormat) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;

    let filter = EnvFilter::try_from_env("WISP_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let log_crate_hint = filter.max_level_hint();
    let cap = filter::Targets::new()
        .with_default(DEPENDENCY_LOG_CAP)
        .with_targets(WISP_CRATES.iter().map(|krate| (*krate, LevelFilter::TRACE)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        LogFormat::Json => layer.json().boxed(),
    };
    // Both filters apply to the whole subscriber (global filtering): with
    // them as one per-layer filter, events of Wisp's own crates below INFO
    // were lost once the PostgreSQL driver had logged (its notices at
    // startup), so WISP_LOG=debug showed nothing more on the cluster
    // backend.
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(cap)
        .with(layer);
    // Set here rather than by `init()`, whose bridge for dependencies that
    // log through the `log` crate (the WebSocket and Redis libraries, sqlx)
    // would let every level through, from the subscriber's hint: Wisp's
    // own crates may trace. Each record let through is forwarded and the
    // subscriber asked about it: the WebSocket library's per-frame trace
    // records cost 2 % of the server's CPU only to be dropped. No
    // dependency may log past [`DEPENDENCY_LOG_CAP`], so the bridge stops
    // there (or lower) itself.
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return;
    }
    let _ = tracing_log::LogTracer::builder()
        .with_max_level(log_crate_cap(log_crate_hint))
        .init();
}

/// The most the `log` crate passes on: what WISP_LOG asks for at most
/// (`hint`), never more than [`DEPENDENCY_LOG_CAP`].
fn log_crate_cap(hint: Option<LevelFilter>) -> tracing_log::log::LevelFilter {
    use tracing_log::AsLog;
    hint.map_or(DEPENDENCY_LOG_CAP, |hint| hint.min(DEPENDENCY_LOG_CAP))
        .as_log()
}

/// The most any dependency may log, whatever WISP_LOG says.
const DEPENDENCY_LOG_CAP: LevelFilter = LevelFilter::INFO;

/// The crates whose logging WISP_LOG controls in full: Wisp's own, which
/// log no ciphertext, keys or message text at any level.
const WISP_CRATES: &[&str] = &["wisp_server", "wisp_proto"];

/// Reloads the TLS certificate and key on every SIGHUP (never returns
/// unless SIGHUP cannot be listened for).
async fn reload_on_hangup(server: &Server) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(hangup) => hangup,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGHUP; certificates are not reloaded");
                return std::future::pending().await;
            }
        };
        while hangup.recv().await.is_some() {
            match server.reload_tls() {
                Ok(()) => tracing::info!("TLS certificate and key reloaded"),
                Err(error) => {
                    tracing::error!(%error, "TLS reload failed; still serving the previous certificate");
                }
            }
        }
    }
    std::future::pending().await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the server");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_crate_passes_on_no_more_than_a_dependency_may_log() {
        assert_eq!(
            log_crate_cap(Some(LevelFilter::WARN)),
            tracing_log::log::LevelFilter::Warn
        );
        assert_eq!(
            log_crate_cap(Some(LevelFilter::OFF)),
            tracing_log::log::LevelFilter::Off
        );
        // WISP_LOG=trace opens Wisp's own crates, not the dependencies'.
        assert_eq!(
            log_crate_cap(Some(LevelFilter::TRACE)),
            tracing_log::log::LevelFilter::Info
        );
        assert_eq!(log_crate_cap(None), tracing_log::log::LevelFilter::Info);
    }
}
