//! The Prometheus harness against a static /metrics on loopback: no root, no
//! lab. Prometheus scrapes an OpenMetrics text shaped like `probe serve`'s
//! (counters typed without `_total`, HELP texts with quotes and backticks as
//! prometheus-client writes them, an empty label value, log2 histogram
//! buckets in seconds, `# EOF`), loads the repository's rules, and answers
//! queries; an API error is an error, a target that does not answer is
//! named, and dropping the handle leaves no process and no directory behind.

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use probe_lab::prometheus::{Config, Prometheus, Target};

const METRICS: &str = r#"# HELP rxprobe_uptime_seconds Seconds since the probes were attached.
# TYPE rxprobe_uptime_seconds gauge
rxprobe_uptime_seconds 12
# HELP rxprobe_vxlan_outer_segments VXLAN segments that reached the NIC hook, by UDP port and VNI (port and vni "other": every pair no watched device owns)
# TYPE rxprobe_vxlan_outer_segments counter
rxprobe_vxlan_outer_segments_total{iface="eth0",port="other",vni="other"} 7
# HELP rxprobe_hook_attached 1 for each attached hook; 0 for a stage that could not be attached (the reason is in the log and in JSON `unavailable`) or whose device is gone
# TYPE rxprobe_hook_attached gauge
rxprobe_hook_attached{stage="nic",iface="eth0",hook="tcx/ingress"} 1
rxprobe_hook_attached{stage="vxlan",iface="",hook="unavailable"} 0
# HELP rxprobe_drop_segments Segments dropped by stage and reason.
# TYPE rxprobe_drop_segments counter
rxprobe_drop_segments_total{stage="socket",reason="NO_SOCKET"} 300
rxprobe_drop_segments_total{stage="socket",reason="SOCKET_RCVBUFF"} 40
# HELP rxprobe_softirq_wait_seconds NET_RX raise to entry.
# TYPE rxprobe_softirq_wait_seconds histogram
rxprobe_softirq_wait_seconds_bucket{le="2.55e-7",cpu="0"} 0
rxprobe_softirq_wait_seconds_bucket{le="5.11e-7",cpu="0"} 10
rxprobe_softirq_wait_seconds_bucket{le="0.000001023",cpu="0"} 90
rxprobe_softirq_wait_seconds_bucket{le="0.000002047",cpu="0"} 100
rxprobe_softirq_wait_seconds_bucket{le="+Inf",cpu="0"} 100
rxprobe_softirq_wait_seconds_sum{cpu="0"} 0.0001
rxprobe_softirq_wait_seconds_count{cpu="0"} 100
# EOF
"#;

/// Serves METRICS to every GET on 127.0.0.1 until dropped.
struct StaticServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StaticServer {
    fn start() -> StaticServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let Ok((mut conn, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                };
                conn.set_nonblocking(false).unwrap();
                conn.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                // The request's head; its content does not matter.
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{METRICS}",
                    METRICS.len()
                );
            }
        });
        StaticServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for StaticServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Polls `f` until it returns Some or `timeout` passes.
fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_scrapes_a_static_target_evaluates_the_rules_and_cleans_up() {
    let server = StaticServer::start();
    // A second target where nothing listens: named as down.
    let dead = probe_lab::prometheus::free_port().unwrap();
    let config = Config::new(vec![
        Target {
            node: "static-n1".into(),
            addr: format!("127.0.0.1:{}", server.port).parse().unwrap(),
        },
        Target {
            node: "static-dead".into(),
            addr: format!("127.0.0.1:{dead}").parse().unwrap(),
        },
    ]);
    let prom = Prometheus::start(&config).unwrap_or_else(|e| panic!("{e}"));
    let (pid, dir) = (prom.pid().unwrap(), prom.dir().to_path_buf());
    assert!(dir.join("prometheus.yml").is_file());

    let err = prom
        .wait_for_scrapes(2, Duration::from_secs(15))
        .expect_err("one target is down");
    assert!(
        err.contains("static-dead") && !err.contains("[\"static-n1"),
        "{err}"
    );

    // The target's labels: the job the rules expect, the node as instance.
    let drops = prom
        .query(r#"rxprobe_drop_segments_total{reason="NO_SOCKET"}"#)
        .unwrap();
    assert_eq!(drops.len(), 1, "{drops:?}");
    assert_eq!(drops[0].value, 300.0);
    assert_eq!(drops[0].label("job"), "rxprobe");
    assert_eq!(drops[0].label("instance"), "static-n1");
    assert_eq!(drops[0].label("node"), "static-n1");
    assert_eq!(drops[0].label("stage"), "socket");
    assert_eq!(prom.query_one("1 + 1").unwrap(), 2.0, "a scalar");
    assert_eq!(
        prom.query_one(r#"rxprobe_vxlan_outer_segments_total{vni="other"}"#)
            .unwrap(),
        7.0
    );
    assert_eq!(
        prom.query_one(r#"rxprobe_hook_attached{hook="unavailable"}"#)
            .unwrap(),
        0.0
    );
    assert_eq!(
        prom.query_one("sum(rxprobe_drop_segments_total)").unwrap(),
        340.0
    );

    // histogram_quantile interpolates inside the bucket: rank 99 of 100 is
    // the 9th of the 10 values in (1.023 us, 2.047 us].
    let p99 = prom
        .query_one("histogram_quantile(0.99, sum by (le) (rxprobe_softirq_wait_seconds_bucket))")
        .unwrap();
    let expected = 1.023e-6 + (2.047e-6 - 1.023e-6) * 0.9;
    assert!((p99 - expected).abs() < 1e-12, "{p99} vs {expected}");

    // The repository's recording rules run (every second) on these series.
    for rule in [
        "rxprobe:drop_segments:rate5m",
        "rxprobe:softirq_wait_seconds:p99_5m",
    ] {
        let series = eventually(Duration::from_secs(10), || {
            prom.query(rule).ok().filter(|s| !s.is_empty())
        });
        assert!(
            series.is_some_and(|s| s.iter().all(|s| s.label("instance") == "static-n1")),
            "{rule}: no series"
        );
    }
    let rules = prom.api("/api/v1/rules").unwrap();
    let health: Vec<(String, String)> = rules["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["health"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(health.len() >= 5, "{rules}");
    assert!(
        health.iter().all(|(_, h)| h != "err"),
        "rule evaluation failed: {rules}"
    );

    // Errors from the API are errors, with Prometheus' own message.
    let err = prom.query("sum(rate(").unwrap_err();
    assert!(err.contains("bad_data"), "{err}");
    let err = prom.query("rxprobe_drop_segments_total[1m]").unwrap_err();
    assert!(err.contains("matrix"), "{err}");

    drop(prom);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "prometheus {pid} still runs"
    );
    assert!(!dir.exists(), "{} left behind", dir.display());
}
