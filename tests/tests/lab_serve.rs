//! `probe serve`: /metrics, /healthz and /readyz on a lab node, and the same
//! totals on /metrics, in the JSON summary and in the terminal summary.

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    sync::Arc,
    time::Duration,
};

use probe_tests::{
    eventually, free_port, http_get, lab, metric, privileged, probe_bin, stage, Watch,
};

const DELIVERED: u64 = 1_500;
const NO_PORT: u64 = 300;

/// The totals one run reports, whichever sink shows them.
#[derive(Debug, PartialEq)]
struct Totals {
    nic: u64,
    vxlan_inner: u64,
    no_socket: u64,
}

fn from_metrics(text: &str) -> Totals {
    let get = |series: &str| {
        metric(text, series).unwrap_or_else(|| panic!("{series} missing:\n{text}")) as u64
    };
    Totals {
        nic: get(r#"rxprobe_stage_segments_total{stage="nic",iface="eth0"}"#),
        vxlan_inner: get(
            r#"rxprobe_vxlan_inner_segments_total{iface="flannel.1",port="8472",vni="1"}"#,
        ),
        no_socket: get(r#"rxprobe_drop_segments_total{stage="socket",reason="NO_SOCKET"}"#),
    }
}

fn from_json(summary: &serde_json::Value) -> Totals {
    let vni1 = summary["vxlan"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["vni"] == 1)
        .expect("VNI 1 row");
    let socket = summary["ledger"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["stage"] == "socket")
        .unwrap();
    Totals {
        nic: stage(summary, "nic", "eth0")["segments"].as_u64().unwrap(),
        vxlan_inner: vni1["inner_segments"].as_u64().unwrap(),
        no_socket: socket["reasons"]["NO_SOCKET"]["segments"]
            .as_u64()
            .unwrap_or(0),
    }
}

/// From the terminal summary: the stage table's SEGMENTS column, the VXLAN
/// table's INNER column and the ledger's reason notes.
fn from_terminal(text: &str) -> Totals {
    let summary = &text[text.find("SUMMARY").expect("a summary")..];
    // The first row whose leading words are `lead`.
    let row = |lead: &[&str]| -> Vec<&str> {
        summary
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.len() > 3 && w.starts_with(lead))
            .unwrap_or_else(|| panic!("no row {lead:?} in:\n{summary}"))
    };
    // STAGE IFACE HOOK SKBS SEGMENTS ...
    let nic = row(&["nic", "eth0"])[4].parse().unwrap();
    // VXLAN  NIC  PORT  VNI  DEVICE  OUTER  INNER
    let vxlan = row(&["eth0", "8472", "1"]);
    // The ledger: STAGE IN DROPS %IN  REASON SEGMENTS/SKBS, COUNTER=N; ...
    let socket = row(&["socket"]);
    let no_socket = socket
        .windows(2)
        .find(|w| w[0] == "NO_SOCKET")
        .map_or(0, |w| w[1].split('/').next().unwrap().parse().unwrap());
    Totals {
        nic,
        vxlan_inner: vxlan[5].parse().unwrap(),
        no_socket,
    }
}

#[test]
fn metrics_json_and_terminal_report_the_same_totals() {
    if !privileged("metrics_json_and_terminal_report_the_same_totals") {
        return;
    }
    let lab = lab();
    let (n1, n2) = (lab.node(1), lab.node(2));
    let pod = &n2.pods[0];
    for json in [true, false] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let sub: &[&str] = if json {
            &["serve", "--json"]
        } else {
            &["serve"]
        };
        let sink = lab::UdpSink::start(&pod.netns, 9000).unwrap();
        let serve = Watch::spawn(
            Command::new(probe_bin()),
            sub,
            &[
                "--listen",
                &listen,
                "--netns",
                &n2.netns,
                "--drop-netns",
                &pod.netns,
                "--interval",
                "0.2",
            ],
        );
        assert_eq!(http_get(port, "/readyz"), (200, "ready\n".into()));
        assert_eq!(http_get(port, "/healthz").0, 200);
        assert_eq!(http_get(port, "/nothing-here").0, 404);

        let to = |p: u16| format!("{}:{p}", pod.ip).parse().unwrap();
        lab::send_udp(&n1.pods[0].netns, to(9000), DELIVERED, 64, 100).unwrap();
        lab::send_udp(&n1.pods[0].netns, to(9001), NO_PORT, 64, 100).unwrap();
        assert_eq!(sink.finish(DELIVERED, Duration::from_secs(5)), DELIVERED);
        let expected = Totals {
            nic: DELIVERED + NO_PORT,
            vxlan_inner: DELIVERED + NO_PORT,
            no_socket: NO_PORT,
        };
        let mut text = String::new();
        assert!(
            eventually(Duration::from_secs(5), || {
                text = http_get(port, "/metrics").1;
                metric(
                    &text,
                    r#"rxprobe_stage_segments_total{stage="nic",iface="eth0"}"#,
                ) == Some(expected.nic as f64)
            }),
            "/metrics did not reach {expected:?}:\n{text}"
        );
        // One more sampling interval: nothing changes once the traffic stopped.
        std::thread::sleep(Duration::from_millis(500));
        let text = http_get(port, "/metrics").1;
        assert_eq!(from_metrics(&text), expected, "/metrics");
        assert_eq!(
            metric(
                &text,
                &format!(
                    r#"rxprobe_hook_attached{{stage="nic",iface="eth0",hook="{}"}}"#,
                    probe_tests::tc_hook()
                )
            ),
            Some(1.0)
        );
        assert!(
            text.contains("# TYPE rxprobe_drop_segments counter"),
            "one prefix, typed families:\n{text}"
        );

        let (code, out, err) = serve.stop_text(libc::SIGTERM);
        assert_eq!(code, Some(0), "{err}");
        let printed = if json {
            let summary: serde_json::Value =
                serde_json::from_str(out.lines().last().expect("a summary line")).unwrap();
            assert_eq!(summary["type"], "summary");
            from_json(&summary)
        } else {
            from_terminal(&out)
        };
        assert_eq!(
            printed,
            expected,
            "{} summary:\n{out}",
            if json { "JSON" } else { "terminal" }
        );
    }
}

/// `--stage-latency`: the socket that read the followed packets is a series
/// of its own (`rxprobe_stage_latency_socket_wait_seconds{netns, protocol,
/// port}`), whose count is every followed read (the only socket), in the
/// same scrape, and the JSON summary's `sockets[]` row says the same.
#[test]
fn the_socket_that_reads_is_a_series_with_its_own_wait() {
    if !privileged("the_socket_that_reads_is_a_series_with_its_own_wait") {
        return;
    }
    const SENT: u64 = 500;
    let lab = lab();
    let (n1, n2) = (lab.node(1), lab.node(2));
    let pod = &n2.pods[0];
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let sink = lab::UdpSink::start(&pod.netns, 9000).unwrap();
    let serve = Watch::spawn(
        Command::new(probe_bin()),
        &["serve", "--json"],
        &[
            "--listen",
            &listen,
            "--netns",
            &n2.netns,
            "--interval",
            "0.2",
            "--stage-latency",
            "--stage-sample",
            "1",
            "--stage-window",
            "always",
        ],
    );
    assert_eq!(http_get(port, "/readyz").0, 200);
    let to = format!("{}:9000", pod.ip).parse().unwrap();
    lab::send_udp(&n1.pods[0].netns, to, SENT, 64, 10).unwrap();
    assert_eq!(sink.finish(SENT, Duration::from_secs(5)), SENT);
    let nic = r#"rxprobe_stage_segments_total{stage="nic",iface="eth0"}"#;
    assert!(eventually(Duration::from_secs(5), || {
        metric(&http_get(port, "/metrics").1, nic) == Some(SENT as f64)
    }));
    // One more report: the reads after the NIC counted too.
    std::thread::sleep(Duration::from_millis(500));
    let text = http_get(port, "/metrics").1;
    let followed = |stage: &str| {
        metric(
            &text,
            &format!(r#"rxprobe_stage_latency_packets_total{{stage="{stage}"}}"#),
        )
        .unwrap()
    };
    let reads = followed("read");
    // Socket stages: Linux >= 6.5 (else no reads, and no socket series).
    // The datagrams come in bursts of 10: one queued while another followed
    // one waits is not followed to its read.
    if probe_tests::kernel_has_socket_tracepoints() {
        assert!(reads > 0.0, "{text}");
        assert_eq!(
            reads + followed("socket_busy"),
            followed("queued"),
            "{text}"
        );
    }
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("rxprobe_stage_latency_socket_wait_seconds_count{"))
        .collect();
    if reads == 0.0 {
        assert!(rows.is_empty(), "{rows:?}");
    } else {
        assert_eq!(rows.len(), 1, "{rows:?}");
        let series = format!(
            r#"rxprobe_stage_latency_socket_wait_seconds_count{{netns="{}",protocol="udp",port="9000"}}"#,
            pod.netns
        );
        assert_eq!(metric(&text, &series), Some(reads), "{text}");
    }
    let (code, out, err) = serve.stop_text(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err}");
    let summary: serde_json::Value =
        serde_json::from_str(out.lines().last().expect("a summary line")).unwrap();
    let sockets = summary["stage_latency"]["sockets"].as_array().unwrap();
    if reads > 0.0 {
        assert_eq!(sockets.len(), 1, "{summary}");
        assert_eq!(sockets[0]["queued_to_read"]["count"], reads as u64);
    }
}

#[test]
fn a_taken_port_is_a_clear_error() {
    if !privileged("a_taken_port_is_a_clear_error") {
        return;
    }
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, _, err) =
        probe_tests::probe_output(&["serve", "--listen", &addr, "--iface", "probe-test-none"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

/// A CA and the certificates it signs (rcgen), as PEM.
struct Ca(rcgen::CertifiedIssuer<'static, rcgen::KeyPair>);

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let key = rcgen::KeyPair::generate().unwrap();
        Ca(rcgen::CertifiedIssuer::self_signed(params, key).unwrap())
    }

    /// (certificate, key) for `names`, for a server or a client.
    fn sign(&self, names: &[&str], usage: rcgen::ExtendedKeyUsagePurpose) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// GET /metrics over TLS to 127.0.0.1:`port`, trusting `ca_pem`, presenting
/// `client` (certificate, key) if given: the response, or why there is none.
fn tls_get(port: u16, ca_pem: &str, client: Option<&(String, String)>) -> Result<String, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            // A server that closes without close_notify after a full
            // response: keep what came.
            Err(_) if !out.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `probe serve --web-config`: TLS with client certificates, the way the
/// README documents it. A client with a certificate the configured CA signed
/// scrapes /metrics; one without a certificate, one with another CA's, and
/// a plain-HTTP client get no metrics.
#[test]
fn only_a_client_with_a_certificate_scrapes_over_tls() {
    if !privileged("only_a_client_with_a_certificate_scrapes_over_tls") {
        return;
    }
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let lab = lab();
    let n2 = lab.node(2);
    let dir = std::env::temp_dir().join(format!("probe-lab-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = Ca::new("probe test CA");
    let (server_cert, server_key) = ca.sign(&["127.0.0.1"], ServerAuth);
    let client = ca.sign(&["prometheus"], ClientAuth);
    let stranger = Ca::new("another CA").sign(&["prometheus"], ClientAuth);
    for (name, text) in [
        ("ca.pem", ca.0.pem()),
        ("server.pem", server_cert),
        ("server.key", server_key),
        (
            "web.yml",
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.pem\n"
                .to_string(),
        ),
    ] {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let web_config = dir.join("web.yml").display().to_string();
    let serve = Watch::spawn(
        Command::new(probe_bin()),
        &["serve"],
        &[
            "--listen",
            &listen,
            "--web-config",
            &web_config,
            "--netns",
            &n2.netns,
        ],
    );
    let ca_pem = ca.0.pem();

    let allowed = tls_get(port, &ca_pem, Some(&client)).expect("the CA's client is served");
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(allowed.contains("rxprobe_uptime_seconds"), "{allowed}");
    // Refused in the handshake, with TLS's alerts.
    for (who, cert, alert) in [
        ("no certificate", None, "CertificateRequired"),
        ("another CA's certificate", Some(&stranger), "UnknownCA"),
    ] {
        match tls_get(port, &ca_pem, cert) {
            Err(why) => assert!(why.contains(alert), "{who}: {why}"),
            Ok(text) => panic!("{who} got an answer:\n{text}"),
        }
    }
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !String::from_utf8_lossy(&answer).contains("rxprobe_"),
        "plain HTTP got metrics"
    );
    // Still serving after the refusals.
    let again = tls_get(port, &ca_pem, Some(&client)).expect("served again");
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");

    let (code, _, err) = serve.stop_text(libc::SIGTERM);
    assert_eq!(code, Some(0), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
