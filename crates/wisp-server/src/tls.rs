//! TLS on the server's listener: the certificate chain and private key read
//! from PEM files, checked against each other, served to every handshake by
//! a resolver whose pair can be swapped (on SIGHUP, or
//! [`crate::Server::reload_tls`]) without touching open connections. TLS 1.3
//! and 1.2 only, with the `ring` provider.
//!
//! No error or log line here carries key material: a PEM problem is named
//! by its kind, never by the bytes that caused it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// One of the two files is set without the other.
    #[error("TLS needs both a certificate and a key (--tls-cert and --tls-key)")]
    Incomplete,
    /// A file could not be opened or read.
    #[error("cannot read TLS {what} {path}: {source}")]
    Read {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A file holds no PEM section of the expected kind, or a broken one.
    #[error("TLS {what} {path} is not usable: {why}")]
    Parse {
        /// "certificate" or "key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong, without the file's contents.
        why: &'static str,
    },
    /// The key is not the certificate's, or cannot sign.
    #[error("TLS key {key} does not go with certificate {cert}: {why}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls's explanation (names the problem, never key bytes).
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration refused: {0}")]
    Config(String),
    /// A reload was asked of a server that does not speak TLS.
    #[error("this server does not speak TLS (no --tls-cert/--tls-key)")]
    NotEnabled,
}

/// The certificate and key files a server serves.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

/// The one provider the server uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads and checks the pair in `files`.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let chain = read_chain(&files.cert)?;
    let key = read_key(&files.key)?;
    CertifiedKey::from_der(chain, key, provider).map_err(|error| TlsError::Mismatch {
        cert: files.cert.clone(),
        key: files.key.clone(),
        why: error.to_string(),
    })
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    const WHAT: &str = "certificate";
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(WHAT, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(WHAT, path, e))?;
    if chain.is_empty() {
        return Err(TlsError::Parse {
            what: WHAT,
            path: path.to_owned(),
            why: "no CERTIFICATE section",
        });
    }
    Ok(chain)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| pem_error("key", path, e))
}

/// A PEM error named by its kind: the parser's own message may quote the
/// file, and this file is a private key.
fn pem_error(what: &'static str, path: &Path, error: rustls_pki_types::pem::Error) -> TlsError {
    use rustls_pki_types::pem::Error as Pem;
    let why = match error {
        Pem::Io(source) => {
            return TlsError::Read {
                what,
                path: path.to_owned(),
                source,
            };
        }
        Pem::NoItemsFound if what == "key" => "no PRIVATE KEY section",
        Pem::NoItemsFound => "no CERTIFICATE section",
        Pem::MissingSectionEnd { .. } => "a PEM section has no END line",
        Pem::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        Pem::Base64Decode(_) => "a PEM section is not valid base64",
        Pem::SectionTooLarge => "a PEM section is too large",
        _ => "not valid PEM",
    };
    TlsError::Parse {
        what,
        path: path.to_owned(),
        why,
    }
}

/// Hands every handshake the current pair; [`CertResolver::reload`] swaps
/// it. Connections already established keep the pair they started with.
#[derive(Debug)]
pub(crate) struct CertResolver {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertResolver {
    /// Reads the pair again; on any problem the old pair stays.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load(&self.files, &self.provider)?);
        match self.current.write() {
            Ok(mut current) => *current = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = match self.current.read() {
            Ok(current) => current,
            Err(poisoned) => poisoned.into_inner(),
        };
        Some(Arc::clone(&current))
    }
}

/// What the listener needs for TLS: the acceptor's configuration and the
/// resolver to reload.
#[derive(Debug, Clone)]
pub(crate) struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) resolver: Arc<CertResolver>,
}

impl ServerTls {
    /// Loads and checks the pair, and builds a TLS 1.3 + 1.2 configuration
    /// that offers HTTP/1.1 (what a WebSocket upgrade runs over).
    pub(crate) fn new(files: TlsFiles) -> Result<Self, TlsError> {
        let provider = provider();
        let first = load(&files, &provider)?;
        let resolver = Arc::new(CertResolver {
            files,
            provider: Arc::clone(&provider),
            current: RwLock::new(Arc::new(first)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(PROTOCOL_VERSIONS)
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            resolver,
        })
    }
}

/// The only versions spoken: TLS 1.3 and 1.2 (rustls has nothing older).
pub(crate) const PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(dir: &Path, name: &str) -> TlsFiles {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let files = TlsFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn only_tls_1_2_and_1_3_are_offered() {
        let dir = tempfile::tempdir().unwrap();
        let tls = ServerTls::new(pair(dir.path(), "a")).unwrap();
        let versions: Vec<_> = PROTOCOL_VERSIONS.iter().map(|v| v.version).collect();
        assert_eq!(
            versions,
            vec![
                rustls::ProtocolVersion::TLSv1_3,
                rustls::ProtocolVersion::TLSv1_2
            ]
        );
        assert_eq!(tls.config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn problems_are_named_without_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let a = pair(dir.path(), "a");
        let b = pair(dir.path(), "b");
        let mixed = TlsFiles {
            cert: a.cert.clone(),
            key: b.key.clone(),
        };
        assert!(matches!(
            ServerTls::new(mixed),
            Err(TlsError::Mismatch { .. })
        ));

        let missing = TlsFiles {
            cert: dir.path().join("nowhere.crt"),
            key: a.key.clone(),
        };
        assert!(matches!(
            ServerTls::new(missing),
            Err(TlsError::Read { .. })
        ));

        // A key where the certificate should be: no CERTIFICATE section, and
        // the message quotes nothing of the file.
        let swapped = TlsFiles {
            cert: a.key.clone(),
            key: a.cert.clone(),
        };
        let error = ServerTls::new(swapped).unwrap_err();
        assert!(matches!(error, TlsError::Parse { .. }), "{error}");
        let key_text = std::fs::read_to_string(&a.key).unwrap();
        let body = key_text.lines().nth(1).unwrap();
        assert!(!error.to_string().contains(body));

        let garbled = dir.path().join("garbled.key");
        std::fs::write(
            &garbled,
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let error = ServerTls::new(TlsFiles {
            cert: a.cert.clone(),
            key: garbled,
        })
        .unwrap_err();
        assert!(
            matches!(error, TlsError::Parse { what: "key", .. }),
            "{error}"
        );
    }

    #[test]
    fn a_failed_reload_keeps_the_old_pair() {
        let dir = tempfile::tempdir().unwrap();
        let files = pair(dir.path(), "a");
        let tls = ServerTls::new(files.clone()).unwrap();
        let before = tls.resolver.current.read().unwrap().cert.clone();
        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(tls.resolver.reload().is_err());
        assert_eq!(tls.resolver.current.read().unwrap().cert, before);
        let fresh = pair(dir.path(), "a");
        tls.resolver.reload().unwrap();
        let after = tls.resolver.current.read().unwrap().cert.clone();
        assert_ne!(after, before);
        assert_eq!(after, read_chain(&fresh.cert).unwrap());
    }
}
