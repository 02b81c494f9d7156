//! `probe trace` on the lab: 1000 marked packets from node 1's pod to node
//! 2's, counted at every stage; where they stop, and why, when the pod has
//! no listener, drops them with iptables, or the sending node has no FDB
//! entry for node 2; the two-node trace, its halves in two processes; a
//! packet tap beside the pod's socket; and TCP SYNs (`--proto tcp-syn`) to a
//! listener and to a closed port.

use std::{process::Command, time::Duration};

use probe_tests::{
    kernel_has_drop_reason, kernel_has_socket_tracepoints, lab, privileged, probe_bin,
    probe_output, Watch,
};
use serde_json::Value;

const SENT: u64 = 1000;
const PORT: u16 = 9400;

/// `probe trace` of SENT packets from node 1's first pod to node 2's, on
/// port `port`: its JSON.
fn trace(lab: &lab::Lab, port: u16) -> Value {
    trace_from_node_1(lab, port, &lab.node(2).netns, &["--wait", "0.5"])
}

/// `probe trace ... EXTRA` attached in `netns`, sending SENT packets from
/// node 1's first pod to node 2's on port `port`: its JSON.
fn trace_from_node_1(lab: &lab::Lab, port: u16, netns: &str, extra: &[&str]) -> Value {
    let to = format!("{}:{port}", lab.node(2).pods[0].ip);
    let count = SENT.to_string();
    let mut argv = vec![
        "trace",
        "--netns",
        netns,
        "--from-netns",
        &lab.node(1).pods[0].netns,
        "--to",
        &to,
        "--count",
        &count,
        "--rate",
        "2000",
        "--json",
    ];
    argv.extend_from_slice(extra);
    let (code, out, err) = probe_output(&argv);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    println!("{t}");
    assert_eq!(t["type"], "trace");
    assert_eq!(t["sent"], SENT);
    assert_eq!(t["signature"].as_str().unwrap().len(), 16);
    t
}

/// (stage, reason, skbs) of every drop of the marked packets.
fn drops(t: &Value) -> Vec<(String, String, u64)> {
    t["path"]["drops"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["stage"].as_str().unwrap().to_string(),
                d["reason"].as_str().unwrap().to_string(),
                d["skbs"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn reached(t: &Value, stage: &str) -> u64 {
    t["path"][stage].as_u64().unwrap()
}

/// On a kernel without drop reasons (< 5.17) a trace still counts the
/// stages, and says why it cannot name drops.
fn drops_named_unavailable(t: &Value) -> bool {
    if kernel_has_drop_reason("NO_SOCKET") {
        return false;
    }
    let why = t["path"]["unavailable"].as_str().unwrap_or_default();
    assert!(why.contains("5.17"), "{t}");
    assert!(drops(t).is_empty());
    true
}

#[test]
fn a_healthy_pod_sees_every_marked_packet_at_every_stage() {
    if !privileged("a_healthy_pod_sees_every_marked_packet_at_every_stage") {
        return;
    }
    let lab = lab();
    let sink = lab::UdpSink::start(&lab.node(2).pods[0].netns, PORT).unwrap();
    let t = trace(&lab, PORT);
    assert_eq!(sink.finish(SENT, Duration::from_secs(5)), SENT);
    assert_every_stage_reached(&t);
}

/// A packet tap on the pod's device (an AF_PACKET socket, not memory-mapped:
/// the kernel queues it a clone of each packet, sharing its buffer, before
/// the IP stack sees the packet) is not taken for the packet's socket: every
/// marked packet is still followed to the UDP socket and its read. The tap
/// is bound to the device: an unbound one, before Linux 6.15, is every
/// namespace's (one list of taps for all), and with it 6.1 and 6.12 guests
/// followed no marked packet past decap (README, "What a tap changes").
#[test]
fn a_packet_tap_in_the_pod_leaves_the_socket_stages_to_the_socket() {
    if !privileged("a_packet_tap_in_the_pod_leaves_the_socket_stages_to_the_socket") {
        return;
    }
    let lab = lab();
    let netns = lab.node(2).pods[0].netns.clone();
    let tap = lab::in_netns(&netns, || {
        let all = (libc::ETH_P_ALL as u16).to_be() as i32;
        // SAFETY: plain socket(2); the descriptor is owned below.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, all) };
        assert!(fd >= 0, "{}", std::io::Error::last_os_error());
        // SAFETY: a NUL-terminated name.
        let eth0 = unsafe { libc::if_nametoindex(c"eth0".as_ptr()) };
        assert!(eth0 > 0, "no eth0 in the pod");
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut at: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        at.sll_family = libc::AF_PACKET as u16;
        at.sll_protocol = all as u16;
        at.sll_ifindex = eth0 as i32;
        // SAFETY: bind(2) with the address's own size.
        let bound = unsafe {
            libc::bind(
                fd,
                (&at as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(bound, 0, "{}", std::io::Error::last_os_error());
        // SAFETY: fd is a new descriptor nobody else owns.
        unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
    })
    .unwrap();
    let sink = lab::UdpSink::start(&netns, PORT).unwrap();
    let t = trace(&lab, PORT);
    assert_eq!(sink.finish(SENT, Duration::from_secs(5)), SENT);
    assert_every_stage_reached(&t);
    // The tap did get its copies.
    let mut buf = [0u8; 2048];
    // SAFETY: recv(2) into a buffer of the length given.
    let n = unsafe {
        libc::recv(
            std::os::fd::AsRawFd::as_raw_fd(&tap),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
        )
    };
    assert!(
        n > 0,
        "the tap received nothing: {}",
        std::io::Error::last_os_error()
    );
}

/// Every marked packet at the NIC, decapsulated and in the pod, none
/// dropped; queued and read as far as the kernel follows sockets.
fn assert_every_stage_reached(t: &Value) {
    for stage in ["sampled", "decap", "pod"] {
        assert_eq!(reached(t, stage), SENT, "{stage}");
    }
    assert_eq!(drops(t), vec![]);
    if !kernel_has_socket_tracepoints() {
        let why = t["path"]["unavailable"].as_str().unwrap_or_default();
        assert!(why.contains("need Linux >= 6.5"), "{t}");
        return;
    }
    // All but a few: see lab_stage_latency's assert_queued_nearly_all.
    let queued = reached(t, "queued");
    assert!((SENT - SENT / 100..=SENT).contains(&queued), "{t}");
    // A marked packet queued while another still waits in the same socket
    // is not followed to its read; every other one is.
    assert_eq!(reached(t, "read") + reached(t, "socket_busy"), queued);
}

/// The two-node procedure: the receiving half (`--listen`, attached on node
/// 2) sends nothing and follows what the sending half (`--send-only`,
/// attached on node 1, sending from its pod) marks with the same signature.
/// SIGINT ends the listening early, with its report. (Both halves run on one
/// kernel here, so the sending half could also see a drop on node 2 of a
/// packet whose signature is where it looks: there are none in this test.)
#[test]
fn two_halves_that_share_a_signature_trace_across_nodes() {
    if !privileged("two_halves_that_share_a_signature_trace_across_nodes") {
        return;
    }
    const SIGNATURE: &str = "5a17ce0ff1ce7e57";
    let lab = lab();
    let sink = lab::UdpSink::start(&lab.node(2).pods[0].netns, PORT).unwrap();
    let listener = Watch::spawn(
        Command::new(probe_bin()),
        &["trace", "--json"],
        &[
            "--listen",
            "600",
            "--signature",
            SIGNATURE,
            "--netns",
            &lab.node(2).netns,
        ],
    );
    let sender = trace_from_node_1(
        &lab,
        PORT,
        &lab.node(1).netns,
        &["--send-only", "--signature", SIGNATURE, "--wait", "0"],
    );
    assert_eq!(sender["mode"], "send_only");
    assert_eq!(sender["signature"], SIGNATURE);
    assert_eq!(drops(&sender), vec![]);
    // Node 1's NIC receives none of them: they leave through it.
    assert_eq!(reached(&sender, "sampled"), 0);
    assert_eq!(sink.finish(SENT, Duration::from_secs(5)), SENT);
    std::thread::sleep(Duration::from_millis(500));
    let (code, lines, err) = listener.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let t = &lines[0];
    println!("{t}");
    assert_eq!(t["mode"], "listen");
    assert_eq!(t["signature"], SIGNATURE);
    assert!(t["sent"].is_null() && t["to"].is_null(), "{t}");
    assert_every_stage_reached(t);
}

#[test]
fn without_a_listener_they_stop_at_the_pod_with_no_socket() {
    if !privileged("without_a_listener_they_stop_at_the_pod_with_no_socket") {
        return;
    }
    let lab = lab();
    let t = trace(&lab, PORT);
    assert_eq!(reached(&t, "pod"), SENT);
    assert_eq!(reached(&t, "queued"), 0);
    if drops_named_unavailable(&t) {
        return;
    }
    assert_eq!(drops(&t), vec![("pod".into(), "NO_SOCKET".into(), SENT)]);
}

#[test]
fn an_iptables_drop_in_the_pod_stops_them_there() {
    if !privileged("an_iptables_drop_in_the_pod_stops_them_there") {
        return;
    }
    let lab = lab();
    let pod = &lab.node(2).pods[0].netns;
    let port = PORT.to_string();
    lab::run(
        "ip",
        &[
            "netns", "exec", pod, "iptables", "-A", "INPUT", "-p", "udp", "--dport", &port, "-j",
            "DROP",
        ],
    )
    .expect("iptables (cargo xtask setup installs it)");
    let sink = lab::UdpSink::start(pod, PORT).unwrap();
    let t = trace(&lab, PORT);
    assert_eq!(sink.received(), 0);
    assert_eq!(reached(&t, "pod"), SENT);
    assert_eq!(reached(&t, "queued"), 0);
    if drops_named_unavailable(&t) {
        return;
    }
    assert_eq!(
        drops(&t),
        vec![("pod".into(), "NETFILTER_DROP".into(), SENT)]
    );
}

/// flanneld without node 2's lease: node 1's flannel.1 has no FDB entry for
/// node 2's VTEP, and drops the marked packets before they leave (6.1 has
/// no reason for it: NOT_SPECIFIED). Node 2's NIC sees none.
#[test]
fn without_the_fdb_entry_the_sending_node_drops_them() {
    if !privileged("without_the_fdb_entry_the_sending_node_drops_them") {
        return;
    }
    let lab = lab();
    lab.delete_fdb(lab.node(1), lab.node(2)).unwrap();
    let t = trace(&lab, PORT);
    assert_eq!(reached(&t, "sampled"), 0);
    if drops_named_unavailable(&t) {
        return;
    }
    let reason = if kernel_has_drop_reason("NO_TX_TARGET") {
        "NO_TX_TARGET"
    } else {
        "NOT_SPECIFIED"
    };
    assert_eq!(drops(&t), vec![("sender".into(), reason.into(), SENT)]);
}

/// `--proto tcp-syn` to a listener in node 2's pod: every SYN at every
/// stage up to the pod, none dropped, each answered with a SYN-ACK (counted
/// by the sender). The pod's TCP received each SYN and the RST node 1's
/// kernel sends back to its SYN-ACK (it owns no such connection), and the
/// listener is left with nothing to accept.
#[test]
fn tcp_syns_to_a_listener_are_answered() {
    if !privileged("tcp_syns_to_a_listener_are_answered") {
        return;
    }
    let lab = lab();
    let pod = lab.node(2).pods[0].clone();
    let listener = lab::in_netns(&pod.netns, || {
        std::net::TcpListener::bind(("0.0.0.0", PORT)).unwrap()
    })
    .unwrap();
    // One connection first: every neighbour on the way, both ways, resolved.
    let to = std::net::SocketAddr::from((pod.ip, PORT));
    lab::in_netns(&lab.node(1).pods[0].netns, move || {
        std::net::TcpStream::connect_timeout(&to, Duration::from_secs(5)).unwrap()
    })
    .unwrap();
    drop(listener.accept().unwrap());
    // That connection's last segment (a FIN's ACK) may still be on its way.
    let before = quiet_tcp_in_segs(&pod.netns);
    let t = trace_syns(&lab);
    let after = tcp_in_segs(&pod.netns);
    for stage in ["sampled", "decap", "pod"] {
        assert_eq!(reached(&t, stage), SENT, "{stage}");
    }
    assert_eq!(reached(&t, "queued"), 0, "a SYN is not queued to a socket");
    assert_eq!(drops(&t), vec![]);
    assert_eq!(
        (t["answered"].as_u64(), t["refused"].as_u64()),
        (Some(SENT), Some(0))
    );
    // TCP segments, not the device's packets: the pod's neighbour entries
    // may be re-confirmed by ARP during a slow (emulated) run.
    assert_eq!(after - before, 2 * SENT, "SYNs and RSTs (TCP InSegs)");
    listener.set_nonblocking(true).unwrap();
    assert_eq!(
        listener.accept().map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "a trace completes no connection"
    );
}

/// `--proto tcp-syn` to a port nothing listens on: every SYN reaches the
/// pod, where the kernel answers with a RST and drops it (NO_SOCKET).
#[test]
fn tcp_syns_to_a_closed_port_are_refused_and_dropped_with_no_socket() {
    if !privileged("tcp_syns_to_a_closed_port_are_refused_and_dropped_with_no_socket") {
        return;
    }
    let lab = lab();
    let t = trace_syns(&lab);
    assert_eq!(reached(&t, "pod"), SENT);
    assert_eq!(
        (t["answered"].as_u64(), t["refused"].as_u64()),
        (Some(0), Some(SENT))
    );
    if drops_named_unavailable(&t) {
        return;
    }
    assert_eq!(drops(&t), vec![("pod".into(), "NO_SOCKET".into(), SENT)]);
}

/// The namespace's `Tcp: InSegs` (its snmp file): every segment tcp_v4_rcv
/// took in, whatever became of it. `/proc/net` would follow the process's
/// first thread, not the one in the namespace.
fn tcp_in_segs(netns: &str) -> u64 {
    let snmp = lab::in_netns(netns, || {
        std::fs::read_to_string("/proc/thread-self/net/snmp")
    })
    .unwrap()
    .unwrap();
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().unwrap(), tcp.next().unwrap());
    let at = names
        .split_whitespace()
        .position(|n| n == "InSegs")
        .unwrap();
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

/// `tcp_in_segs` once it has not moved for 300 ms (at most 10 s).
fn quiet_tcp_in_segs(netns: &str) -> u64 {
    let mut last = tcp_in_segs(netns);
    for _ in 0..33 {
        std::thread::sleep(Duration::from_millis(300));
        let now = tcp_in_segs(netns);
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("TCP segments still arriving in {netns} after 10 s");
}

/// `probe trace --proto tcp-syn` of SENT SYNs to node 2's first pod, port
/// PORT: its JSON.
fn trace_syns(lab: &lab::Lab) -> Value {
    let t = trace_from_node_1(
        lab,
        PORT,
        &lab.node(2).netns,
        &["--proto", "tcp-syn", "--wait", "0.5"],
    );
    assert_eq!(t["proto"], "tcp-syn");
    t
}
