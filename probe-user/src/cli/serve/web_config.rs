//! `probe serve --web-config FILE`: TLS on the metrics port, and optionally
//! client certificates, configured in the file format of the Prometheus
//! exporter-toolkit (`--web.config.file` of node-exporter and friends), so the
//! same file and the same scrape configuration work for both.
//!
//! The supported subset:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # PEM: the server's certificate (then its chain)
//!   key_file: server.key           # PEM: its private key (PKCS#8, PKCS#1 or SEC1)
//!   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert (the default)
//!   client_ca_file: clients-ca.crt # PEM: the CAs client certificates must chain to
//! ```
//!
//! Relative paths are relative to the file's own directory, as in the
//! exporter-toolkit. Anything else the exporter-toolkit knows (basic auth
//! users, TLS versions, cipher suites, allowed SANs, HTTP headers, ...) is
//! refused by name rather than silently ignored: a file that asks for more
//! protection than the probe gives must not start a server.
//!
//! Everything is read and checked once, before anything listens or attaches
//! (usage errors, exit status 2); certificates are not reloaded while the
//! probe runs: restart it to pick up renewed files.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use rustls::{
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use serde_yaml_ng::Value;

use crate::error::ProbeError;

/// The values of `client_auth_type` the probe supports.
pub const CLIENT_AUTH_TYPES: [&str; 2] = ["NoClientCert", "RequireAndVerifyClientCert"];

/// Keys of `tls_server_config` the probe reads.
const TLS_KEYS: [&str; 4] = [
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
];

/// Keys the exporter-toolkit knows that the probe does not implement.
const UNSUPPORTED_TOP: [&str; 3] = ["basic_auth_users", "http_server_config", "rate_limit"];
const UNSUPPORTED_TLS: [&str; 9] = [
    "cert",
    "key",
    "client_ca",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
];

/// Whether clients must present a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// Any client that completes the TLS handshake (`NoClientCert`).
    None,
    /// Only clients whose certificate chains to a CA in this PEM file
    /// (`RequireAndVerifyClientCert`).
    Require { ca_file: PathBuf },
}

/// A parsed web-config file: where the TLS material is (paths already
/// resolved against the file's directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebConfig {
    /// The file itself, for messages.
    pub path: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
}

fn usage(msg: String) -> ProbeError {
    ProbeError::Usage(msg)
}

/// The crypto provider of every TLS configuration the probe builds.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl WebConfig {
    /// Reads and parses `path` (its TLS files are read by [`WebConfig::server_config`]).
    pub fn read(path: &Path) -> Result<WebConfig, ProbeError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            usage(format!(
                "--web-config {}: cannot read it: {e}",
                path.display()
            ))
        })?;
        WebConfig::parse(path, &text)
    }

    /// Parses `text`, the contents of the file at `path`.
    pub fn parse(path: &Path, text: &str) -> Result<WebConfig, ProbeError> {
        let at = format!("--web-config {}", path.display());
        let doc: Value = serde_yaml_ng::from_str(text)
            .map_err(|e| usage(format!("{at}: not valid YAML: {e}")))?;
        let empty = serde_yaml_ng::Mapping::new();
        let top = match &doc {
            Value::Null => &empty,
            Value::Mapping(m) => m,
            _ => {
                return Err(usage(format!(
                    "{at}: expected a mapping with tls_server_config"
                )))
            }
        };
        for key in top.keys() {
            let name = key_name(key);
            if name == "tls_server_config" {
                continue;
            }
            return Err(usage(if UNSUPPORTED_TOP.contains(&name.as_str()) {
                format!(
                    "{at}: {name} is not supported by probe serve (it supports tls_server_config only; put an authenticating proxy such as kube-rbac-proxy in front for other schemes)"
                )
            } else {
                format!("{at}: unknown key {name} (the file may hold tls_server_config)")
            }));
        }
        let tls = match top.get("tls_server_config") {
            Some(Value::Mapping(m)) => m,
            Some(Value::Null) | None => {
                return Err(usage(format!(
                    "{at}: no tls_server_config: --web-config turns on TLS and needs at least cert_file and key_file (without TLS, leave --web-config out)"
                )))
            }
            Some(_) => return Err(usage(format!("{at}: tls_server_config must be a mapping"))),
        };
        let field = |name: &str| -> Result<Option<String>, ProbeError> {
            match tls.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if s.is_empty() => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(usage(format!(
                    "{at}: tls_server_config.{name} must be a string"
                ))),
            }
        };
        let cert = field("cert_file")?;
        let key = field("key_file")?;
        let auth = field("client_auth_type")?;
        let ca = field("client_ca_file")?;
        for k in tls.keys() {
            let name = key_name(k);
            if TLS_KEYS.contains(&name.as_str()) {
                continue;
            }
            return Err(usage(if UNSUPPORTED_TLS.contains(&name.as_str()) {
                format!(
                    "{at}: tls_server_config.{name} is not supported by probe serve (supported: {})",
                    TLS_KEYS.join(", ")
                )
            } else {
                format!(
                    "{at}: unknown key tls_server_config.{name} (supported: {})",
                    TLS_KEYS.join(", ")
                )
            }));
        }
        let dir = path.parent().unwrap_or(Path::new(""));
        let resolve = |p: String| relative_to(dir, &p);
        let (Some(cert), Some(key)) = (cert, key) else {
            return Err(usage(format!(
                "{at}: tls_server_config needs both cert_file and key_file"
            )));
        };
        let client_auth = match (auth.as_deref().unwrap_or("NoClientCert"), ca) {
            ("NoClientCert", None) => ClientAuth::None,
            ("NoClientCert", Some(_)) => {
                return Err(usage(format!(
                    "{at}: client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type: RequireAndVerifyClientCert to check client certificates"
                )))
            }
            ("RequireAndVerifyClientCert", Some(ca)) => ClientAuth::Require {
                ca_file: resolve(ca),
            },
            ("RequireAndVerifyClientCert", None) => {
                return Err(usage(format!(
                    "{at}: client_auth_type RequireAndVerifyClientCert needs client_ca_file (the CAs client certificates must chain to)"
                )))
            }
            (other, _) => {
                return Err(usage(format!(
                    "{at}: client_auth_type {other:?} is not supported; supported: {}",
                    CLIENT_AUTH_TYPES.join(", ")
                )))
            }
        };
        Ok(WebConfig {
            path: path.to_path_buf(),
            cert_file: resolve(cert),
            key_file: resolve(key),
            client_auth,
        })
    }

    /// Reads the certificate, key and client CAs and builds the server's TLS
    /// configuration (HTTP/1.1 only, as the server). Each problem is a usage
    /// error naming the file.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, ProbeError> {
        let at = format!("--web-config {}", self.path.display());
        let certs = read_certs(&self.cert_file, "cert_file")?;
        let key_bytes = read_file(&self.key_file, "key_file")?;
        let key = PrivateKeyDer::from_pem_slice(&key_bytes).map_err(|e| {
            usage(format!(
                "key_file {}: no PEM private key in it ({e})",
                self.key_file.display()
            ))
        })?;
        let provider = provider();
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| usage(format!("{at}: TLS versions: {e}")))?;
        let builder = match &self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Require { ca_file } => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca_file, "client_ca_file")? {
                    roots.add(cert).map_err(|e| {
                        usage(format!(
                            "client_ca_file {}: not a usable CA certificate: {e}",
                            ca_file.display()
                        ))
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| usage(format!("client_ca_file {}: {e}", ca_file.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            let why = match e {
                rustls::Error::InconsistentKeys(_) => {
                    "the private key does not match the certificate".to_string()
                }
                other => other.to_string(),
            };
            usage(format!(
                "key_file {} and cert_file {}: {why}",
                self.key_file.display(),
                self.cert_file.display()
            ))
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A mapping key as text (YAML allows non-string keys).
fn key_name(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => serde_yaml_ng::to_string(other)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

/// `path` if absolute, else `dir/path` (the exporter-toolkit's rule).
fn relative_to(dir: &Path, path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, ProbeError> {
    std::fs::read(path)
        .map_err(|e| usage(format!("{what} {}: cannot read it: {e}", path.display())))
}

/// Every PEM certificate in `path`: at least one.
fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ProbeError> {
    let bytes = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| usage(format!("{what} {}: unreadable PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(usage(format!(
            "{what} {}: no PEM certificate (-----BEGIN CERTIFICATE-----) in it",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests;
