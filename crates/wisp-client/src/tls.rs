//! How a client reaches a server: the certificates it trusts for `wss://`
//! URLs (the operating system's roots, plus the CA of a self-hosted
//! deployment), and what a refused certificate means for the user.
//!
//! TLS is rustls on the `ring` provider, TLS 1.3 and 1.2 only. A `wss://`
//! URL is TLS or nothing: a failed handshake is an error, never a retry in
//! plain text.

use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{CertificateError, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{CertificateProblem, ClientError};

/// How to connect: extra trust for `wss://`, and the local address to leave
/// from. Cheap to clone; clones share the TLS configuration, which is built
/// once on the first `wss://` connection and reused by every reconnect.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// CA certificates trusted besides the operating system's roots.
    extra_roots: Vec<CertificateDer<'static>>,
    local: Option<IpAddr>,
    tls: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

impl ConnectOptions {
    /// Options that trust the operating system's roots only.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts the CA certificates in `pem` (one or more `CERTIFICATE`
    /// blocks): a self-hosted deployment's own CA. For front ends that hold
    /// the certificate in memory; [`ConnectOptions::with_ca_file`] reads a
    /// file.
    pub fn with_ca_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let certs = parse_ca_pem(pem)?;
        self.extra_roots.extend(certs);
        self.tls = Arc::default();
        Ok(self)
    }

    /// Also trusts the CA certificates in the PEM file at `path`.
    pub fn with_ca_file(self, path: &Path) -> Result<Self, ClientError> {
        let pem = std::fs::read(path).map_err(|e| {
            ClientError::CaCert(format!(
                "cannot read the CA certificate file {}: {e}",
                path.display()
            ))
        })?;
        self.with_ca_pem(&pem).map_err(|e| match e {
            ClientError::CaCert(why) => ClientError::CaCert(format!("{}: {why}", path.display())),
            other => other,
        })
    }

    /// Connections leave from the local address `local` (load generators
    /// spread many connections over several loopback addresses).
    pub fn from_address(mut self, local: Option<IpAddr>) -> Self {
        self.local = local;
        self
    }

    pub(crate) fn local(&self) -> Option<IpAddr> {
        self.local
    }

    /// The TLS configuration, built on first use and then shared.
    pub(crate) fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, ClientError> {
        if let Some(config) = self.tls.get() {
            return Ok(Arc::clone(config));
        }
        let config = Arc::new(build_config(&self.extra_roots)?);
        // Two first connections racing both build it; one wins, same trust.
        Ok(Arc::clone(self.tls.get_or_init(|| config)))
    }
}

/// The CA certificates in `pem`; at least one, each usable as a root.
fn parse_ca_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let bad = |why: String| ClientError::CaCert(why);
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file ({e})")))?;
    if certs.is_empty() {
        return Err(bad(
            "no certificate in it (expected a PEM \"BEGIN CERTIFICATE\" block)".into(),
        ));
    }
    let mut check = RootCertStore::empty();
    for cert in &certs {
        check
            .add(cert.clone())
            .map_err(|e| bad(format!("not a usable CA certificate ({e})")))?;
    }
    Ok(certs)
}

fn build_config(
    extra_roots: &[CertificateDer<'static>],
) -> Result<rustls::ClientConfig, ClientError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            "some system root certificates could not be loaded"
        );
    }
    let (_added, ignored) = roots.add_parsable_certificates(native.certs);
    if ignored > 0 {
        tracing::debug!(ignored, "some system root certificates are unusable");
    }
    for cert in extra_roots {
        roots
            .add(cert.clone())
            .map_err(|e| ClientError::CaCert(format!("not a usable CA certificate ({e})")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| ClientError::CaCert(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The certificate problem behind a failed connection, if that is what it
/// was (rustls reports it inside the handshake's I/O error).
pub(crate) fn certificate_problem(
    error: &tokio_tungstenite::tungstenite::Error,
) -> Option<CertificateProblem> {
    let tokio_tungstenite::tungstenite::Error::Io(io) = error else {
        return None;
    };
    let rustls_error = io.get_ref()?.downcast_ref::<rustls::Error>()?;
    let rustls::Error::InvalidCertificate(cert) = rustls_error else {
        return None;
    };
    Some(match cert {
        // Signed by no trusted CA, or by a key other than that of the
        // trusted CA it names (an impostor with the same name).
        CertificateError::UnknownIssuer | CertificateError::BadSignature => {
            CertificateProblem::Untrusted
        }
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            CertificateProblem::Expired
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            CertificateProblem::NotYetValid
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            CertificateProblem::WrongName
        }
        CertificateError::Revoked => CertificateProblem::Revoked,
        _ => CertificateProblem::Invalid(rustls_error.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_without_a_certificate_is_refused_clearly() {
        let error = ConnectOptions::new()
            .with_ca_pem(b"just some text\n")
            .unwrap_err();
        assert!(matches!(error, ClientError::CaCert(_)), "{error:?}");
        assert!(error.to_string().contains("no certificate"), "{error}");
    }

    #[test]
    fn a_corrupt_certificate_block_is_refused_clearly() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let error = ConnectOptions::new().with_ca_pem(pem).unwrap_err();
        assert!(matches!(error, ClientError::CaCert(_)), "{error:?}");
    }

    #[test]
    fn a_missing_ca_file_names_the_file() {
        let error = ConnectOptions::new()
            .with_ca_file(Path::new("/nonexistent/wisp-ca.pem"))
            .unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/wisp-ca.pem"),
            "{error}"
        );
    }
}
