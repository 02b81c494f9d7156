use super::*;
use crate::cli::serve::pki::{Ca, Dir};

/// The usage error of parsing `text` as the file /etc/probe/web.yml.
fn refused(text: &str) -> String {
    match WebConfig::parse(Path::new("/etc/probe/web.yml"), text) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => {
            assert_eq!(e.exit_code(), 2, "{e}");
            let msg = e.to_string();
            assert!(msg.contains("--web-config /etc/probe/web.yml"), "{msg}");
            msg
        }
    }
}

#[test]
fn relative_paths_are_relative_to_the_files_directory() {
    let text = "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n";
    let c = WebConfig::parse(Path::new("/etc/probe/web.yml"), text).unwrap();
    assert_eq!(c.cert_file, Path::new("/etc/probe/tls/server.crt"));
    assert_eq!(c.key_file, Path::new("/abs/server.key"));
    assert_eq!(
        c.client_auth,
        ClientAuth::Require {
            ca_file: "/etc/probe/ca.crt".into()
        }
    );
    // A file named without a directory: paths stay relative to the working directory.
    let c = WebConfig::parse(Path::new("web.yml"), text).unwrap();
    assert_eq!(c.cert_file, Path::new("tls/server.crt"));
}

#[test]
fn client_auth_defaults_to_no_client_cert() {
    for auth in [
        "",
        "  client_auth_type: NoClientCert\n",
        "  client_auth_type: \"\"\n",
    ] {
        let text = format!("tls_server_config:\n  cert_file: a\n  key_file: b\n{auth}");
        let c = WebConfig::parse(Path::new("/w.yml"), &text).unwrap();
        assert_eq!(c.client_auth, ClientAuth::None, "{auth}");
    }
}

#[test]
fn unsupported_client_auth_types_are_named_with_the_supported_ones() {
    for other in [
        "RequestClientCert",
        "RequireAnyClientCert",
        "VerifyClientCertIfGiven",
        "requireandverifyclientcert",
    ] {
        let msg = refused(&format!(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: {other}\n  client_ca_file: c\n"
        ));
        assert!(msg.contains(other), "{msg}");
        assert!(
            msg.contains("supported: NoClientCert, RequireAndVerifyClientCert"),
            "{msg}"
        );
    }
}

#[test]
fn client_auth_and_client_ca_file_go_together() {
    let msg = refused(
        "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n",
    );
    assert!(
        msg.contains("RequireAndVerifyClientCert needs client_ca_file"),
        "{msg}"
    );
    let msg = refused("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n");
    assert!(msg.contains("client_auth_type is NoClientCert"), "{msg}");
}

#[test]
fn missing_or_malformed_parts_are_usage_errors() {
    for (text, needle) in [
        ("", "no tls_server_config"),
        ("tls_server_config:\n", "no tls_server_config"),
        (
            "tls_server_config:\n  cert_file: a\n",
            "needs both cert_file and key_file",
        ),
        (
            "tls_server_config:\n  key_file: b\n",
            "needs both cert_file and key_file",
        ),
        ("tls_server_config: [a]\n", "must be a mapping"),
        ("- a\n", "expected a mapping"),
        (
            "tls_server_config:\n  cert_file: [a]\n  key_file: b\n",
            "cert_file must be a string",
        ),
        ("tls_server_config: {cert_file: a\n", "not valid YAML"),
    ] {
        let msg = refused(text);
        assert!(msg.contains(needle), "{text:?}: {msg}");
    }
}

#[test]
fn what_the_probe_does_not_implement_is_refused_by_name() {
    for (text, needle) in [
        (
            "basic_auth_users:\n  prometheus: $2y$10$abc\n",
            "basic_auth_users is not supported",
        ),
        (
            "http_server_config:\n  http2: false\n",
            "http_server_config is not supported",
        ),
        ("tls_config:\n  cert_file: a\n", "unknown key tls_config"),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n",
            "tls_server_config.min_version is not supported",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
            "tls_server_config.client_allowed_sans is not supported",
        ),
        (
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  certfile: c\n",
            "unknown key tls_server_config.certfile",
        ),
    ] {
        let msg = refused(text);
        assert!(msg.contains(needle), "{text:?}: {msg}");
    }
}

/// Writes web.yml with `tls` under tls_server_config into `dir`; the
/// server config built from it, or the usage error's message.
fn build(dir: &Dir, tls: &str) -> Result<Arc<ServerConfig>, String> {
    let path = dir.write("web.yml", &format!("tls_server_config:\n{tls}"));
    WebConfig::read(&path)
        .and_then(|c| c.server_config())
        .map_err(|e| {
            assert_eq!(e.exit_code(), 2, "{e}");
            e.to_string()
        })
}

#[test]
fn the_tls_files_are_read_and_checked_up_front() {
    let dir = Dir::new("webcfg");
    let ca = Ca::new("scrapers");
    let server = ca.server();
    let other = ca.server();
    dir.write("ca.crt", &ca.pem());
    dir.write("server.crt", &server.cert_pem);
    dir.write("server.key", &server.key_pem);
    dir.write("other.key", &other.key_pem);
    dir.write("empty.pem", "nothing here\n");
    dir.write(
        "broken.crt",
        "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
    );
    let good = "  cert_file: server.crt\n  key_file: server.key\n";
    let config = build(&dir, good).unwrap();
    assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    build(
        &dir,
        &format!(
            "{good}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"
        ),
    )
    .unwrap();

    let d = dir.path().display();
    for (tls, needle) in [
        (
            "  cert_file: missing.crt\n  key_file: server.key\n".to_string(),
            format!("cert_file {d}/missing.crt: cannot read it"),
        ),
        (
            "  cert_file: server.crt\n  key_file: missing.key\n".into(),
            format!("key_file {d}/missing.key: cannot read it"),
        ),
        (
            "  cert_file: empty.pem\n  key_file: server.key\n".into(),
            format!("cert_file {d}/empty.pem: no PEM certificate"),
        ),
        (
            "  cert_file: broken.crt\n  key_file: server.key\n".into(),
            format!("cert_file {d}/broken.crt: unreadable PEM"),
        ),
        (
            "  cert_file: server.crt\n  key_file: server.crt\n".into(),
            format!("key_file {d}/server.crt: no PEM private key"),
        ),
        (
            "  cert_file: server.crt\n  key_file: other.key\n".into(),
            "the private key does not match the certificate".into(),
        ),
        (
            format!("{good}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: nope.crt\n"),
            format!("client_ca_file {d}/nope.crt: cannot read it"),
        ),
        (
            format!("{good}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: empty.pem\n"),
            format!("client_ca_file {d}/empty.pem: no PEM certificate"),
        ),
    ] {
        let msg = build(&dir, &tls).unwrap_err();
        assert!(msg.contains(&needle), "{tls}: {msg}");
    }
}
