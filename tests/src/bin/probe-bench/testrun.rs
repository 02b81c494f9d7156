//! Part 1: BPF_PROG_TEST_RUN ns/packet of each XDP and tc program, minus an
//! empty program of the same type, on plain UDP, VXLAN and non-IP frames.
//! (The drop probe is tp_btf, which BPF_PROG_TEST_RUN does not run: its cost
//! comes from BPF stats in the flood part.)
//! Each round runs the empty and the real program back to back on the same
//! pinned CPU; the figure is the median of the per-round differences, which
//! cancels most of the VM's drift (the baseline alone moves by +-4 ns).
//! Target: <= 15 ns over empty.

use probe_common::{frames, PROG_NIC_TC, PROG_NIC_XDP, PROG_VXLAN_INGRESS};
use probe_tests::prog_run::Programs;
use tests_ebpf::{PROG_EMPTY_TC, PROG_EMPTY_XDP};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 15;
const TARGET_NS: f64 = 15.0;

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Prints the table; Ok(true) when every figure meets the target.
pub fn run() -> bool {
    pin_to_cpu(0);
    let mut progs = Programs::load();
    let inner = frames::udp4(9000, 64);
    let frames: [(&str, Vec<u8>); 3] = [
        ("udp4 (106 B)", frames::udp4(53, 64)),
        (
            "vxlan/udp4 (156 B)",
            frames::vxlan(frames::Outer::V4, 8472, 1, &inner),
        ),
        ("non-ip (60 B)", {
            let mut f = frames::ethernet(0x0806);
            f.resize(60, 0);
            f
        }),
    ];
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    println!("BPF_PROG_TEST_RUN, repeat {REPEAT}, {ROUNDS} paired rounds pinned to CPU 0 (medians); kernel {}; {cpu}; {} CPUs", kernel.trim(), num_cpus());
    println!(
        "{:<22} {:<20} {:>10} {:>10} {:>12} {:>8}",
        "program", "frame", "ns/pkt", "empty", "over empty", "target"
    );
    let mut worst: f64 = 0.0;
    for (prog, empty) in [
        (PROG_NIC_XDP, PROG_EMPTY_XDP),
        (PROG_NIC_TC, PROG_EMPTY_TC),
        (PROG_VXLAN_INGRESS, PROG_EMPTY_TC),
    ] {
        for (label, frame) in &frames {
            let (mut real, mut base, mut diff) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let b = progs.run(empty, frame, REPEAT).1;
                let r = progs.run(prog, frame, REPEAT).1;
                base.push(b);
                real.push(r);
                diff.push(r - b);
            }
            let (r, b, over) = (median(real), median(base), median(diff));
            worst = worst.max(over);
            let verdict = if over <= TARGET_NS { "ok" } else { "MISSED" };
            println!("{prog:<22} {label:<20} {r:>10.1} {b:>10.1} {over:>12.1} {verdict:>8}");
        }
    }
    println!("worst: {worst:.1} ns over empty (target <= {TARGET_NS} ns)");
    unpin();
    worst <= TARGET_NS
}

fn unpin() {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for cpu in 0..num_cpus() {
            libc::CPU_SET(cpu, &mut set);
        }
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// BPF_PROG_TEST_RUN runs on the calling CPU: keep every round on one.
fn pin_to_cpu(cpu: usize) {
    if let Err(e) = probe_tests::lab::pin_thread(cpu) {
        eprintln!("probe-bench: cannot pin to CPU {cpu}: {e}");
    }
}

/// Online CPUs of the machine (not of this thread's affinity mask).
pub fn num_cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}
