//! Reaching a `wss://` server in tests, independent of the SDK's own TLS:
//! [`tls_connect`] (a rustls client, for example one trusting only a
//! [`TestCa`](crate::tls::TestCa)), and [`Tunnel`], a loopback forwarder that lets a plain-`ws://` client (the
//! SDK, `RawConnection`) reach a `wss://` server, and lets a test choose
//! the source address (127.0.0.2…) the server sees.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// A TLS connection to `addr` (named 127.0.0.1), trusting `config`'s roots.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::IpAddress(addr.ip().into());
    tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
}

/// The leaf certificate `stream`'s server presented.
pub fn served_certificate(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("a certificate")
        .clone()
        .into_owned()
}

/// The first certificate in a PEM file, as DER.
pub fn certificate_in(path: &Path) -> CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_file(path).expect("a certificate in the file")
}

/// A loopback forwarder: each connection to [`Tunnel::url`] is carried to
/// the server, from `source` (an address of 127/8) and, with a client
/// configuration, over TLS. Stops when dropped.
#[derive(Debug)]
pub struct Tunnel {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Tunnel {
    /// Starts forwarding to `server`.
    pub async fn start(
        server: SocketAddr,
        source: Option<IpAddr>,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("tunnel bind");
        let addr = listener.local_addr().expect("tunnel address");
        let task = tokio::spawn(async move {
            let mut carried = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                let tls = tls.clone();
                carried.spawn(async move {
                    let Ok(tcp) = connect_from(server, source).await else {
                        return;
                    };
                    match tls {
                        Some(config) => {
                            let name = ServerName::IpAddress(server.ip().into());
                            let Ok(mut outbound) = tokio_rustls::TlsConnector::from(config)
                                .connect(name, tcp)
                                .await
                            else {
                                return;
                            };
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                        None => {
                            let mut outbound = tcp;
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    }
                });
            }
        });
        Self { addr, task }
    }

    /// The `ws://` URL that reaches the server through the tunnel.
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }
}

/// A TCP connection to `server` from `source` (any port), or from wherever
/// the OS picks.
pub async fn connect_from(
    server: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0))?;
    }
    socket.connect(server).await
}
