//! TLS for client streams: STARTTLS (RFC 6120 §5) and direct TLS
//! (XEP-0368), with tokio-rustls on the `ring` provider.
//!
//! Without a configured certificate the server makes a self-signed one for
//! its domains on first start, keeps it in the data directory, and says so
//! in the log: good for tests and loopback benchmarks, not for clients that
//! verify certificates.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::info;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read or parsed.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// Generating the self-signed pair failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
    /// rustls refused the certificate and key.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn file_err(path: &Path, why: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        why: why.to_string(),
    }
}

/// Loads `cert`/`key` (PEM), or when both are `None` uses (or first
/// creates) a self-signed pair for `domains` under `data_dir/tls/`.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    domains: &[String],
    data_dir: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        (None, None) => {
            let dir = data_dir.join("tls");
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            if !c.exists() || !k.exists() {
                std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
                let pair = rcgen::generate_simple_self_signed(domains.to_vec())
                    .map_err(|e| TlsError::Generate(e.to_string()))?;
                std::fs::write(&c, pair.cert.pem()).map_err(|e| file_err(&c, e))?;
                std::fs::write(&k, pair.signing_key.serialize_pem())
                    .map_err(|e| file_err(&k, e))?;
                info!(cert = %c.display(), domains = ?domains, "generated a self-signed TLS certificate");
            }
            (c, k)
        }
        (Some(c), None) | (None, Some(c)) => {
            return Err(file_err(c, "tls_cert and tls_key must be given together"));
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| file_err(&cert_path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&cert_path, e))?;
    if certs.is_empty() {
        return Err(file_err(&cert_path, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| file_err(&key_path, e))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_then_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let domains = vec!["example.org".to_owned()];
        server_config(None, None, &domains, dir.path()).unwrap();
        let first = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        server_config(None, None, &domains, dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join("tls/cert.pem")).unwrap(),
            first
        );
        let c = dir.path().join("tls/cert.pem");
        assert!(matches!(
            server_config(Some(&c), None, &domains, dir.path()),
            Err(TlsError::File { .. })
        ));
    }
}
