//! A multi-queue NIC: per-RX-queue counts, NAPI polls per queue and RPS on a
//! real driver, each checked against the driver's own per-queue counters.
//!
//! These tests need the lab's underlay to be a NIC with at least two RX
//! queues: `cargo xtask vm` runs them (`--include-ignored`) in its virtio_net
//! pass with two queue pairs per NIC (multi-queue taps). The default lab's
//! veth pair hands every packet to the per-CPU backlog, with no queues and
//! no IRQs to steer, so elsewhere they are ignored, by name, in the output.

use std::{
    net::{SocketAddrV4, UdpSocket},
    time::Duration,
};

use probe_tests::{
    kernel_has_socket_tracepoints, lab, napi_packets, napi_rows, privileged, summary, Lab, Watch,
};
use serde_json::Value;

const PORT: u16 = 9300;
/// Distinct UDP flows: VXLAN derives the outer source port from the inner
/// flow, and the tap picks the guest's RX queue by the outer flow's hash, so
/// 64 flows leave a queue empty with probability 2^-63.
const FLOWS: u64 = 64;
const PER_FLOW: u64 = 50;
const SENT: u64 = FLOWS * PER_FLOW;
const WHY_IGNORED: &str = "needs a multi-queue NIC as the lab's underlay: cargo xtask vm";

/// Output of `cmd` run inside `netns`.
fn in_ns(netns: &str, cmd: &str) -> String {
    lab::run("ip", &["netns", "exec", netns, "sh", "-c", cmd]).unwrap()
}

/// The RX queues of node 2's eth0 (at least 2, or the test cannot run).
fn rx_queues(lab: &Lab) -> u32 {
    let n = in_ns(&lab.node(2).netns, "ls -d /sys/class/net/eth0/queues/rx-*")
        .lines()
        .count() as u32;
    let given = std::env::var_os(lab::NICS_ENV).is_some();
    assert!(
        n >= 2 && given,
        "{WHY_IGNORED} ({} {}, eth0 has {n} RX queue(s))",
        lab::NICS_ENV,
        if given { "set" } else { "not set" }
    );
    n
}

/// The kernel's per-RX-queue packet counters of eth0 in `netns`.
fn driver_queue_packets(netns: &str, queues: u32) -> Vec<u64> {
    let per_queue = lab::qstats::rx_queue_packets(netns, "eth0").unwrap();
    assert_eq!(per_queue.len(), queues as usize, "{per_queue:?}");
    per_queue
}

/// Pins the IRQ of eth0's RX queue `q` to CPU `q`, so that queue's NAPI polls
/// run there (virtio_net: `virtioN-input.Q` in /proc/interrupts).
fn pin_rx_irqs(netns: &str, queues: u32) {
    let virtio = in_ns(netns, "basename $(readlink -f /sys/class/net/eth0/device)");
    let interrupts = std::fs::read_to_string("/proc/interrupts").unwrap();
    for q in 0..queues {
        let name = format!("{}-input.{q}", virtio.trim());
        let irq = interrupts
            .lines()
            .find(|l| l.trim_end().ends_with(&name))
            .and_then(|l| l.split(':').next())
            .unwrap_or_else(|| panic!("no IRQ {name} in /proc/interrupts"))
            .trim()
            .to_string();
        std::fs::write(format!("/proc/irq/{irq}/smp_affinity_list"), q.to_string())
            .unwrap_or_else(|e| panic!("pinning IRQ {irq} ({name}) to CPU {q}: {e}"));
    }
}

/// A lab on the multi-queue NIC: it, its RX queue count, and node 2's
/// namespace, with each RX queue's IRQ pinned to its own CPU.
fn two_queue_lab() -> (Lab, u32, String) {
    let lab = lab();
    let queues = rx_queues(&lab);
    let n2 = lab.node(2).netns.clone();
    pin_rx_irqs(&n2, queues);
    (lab, queues, n2)
}

/// `PER_FLOW` datagrams on each of `FLOWS` flows (one socket each) from node
/// 1's pod to node 2's, interleaved.
fn send_flows(lab: &Lab) {
    let dst = SocketAddrV4::new(lab.node(2).pods[0].ip, PORT);
    lab::in_netns(&lab.node(1).pods[0].netns, move || {
        let socks: Vec<UdpSocket> = (0..FLOWS)
            .map(|_| UdpSocket::bind("0.0.0.0:0").unwrap())
            .collect();
        let mut sent = 0u64;
        for _ in 0..PER_FLOW {
            for s in &socks {
                s.send_to(b"queues", dst).unwrap();
                sent += 1;
                if sent.is_multiple_of(100) {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
    })
    .unwrap();
}

/// Runs `probe watch` on node 2 with `flags` while the flows are sent;
/// returns the summary and the kernel's per-queue packet deltas. Under
/// emulation node 1 may drop a few datagrams before its NIC sends them (its
/// TX queue outruns the emulated device): node 2's eth0 receives exactly
/// what node 1's eth0 sent (the lab is silent), and those are the counts
/// compared.
fn watch_flows(lab: &Lab, queues: u32, flags: &[&str]) -> (Value, Vec<u64>) {
    let (n1, n2) = (&lab.node(1).netns, &lab.node(2).netns);
    let sink = lab::UdpSink::start(&lab.node(2).pods[0].netns, PORT).unwrap();
    let before = driver_queue_packets(n2, queues);
    let sent0 = lab::dev_stats(n1, "eth0").unwrap().tx_packets;
    let mut args = vec!["--netns", n2.as_str(), "--interval", "0.5"];
    args.extend(flags);
    let w = Watch::start(&args);
    send_flows(lab);
    std::thread::sleep(Duration::from_millis(500));
    let after = driver_queue_packets(n2, queues);
    let sent = lab::dev_stats(n1, "eth0").unwrap().tx_packets - sent0;
    let deltas: Vec<u64> = before.iter().zip(&after).map(|(b, a)| a - b).collect();
    let received: u64 = deltas.iter().sum();
    assert_eq!(
        received, sent,
        "node 2's eth0 received what node 1's sent: {deltas:?}"
    );
    assert!(
        sent >= SENT - SENT / 100,
        "node 1's eth0 sent {sent} of {SENT}"
    );
    sink.finish(received, Duration::from_secs(10));
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    (summary(&lines).clone(), deltas)
}

/// Resets eth0's RPS masks on node 2 when dropped: the NIC outlives the lab.
struct RpsOff<'a>(&'a str, u32);

impl Drop for RpsOff<'_> {
    fn drop(&mut self) {
        for q in 0..self.1 {
            let _ = lab::set_rps(self.0, "eth0", q, "0");
        }
    }
}

/// Per RX queue, the probe counts what the driver counts, exactly; each
/// queue's NAPI polls (its IRQ pinned to CPU q) handled that queue's packets,
/// and all of them together exactly the driver's total.
#[test]
#[ignore = "needs a multi-queue NIC as the lab's underlay: cargo xtask vm"]
fn each_rx_queue_counted_as_the_driver_counts_it() {
    if !privileged("each_rx_queue_counted_as_the_driver_counts_it") {
        return;
    }
    let (lab, queues, n2) = two_queue_lab();
    let (s, deltas) = watch_flows(&lab, queues, &["--latency"]);
    println!("driver per-queue packets: {deltas:?}");
    for (q, &delta) in deltas.iter().enumerate() {
        assert!(delta > 0, "rx-{q} received nothing: {deltas:?}");
        let probe = s["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["iface"] == "eth0" && r["queue"] == q as u64)
            .unwrap_or_else(|| panic!("no queues[] row for rx-{q}: {}", s["queues"]));
        // UDP, not merged: skbs = segments = wire packets.
        assert_eq!(probe["skbs"], delta, "rx-{q}: {probe}");
        assert_eq!(probe["segments"], delta, "rx-{q}: {probe}");
        // The queue's IRQ is on CPU q: its NAPI polls run there. Nearly
        // always: virtio_net also schedules a queue's NAPI from process
        // context (refill work, re-enabling), on whatever CPU that runs (6.12
        // polled 1 packet of 1,750 on the other CPU in one run; 6.1, under a
        // loaded emulator, 30 of 1,400). A CPU's row is per device, so those
        // count on the other CPU's; the sum below stays exact.
        let napi = napi_rows(&s, "eth0", &n2)
            .into_iter()
            .find(|n| n["cpu"] == q as u64)
            .unwrap_or_else(|| panic!("no NAPI row for eth0 on CPU {q}: {}", s["napi"]));
        let packets = napi["packets"].as_u64().unwrap();
        assert!(
            packets.abs_diff(delta) <= delta / 20,
            "rx-{q}'s NAPI on CPU {q}: {napi}"
        );
        assert!(napi["polls"].as_u64().unwrap() > 0, "{napi}");
    }
    // Every packet the driver counted, NAPI handed to the stack: exactly.
    assert_eq!(
        napi_packets(&s, "eth0", &n2),
        deltas.iter().sum::<u64>(),
        "{}",
        s["napi"]
    );
}

/// TCP with GRO (iperf3, 4 streams) on the two-queue NIC: per RX queue, the
/// segments the probe counts at tc (after GRO merged them into fewer skbs)
/// are the packets the driver counted on that queue, exactly.
#[test]
#[ignore = "needs a multi-queue NIC as the lab's underlay: cargo xtask vm"]
fn tcp_segments_per_queue_as_the_driver_counts_them() {
    if !privileged("tcp_segments_per_queue_as_the_driver_counts_them") {
        return;
    }
    let (lab, queues, n2) = two_queue_lab();
    // Listening within 2 s, even under emulation.
    let server = lab::Server::start(
        &lab.node(2).pods[0].netns,
        &["iperf3", "-s", "-1"],
        Duration::from_secs(2),
    );
    let before = driver_queue_packets(&n2, queues);
    let w = Watch::start(&["--netns", &n2, "--interval", "0.5"]);
    let ip = lab.node(2).pods[0].ip.to_string();
    lab::client(
        &lab.node(1).pods[0].netns,
        &["iperf3", "-c", &ip, "-P", "4", "-t", "3"],
    )
    .expect("iperf3 client");
    server.wait();
    std::thread::sleep(Duration::from_millis(500));
    let after = driver_queue_packets(&n2, queues);
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    let s = summary(&lines);
    let (mut skbs, mut segments) = (0, 0);
    for q in 0..queues as usize {
        let delta = after[q] - before[q];
        let row = s["queues"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["iface"] == "eth0" && r["queue"] == q as u64);
        let (row_skbs, row_segments) = row.map_or((0, 0), |r| {
            (r["skbs"].as_u64().unwrap(), r["segments"].as_u64().unwrap())
        });
        println!(
            "rx-{q}: driver {delta} packets, probe {row_segments} segments in {row_skbs} skbs"
        );
        assert_eq!(row_segments, delta, "rx-{q}: {row:?}");
        skbs += row_skbs;
        segments += row_segments;
    }
    assert!(segments > 1000, "iperf3 sent little: {segments} segments");
    assert!(
        skbs < segments,
        "GRO merged nothing: {skbs} skbs, {segments} segments"
    );
}

/// RPS on a real driver: with both RX queues' RPS set to CPU 1, every packet
/// polled on CPU q (queue q's IRQ) reaches the stack on CPU 1; without RPS
/// each stays on the CPU that polled it. Per queue, against the driver's
/// counters. `--steering` needs Linux 6.5 (the `sock:` tracepoints):
/// below, the probe says so by name and the test checks that.
#[test]
#[ignore = "needs a multi-queue NIC as the lab's underlay: cargo xtask vm"]
fn rps_on_a_multi_queue_nic_moves_the_stack_to_the_chosen_cpu() {
    if !privileged("rps_on_a_multi_queue_nic_moves_the_stack_to_the_chosen_cpu") {
        return;
    }
    let (lab, queues, n2) = two_queue_lab();
    if !kernel_has_socket_tracepoints() {
        let w = Watch::start(&["--netns", &n2, "--steering"]);
        let unavailable = w.ready_info["unavailable"].clone();
        let (code, _, err) = w.stop(libc::SIGINT);
        assert_eq!(code, Some(0), "{err}");
        let why = unavailable
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["stage"] == "steering")
            .unwrap_or_else(|| panic!("steering attached below 6.5? {unavailable}"));
        println!("steering on this kernel: {why}");
        assert!(!why["reason"].as_str().unwrap().is_empty(), "{why}");
        return;
    }
    let pairs = |s: &Value| -> Vec<(u64, u64, u64)> {
        s["steering"]["poll_to_stack"]
            .as_array()
            .unwrap_or_else(|| panic!("no steering: {}", s["steering"]))
            .iter()
            .map(|p| {
                (
                    p["from"].as_u64().unwrap(),
                    p["to"].as_u64().unwrap(),
                    p["count"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    // `steering` follows packets through a table of sampled slots (README:
    // a later packet whose buffer maps to the same slot replaces an earlier
    // one still in flight): per queue, at least 99% of the driver's packets
    // are followed, and every one followed went exactly where RPS sends it.
    let followed = |pairs: &[(u64, u64, u64)], q: u64, delta: u64, to: u64| {
        let count: u64 = pairs.iter().filter(|p| p.0 == q).map(|p| p.2).sum();
        assert!(
            count <= delta && count >= delta - delta / 100,
            "rx-{q}: {count} of {delta} followed: {pairs:?}"
        );
        let elsewhere: Vec<_> = pairs.iter().filter(|p| p.0 == q && p.1 != to).collect();
        assert!(
            elsewhere.is_empty(),
            "rx-{q} polled on CPU {q} goes to CPU {to}: {pairs:?}"
        );
    };
    let _reset = RpsOff(&n2, queues);
    for q in 0..queues {
        lab::set_rps(&n2, "eth0", q, "2").unwrap();
    }
    let (s, deltas) = watch_flows(&lab, queues, &["--steering"]);
    let moved = pairs(&s);
    println!("RPS to CPU 1: {moved:?}, driver per-queue packets {deltas:?}");
    for (q, &delta) in deltas.iter().enumerate() {
        followed(&moved, q as u64, delta, 1);
    }

    for q in 0..queues {
        lab::set_rps(&n2, "eth0", q, "0").unwrap();
    }
    let (s, deltas) = watch_flows(&lab, queues, &["--steering"]);
    let local = pairs(&s);
    println!("no RPS: {local:?}, driver per-queue packets {deltas:?}");
    for (q, &delta) in deltas.iter().enumerate() {
        followed(&local, q as u64, delta, q as u64);
    }
}

/// `probe tune` on a two-queue NIC: channels, both queues' RPS, one IRQ per
/// MSI-X vector with its affinity, rings and coalescing, each as the kernel
/// reports them (`ethtool -l`, `/proc/irq`).
#[test]
#[ignore = "needs a multi-queue NIC as the lab's underlay: cargo xtask vm"]
fn tune_reads_every_queue() {
    if !privileged("tune_reads_every_queue") {
        return;
    }
    let (_lab, queues, n2) = two_queue_lab(); // kept up until the end
    let (code, out, err) = probe_tests::probe_output(&["tune", "--netns", &n2, "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let eth0 = v["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["iface"] == "eth0")
        .unwrap()
        .clone();
    println!("NIC-SETTINGS {eth0}");
    let settings = eth0["settings"].as_array().unwrap();
    let value = |name: &str| -> String {
        let s = settings
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {eth0}"));
        assert!(s["error"].is_null(), "{s}");
        s["value"].as_str().unwrap().to_string()
    };
    // `ethtool -l`: "Combined: N" under current settings (the second one).
    let l = in_ns(&n2, "ethtool -l eth0");
    let combined = l
        .lines()
        .filter(|x| x.starts_with("Combined:"))
        .nth(1)
        .and_then(|x| x.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    assert_eq!(combined, queues.to_string(), "{l}");
    assert!(
        value("channels").contains(&format!("combined {queues}")),
        "{} vs ethtool -l:\n{l}",
        value("channels")
    );
    for q in 0..queues {
        assert_eq!(
            value(&format!("rx-{q}/rps_cpus")).trim_start_matches('0'),
            ""
        );
    }
    assert!(value("coalesce rx").contains("rx-frames"));
    assert!(value("ring rx").contains("max"));
    // Every vector of the device, with the affinity /proc/irq reports: the
    // RX queues' as pinned above.
    let irqs: Vec<&Value> = settings
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("irq "))
        .collect();
    // input and output per queue pair, plus the configuration vector.
    assert_eq!(irqs.len() as u32, 2 * queues + 1, "{eth0}");
    for irq in irqs {
        let number = irq["name"]
            .as_str()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap();
        let kernel =
            std::fs::read_to_string(format!("/proc/irq/{number}/smp_affinity_list")).unwrap();
        assert_eq!(irq["value"].as_str().unwrap(), kernel.trim(), "{irq}");
    }
}
