//! Part 6: a soak. `probe serve --interval 1` (the DaemonSet's long-running
//! mode, at its busiest interval) on lab node 2 for 10 minutes under steady
//! pod traffic, with drops (a closed port) and a /metrics scrape every 5 s.
//! Its RSS is read every 10 s: user-space memory must stay flat.

use std::{
    net::{SocketAddrV4, UdpSocket},
    path::PathBuf,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use probe_tests::{free_port, http_get, lab, Lab};
use probe_user::kernel::selfcost::process_usage;

/// RSS growth allowed from the end of the first minute to the end.
const FLAT_KIB: u64 = 512;

/// Runs the soak for `duration`; true if memory stayed flat.
pub fn run(probe: PathBuf, duration: Duration) -> bool {
    println!(
        "\n== soak: probe serve --interval 1 under traffic for {:.0} s ==",
        duration.as_secs_f64()
    );
    let lab = Lab::up("psoak").expect("lab up");
    let (n1, n2) = (lab.node(1), lab.node(2));
    let port = free_port();
    let mut child = Command::new(&probe)
        .args(["serve", "--interval", "1", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["--netns", &n2.netns])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start probe serve");
    let start = Instant::now();
    while !std::net::TcpStream::connect(("127.0.0.1", port))
        .is_ok_and(|_| http_get(port, "/readyz").0 == 200)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "probe serve not ready"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let pid = child.id().to_string();

    let sink = lab::UdpSink::start(&n2.pods[0].netns, 9000).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // Two steady flows: one delivered, one to a closed port (NO_SOCKET drops),
    // ~10k packets/s each.
    let senders: Vec<_> = [9000u16, 9001]
        .into_iter()
        .map(|dport| {
            let dst = SocketAddrV4::new(n2.pods[0].ip, dport);
            let netns = n1.pods[0].netns.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                lab::in_netns(&netns, move || {
                    let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                    let mut sent = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..50 {
                            let _ = s.send_to(&[0x5a; 18], dst);
                        }
                        sent += 50;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    sent
                })
                .unwrap()
            })
        })
        .collect();

    println!(
        "{:>6} {:>10} {:>10} {:>8}",
        "t_s", "rss_kib", "peak_kib", "cpu_%"
    );
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let t0 = Instant::now();
    let (cpu0, _, _) = process_usage(&pid);
    let mut next_scrape = t0;
    let mut next_sample = t0;
    let mut scrapes = 0u32;
    while t0.elapsed() < duration {
        let now = Instant::now();
        if now >= next_scrape {
            let (status, _) = http_get(port, "/metrics");
            assert_eq!(status, 200);
            scrapes += 1;
            next_scrape += Duration::from_secs(5);
        }
        if now >= next_sample {
            let (cpu, rss, peak) = process_usage(&pid);
            let t = t0.elapsed().as_secs_f64();
            println!(
                "{t:>6.0} {rss:>10} {:>10} {peak:>10} {:>8.2}",
                rss_anon_kib(&pid),
                (cpu - cpu0) * 100.0 / t.max(1.0)
            );
            samples.push((t, rss));
            next_sample += Duration::from_secs(10);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let sent: u64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
    let (cpu1, rss_end, peak) = process_usage(&pid);
    let wall = t0.elapsed().as_secs_f64();
    // SAFETY: our child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let delivered = sink.received();

    let after_warmup = samples
        .iter()
        .find(|(t, _)| *t >= 60.0)
        .or(samples.last())
        .map_or(0, |(_, rss)| *rss);
    let growth = rss_end.saturating_sub(after_warmup);
    let max = samples.iter().map(|(_, r)| *r).max().unwrap_or(0);
    println!(
        "sent {sent} packets ({delivered} delivered, the rest dropped at a closed port), {scrapes} scrapes"
    );
    println!(
        "RSS: {after_warmup} KiB at 60 s, {rss_end} KiB at the end (+{growth} KiB), max sample {max} KiB, peak {peak} KiB; CPU {:.2}% of one core",
        (cpu1 - cpu0) * 100.0 / wall
    );
    let flat = growth <= FLAT_KIB;
    println!(
        "target: RSS flat (growth <= {FLAT_KIB} KiB after the first minute): {}",
        if flat { "met" } else { "MISSED" }
    );
    flat
}

/// RssAnon of /proc/PID/status: the heap and stacks, without the binary's
/// file-backed pages (which grow as code paths are first run).
fn rss_anon_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("RssAnon:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
