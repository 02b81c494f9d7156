//! `cargo xtask bench`: BPF_PROG_TEST_RUN ns/packet of each program, minus an
//! empty program of the same type, on plain UDP, VXLAN and non-IP frames.
//! Medians of several rounds; target <= 15 ns over empty.

use probe_common::{frames, PROG_EMPTY_TC, PROG_EMPTY_XDP, PROG_NIC_XDP, PROG_VXLAN_INGRESS};
use probe_tests::prog_run::Programs;

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;
const TARGET_NS: f64 = 15.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("probe-bench: needs root (BPF_PROG_TEST_RUN)");
        std::process::exit(1);
    }
    let mut progs = Programs::load();
    let inner = frames::udp4(9000, 64);
    let frames: [(&str, Vec<u8>); 3] = [
        ("udp4 (106 B)", frames::udp4(53, 64)),
        ("vxlan/udp4 (156 B)", frames::vxlan(frames::Outer::V4, 8472, 1, &inner)),
        ("non-ip (60 B)", { let mut f = frames::ethernet(0x0806); f.resize(60, 0); f }),
    ];
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default();
    println!("BPF_PROG_TEST_RUN, repeat {REPEAT}, median of {ROUNDS} rounds; kernel {}; {cpu}; {} CPUs", kernel.trim(), num_cpus());
    println!("{:<22} {:<20} {:>10} {:>10} {:>12} {:>8}", "program", "frame", "ns/pkt", "empty", "over empty", "target");
    let mut worst: f64 = 0.0;
    for (prog, empty) in [(PROG_NIC_XDP, PROG_EMPTY_XDP), (PROG_VXLAN_INGRESS, PROG_EMPTY_TC)] {
        for (label, frame) in &frames {
            let mut real = Vec::new();
            let mut base = Vec::new();
            for _ in 0..ROUNDS {
                // Alternate so drift (frequency, other load) hits both alike.
                base.push(progs.run(empty, frame, REPEAT).1);
                real.push(progs.run(prog, frame, REPEAT).1);
            }
            let (r, b) = (median(real), median(base));
            let over = r - b;
            worst = worst.max(over);
            let verdict = if over <= TARGET_NS { "ok" } else { "MISSED" };
            println!("{prog:<22} {label:<20} {r:>10.1} {b:>10.1} {over:>12.1} {verdict:>8}");
        }
    }
    println!("worst: {worst:.1} ns over empty (target <= {TARGET_NS} ns)");
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
