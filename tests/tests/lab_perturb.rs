//! An observer that changes the traffic is broken. With its default hooks
//! the probe leaves the offloads of both ends of node 2's NIC as they were,
//! adds no drop, and TCP throughput (iperf3, 4 streams) stays within noise of
//! a run without it. The same checks see what attaching XDP does (the veth
//! peer loses TSO), which is why XDP is only on request (`--nic-hook xdp`).
//!
//! One test in its own binary: test binaries run one after another, so no
//! other lab test competes with the throughput rounds for the 2 CPUs.

use std::time::Duration;

use probe_tests::{lab, privileged, summary, Watch};

/// `ethtool -k DEV` in `netns`: every feature with its state.
fn features(netns: &str, dev: &str) -> Vec<String> {
    let text = lab::run("ip", &["netns", "exec", netns, "ethtool", "-k", dev]).unwrap();
    text.lines().skip(1).map(str::to_string).collect()
}

fn feature<'a>(all: &'a [String], name: &str) -> &'a str {
    all.iter()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {all:?}"))
}

/// The kernel's drop counters on both ends of the underlay, and node 2's
/// flannel.1: (tx_dropped of node 1's eth0, rx_dropped of node 2's eth0 and
/// flannel.1, softnet dropped).
fn kernel_drops(n1: &str, n2: &str) -> (u64, u64, u64) {
    let stats = |ns: &str, dev: &str| -> serde_json::Value {
        let out = lab::run("ip", &["-n", ns, "-s", "-j", "link", "show", "dev", dev]).unwrap();
        serde_json::from_str::<serde_json::Value>(&out).unwrap()[0]["stats64"].clone()
    };
    let n = |v: &serde_json::Value| v.as_u64().unwrap();
    let softnet: u64 = probe_user::kernel::procfs::read_softnet()
        .unwrap()
        .iter()
        .map(|c| c.dropped)
        .sum();
    (
        n(&stats(n1, "eth0")["tx"]["dropped"]),
        n(&stats(n2, "eth0")["rx"]["dropped"]) + n(&stats(n2, "flannel.1")["rx"]["dropped"]),
        softnet,
    )
}

/// iperf3 -P 4 for 4 s from pod n1p1 to pod n2p1: received bits per second.
/// Four, not two: `--latency auto` (a default hook) times the first second
/// of a burst before its first reading pauses it, and a 2 s run made that
/// half of the measure (with the probe, best 86% of the median without).
fn throughput(client_ns: &str, server: &str) -> f64 {
    let out = lab::run(
        "ip",
        &[
            "netns", "exec", client_ns, "iperf3", "-c", server, "-t", "4", "-P", "4", "-J",
        ],
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("no throughput in {out}"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Rounds of each mode, alternated so drift hits both alike.
const ROUNDS: usize = 5;
/// With the probe attached, the best run reaches at least this share of the
/// median run without it. Single TCP runs on this 2-CPU VM dip to half their
/// rate now and then with or without the probe (BENCHMARKS.md: 15.5 to 27.6
/// Gbit/s for one mode), so a median of a few runs is no test; a probe that
/// costs throughput, like XDP on veth (-50% or worse in every run), never
/// reaches it. The precise figure is the bench's (`cargo xtask bench traffic`).
const WITHIN_NOISE: f64 = 0.9;

#[test]
fn default_hooks_leave_offloads_drops_and_throughput_as_they_are() {
    if !privileged("default_hooks_leave_offloads_drops_and_throughput_as_they_are") {
        return;
    }
    let lab = lab();
    let (n1, n2) = (lab.node(1), lab.node(2));
    let server_ip = n2.pods[0].ip.to_string();
    let _server = lab::Server::start(
        &n2.pods[0].netns,
        &["iperf3", "-s"],
        Duration::from_millis(300),
    );
    let peer0 = features(&n1.netns, "eth0");
    let nic0 = features(&n2.netns, "eth0");
    assert_eq!(feature(&peer0, "tcp-segmentation-offload"), "on");

    // The default hooks, then the tc fallback that kernels without TCX
    // (< 6.6) get by default (forced here).
    for flags in [&[][..], &["--tc-mode", "legacy"][..]] {
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut probe_drops = 0;
        let drops0 = kernel_drops(&n1.netns, &n2.netns);
        for round in 0..ROUNDS {
            without.push(throughput(&n1.pods[0].netns, &server_ip));
            let w = Watch::on_lab(&lab, "1", flags);
            // Steady state: the first sample after attach is behind us.
            std::thread::sleep(Duration::from_secs(1));
            assert_eq!(
                features(&n1.netns, "eth0"),
                peer0,
                "{flags:?} round {round}: the peer's offloads"
            );
            assert_eq!(
                features(&n2.netns, "eth0"),
                nic0,
                "{flags:?} round {round}: the NIC's offloads"
            );
            with.push(throughput(&n1.pods[0].netns, &server_ip));
            let (code, lines, err) = w.stop(libc::SIGINT);
            assert_eq!(code, Some(0), "{err}");
            let s = summary(&lines);
            probe_drops += s["ledger"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["drops"].as_u64().unwrap())
                .sum::<u64>();
            assert_eq!(
                s["verdict"]["text"], "no loss",
                "{flags:?} round {round}: {}",
                s["verdict"]
            );
        }
        let drops = kernel_drops(&n1.netns, &n2.netns);
        assert_eq!(
            (drops.0 - drops0.0, drops.1 - drops0.1, drops.2 - drops0.2),
            (0, 0, 0),
            "{flags:?}: no tx/rx/backlog drop with or without the probe"
        );
        assert_eq!(
            probe_drops, 0,
            "{flags:?}: the drop probe saw no receive drop either"
        );
        let (a, b) = (
            median(without.clone()),
            with.iter().cloned().fold(0.0, f64::max),
        );
        eprintln!(
            "{flags:?} iperf3 -P 4: without {:.2} Gbit/s (median), with {:.2} Gbit/s (best, median {:.2}); rounds {without:?} {with:?}",
            a / 1e9,
            b / 1e9,
            median(with.clone()) / 1e9
        );
        assert!(
            b >= WITHIN_NOISE * a,
            "{flags:?}: throughput with the probe, best run {b:.3e} < {WITHIN_NOISE} x {a:.3e} (median without): {without:?} {with:?}"
        );
    }

    // What the checks above would catch: XDP on the NIC turns off TSO on the
    // veth peer for as long as it is attached.
    let w = Watch::start(&["--netns", &n2.netns, "--nic-hook", "xdp"]);
    let peer_xdp = features(&n1.netns, "eth0");
    assert_eq!(feature(&peer_xdp, "tcp-segmentation-offload"), "off");
    drop(w);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(features(&n1.netns, "eth0"), peer0, "restored when XDP goes");
}
