//! TLS for tests, independent of the SDK's own TLS: [`TestPki`] (a CA and
//! leaves rcgen makes: good, expired, for the wrong name, written as PEM
//! files), [`tls_connect`] (a rustls client trusting only that CA), and
//! [`Tunnel`], a loopback forwarder that lets a plain-`ws://` client (the
//! SDK, `RawConnection`) reach a `wss://` server, and lets a test choose
//! the source address (127.0.0.2…) the server sees.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;

/// A test certificate authority.
#[derive(Debug)]
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A leaf's certificate and key files.
#[derive(Debug, Clone)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestPki {
    /// A fresh CA; leaves are written under `dir`.
    pub fn new(dir: &Path) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Wisp test CA");
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("CA key"))
            .expect("CA certificate");
        Self {
            ca,
            dir: dir.to_owned(),
        }
    }

    /// The CA certificate as DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// The CA certificate as PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// A leaf for 127.0.0.1 and localhost, valid now, written as
    /// `<name>.crt` / `<name>.key`.
    pub fn leaf(&self, name: &str) -> LeafFiles {
        self.leaf_with(name, &["127.0.0.1", "localhost"], false)
    }

    /// A leaf for 127.0.0.1 and localhost that expired yesterday.
    pub fn expired_leaf(&self, name: &str) -> LeafFiles {
        self.leaf_with(name, &["127.0.0.1", "localhost"], true)
    }

    /// A leaf for another host only.
    pub fn wrong_name_leaf(&self, name: &str) -> LeafFiles {
        self.leaf_with(name, &["elsewhere.invalid"], false)
    }

    fn leaf_with(&self, name: &str, names: &[&str], expired: bool) -> LeafFiles {
        let mut params =
            CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
                .expect("leaf params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        let files = LeafFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, format!("{}{}", cert.pem(), self.ca.pem()))
            .expect("write certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write key");
        files
    }

    /// A rustls client configuration that trusts this CA only.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der()).expect("CA into the root store");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

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
