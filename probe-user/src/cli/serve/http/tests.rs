use std::io::{Read, Write};

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};

use super::*;
use crate::cli::serve::{
    pki::{Ca, Dir, Leaf},
    web_config::{self, WebConfig},
};
use probe_model::{
    fixtures::{sample, topo},
    model::{Report, ReportKind},
};

fn state(ready: bool) -> State {
    let s = State::new(Duration::from_millis(200));
    s.ready.store(ready, Ordering::Relaxed);
    s
}

#[test]
fn readiness_follows_attach() {
    assert_eq!(answer(&state(false), "/readyz").0, 503);
    assert_eq!(answer(&state(true), "/readyz").0, 200);
}

#[test]
fn health_fails_when_sampling_stalls() {
    let s = state(true);
    assert_eq!(answer(&s, "/healthz").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, body) = answer(&s, "/healthz");
    assert_eq!(status, 503, "{body:?}");
    assert!(body.starts_with(b"stalled"), "{body:?}");
}

#[test]
fn metrics_and_unknown_paths() {
    let s = state(true);
    let (status, ctype, body) = answer(&s, "/metrics");
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"));
    assert!(body.ends_with(b"# EOF\n"), "{body:?}");
    assert_eq!(answer(&s, "/").0, 404);
}

/// One request on a fresh connection: (status line, headers, body).
fn get(addr: SocketAddr, path: &str, version: &str) -> (String, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // HTTP/1.1 asks to close; HTTP/1.0 (as the lab tests' client) closes by default.
    let close = if version == "HTTP/1.1" {
        "Connection: close\r\n"
    } else {
        ""
    };
    write!(s, "GET {path} {version}\r\nHost: 127.0.0.1\r\n{close}\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read to the end");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.into(), headers.into(), body.into())
}

fn content_type(headers: &str) -> &str {
    headers
        .split("\r\n")
        .filter_map(|h| h.split_once(':'))
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.trim())
        .unwrap_or_else(|| panic!("no content-type in {headers}"))
}

#[test]
fn serves_real_http_requests_until_shut_down() {
    // Silent for 10 s already: stalled until the first beat.
    let mut s = State::new(Duration::from_secs(5));
    s.started = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
    s.metrics.set(Report::between(
        ReportKind::Summary,
        &probe_model::model::Run::watching(&topo()),
        &sample(0.0, 0, 0, 0, 0, 0),
        &sample(10.0, 1, 700, 30, 690, 730),
    ));
    let state = Arc::new(s);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&state), None).unwrap();
    let addr = server.addr();
    assert_ne!(addr.port(), 0);
    let v11 = "HTTP/1.1";

    let (status, headers, body) = get(addr, "/metrics?name=x", v11);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    assert_eq!(content_type(&headers), openmetrics, "{headers}");
    assert_eq!(body, state.metrics.render());
    assert!(body.contains("rxprobe_stage_segments_total"), "{body}");

    let (status, _, body) = get(addr, "/healthz", v11);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert!(body.starts_with("stalled: no sample for 1"), "{body}");
    state.beat();
    let (status, _, body) = get(addr, "/healthz", v11);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "ok\n");

    let (status, headers, body) = get(addr, "/readyz", v11);
    assert_eq!(status, "HTTP/1.1 503 Service Unavailable");
    assert_eq!(content_type(&headers), "text/plain; charset=utf-8");
    assert_eq!(body, "not ready: probes are not attached\n");
    state.ready.store(true, Ordering::Relaxed);
    let (status, _, body) = get(addr, "/readyz", "HTTP/1.0");
    assert!(status.ends_with(" 200 OK"), "{status}");
    assert_eq!(body, "ready\n");

    let (status, _, body) = get(addr, "/nope", v11);
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    assert_eq!(
        body,
        "not found; this server has /metrics, /healthz and /readyz\n"
    );

    // An idle keep-alive connection does not hold the shutdown up.
    let idle = std::net::TcpStream::connect(addr).unwrap();
    server.shutdown();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still listening"
    );
    drop(idle);
}

/// A TLS client of `ca`'s servers, presenting `cert` if given.
fn tls_client(ca: &Ca, cert: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca.pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(web_config::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    Arc::new(match cert {
        None => builder.with_no_client_auth(),
        Some(leaf) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
    })
}

/// GET `path` over TLS on a fresh connection: the whole response, or the
/// error that ended the exchange (a refused handshake ends in one).
fn tls_get(
    addr: SocketAddr,
    client: Arc<rustls::ClientConfig>,
    path: &str,
) -> std::io::Result<String> {
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    tls.flush()?;
    let mut bytes = Vec::new();
    tls.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A server that requires client certificates from `ca`, serving a report.
fn mtls_server(dir: &Dir, ca: &Ca) -> (Server, Arc<State>) {
    let server_cert = ca.server();
    dir.write("ca.crt", &ca.pem());
    dir.write("server.crt", &server_cert.cert_pem);
    dir.write("server.key", &server_cert.key_pem);
    let path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
    );
    let tls = WebConfig::read(&path).unwrap().server_config().unwrap();
    let state = Arc::new(state(false));
    state.metrics.set(Report::between(
        ReportKind::Summary,
        &probe_model::model::Run::watching(&topo()),
        &sample(0.0, 0, 0, 0, 0, 0),
        &sample(10.0, 1, 700, 30, 690, 730),
    ));
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::clone(&state),
        Some(tls),
    )
    .unwrap();
    (server, state)
}

#[test]
fn with_client_auth_only_clients_of_the_ca_get_metrics() {
    let dir = Dir::new("mtls");
    let ca = Ca::new("scrapers");
    let (server, state) = mtls_server(&dir, &ca);
    let addr = server.addr();
    let prometheus = ca.client("prometheus");

    // A client certificate the CA signed: the same answers as plain HTTP.
    let text = tls_get(addr, tls_client(&ca, Some(&prometheus)), "/metrics").unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let body = text.split_once("\r\n\r\n").unwrap().1;
    assert_eq!(body, state.metrics.render());
    assert!(body.contains("rxprobe_stage_segments_total"), "{body}");
    let readyz = |client| tls_get(addr, client, "/readyz").unwrap();
    assert!(readyz(tls_client(&ca, Some(&prometheus))).starts_with("HTTP/1.1 503 "));
    state.ready.store(true, Ordering::Relaxed);
    assert!(readyz(tls_client(&ca, Some(&prometheus))).ends_with("\r\n\r\nready\n"));
    let healthz = tls_get(addr, tls_client(&ca, Some(&prometheus)), "/healthz").unwrap();
    assert!(healthz.starts_with("HTTP/1.1 200 OK\r\n"), "{healthz}");

    // No client certificate, or one from another CA (the client still
    // trusts the server): the server ends the handshake with an alert and
    // closes; the client sees an error (the alert, or a broken pipe or reset
    // when it was still writing), never a response.
    let stranger = Ca::new("stranger").client("prometheus");
    for (who, cert) in [("no certificate", None), ("another CA's", Some(&stranger))] {
        let refused = tls_get(addr, tls_client(&ca, cert), "/metrics");
        assert!(refused.is_err(), "{who}: answered {refused:?}");
    }

    // Plain HTTP to the TLS port: no HTTP answer, no metrics.
    let mut plain = std::net::TcpStream::connect(addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        plain,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut bytes = Vec::new();
    let _ = plain.read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        !text.starts_with("HTTP/") && !text.contains("rxprobe_"),
        "{text:?}"
    );

    // The refusals did not stop the server.
    let text = tls_get(addr, tls_client(&ca, Some(&prometheus)), "/metrics").unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    server.shutdown();
}

#[test]
fn without_client_auth_any_tls_client_is_served() {
    let dir = Dir::new("tls");
    let ca = Ca::new("server-ca");
    let cert = ca.server();
    dir.write("server.crt", &cert.cert_pem);
    dir.write("server.key", &cert.key_pem);
    let path = dir.write(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let tls = WebConfig::read(&path).unwrap().server_config().unwrap();
    let server = Server::start(
        "127.0.0.1:0".parse().unwrap(),
        Arc::new(state(true)),
        Some(tls),
    )
    .unwrap();
    let text = tls_get(server.addr(), tls_client(&ca, None), "/readyz").unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nready\n"), "{text}");
    let text = tls_get(server.addr(), tls_client(&ca, None), "/metrics").unwrap();
    assert!(text.contains("application/openmetrics-text"), "{text}");
    // A client that does not trust the server's CA gives up by itself.
    let other = Ca::new("other");
    assert!(tls_get(server.addr(), tls_client(&other, None), "/metrics").is_err());
}
