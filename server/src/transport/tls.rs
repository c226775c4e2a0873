//! TLS: the certificate, and the rustls configuration with ALPN `h2` and `http/1.1`.
//!
//! Real certificates come from `--tls-cert`/`--tls-key` (PEM). Without them the server makes,
//! once, a development certificate authority of its own and a certificate for localhost,
//! 127.0.0.1 and ::1 signed by it, and keeps them in the data directory (`--data-dir`, never
//! committed). The authority's key is thrown away as soon as the certificate is signed, so
//! trusting `ca.crt.pem` (docs/http2.md, "Trusting the development certificate") trusts this one certificate and nothing else can ever
//! be signed in its name. A browser that trusts it acts on `103 Early Hints`, which browsers
//! discard over a certificate they were told to ignore. The certificate's SHA-256 fingerprint is
//! logged so it can be checked.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {detail}")]
    Read { path: PathBuf, detail: String },
    #[error("cannot write the development certificate to {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make the development certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("--tls-cert and --tls-key go together")]
    HalfPair,
}

/// Where the development certificate and its key live.
pub fn dev_cert_paths(data_dir: &Path) -> (PathBuf, PathBuf) {
    let dir = data_dir.join("tls");
    (dir.join("localhost.crt.pem"), dir.join("localhost.key.pem"))
}

/// Where the development certificate authority's certificate lives: what a browser (or a test
/// client) trusts to accept the development certificate.
pub fn dev_ca_path(data_dir: &Path) -> PathBuf {
    data_dir.join("tls").join("ca.crt.pem")
}

/// The server's TLS configuration from the given PEM files, or from the kept (or a newly made)
/// development certificate in `data_dir`.
pub fn server_config(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let (cert_path, key_path) = match (cert, key) {
        (Some(c), Some(k)) => (c.to_owned(), k.to_owned()),
        (None, None) => ensure_dev_certificate(data_dir)?,
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
        crate::encoding::digest::hex(&crate::encoding::digest::sha256(certs[0].as_ref()));
    tracing::info!(cert = %cert_path.display(), sha256 = %fingerprint, "TLS certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn ensure_dev_certificate(data_dir: &Path) -> Result<(PathBuf, PathBuf), TlsError> {
    let (cert, key) = dev_cert_paths(data_dir);
    let ca = dev_ca_path(data_dir);
    // A data directory from before the authority (a bare self-signed certificate) is renewed.
    if cert.exists() && key.exists() && ca.exists() {
        return Ok((cert, key));
    }
    let made = DevCertificate::generate()?;
    let dir = cert.parent().unwrap_or(data_dir);
    let write = |path: &Path, text: &str| {
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(path, text))
            .map_err(|source| TlsError::Write {
                path: path.to_owned(),
                source,
            })
    };
    write(&key, &made.key_pem)?;
    write(&cert, &made.cert_pem)?;
    write(&ca, &made.ca_pem)?;
    tracing::info!(
        cert = %cert.display(),
        ca = %ca.display(),
        "made a development certificate for localhost; trust its authority to have browsers \
         accept it (docs/http2.md: trusting the development certificate)"
    );
    Ok((cert, key))
}

/// A certificate for this machine's names, and the one-off authority that signed it.
struct DevCertificate {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

impl DevCertificate {
    fn generate() -> Result<Self, rcgen::Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.distinguished_name
            .push(DnType::CommonName, "Ringback development CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca.self_signed(&ca_key)?;
        let mut leaf = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])?;
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let cert = leaf.signed_by(&key, &Issuer::new(ca, ca_key))?;
        Ok(DevCertificate {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificate_is_made_once_and_kept() {
        let dir = std::env::temp_dir().join(format!("ringback-tls-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        server_config(None, None, &dir).unwrap();
        let (cert, _) = dev_cert_paths(&dir);
        assert!(
            dev_ca_path(&dir).exists(),
            "the authority is kept beside it"
        );
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
