//! `cargo xtask demo`: the main job on the built-in lab. Builds the lab, runs
//! `probe watch` on node 2 the way an operator would on a suspect node, sends
//! pod-to-pod traffic across the overlay, and tears everything down.

use std::{
    process::{Command, Stdio},
    sync::{atomic::AtomicBool, Arc},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use probe_lab::{send_udp, Lab, UdpSink};

const PREFIX: &str = "plabdemo";

pub fn run(json: bool) -> Result<()> {
    let status = crate::cargo()
        .args(["build", "--quiet", "-p", "probe-user", "--bin", "probe"])
        .status()?;
    if !status.success() {
        bail!("building probe failed");
    }
    // Ctrl-C goes to probe too (same process group): it prints its summary and
    // exits; we stay alive long enough to tear the lab down.
    signal_hook::flag::register(
        signal_hook::consts::SIGINT,
        Arc::new(AtomicBool::new(false)),
    )?;

    let lab = Lab::up(PREFIX).map_err(anyhow::Error::msg)?;
    let (n1, n2) = (lab.node(1), lab.node(2));
    eprintln!(
        "demo: lab up: 2 nodes ({}, {}), flannel.1 VNI 1 on UDP 8472, 2 pods each",
        n1.netns, n2.netns
    );
    let sink_a = UdpSink::start(&n2.pods[0].netns, 9000)?;
    let sink_b = UdpSink::start(&n2.pods[1].netns, 9001)?;

    let ready = std::env::temp_dir().join(format!("probe-demo-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let probe = std::env::current_dir()?.join("target/debug/probe");
    let mut cmd = Command::new(&probe);
    cmd.args([
        "watch",
        "--netns",
        &n2.netns,
        "--interval",
        "1",
        "--duration",
        "5",
    ])
    .arg("--ready-file")
    .arg(&ready)
    .stdin(Stdio::null());
    // Count drops in the lab only, not in the rest of this machine.
    for ns in lab.namespaces() {
        cmd.args(["--drop-netns", &ns]);
    }
    if json {
        cmd.arg("--json");
    }
    eprintln!("demo: running {cmd:?}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", probe.display()))?;
    wait_attached(&mut child, &ready, "probe", String::new)?;

    let dst_a = format!("{}:9000", n2.pods[0].ip).parse()?;
    let dst_b = format!("{}:9001", n2.pods[1].ip).parse()?;
    let dst_closed = format!("{}:9999", n2.pods[1].ip).parse()?;
    std::thread::sleep(Duration::from_millis(700));
    eprintln!(
        "demo: second 1: 20000 UDP packets pod {} -> pod {}",
        n1.pods[0].ip, n2.pods[0].ip
    );
    send_udp(&n1.pods[0].netns, dst_a, 20_000, 64, 100)?;
    std::thread::sleep(Duration::from_millis(1000));
    eprintln!(
        "demo: second 2: 5000 packets pod {} -> pod {}, 500 to a port nobody listens on",
        n1.pods[1].ip, n2.pods[1].ip
    );
    send_udp(&n1.pods[1].netns, dst_b, 5_000, 512, 100)?;
    send_udp(&n1.pods[1].netns, dst_closed, 500, 64, 100)?;
    // TCP, the traffic pods mostly send: GSO on the sender and GRO make skbs
    // of many segments (the GRO column).
    let server_ip = n2.pods[0].ip.to_string();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &n2.pods[0].netns, "iperf3", "-s", "-1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("iperf3 (cargo xtask setup installs it)")?;
    std::thread::sleep(Duration::from_millis(300));
    eprintln!(
        "demo: second 3: TCP, iperf3 with 2 streams for 1 s, pod {} -> pod {}",
        n1.pods[0].ip, server_ip
    );
    let tcp = Command::new("ip")
        .args([
            "netns",
            "exec",
            &n1.pods[0].netns,
            "iperf3",
            "-c",
            &server_ip,
            "-t",
            "1",
            "-P",
            "2",
        ])
        .stdout(Stdio::null())
        .status();
    let _ = server.kill();
    let _ = server.wait();
    if !tcp.is_ok_and(|s| s.success()) {
        eprintln!("demo: the iperf3 client failed; the TCP part is missing from the report");
    }

    let status = child.wait()?;
    let (a, b) = (
        sink_a.finish(20_000, Duration::from_secs(1)),
        sink_b.finish(5_000, Duration::from_secs(1)),
    );
    eprintln!(
        "demo: the pods' sockets received {a} of 20000 and {b} of 5000 packets; any shortfall"
    );
    eprintln!("demo: is in the LEDGER with its stage and reason (on this small VM, a few SOCKET_RCVBUFF).");
    eprintln!(
        "demo: each stage's SKBS equal the kernel's rx_packets (KERNEL_RX); TCP arrives in skbs of"
    );
    eprintln!("demo: tens of segments (GRO), and the VXLAN balance compares segments with segments: 0 lost.");
    eprintln!("demo: The LEDGER shows the 500 packets to the closed port at stage socket (NO_SOCKET, in the");
    eprintln!("demo: pod's namespace, next to its UdpNoPorts), and the verdict names that stage. The ICMP");
    eprintln!(
        "demo: port-unreachable replies (rate-limited by the kernel) show up as TX on flannel.1."
    );
    drop(lab);
    eprintln!("demo: lab removed");
    if !status.success() {
        bail!("probe exited with {status}");
    }
    Ok(())
}

/// Waits (20 s at most) until the probe `child` writes its `--ready-file`.
/// If it exits first, or takes too long (then it is killed), the error names
/// `what` and adds `details()` (its log, say).
pub fn wait_attached(
    child: &mut std::process::Child,
    ready: &std::path::Path,
    what: &str,
    details: impl Fn() -> String,
) -> Result<()> {
    let start = Instant::now();
    while !ready.exists() {
        if let Some(status) = child.try_wait()? {
            bail!("{what} exited before attaching ({status})\n{}", details());
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not attach within 20 s\n{}", details());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}
