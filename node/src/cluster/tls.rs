//! TLS between nodes: mutual TLS on ractor_cluster's encrypted transport.
//!
//! Every node holds a certificate and key signed by the cluster's CA and
//! the CA itself: its server accepts only clients presenting a certificate
//! of that CA, and it dials peers verifying theirs against the CA under the
//! cluster's server name (`cluster.tls.server_name`, a DNS name every node
//! certificate carries). The cookie is still checked on top, in
//! ractor_cluster's handshake.
//!
//! [`generate`] makes a development CA and node certificates
//! (`candela certs`).
//!
//! What must never happen: a connection accepted or dialled without a
//! certificate of the configured CA; a key written readable by others.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why the TLS settings could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("cluster.tls: {what} `{path}`: {reason}")]
    File {
        /// Which file (CA, certificate, key).
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the combination (e.g. the key does not match the
    /// certificate).
    #[error("cluster.tls: {0}")]
    Config(String),
    /// The server name is not a valid DNS name.
    #[error("cluster.tls.server_name `{0}` is not a DNS name")]
    ServerName(String),
    /// Writing generated files failed.
    #[error("writing `{path}`: {reason}")]
    Write {
        /// Where.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// The files of a node's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// The cluster's CA certificate (PEM): peers must present a certificate
    /// it signed.
    pub ca: PathBuf,
    /// This node's certificate (PEM, its chain up to the CA).
    pub cert: PathBuf,
    /// This node's private key (PEM).
    pub key: PathBuf,
    /// The DNS name every node certificate carries, checked when dialling
    /// a peer.
    #[serde(default = "default_server_name")]
    pub server_name: String,
}

/// The default `server_name`.
pub fn default_server_name() -> String {
    "candela-cluster".into()
}

/// What the node server and the dialler use.
#[derive(Clone)]
pub struct Tls {
    /// Accepts peers (checks their certificate).
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Dials peers (presents ours, checks theirs).
    pub connector: tokio_rustls::TlsConnector,
    /// The name peers' certificates are checked against.
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn read_certs(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |reason: String| TlsError::File {
        what,
        path: path.to_owned(),
        reason,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in it".into()));
    }
    Ok(certs)
}

/// Loads the files: mutual TLS with the CA as the only root.
pub fn load(files: &TlsFiles) -> Result<Tls, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in read_certs("CA", &files.ca)? {
        roots.add(ca).map_err(|e| TlsError::File {
            what: "CA",
            path: files.ca.clone(),
            reason: e.to_string(),
        })?;
    }
    let roots = Arc::new(roots);
    let chain = read_certs("certificate", &files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::File {
        what: "key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let config = |e: rustls::Error| TlsError::Config(e.to_string());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::clone(&roots),
        Arc::clone(&provider),
    )
    .build()
    .map_err(|e| TlsError::Config(e.to_string()))?;
    let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(config)?;
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(config)?;
    let server_name = ServerName::try_from(files.server_name.clone())
        .map_err(|_| TlsError::ServerName(files.server_name.clone()))?;
    Ok(Tls {
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(server)),
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        server_name,
    })
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generated {
    /// The CA certificate.
    pub ca: PathBuf,
    /// Per node: its name and its files.
    pub nodes: Vec<(String, TlsFiles)>,
}

/// Makes a development CA in `dir` (`ca.pem`, `ca.key`) and, for each node,
/// `{node}.pem` and `{node}.key` signed by it, for `server_name` (and the
/// node's name, `localhost`, 127.0.0.1). An existing CA in `dir` is reused,
/// so nodes can be added later. Keys are written readable by their owner
/// only.
pub fn generate(dir: &Path, nodes: &[String], server_name: &str) -> Result<Generated, TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
    // Written whole or not at all (a temporary file renamed), a key
    // readable by its owner only whatever was there before.
    let write = |path: PathBuf, text: &str, secret: bool| -> Result<PathBuf, TlsError> {
        let err = |e: std::io::Error| TlsError::Write {
            path: path.clone(),
            reason: e.to_string(),
        };
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        if secret {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        use std::io::Write;
        options
            .open(&tmp)
            .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(err)?;
        Ok(path)
    };
    let gen = |e: rcgen::Error| TlsError::Config(e.to_string());
    std::fs::create_dir_all(dir).map_err(|e| TlsError::Write {
        path: dir.to_owned(),
        reason: e.to_string(),
    })?;
    let (ca_pem, ca_key_pem) = (dir.join("ca.pem"), dir.join("ca.key"));
    // An existing CA is reused: its key must be there, and be its key.
    let existing = ca_pem.exists();
    let ca_key = if existing {
        let text = std::fs::read_to_string(&ca_key_pem).map_err(|e| TlsError::File {
            what: "CA key",
            path: ca_key_pem.clone(),
            reason: format!("ca.pem exists but its key cannot be read ({e}); give both, or neither for a new CA"),
        })?;
        KeyPair::from_pem(&text).map_err(gen)?
    } else {
        KeyPair::generate().map_err(gen)?
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(gen)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "candela development CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // (Made again from the key when the CA exists: the same subject and key,
    // so what it signs verifies against the `ca.pem` on disk.)
    let ca = ca_params.self_signed(&ca_key).map_err(gen)?;
    if existing {
        // `ca.pem` must carry this key's public key (its DER holds the raw
        // key in its SubjectPublicKeyInfo): else certificates signed now
        // would not verify against it.
        let held = CertificateDer::from_pem_file(&ca_pem).map_err(|e| TlsError::File {
            what: "CA",
            path: ca_pem.clone(),
            reason: e.to_string(),
        })?;
        let public = ca_key.public_key_raw();
        if !held.windows(public.len()).any(|w| w == public) {
            return Err(TlsError::File {
                what: "CA",
                path: ca_pem.clone(),
                reason: "it is not the certificate of ca.key: certificates signed now would not verify against it".into(),
            });
        }
    } else {
        write(ca_key_pem, &ca_key.serialize_pem(), true)?;
        write(ca_pem.clone(), &ca.pem(), false)?;
    }
    let mut out = Generated {
        ca: ca_pem.clone(),
        nodes: Vec::new(),
    };
    for node in nodes {
        let key = KeyPair::generate().map_err(gen)?;
        let mut params = CertificateParams::new(vec![
            server_name.to_owned(),
            node.clone(),
            "localhost".to_owned(),
        ])
        .map_err(gen)?;
        params.subject_alt_names.push(rcgen::SanType::IpAddress(
            std::net::Ipv4Addr::LOCALHOST.into(),
        ));
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node.as_str());
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &ca, &ca_key).map_err(gen)?;
        let files = TlsFiles {
            ca: ca_pem.clone(),
            cert: write(dir.join(format!("{node}.pem")), &cert.pem(), false)?,
            key: write(dir.join(format!("{node}.key")), &key.serialize_pem(), true)?,
            server_name: server_name.to_owned(),
        };
        out.nodes.push((node.clone(), files));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_files_load_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let made = generate(
            dir.path(),
            &["node-a".into(), "node-b".into()],
            "candela-cluster",
        )
        .unwrap();
        assert_eq!(made.nodes.len(), 2);
        for (_, files) in &made.nodes {
            load(files).expect("loads");
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        // A node added later is signed by the same CA.
        let ca = std::fs::read(&made.ca).unwrap();
        let more = generate(dir.path(), &["node-c".into()], "candela-cluster").unwrap();
        assert_eq!(std::fs::read(&more.ca).unwrap(), ca);
        // A key that is not the certificate's is refused with the reason.
        let mut wrong = made.nodes[0].1.clone();
        wrong.key = made.nodes[1].1.key.clone();
        assert!(load(&wrong).is_err());
        // A CA whose key is missing, or whose certificate is another's, is
        // refused rather than silently replaced.
        let other = tempfile::tempdir().unwrap();
        generate(other.path(), &["x".into()], "candela-cluster").unwrap();
        std::fs::copy(other.path().join("ca.pem"), dir.path().join("ca.pem")).unwrap();
        let err = generate(dir.path(), &["node-d".into()], "candela-cluster")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not the certificate of ca.key"), "{err}");
        std::fs::remove_file(other.path().join("ca.key")).unwrap();
        let err = generate(other.path(), &["y".into()], "candela-cluster")
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot be read"), "{err}");
        // A key file that existed with loose permissions is replaced by a
        // private one.
        use std::os::unix::fs::PermissionsExt;
        let loose = other.path().join("z.key");
        std::fs::write(&loose, "old").unwrap();
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::copy(dir.path().join("ca.key"), other.path().join("ca.key")).unwrap();
        std::fs::write(other.path().join("ca.pem"), &ca).unwrap();
        generate(other.path(), &["z".into()], "candela-cluster").unwrap();
        let mode = std::fs::metadata(&loose).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{mode:o}");
        let mut missing = made.nodes[0].1.clone();
        missing.ca = dir.path().join("nowhere.pem");
        let err = load(&missing).unwrap_err().to_string();
        assert!(err.contains("nowhere.pem"), "{err}");
    }
}
