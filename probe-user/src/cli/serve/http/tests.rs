use std::io::{Read, Write};

use super::*;
use crate::model::{
    tests::{sample, topo},
    Report, ReportKind,
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
    *s.metrics.0.lock().unwrap() = Some(Report::between(
        ReportKind::Summary,
        &topo(),
        &sample(0.0, 0, 0, 0, 0, 0),
        &sample(10.0, 1, 700, 30, 690, 730),
    ));
    let state = Arc::new(s);
    let server = Server::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&state)).unwrap();
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
