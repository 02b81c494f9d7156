//! `--stage-latency` on the lab: followed packets counted at every stage
//! against the kernel's counters, a slow reader that moves the socket wait
//! and nothing else, a netem delay before the pod that moves decap->pod and
//! nothing else (in the guests: netem), and TCP streams (GRO) followed to
//! the read.

use std::{
    net::{SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    thread::JoinHandle,
    time::Duration,
};

use probe_tests::{
    kernel_has_socket_tracepoints, lab, lab_with, privileged, stage, summary, Watch,
};
use serde_json::Value;

const PORT: u16 = 9300;
/// Every packet followed, the probes attached all the time.
const EVERY_PACKET: [&str; 5] = [
    "--stage-latency",
    "--stage-sample",
    "1",
    "--stage-window",
    "always",
];

/// The socket stages' tracepoints (sock:sk_data_ready, sock:sock_recv_length).
fn socket_stages() -> bool {
    kernel_has_socket_tracepoints()
}

/// A reader of `count` datagrams in `netns`: it waits until one is queued
/// (poll, which reads nothing), sleeps `delay`, then reads it. The time each
/// datagram waits in the socket queue is `delay` plus the wake-up.
fn slow_reader(netns: &str, count: u64, delay: Duration) -> JoinHandle<u64> {
    late_reader(netns, count, delay, Duration::ZERO)
}

/// [`slow_reader`] that reads nothing for its first `late` (the socket is
/// bound; datagrams queue).
fn late_reader(netns: &str, count: u64, delay: Duration, late: Duration) -> JoinHandle<u64> {
    let netns = netns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        lab::in_netns(&netns, move || {
            let s = UdpSocket::bind(("0.0.0.0", PORT)).unwrap();
            lab::set_rcvbuf(&s, 1 << 20).unwrap();
            tx.send(()).unwrap();
            std::thread::sleep(late);
            let mut buf = [0u8; 2048];
            let mut n = 0;
            while n < count {
                let mut pfd = libc::pollfd {
                    fd: s.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 10_000) } <= 0 {
                    break;
                }
                std::thread::sleep(delay);
                if s.recv(&mut buf).is_err() {
                    break;
                }
                n += 1;
            }
            n
        })
        .unwrap()
    });
    rx.recv().unwrap();
    reader
}

/// `count` datagrams from node 1's first pod to node 2's, `gap` apart.
fn send_paced(lab: &lab::Lab, count: u64, gap: Duration) {
    let dst = SocketAddrV4::new(lab.node(2).pods[0].ip, PORT);
    lab::in_netns(&lab.node(1).pods[0].netns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..count {
            s.send_to(b"stage latency", dst).unwrap();
            std::thread::sleep(gap);
        }
    })
    .unwrap();
}

/// A few datagrams to node 2's first pod before the probe attaches: every
/// neighbour on the way resolved, so no ARP shows in the counts.
fn resolve_neighbours(lab: &lab::Lab) {
    let warm = slow_reader(&lab.node(2).pods[0].netns, 3, Duration::ZERO);
    send_paced(lab, 3, Duration::from_millis(5));
    assert_eq!(warm.join().unwrap(), 3);
}

/// Followed packets that reached the pod and were then tied to their socket
/// queue: all but a few. A packet is tied to the sk_data_ready that follows
/// it on the same CPU within 1 ms; under emulation the stack can take
/// longer, or queue it to the socket's backlog while the reader holds the
/// socket (sk_data_ready then runs later, in the reader): such a packet is
/// not followed further. "A few": 1%, or 3 packets where that is more (a
/// 6.12 guest missed 2 of 173). Returns `queued`.
fn assert_queued_nearly_all(p: &Value) -> u64 {
    let (pod, queued) = (p["pod"].as_u64().unwrap(), p["queued"].as_u64().unwrap());
    assert!(
        queued <= pod && queued >= pod.saturating_sub((pod / 100).max(3)),
        "{p}"
    );
    assert_eq!(count(p, "pod", "queued"), queued);
    queued
}

/// `probe watch` with EVERY_PACKET on node 2 while `sent`
/// datagrams, 2 ms apart, go from node 1's first pod to a reader in node
/// 2's: its lines. Resolve the neighbours first (no ARP in the counts).
fn follow_every_packet(lab: &lab::Lab, sent: u64) -> Vec<Value> {
    let reader = slow_reader(&lab.node(2).pods[0].netns, sent, Duration::ZERO);
    let w = Watch::on_lab(lab, "0.5", &EVERY_PACKET);
    send_paced(lab, sent, Duration::from_millis(2));
    assert_eq!(reader.join().unwrap(), sent);
    std::thread::sleep(Duration::from_millis(200));
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    lines
}

/// A transition's histogram in a report's `stage_latency`.
fn transition<'a>(p: &'a Value, from: &str, to: &str) -> &'a Value {
    p["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["from"] == from && t["to"] == to)
        .map(|t| &t["ns"])
        .unwrap_or_else(|| panic!("no transition {from}->{to} in {p}"))
}

fn count(p: &Value, from: &str, to: &str) -> u64 {
    transition(p, from, to)["count"].as_u64().unwrap()
}

/// Mean ns of a transition.
fn mean(p: &Value, from: &str, to: &str) -> f64 {
    let h = transition(p, from, to);
    h["sum"].as_u64().unwrap() as f64 / h["count"].as_u64().unwrap().max(1) as f64
}

/// On a kernel without the socket tracepoints the report says why, by name.
fn assert_socket_stages_named_unavailable(p: &Value) {
    let why = p["unavailable"].as_str().unwrap_or_default();
    assert!(
        why.contains("need Linux >= 6.5") && why.contains("sk_data_ready"),
        "{p}"
    );
    assert_eq!(
        (p["queued"].as_u64(), p["read"].as_u64()),
        (Some(0), Some(0))
    );
}

/// Every packet followed (`--stage-sample 1`): the counts at each stage are
/// the NIC's and the VXLAN device's skbs as the probe's own hooks count them,
/// the datagrams the pod's device received (its kernel counter), and the
/// datagrams queued to the socket; every one is read, or was queued behind
/// another followed one; every transition timed once per packet that made it.
#[test]
fn every_followed_packet_is_timed_at_every_stage() {
    if !privileged("every_followed_packet_is_timed_at_every_stage") {
        return;
    }
    const SENT: u64 = 400;
    let lab = lab();
    let pod = lab.node(2).pods[0].clone();
    resolve_neighbours(&lab);
    let pod_before = lab::dev_stats(&pod.netns, "eth0").unwrap();
    let lines = follow_every_packet(&lab, SENT);
    let pod_after = lab::dev_stats(&pod.netns, "eth0").unwrap();
    let s = summary(&lines);
    let p = &s["stage_latency"];
    println!("{p}");
    assert_eq!(p["sample_every"], 1);
    let nic_skbs = stage(s, "nic", "eth0")["skbs"].as_u64().unwrap();
    let decap_skbs = stage(s, "vxlan", "flannel.1")["skbs"].as_u64().unwrap();
    assert_eq!(nic_skbs, SENT, "{s}");
    assert_eq!(p["sampled"].as_u64().unwrap(), nic_skbs);
    assert_eq!(p["decap"].as_u64().unwrap(), decap_skbs);
    assert_eq!(
        p["pod"].as_u64().unwrap(),
        pod_after.rx_packets - pod_before.rx_packets
    );
    assert_eq!(p["pod"].as_u64().unwrap(), SENT);
    assert_eq!(count(p, "nic", "decap"), SENT);
    assert_eq!(count(p, "decap", "pod"), SENT);
    assert_eq!(count(p, "nic", "pod"), 0, "a VXLAN path has a decap stage");
    if !socket_stages() {
        assert_socket_stages_named_unavailable(p);
        return;
    }
    assert_eq!(p["unavailable"], Value::Null);
    let n = |f: &str| p[f].as_u64().unwrap();
    let queued = assert_queued_nearly_all(p);
    // One followed packet per socket at a time: one queued while another
    // still waits is not followed to its read (a reader that falls behind,
    // as under emulation). Every other one is.
    assert_eq!(n("read") + n("socket_busy"), queued);
    assert!(n("read") >= SENT - SENT / 10, "{p}");
    assert_eq!(count(p, "queued", "read"), n("read"));
    assert_eq!(count(p, "nic", "read"), n("read"));
    // The whole path is at least its last part, packet by packet.
    assert!(mean(p, "nic", "read") >= mean(p, "queued", "read"));
    assert_one_socket_read_them_all(p, &pod.netns, "udp", PORT);
}

/// `sockets[]` has one row, the pod's socket: every followed read was its
/// own, so its times are the totals' exactly.
fn assert_one_socket_read_them_all(p: &Value, netns: &str, protocol: &str, port: u16) {
    let rows = p["sockets"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{p}");
    let row = &rows[0];
    assert_eq!(
        (&row["netns"], &row["protocol"], &row["port"]),
        (&netns.into(), &protocol.into(), &port.into()),
        "{row}"
    );
    for (field, from, to) in [
        ("queued_to_read", "queued", "read"),
        ("nic_to_read", "nic", "read"),
    ] {
        let total = transition(p, from, to);
        for k in ["count", "sum", "max", "p50", "p99"] {
            assert_eq!(row[field][k], total[k], "{field}.{k}: {row}");
        }
    }
}

/// flannel's host-gw backend: no VXLAN device on the way, so every followed
/// packet goes from the NIC straight to the pod (`nic->pod`), none through
/// `decap`, and the NIC sees plain UDP, not VXLAN.
#[test]
fn host_gw_packets_go_from_the_nic_to_the_pod() {
    if !privileged("host_gw_packets_go_from_the_nic_to_the_pod") {
        return;
    }
    const SENT: u64 = 300;
    let lab = lab_with(lab::Backend::HostGw);
    resolve_neighbours(&lab);
    let lines = follow_every_packet(&lab, SENT);
    let s = summary(&lines);
    let nic = stage(s, "nic", "eth0");
    assert_eq!(nic["skbs"], SENT, "{nic}");
    assert_eq!(
        nic["classes"]["ipv4"], SENT,
        "plain IPv4, no VXLAN, on the underlay: {nic}"
    );
    assert!(
        s["stages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["stage"] != "vxlan"),
        "no VXLAN device with host-gw"
    );
    let p = &s["stage_latency"];
    println!("{p}");
    let n = |f: &str| p[f].as_u64().unwrap();
    assert_eq!((n("sampled"), n("decap"), n("pod")), (SENT, 0, SENT));
    assert_eq!(count(p, "nic", "pod"), SENT);
    assert_eq!(count(p, "nic", "decap") + count(p, "decap", "pod"), 0);
    if !socket_stages() {
        assert_socket_stages_named_unavailable(p);
        return;
    }
    let queued = assert_queued_nearly_all(p);
    assert_eq!(n("read") + n("socket_busy"), queued);
    assert_eq!(count(p, "nic", "read"), n("read"));
}

/// A reader that sleeps 5 ms before each read: queued->read moves by 5 ms
/// (its p50 lands in the bucket of 5 ms, its mean moves by 5 ms within a
/// factor of two), every other transition's mean moves by less than a fifth
/// of that, and without the sleep queued->read comes back.
#[test]
fn a_slow_reader_moves_the_socket_wait_and_nothing_else() {
    if !privileged("a_slow_reader_moves_the_socket_wait_and_nothing_else") {
        return;
    }
    const SENT: u64 = 60;
    const DELAY: Duration = Duration::from_millis(5);
    let lab = lab();
    let pod = lab.node(2).pods[0].netns.clone();
    let run = |delay: Duration| -> Value {
        let reader = slow_reader(&pod, SENT, delay);
        let w = Watch::on_lab(&lab, "1", &EVERY_PACKET);
        // Sent further apart than the reader's sleep: each datagram waits
        // for the sleep only, not behind another.
        send_paced(&lab, SENT, DELAY * 4);
        assert_eq!(reader.join().unwrap(), SENT);
        std::thread::sleep(Duration::from_millis(200));
        let (code, lines, err) = w.stop(libc::SIGINT);
        assert_eq!(code, Some(0), "{err}");
        summary(&lines)["stage_latency"].clone()
    };
    let base = run(Duration::ZERO);
    if !socket_stages() {
        assert_socket_stages_named_unavailable(&base);
        return;
    }
    let slow = run(DELAY);
    let back = run(Duration::ZERO);
    let d = DELAY.as_nanos() as f64;
    for (name, p) in [("base", &base), ("slow", &slow), ("back", &back)] {
        println!(
            "{name}: queued->read p50 {} mean {:.0} ns; nic->decap {:.0}, decap->pod {:.0}, \
             pod->queued {:.0} ns",
            transition(p, "queued", "read")["p50"],
            mean(p, "queued", "read"),
            mean(p, "nic", "decap"),
            mean(p, "decap", "pod"),
            mean(p, "pod", "queued")
        );
        assert_eq!(count(p, "queued", "read"), SENT, "{name}: {p}");
    }
    let moved = mean(&slow, "queued", "read") - mean(&base, "queued", "read");
    assert!(
        moved >= d / 2.0 && moved <= d * 2.0,
        "queued->read moved {moved:.0} ns for a {d} ns sleep"
    );
    // log2 buckets: 5 ms is in [2^22, 2^23) ns.
    let p50 = transition(&slow, "queued", "read")["p50"].as_u64().unwrap();
    assert!(
        p50 >= d as u64 && p50 < 1 << 24,
        "queued->read p50 {p50} ns"
    );
    for (from, to) in [("nic", "decap"), ("decap", "pod"), ("pod", "queued")] {
        let moved = (mean(&slow, from, to) - mean(&base, from, to)).abs();
        assert!(moved < d / 5.0, "{from}->{to} moved {moved:.0} ns");
    }
    let back_moved = mean(&back, "queued", "read") - mean(&base, "queued", "read");
    assert!(
        back_moved < d / 2.0,
        "queued->read stayed {back_moved:.0} ns up without the sleep"
    );
}

/// The default `--stage-window 1/10`: the probes follow packets 1 s in
/// every 10 and are detached in between: the kernel runs none of their
/// programs (BPF run counts, `--self`), so they follow nothing. Over the run
/// every followed packet is accounted for: each reached every stage up to
/// the socket, and each queued one was read or queued behind another.
#[test]
fn the_default_window_follows_packets_one_second_in_ten() {
    if !privileged("the_default_window_follows_packets_one_second_in_ten") {
        return;
    }
    // 100 a second for 11 s: the second window (at 10 s) opens during them.
    const SENT: u64 = 1100;
    let lab = lab();
    resolve_neighbours(&lab);
    let pod = &lab.node(2).pods[0];
    let reader = slow_reader(&pod.netns, SENT, Duration::ZERO);
    let w = Watch::on_lab(
        &lab,
        "1",
        &["--stage-latency", "--stage-sample", "1", "--self"],
    );
    send_paced(&lab, SENT, Duration::from_millis(10));
    assert_eq!(reader.join().unwrap(), SENT);
    std::thread::sleep(Duration::from_millis(200));
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    let s = summary(&lines);
    let p = &s["stage_latency"];
    println!("{p}");
    assert_eq!(p["window"], "1/10");
    let n = |p: &Value, f: &str| p[f].as_u64().unwrap();
    let attached = p["attached_s"].as_f64().unwrap();
    let elapsed = s["elapsed_s"].as_f64().unwrap();
    // A window opens at attach and every 10 s after (the last maybe cut
    // by the end), each 1 s plus its drain (at most 1 s).
    let windows = (elapsed / 10.0).ceil();
    assert!(
        (0.99..=windows * 2.0 + 0.3).contains(&attached),
        "{attached} of {elapsed} s"
    );
    let rx_runs = |r: &Value| -> u64 {
        r["self"]["programs"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["program"] == "path_rx")
            .map(|p| p["runs"].as_u64().unwrap())
            .sum()
    };
    let intervals: Vec<&Value> = lines.iter().filter(|l| l["type"] == "interval").collect();
    let mut closed = 0;
    for r in &intervals {
        let q = &r["stage_latency"];
        let attached = q["attached_s"].as_f64().unwrap();
        println!(
            "interval: attached {attached:.2} s, path_rx ran {} times, {} followed",
            rx_runs(r),
            n(q, "sampled")
        );
        if attached == 0.0 {
            closed += 1;
            assert_eq!(rx_runs(r), 0, "detached, yet path_rx ran: {r}");
            assert_eq!(n(q, "sampled"), 0, "{q}");
        } else if attached >= 0.1 {
            // A datagram every 10 ms, each received on 4 devices.
            assert!(rx_runs(r) > 0, "attached, yet path_rx never ran: {r}");
        }
    }
    // The first window (1 s from the baseline, then its drain) spans the
    // first interval and the start of the second; the next opens 10 s
    // after the first: every interval in between is closed.
    let before_next = intervals.len().min(9);
    let open = intervals[..before_next]
        .iter()
        .filter(|r| r["stage_latency"]["attached_s"].as_f64().unwrap() > 0.0)
        .count();
    assert!(
        (1..=2).contains(&open) && closed >= before_next - 2,
        "{open} open and {closed} closed intervals of {}",
        intervals.len()
    );
    // Followed only while attached, and then every packet (a window's
    // drain follows no new one): at least half of the first window's 100,
    // at most the attached share of the NIC's skbs.
    let nic_skbs = stage(s, "nic", "eth0")["skbs"].as_u64().unwrap();
    let share = n(p, "sampled") as f64 / nic_skbs as f64;
    assert!(
        n(p, "sampled") >= 50 && share <= attached / elapsed * 1.1,
        "followed {} ({share:.2} of the NIC's skbs), attached {:.2} of the time",
        n(p, "sampled"),
        attached / elapsed
    );
    // Every followed packet accounted for, exactly.
    assert_eq!(
        (n(p, "decap"), n(p, "pod")),
        (n(p, "sampled"), n(p, "sampled"))
    );
    if !socket_stages() {
        assert_socket_stages_named_unavailable(p);
        return;
    }
    let queued = assert_queued_nearly_all(p);
    // The reader keeps up: each window's drain saw its reads.
    assert_eq!(n(p, "window_closed"), 0, "{p}");
    assert_eq!(n(p, "read") + n(p, "socket_busy"), queued, "{p}");
    assert_eq!(count(p, "queued", "read"), n(p, "read"));
}

/// A socket nobody reads: each window waits DRAIN_MAX (1 s) for the read
/// of the followed packet in it, then detaches without it and counts it
/// `window_closed`; the next window follows a packet there again. Every
/// followed packet queued is accounted for: behind another (`socket_busy`),
/// forgotten at a window's end, or still waiting in the open window.
#[test]
fn a_window_closes_without_the_read_it_waited_for() {
    if !privileged("a_window_closes_without_the_read_it_waited_for") {
        return;
    }
    const SENT: u64 = 500;
    let lab = lab();
    resolve_neighbours(&lab);
    let pod = &lab.node(2).pods[0];
    let never_read = lab::in_netns(&pod.netns, || {
        let s = UdpSocket::bind(("0.0.0.0", PORT)).unwrap();
        lab::set_rcvbuf(&s, 1 << 20).unwrap();
        s
    })
    .unwrap();
    let w = Watch::on_lab(
        &lab,
        "1",
        &[
            "--stage-latency",
            "--stage-sample",
            "1",
            "--stage-window",
            "0.5/2",
        ],
    );
    // 5 s at 100 a second: the windows at 2 and 4 s (and at 0, if the
    // probe was ready by then) see them.
    send_paced(&lab, SENT, Duration::from_millis(10));
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    drop(never_read);
    let p = &summary(&lines)["stage_latency"];
    println!("{p}");
    let n = |f: &str| p[f].as_u64().unwrap();
    assert_eq!(n("read"), 0);
    if !socket_stages() {
        // Nothing is followed into a socket, so no window waits.
        assert_socket_stages_named_unavailable(p);
        assert_eq!(n("window_closed"), 0);
        assert!(n("pod") > 0, "{p}");
        return;
    }
    assert!(n("window_closed") >= 1, "{p}");
    let waiting = n("queued")
        .checked_sub(n("socket_busy") + n("window_closed"))
        .unwrap_or_else(|| panic!("more busy and closed than queued: {p}"));
    assert!(waiting <= 1, "{waiting} still waiting: {p}");
    // Each window that forgot a packet waited 1 s for it.
    let attached = p["attached_s"].as_f64().unwrap();
    assert!(attached >= n("window_closed") as f64 * 1.5, "{p}");
}

/// TCP with GRO and several streams (iperf3 -P 4): sampled skbs reach every
/// stage, fewer at each (GRO and the socket's coalescing merge some into
/// others), each transition timed exactly as often as its stage was reached,
/// and each read found by its sequence number.
#[test]
fn tcp_streams_are_followed_to_the_read() {
    if !privileged("tcp_streams_are_followed_to_the_read") {
        return;
    }
    let lab = lab();
    // Listening within 2 s, even under emulation.
    let server = lab::Server::start(
        &lab.node(2).pods[0].netns,
        &["iperf3", "-s", "-1"],
        Duration::from_secs(2),
    );
    let w = Watch::on_lab(
        &lab,
        "1",
        &[
            "--stage-latency",
            "--stage-sample",
            "16",
            "--stage-window",
            "always",
        ],
    );
    let ip = lab.node(2).pods[0].ip.to_string();
    let client = lab::client(
        &lab.node(1).pods[0].netns,
        &["iperf3", "-c", &ip, "-P", "4", "-t", "2"],
    );
    server.wait();
    client.expect("iperf3 client");
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    let s = summary(&lines);
    let p = &s["stage_latency"];
    println!("{p}");
    let n = |f: &str| p[f].as_u64().unwrap();
    let nic_skbs = stage(s, "nic", "eth0")["skbs"].as_u64().unwrap();
    // One in 16 per CPU: the countdowns of two CPUs may each be one short.
    assert!(
        n("sampled") * 16 + 32 >= nic_skbs && n("sampled") * 16 <= nic_skbs + 32,
        "{} sampled of {nic_skbs} skbs",
        n("sampled")
    );
    assert!(n("sampled") > 50, "{p}");
    assert!(n("decap") <= n("sampled") && n("pod") <= n("decap") && n("decap") > 0);
    assert_eq!(count(p, "nic", "decap"), n("decap"));
    assert_eq!(count(p, "decap", "pod") + count(p, "nic", "pod"), n("pod"));
    if !socket_stages() {
        assert_socket_stages_named_unavailable(p);
        return;
    }
    assert!(n("queued") <= n("pod") && n("read") + n("socket_busy") <= n("queued"));
    assert!(n("read") > 0, "{p}");
    // iperf3's connections, accepted on one port, are one row, and it holds
    // all but a few reads. Both nodes share this kernel: a followed packet's
    // buffer, freed where no tracepoint sees it (a GRO merge) and reused
    // within the 1 s bound for a packet node 1's pod receives, is read there
    // (1 in 5,245 in one run). Every read is some socket's.
    let rows = p["sockets"].as_array().unwrap();
    let reads = |r: &Value| r["queued_to_read"]["count"].as_u64().unwrap();
    assert_eq!(rows.iter().map(reads).sum::<u64>(), n("read"), "{p}");
    let iperf = &rows[0];
    assert_eq!(
        (&iperf["netns"], &iperf["protocol"], &iperf["port"]),
        (
            &lab.node(2).pods[0].netns.clone().into(),
            &"tcp".into(),
            &5201.into()
        ),
        "{p}"
    );
    assert!(reads(iperf) >= n("read") - n("read") / 100, "{p}");
    assert_eq!(count(p, "pod", "queued"), n("queued"));
    assert_eq!(count(p, "queued", "read"), n("read"));
    assert_eq!(count(p, "nic", "read"), n("read"));
    assert!(mean(p, "nic", "read") >= mean(p, "queued", "read"));
}

/// netem holds each packet on node 2's host-side veth of the pod (the
/// bridge's egress toward the pod), that is between the VXLAN device and the
/// pod's device: decap->pod moves by the delay, the other transitions do not,
/// and without netem it comes back. Every kernel with tp_btf times decap->pod,
/// so this runs on 5.10 and 6.1 too (the socket stages are not needed).
#[test]
#[ignore = "needs the netem qdisc, which this machine's kernel lacks (`tc qdisc add ... netem`: \
            unknown qdisc kind); runs in the QEMU guests (cargo xtask vm), whose kernels have it"]
fn a_delay_before_the_pod_moves_decap_to_pod_and_nothing_else() {
    if !privileged("a_delay_before_the_pod_moves_decap_to_pod_and_nothing_else") {
        return;
    }
    const SENT: u64 = 40;
    const DELAY: Duration = Duration::from_millis(20);
    let lab = lab();
    resolve_neighbours(&lab);
    let (node, veth) = (&lab.node(2).netns, &lab.node(2).pods[0].host_veth);
    let delay = format!("{}ms", DELAY.as_millis());
    let qdisc = |change: &[&str]| {
        let mut argv = vec!["-n", node, "qdisc"];
        argv.extend_from_slice(change);
        lab::run("tc", &argv).unwrap_or_else(|e| panic!("tc {}: {e}", argv.join(" ")));
    };
    let run = |netem: bool| -> Value {
        if netem {
            qdisc(&["add", "dev", veth, "root", "netem", "delay", &delay]);
        }
        let reader = slow_reader(&lab.node(2).pods[0].netns, SENT, Duration::ZERO);
        let w = Watch::on_lab(&lab, "1", &EVERY_PACKET);
        // Further apart than the delay: each packet waits for netem only.
        send_paced(&lab, SENT, DELAY * 2);
        assert_eq!(reader.join().unwrap(), SENT);
        std::thread::sleep(Duration::from_millis(200));
        let (code, lines, err) = w.stop(libc::SIGINT);
        assert_eq!(code, Some(0), "{err}");
        if netem {
            qdisc(&["del", "dev", veth, "root"]);
        }
        summary(&lines)["stage_latency"].clone()
    };
    let (base, delayed, back) = (run(false), run(true), run(false));
    let d = DELAY.as_nanos() as f64;
    for (name, p) in [("base", &base), ("netem", &delayed), ("back", &back)] {
        println!(
            "{name}: decap->pod p50 {} mean {:.0} ns; nic->decap {:.0} ns",
            transition(p, "decap", "pod")["p50"],
            mean(p, "decap", "pod"),
            mean(p, "nic", "decap"),
        );
        // Every packet is followed to the pod, and timed on the way.
        assert_eq!(count(p, "nic", "decap"), SENT, "{name}: {p}");
        assert_eq!(count(p, "decap", "pod"), SENT, "{name}: {p}");
    }
    let moved = mean(&delayed, "decap", "pod") - mean(&base, "decap", "pod");
    assert!(
        moved >= d / 2.0 && moved <= d * 2.0,
        "decap->pod moved {moved:.0} ns for a {d} ns netem delay"
    );
    // log2 buckets: 20 ms is in [2^24, 2^25) ns.
    let p50 = transition(&delayed, "decap", "pod")["p50"]
        .as_u64()
        .unwrap();
    assert!(p50 >= d as u64 && p50 < 1 << 25, "decap->pod p50 {p50} ns");
    let mut others = vec![("nic", "decap")];
    if socket_stages() {
        others.extend([("pod", "queued"), ("queued", "read")]);
    }
    for (from, to) in others {
        let moved = (mean(&delayed, from, to) - mean(&base, from, to)).abs();
        assert!(moved < d / 5.0, "{from}->{to} moved {moved:.0} ns");
    }
    let back_moved = mean(&back, "decap", "pod") - mean(&base, "decap", "pod");
    assert!(
        back_moved < d / 2.0,
        "decap->pod stayed {back_moved:.0} ns up without netem"
    );
}
