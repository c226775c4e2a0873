//! TLS: the certificate, and the rustls configuration with ALPN `h2` and `http/1.1`.
//!
//! Real certificates come from `--tls-cert`/`--tls-key` (PEM). Without them the server makes a
//! self-signed certificate for localhost, 127.0.0.1 and ::1 once, keeps it in the data directory
//! (`--data-dir`, never committed) so browsers that accepted it keep accepting it, and logs its
//! SHA-256 fingerprint so it can be checked.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("cannot write the self-signed certificate to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("--tls-cert and --tls-key go together")]
    HalfPair,
}

/// Where the self-signed pair lives.
pub fn self_signed_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("localhost.crt.pem"), dir.join("localhost.key.pem"))
}

/// The server's TLS configuration from the given PEM files, or from the kept (or a newly made)
/// self-signed pair in `data_dir`.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        (None, None) => ensure_self_signed(data_dir)?,
        _ => return Err(TlsError::HalfPair),
    };
    let read_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Read {
        path: path.to_owned(),
        detail: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| read_err(&cert_path, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&cert_path, &e))?;
    if certs.is_empty() {
        return Err(read_err(&cert_path, &"no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| read_err(&key_path, &e))?;
    let fingerprint =
        crate::runtime::digest::hex(&crate::runtime::digest::sha256(certs[0].as_ref()));
    tracing::info!(cert = %cert_path.display(), sha256 = %fingerprint, "TLS certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn ensure_self_signed(data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = self_signed_paths(data_dir);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let pair = rcgen::generate_simple_self_signed(names)?;
    let dir = cert.parent().unwrap_or(data_dir);
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(path, text))
            .map_err(|source| TlsError::Write {
                path: path.to_owned(),
                source,
            })
    };
    write(&key, &pair.signing_key.serialize_pem())?;
    write(&cert, &pair.cert.pem())?;
    tracing::info!(cert = %cert.display(), "made a self-signed certificate for localhost");
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("ringback-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        server_config(None, None, &dir).unwrap();
        let (cert, _) = self_signed_paths(&dir);
        let first = std::fs::read(&cert).unwrap();
        let config = server_config(None, None, &dir).unwrap();
        assert_eq!(
            std::fs::read(&cert).unwrap(),
            first,
            "kept, not regenerated"
        );
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert!(matches!(
            server_config(Some(&cert), None, &dir),
            Err(TlsError::HalfPair)
        ));
    }
}
