//! HTTPS served directly: the PEM certificate chain and private key become a rustls server
//! configuration on the ring provider (the crypto library the rest of the crate already uses).
//! The only user of rustls; `server` hands the result to actix. HTTP/1.1 only: actix's HTTP/2
//! needs h2 0.3, which carries advisory RUSTSEC-2026-0258 (docs/security.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The two PEM files `serve --tls-cert FILE --tls-key FILE` names.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate first, then any intermediates (RFC 8446 4.4.2 order).
    pub cert: PathBuf,
    /// Its private key: PKCS#8, PKCS#1 (RSA) or SEC1 (EC).
    pub key: PathBuf,
}

/// Why HTTPS cannot start. Each names the file at fault; none carries anything read from the
/// key file, so a message can never show key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The parser's message is left out here too: a key file given as the certificate would
    /// have its bytes quoted.
    #[error("the TLS certificate file {path} holds no PEM certificate")]
    Certificate { path: PathBuf },
    /// The parser's own message is left out: for a key file it may quote the file's bytes.
    #[error("the TLS key file {path} holds no PEM private key (PKCS#8, RSA or SEC1)")]
    Key { path: PathBuf },
    #[error("the TLS key {key} does not fit the certificate {cert}: {source}")]
    Mismatch {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

impl TlsFiles {
    /// Reads both files and builds the server configuration: TLS 1.2 and 1.3 with rustls' safe
    /// defaults (RFC 6749 1.6 asks for TLS as current practice requires), no client
    /// certificates, and only the ring provider, so no second crypto library is linked.
    pub fn server_config(&self) -> Result<ServerConfig, TlsError> {
        let chain = read(&self.cert)?;
        let certificate_error = || TlsError::Certificate {
            path: self.cert.clone(),
        };
        let certs: Vec<_> = CertificateDer::pem_slice_iter(&chain)
            .collect::<Result<_, _>>()
            .map_err(|_| certificate_error())?;
        if certs.is_empty() {
            return Err(certificate_error());
        }
        let key = PrivateKeyDer::from_pem_slice(&read(&self.key)?).map_err(|_| TlsError::Key {
            path: self.key.clone(),
        })?;
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|source| TlsError::Mismatch {
                cert: self.cert.clone(),
                key: self.key.clone(),
                source,
            })
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}
