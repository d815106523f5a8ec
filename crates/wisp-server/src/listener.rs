//! The accept loop: every TCP connection, from `accept` until it closes,
//! under the server's limits. A connection takes its slot (of
//! `--max-connections`) and, unless it comes from a trusted proxy, its
//! place in its address's share (`--max-connections-per-address`) the moment
//! it is accepted, so half-open connections (mid-TLS-handshake, or with a
//! half-sent HTTP request) count like upgraded ones; one that is over either
//! limit is closed at once. The TLS handshake and the HTTP request phase up
//! to the WebSocket upgrade must finish within the handshake timeout
//! (slowloris); the upgraded connection keeps its slot until it ends.
//!
//! A refused plain-text connection is told why (`429` over its address's
//! share, `503` when every slot is taken) before it is closed, by at most
//! [`POLITE_REFUSALS`] small tasks at a time; beyond that, and on a TLS
//! listener (an answer would cost a handshake), it is closed without one.
//! Refusals are counted in `wisp_connections_refused_total{reason}` and
//! logged once per [`REFUSAL_LOG_EVERY`] at most, with their count.
//!
//! The same loop serves the admin listener (`--metrics-listen`), with its
//! own small pool of slots: health checks and scrapes there still get in
//! when the public listener is full.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::tls::ServerTls;

/// How long the loop pauses when the process is out of descriptors, so the
/// pending connections are not accepted in a busy loop while none can be.
const OUT_OF_DESCRIPTORS_PAUSE: Duration = Duration::from_millis(100);

/// Descriptors kept out of the public listener's reach: the stores' pools,
/// the admin listener, logs, the cluster bus.
pub(crate) const DESCRIPTOR_RESERVE: u64 = 256;

/// Refused connections answered at once; more are closed without an answer.
const POLITE_REFUSALS: usize = 64;

/// How long a refused connection may take to receive its answer (and have
/// its request read and discarded, so closing does not reset the answer
/// away).
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Refusals are logged at most this often (with how many there were).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Why a connection was refused at accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Every `--max-connections` slot is taken.
    Full,
    /// Its address holds its `--max-connections-per-address` share.
    AddressShare,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Full => "full",
            Refusal::AddressShare => "address",
        }
    }

    /// What the refused client is told.
    pub(crate) fn text(self) -> &'static str {
        match self {
            Refusal::Full => "the server is full; try again later\r\n",
            Refusal::AddressShare => "too many connections from your address; try again later\r\n",
        }
    }

    fn response(self) -> String {
        let status = match self {
            Refusal::Full => "503 Service Unavailable",
            Refusal::AddressShare => "429 Too Many Requests",
        };
        let text = self.text();
        format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: text/plain\r\n\
             Retry-After: 10\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )
    }
}

/// Refused connections: the budget for answering them, and the log.
#[derive(Debug)]
pub(crate) struct Refusals {
    answering: Arc<Semaphore>,
    log: Mutex<RefusalLog>,
}

#[derive(Debug)]
struct RefusalLog {
    since: Option<Instant>,
    full: u64,
    address_share: u64,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            answering: Arc::new(Semaphore::new(POLITE_REFUSALS)),
            log: Mutex::new(RefusalLog {
                since: None,
                full: 0,
                address_share: 0,
            }),
        }
    }
}

impl Refusals {
    /// Counts and (at most every [`REFUSAL_LOG_EVERY`]) logs a refusal.
    pub(crate) fn count(&self, refusal: Refusal) {
        metrics::counter!("wisp_connections_refused_total", "reason" => refusal.label())
            .increment(1);
        let mut log = lock(&self.log);
        match refusal {
            Refusal::Full => log.full += 1,
            Refusal::AddressShare => log.address_share += 1,
        }
        let due = log
            .since
            .is_none_or(|since| since.elapsed() >= REFUSAL_LOG_EVERY);
        if due {
            tracing::warn!(
                over_max_connections = log.full,
                over_max_connections_per_address = log.address_share,
                "connections refused since the last report (raise --max-connections or \
                 --max-connections-per-address if these are genuine clients)"
            );
            *log = RefusalLog {
                since: Some(Instant::now()),
                full: 0,
                address_share: 0,
            };
        }
    }

    /// Tells a plain-text client why it is refused, if an answering task is
    /// free; closes the connection either way.
    fn answer(&self, mut tcp: TcpStream, refusal: Refusal) {
        let Ok(permit) = Arc::clone(&self.answering).try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            let _permit = permit;
            let _ = tokio::time::timeout(REFUSAL_LINGER, async {
                tcp.write_all(refusal.response().as_bytes()).await?;
                tcp.shutdown().await?;
                // Read what the client sent until it closes, so the close
                // is a FIN after the answer, not a reset before it.
                let mut sink = [0u8; 1024];
                while tcp.read(&mut sink).await? > 0 {}
                std::io::Result::Ok(())
            })
            .await;
        });
    }
}

/// Connections per source address, counted from accept to close. IPv6
/// clients are counted per /64, the block one subscriber usually holds.
#[derive(Debug)]
pub(crate) struct AddressCounts {
    cap: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl AddressCounts {
    /// `cap` 0 counts nothing.
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A place for one more connection from `address`, or None when it has
    /// its share.
    pub(crate) fn admit(self: &Arc<Self>, address: IpAddr) -> Option<AddressPlace> {
        if self.cap == 0 {
            return Some(AddressPlace(None));
        }
        let key = address_key(address);
        let mut open = lock(&self.open);
        let count = open.entry(key).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(AddressPlace(Some((Arc::clone(self), key))))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What an address is counted as: itself (IPv4), its /64 (IPv6).
fn address_key(address: IpAddr) -> IpAddr {
    match address.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
    }
}

/// One connection's place in its address's share; given back on drop.
#[derive(Debug)]
pub(crate) struct AddressPlace(Option<(Arc<AddressCounts>, IpAddr)>);

impl Drop for AddressPlace {
    fn drop(&mut self) {
        if let Some((counts, key)) = self.0.take() {
            let mut open = lock(&counts.open);
            if let Some(count) = open.get_mut(&key) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    open.remove(&key);
                }
            }
        }
    }
}

/// What an accepted connection holds until it closes: its slot and its
/// place in its address's share. The HTTP connection holds it, and the
/// WebSocket that an upgrade hands the connection to (it finds it among
/// the request's extensions).
#[derive(Debug)]
pub(crate) struct ConnectionHold {
    _slot: OwnedSemaphorePermit,
    _place: AddressPlace,
}

/// Everything one listener runs with.
#[derive(Debug, Clone)]
pub(crate) struct Listener {
    pub(crate) tls: Option<ServerTls>,
    pub(crate) slots: Arc<Semaphore>,
    /// Per-address shares; None on the admin listener.
    pub(crate) per_address: Option<Arc<AddressCounts>>,
    /// Peers whose connections are counted per forwarded client at the
    /// upgrade instead of per peer here.
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    /// The TLS handshake and the request phase up to the upgrade, together.
    pub(crate) handshake_timeout: Duration,
    pub(crate) refusals: Arc<Refusals>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: TaskTracker,
}

impl Listener {
    /// Accepts on `listener` until shutdown, serving `app` on each
    /// connection.
    pub(crate) async fn run(self, listener: TcpListener, app: Router) -> std::io::Result<()> {
        loop {
            let accepted = tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) if out_of_descriptors(&error) => {
                    metrics::counter!("wisp_accept_errors_total").increment(1);
                    tracing::warn!(%error, "out of file descriptors; pausing accepts");
                    tokio::time::sleep(OUT_OF_DESCRIPTORS_PAUSE).await;
                    continue;
                }
                Err(error) => {
                    tracing::debug!(%error, "accept failed");
                    continue;
                }
            };
            let hold = match self.admit(peer.ip()) {
                Ok(hold) => hold,
                Err(refusal) => {
                    self.refusals.count(refusal);
                    if self.tls.is_none() {
                        self.refusals.answer(tcp, refusal);
                    }
                    continue;
                }
            };
            // Small frames go out at once: with Nagle's algorithm a push
            // waits for the ACK of the previous one (tens of ms).
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            let this = self.clone();
            let app = app.clone();
            self.tasks
                .spawn(async move { this.serve_connection(tcp, peer, app, hold).await });
        }
    }

    /// A slot and, for a peer that is not a trusted proxy, a place in its
    /// address's share; why not when either is exhausted.
    fn admit(&self, peer: IpAddr) -> Result<ConnectionHold, Refusal> {
        let slot = Arc::clone(&self.slots)
            .try_acquire_owned()
            .map_err(|_| Refusal::Full)?;
        let place = match &self.per_address {
            Some(counts) if !is_trusted(peer, &self.trusted_proxies) => {
                counts.admit(peer).ok_or(Refusal::AddressShare)?
            }
            _ => AddressPlace(None),
        };
        Ok(ConnectionHold {
            _slot: slot,
            _place: place,
        })
    }

    async fn serve_connection(
        self,
        tcp: TcpStream,
        peer: SocketAddr,
        app: Router,
        hold: ConnectionHold,
    ) {
        let deadline = tokio::time::Instant::now() + self.handshake_timeout;
        match &self.tls {
            None => self.serve_http(tcp, peer, app, hold, deadline).await,
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.config));
                let handshake = tokio::select! {
                    () = self.shutdown.cancelled() => return,
                    handshake = tokio::time::timeout_at(deadline, acceptor.accept(tcp)) => handshake,
                };
                match handshake {
                    Ok(Ok(stream)) => self.serve_http(stream, peer, app, hold, deadline).await,
                    Ok(Err(error)) => {
                        metrics::counter!("wisp_tls_handshake_failures_total").increment(1);
                        tracing::debug!(%error, "TLS handshake failed");
                    }
                    Err(_) => {
                        metrics::counter!("wisp_tls_handshake_timeouts_total").increment(1);
                        tracing::debug!("TLS handshake timed out");
                    }
                }
            }
        }
    }

    /// HTTP/1.1 on `io` until the connection closes, is upgraded (the
    /// WebSocket then runs on its own task) or the request phase outlives
    /// `deadline`.
    async fn serve_http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        app: Router,
        hold: ConnectionHold,
        deadline: tokio::time::Instant,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let hold = Arc::new(hold);
        let service = hyper::service::service_fn(move |mut request: hyper::Request<_>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request.extensions_mut().insert(Arc::clone(&hold));
            tower_service::Service::call(&mut app.clone(), request)
        });
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(self.handshake_timeout)
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::select! {
            () = self.shutdown.cancelled() => {}
            served = tokio::time::timeout_at(deadline, connection) => match served {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "HTTP connection ended with an error"),
                Err(_) => {
                    metrics::counter!("wisp_request_timeouts_total").increment(1);
                    tracing::debug!("request phase timed out; connection closed");
                }
            },
        }
    }
}

/// Whether `peer` is one of the trusted proxies.
pub(crate) fn is_trusted(peer: IpAddr, trusted: &[ipnet::IpNet]) -> bool {
    let peer = peer.to_canonical();
    trusted.iter().any(|net| net.contains(&peer))
}

fn out_of_descriptors(error: &std::io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(error.raw_os_error(), Some(23 | 24))
}

/// Raises the soft descriptor limit to the hard one where it can, and
/// returns how many connections the public listener may hold with
/// [`DESCRIPTOR_RESERVE`] descriptors left over (None: no limit known).
pub(crate) fn descriptor_budget() -> Option<usize> {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot read or raise the file descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).ok()?.0
        }
    };
    let reserve = DESCRIPTOR_RESERVE.min(limit / 2);
    let budget = limit.saturating_sub(reserve);
    Some(usize::try_from(budget).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_their_share_and_give_it_back() {
        let counts = AddressCounts::new(2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = counts.admit(a).unwrap();
        let _second = counts.admit(a).unwrap();
        assert!(counts.admit(a).is_none());
        // The same address through an IPv6 socket is the same address.
        assert!(counts.admit("::ffff:192.0.2.1".parse().unwrap()).is_none());
        assert!(counts.admit(b).is_some());
        drop(first);
        assert!(counts.admit(a).is_some());
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let counts = AddressCounts::new(1);
        let _held = counts.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert!(counts.admit("2001:db8::ffff:2".parse().unwrap()).is_none());
        assert!(counts.admit("2001:db8:0:1::1".parse().unwrap()).is_some());
    }

    #[test]
    fn zero_is_no_cap() {
        let counts = AddressCounts::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let held: Vec<_> = (0..100).map(|_| counts.admit(a).unwrap()).collect();
        assert_eq!(held.len(), 100);
        assert!(lock(&counts.open).is_empty());
    }

    #[test]
    fn the_budget_keeps_a_reserve() {
        let budget = descriptor_budget().unwrap();
        let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
        assert!((budget as u64) < soft);
        assert!(soft - budget as u64 >= DESCRIPTOR_RESERVE.min(soft / 2));
    }
}
