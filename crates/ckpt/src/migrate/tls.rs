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

use anyhow::{bail, Context, Result};
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
    let names: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
    // One move's credentials: a day is more than any move takes.
    let ca = Authority::new("ckpt migration CA (throwaway)", Validity::days(1)?)?;
    let ca_path = dir.join("ca.pem");
    write_private(&ca_path, ca.cert.pem().as_bytes(), false)?;
    let server = ca.issue(dir, &ca_path, "server", &names, false)?;
    let client = ca.issue(dir, &ca_path, "client", &names, false)?;
    Ok((server, client))
}

/// The files `ckpt credentials` writes, in the order it writes them.
pub const CREDENTIAL_FILES: [&str; 5] = [
    "ca.pem",
    "serve.pem",
    "serve.key",
    "migrate.pem",
    "migrate.key",
];

/// Credentials for two hosts of the user's: a CA, a certificate and key
/// for `ckpt serve` and one for `ckpt migrate`, each naming every host in
/// `hosts` (IP addresses or DNS names) and fit for both roles, as in
/// [`throwaway`]. `dir` is made 0700 and the files 0600; existing files
/// are never overwritten. The CA's key is not kept: nobody can issue
/// another certificate under this CA. Returns (serve, migrate).
pub fn for_hosts(dir: &Path, hosts: &[String], days: u32) -> Result<(Credentials, Credentials)> {
    let validity = Validity::days(days)?;
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if hosts.is_empty() {
        bail!("name at least one host (--host): the certificates must name the addresses the hosts reach each other on");
    }
    for host in hosts {
        san(host)?;
    }
    if let Some(taken) = CREDENTIAL_FILES
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.symlink_metadata().is_ok())
    {
        bail!(
            "{} exists: ckpt credentials never overwrites credentials; choose an empty directory",
            taken.display()
        );
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private", dir.display()))?;
    let ca = Authority::new("ckpt migration CA", validity)?;
    let ca_path = dir.join("ca.pem");
    write_private(&ca_path, ca.cert.pem().as_bytes(), true)?;
    let serve = ca.issue(dir, &ca_path, "serve", hosts, true)?;
    let migrate = ca.issue(dir, &ca_path, "migrate", hosts, true)?;
    Ok((serve, migrate))
}

/// A host's name in a certificate: an IP address or a DNS name.
fn san(host: &str) -> Result<rcgen::SanType> {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
    };
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(rcgen::SanType::IpAddress(ip)),
        Err(_) if host.len() <= 253 && host.split('.').all(label) => {
            Ok(rcgen::SanType::DnsName(host.to_string().try_into()?))
        }
        Err(_) => bail!("'{host}' is neither an IP address nor a DNS name"),
    }
}

/// The longest validity `ckpt credentials --days` gives (ten years).
pub const MAX_DAYS: u32 = 3650;

/// When a set of certificates is valid: from a few minutes ago (the two
/// hosts' clocks may differ a little) for a number of days. rustls checks
/// it on both sides of every connection; the CA's key is not kept, so
/// expiry is how a set of credentials ends.
#[derive(Debug, Clone, Copy)]
struct Validity {
    not_before: time::OffsetDateTime,
    not_after: time::OffsetDateTime,
}

impl Validity {
    fn days(days: u32) -> Result<Validity> {
        if days == 0 || days > MAX_DAYS {
            bail!("--days {days}: give 1 to {MAX_DAYS} days");
        }
        let now = time::OffsetDateTime::now_utc();
        Ok(Validity {
            not_before: now - time::Duration::minutes(5),
            not_after: now + time::Duration::days(i64::from(days)),
        })
    }

    fn apply(&self, params: &mut rcgen::CertificateParams) {
        params.not_before = self.not_before;
        params.not_after = self.not_after;
    }
}

/// A CA made for one set of credentials; its key lives only in memory.
struct Authority {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    validity: Validity,
}

impl Authority {
    fn new(common_name: &str, validity: Validity) -> Result<Authority> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        validity.apply(&mut params);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let cert = params.self_signed(&key)?;
        Ok(Authority {
            cert,
            key,
            validity,
        })
    }

    /// `<name>.pem` and `<name>.key` in `dir`, naming `hosts`, for both
    /// the server and the client role; `new_only`: never overwrite.
    fn issue(
        &self,
        dir: &Path,
        ca_path: &Path,
        name: &str,
        hosts: &[String],
        new_only: bool,
    ) -> Result<Credentials> {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        self.validity.apply(&mut params);
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = hosts.iter().map(|h| san(h)).collect::<Result<_>>()?;
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key)?;
        let creds = Credentials {
            ca: ca_path.to_path_buf(),
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        write_private(&creds.cert, cert.pem().as_bytes(), new_only)?;
        write_private(&creds.key, key.serialize_pem().as_bytes(), new_only)?;
        Ok(creds)
    }
}

fn write_private(path: &Path, bytes: &[u8], new_only: bool) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .create(true)
        .create_new(new_only)
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

/// The client's TLS handshake with the destination `to` over `tcp`,
/// whose bytes are counted.
pub(crate) async fn handshake(
    creds: &Credentials,
    name: rustls::pki_types::ServerName<'static>,
    tcp: tokio::net::TcpStream,
    to: &str,
) -> Result<tokio_rustls::client::TlsStream<super::meter::Counted<tokio::net::TcpStream>>> {
    let connector = tokio_rustls::TlsConnector::from(creds.client_config()?);
    connector
        .connect(name, super::meter::Counted::new(tcp))
        .await
        .map_err(|e| explain(anyhow::Error::new(e), to))
}

/// Names a TLS failure as such, with what to check; other errors pass.
pub(crate) fn explain(e: anyhow::Error, to: &str) -> anyhow::Error {
    let tls = e
        .chain()
        .find_map(|c| c.downcast_ref::<std::io::Error>())
        .and_then(|io| io.get_ref())
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    let hint = match tls {
        None => return e,
        Some(rustls::Error::InvalidCertificate(_)) => {
            "this host does not trust the destination's certificate: --ca must be the CA that issued the certificate its `ckpt serve --cert` names, and that certificate must name the host in --to"
        }
        Some(rustls::Error::AlertReceived(_)) => {
            "the destination refused this host's certificate: --cert must come from the CA its `ckpt serve --ca` names, and --key must be that certificate's key"
        }
        Some(_) => "both hosts need credentials from one CA (`ckpt credentials` makes them)",
    };
    e.context(format!("the TLS link to {to} failed: {hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn credentials_for_hosts_are_private_and_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("creds");
        let hosts = ["10.0.0.1".to_string(), "dest.example".to_string()];
        let (serve, migrate) = for_hosts(&dir, &hosts, 365).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        for file in CREDENTIAL_FILES {
            assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
        }
        // Each side accepts the other's certificate.
        serve.server_config().unwrap();
        migrate.client_config().unwrap();
        let before = std::fs::read(&serve.key).unwrap();
        let err = format!("{:#}", for_hosts(&dir, &hosts, 365).unwrap_err());
        assert!(err.contains("never overwrites"), "{err}");
        assert_eq!(std::fs::read(&serve.key).unwrap(), before);
        let err = format!(
            "{:#}",
            for_hosts(&tmp.path().join("b"), &["a b".into()], 365).unwrap_err()
        );
        assert!(
            err.contains("neither an IP address nor a DNS name"),
            "{err}"
        );
        assert!(for_hosts(&tmp.path().join("c"), &[], 365).is_err());
    }

    #[test]
    fn certificates_are_valid_for_the_days_asked_and_no_longer() {
        let two = Validity::days(2).unwrap();
        let span = two.not_after - two.not_before;
        assert_eq!(span, time::Duration::days(2) + time::Duration::minutes(5));
        assert!(two.not_before < time::OffsetDateTime::now_utc());
        for bad in [0, MAX_DAYS + 1] {
            let err = format!("{:#}", Validity::days(bad).unwrap_err());
            assert!(err.contains("--days"), "{err}");
        }
        let mut params = rcgen::CertificateParams::default();
        two.apply(&mut params);
        assert_eq!(params.not_after, two.not_after);
    }
}
