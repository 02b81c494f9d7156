//! Part `backends`: flannel's two backends side by side, pod n1p1 -> pod
//! n2p1: the table the articles print (qperf tcp_lat, udp_lat, tcp_bw;
//! iperf3 TCP with 1 and 4 streams, UDP), medians of a few runs, with the
//! ratio vxlan / host-gw; then `probe watch --stage-latency` on node 2 during
//! a udp_lat and a tcp_lat run of each backend: where the receive side spends
//! VXLAN's extra time, transition by transition.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use probe_tests::{lab, Lab};
use serde_json::Value;

use crate::{
    flood::{read_lines, start_probe, stop_probe},
    testrun::median,
};

/// Runs per measurement; the table shows their median.
const RUNS: usize = 5;
const SECONDS: &str = "3";

/// What one backend measured: (name, unit, value) in the table's order.
type Figures = Vec<(&'static str, &'static str, f64)>;

/// A qperf figure ("latency  =  23.5 us", "bw  =  1.2 GB/sec") in µs or
/// bit/s.
fn qperf_value(out: &str, key: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in qperf's output: {out}"));
    let mut words = line.split('=').nth(1).unwrap().split_whitespace();
    let n: f64 = words.next().unwrap().parse().unwrap();
    match words.next().unwrap() {
        "ns" => n / 1e3,
        "us" => n,
        "ms" => n * 1e3,
        "sec" => n * 1e6,
        "bytes/sec" => n * 8.0,
        "KB/sec" => n * 8e3,
        "MB/sec" => n * 8e6,
        "GB/sec" => n * 8e9,
        u => panic!("qperf unit {u}"),
    }
}

struct Backend {
    lab: Lab,
    _qperf: lab::Server,
    _iperf: lab::Server,
}

impl Backend {
    fn up(backend: lab::Backend) -> Backend {
        let lab = Lab::up_with("pbackend", backend).expect("lab up");
        let pod = lab.node(2).pods[0].netns.clone();
        let settle = Duration::from_millis(300);
        let qperf = lab::Server::start(&pod, &["qperf"], settle);
        let iperf = lab::Server::start(&pod, &["iperf3", "-s"], settle);
        Backend {
            lab,
            _qperf: qperf,
            _iperf: iperf,
        }
    }

    fn client(&self, argv: &[&str]) -> String {
        lab::client(&self.lab.node(1).pods[0].netns, argv)
            .unwrap_or_else(|e| panic!("{}: {e}", argv.join(" ")))
    }

    fn qperf(&self, test: &str) -> String {
        let ip = self.lab.node(2).pods[0].ip.to_string();
        self.client(&["qperf", &ip, "-t", SECONDS, test])
    }

    /// iperf3's received bit/s.
    fn iperf3(&self, extra: &[&str]) -> f64 {
        let ip = self.lab.node(2).pods[0].ip.to_string();
        let out = self.client(&[&["iperf3", "-c", &ip, "-t", SECONDS, "-J"][..], extra].concat());
        let v: Value = serde_json::from_str(&out).expect("iperf3 -J");
        if extra.contains(&"-u") {
            let sum = &v["end"]["sum"];
            let received = sum["packets"].as_f64().unwrap() - sum["lost_packets"].as_f64().unwrap();
            received * 1400.0 * 8.0 / sum["seconds"].as_f64().unwrap()
        } else {
            v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap()
        }
    }

    fn figures(&self) -> Figures {
        let med = |f: &dyn Fn() -> f64| median((0..RUNS).map(|_| f()).collect());
        vec![
            (
                "qperf tcp_lat",
                "µs",
                med(&|| qperf_value(&self.qperf("tcp_lat"), "latency")),
            ),
            (
                "qperf udp_lat",
                "µs",
                med(&|| qperf_value(&self.qperf("udp_lat"), "latency")),
            ),
            (
                "qperf tcp_bw",
                "Gbit/s",
                med(&|| qperf_value(&self.qperf("tcp_bw"), "bw") / 1e9),
            ),
            (
                "iperf3 TCP, 1 stream",
                "Gbit/s",
                med(&|| self.iperf3(&[]) / 1e9),
            ),
            (
                "iperf3 TCP, 4 streams",
                "Gbit/s",
                med(&|| self.iperf3(&["-P", "4"]) / 1e9),
            ),
            (
                "iperf3 UDP, 1400 B, unlimited",
                "Gbit/s received",
                med(&|| self.iperf3(&["-u", "-b", "0", "-l", "1400"]) / 1e9),
            ),
        ]
    }

    /// `stage_latency` of node 2 during one qperf run of `test`, every
    /// packet followed.
    fn stages(&self, probe: &Path, test: &str) -> Value {
        let (mut child, _) = start_probe(
            probe,
            &self.lab.node(2).netns,
            &["--stage-latency", "--stage-sample", "1"],
        );
        let lines = read_lines(&mut child);
        std::thread::sleep(Duration::from_secs(1));
        self.qperf(test);
        let lines = stop_probe(child, lines);
        probe_tests::summary(&lines)["stage_latency"].clone()
    }
}

/// "p50 le / mean" of a transition, in µs; "-" where no packet made it.
fn transition(p: &Value, from: &str, to: &str) -> String {
    let Some(h) = p["transitions"]
        .as_array()
        .and_then(|t| t.iter().find(|t| t["from"] == from && t["to"] == to))
        .map(|t| &t["ns"])
    else {
        return "-".into();
    };
    let count = h["count"].as_u64().unwrap_or(0);
    if count == 0 {
        return "-".into();
    }
    format!(
        "{:.1} / {:.1} ({count})",
        h["p50"].as_f64().unwrap() / 1e3,
        h["sum"].as_f64().unwrap() / count as f64 / 1e3
    )
}

pub fn run(probe: PathBuf) -> bool {
    println!("\nflannel backends, pod n1p1 -> pod n2p1: median of {RUNS} runs of {SECONDS} s each");
    let mut figures = Vec::new();
    let mut stages = Vec::new();
    for backend in [lab::Backend::Vxlan, lab::Backend::HostGw] {
        let b = Backend::up(backend);
        figures.push(b.figures());
        stages.push([b.stages(&probe, "udp_lat"), b.stages(&probe, "tcp_lat")]);
    }
    println!("\n| test | unit | vxlan | host-gw | vxlan / host-gw |\n|---|---|---|---|---|");
    for (v, h) in figures[0].iter().zip(&figures[1]) {
        println!(
            "| {} | {} | {:.2} | {:.2} | {:.2} |",
            v.0,
            v.1,
            v.2,
            h.2,
            v.2 / h.2
        );
    }
    println!(
        "\nReceive side, node 2, `probe watch --stage-latency --stage-sample 1` during one qperf \
         run: per transition, p50 (bucket bound) / mean, µs (packets)"
    );
    println!("\n| transition | vxlan udp_lat | host-gw udp_lat | vxlan tcp_lat | host-gw tcp_lat |\n|---|---|---|---|---|");
    for (from, to) in [
        ("nic", "decap"),
        ("decap", "pod"),
        ("nic", "pod"),
        ("pod", "queued"),
        ("queued", "read"),
        ("nic", "read"),
    ] {
        println!(
            "| {from} -> {to} | {} | {} | {} | {} |",
            transition(&stages[0][0], from, to),
            transition(&stages[1][0], from, to),
            transition(&stages[0][1], from, to),
            transition(&stages[1][1], from, to)
        );
    }
    // A comparison, not a target.
    true
}
