//! `probe serve`: /metrics, /healthz and /readyz on a lab node, and the same
//! totals on /metrics, in the JSON summary and in the terminal summary.

use std::{process::Command, time::Duration};

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
