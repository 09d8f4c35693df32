//! The credentials of a migration link. A checkpoint holds a container's
//! whole memory, and restoring one runs it as root, so the link between
//! `ckpt migrate` and `ckpt serve` is mutual TLS: each side proves itself
//! with a certificate from the CA the user gave both. A throwaway pair of
//! hosts on one machine gets a throwaway CA, made for the run and removed
//! with it.

use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A CA certificate to trust, and this side's certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct Credentials {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Makes a CA and two certificates in `dir` (files 0600): one for the
/// server, one for the client, each naming every address in `ips` and fit
/// for both roles: CRIU's own connections run the other way (in post-copy
/// the source serves the pages) and check the peer against the address
/// they use. Returns (server, client).
pub fn throwaway(dir: &Path, ips: &[IpAddr]) -> Result<(Credentials, Credentials)> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
        SanType,
    };
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "ckpt migration CA (throwaway)");
    let ca = ca_params.self_signed(&ca_key)?;
    let ca_path = dir.join("ca.pem");
    write_private(&ca_path, ca.pem().as_bytes())?;
    let issue = |name: &str| -> Result<Credentials> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca, &ca_key)?;
        let creds = Credentials {
            ca: ca_path.clone(),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        write_private(&creds.cert, cert.pem().as_bytes())?;
        write_private(&creds.key, key.serialize_pem().as_bytes())?;
        Ok(creds)
    };
    let server = issue("server")?;
    let client = issue("client")?;
    Ok((server, client))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Credentials {
    /// The same credentials for CRIU's own connections (its page server
    /// and lazy-pages daemon), as command-line options.
    pub fn criu_options(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--tls".into(),
            "--tls-cacert".into(),
            path(&self.ca),
            "--tls-cert".into(),
            path(&self.cert),
            "--tls-key".into(),
            path(&self.key),
        ]
    }

    /// The same as a CRIU configuration file's lines (for runc, which
    /// passes no TLS options to CRIU but reads the file a container's
    /// `org.criu.config` annotation names).
    pub fn criu_config(&self) -> String {
        format!(
            "tls\ntls-cacert {}\ntls-cert {}\ntls-key {}\n",
            self.ca.display(),
            self.cert.display(),
            self.key.display()
        )
    }

    fn roots(&self) -> Result<rustls::RootCertStore> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca)
            .with_context(|| format!("cannot read the CA certificate {}", self.ca.display()))?
        {
            roots
                .add(
                    cert.with_context(|| {
                        format!("{} is not a PEM certificate", self.ca.display())
                    })?,
                )
                .with_context(|| format!("{} is not a usable CA certificate", self.ca.display()))?;
        }
        Ok(roots)
    }

    fn chain(&self) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|i| i.collect::<Result<Vec<_>, _>>())
            .with_context(|| format!("cannot read the certificate {}", self.cert.display()))?;
        let key = PrivateKeyDer::from_pem_file(&self.key)
            .with_context(|| format!("cannot read the private key {}", self.key.display()))?;
        Ok((certs, key))
    }

    /// The server side: only clients with a certificate from our CA.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>> {
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider(),
        )
        .build()
        .context("cannot build the client certificate check")?;
        let (certs, key) = self.chain()?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .context("the server certificate and key do not match")?;
        Ok(Arc::new(config))
    }

    /// The client side: only a server with a certificate from our CA.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>> {
        let (certs, key) = self.chain()?;
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(certs, key)
            .context("the client certificate and key do not match")?;
        Ok(Arc::new(config))
    }
}
