//! Parts 2-5: a UDP flood across the lab (pod -> pod, node 1 -> node 2,
//! several flows, small packets) with no probe, with `probe watch` (every
//! default probe), and with a bpftrace script doing comparable counting on
//! tracepoints; runs alternated, medians and ratios. During the probe runs:
//! its CPU and peak RSS, attach and detach time. Then one run with `--self`
//! for the per-program kernel cost from BPF stats.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddrV4, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use probe_tests::{lab, Lab};
use probe_user::kernel::selfcost::process_usage;

use crate::testrun::median;

const RUN: Duration = Duration::from_secs(3);
/// Rounds of every mode. 21 gives a distribution-free 95% confidence interval
/// of the median ratio between the 6th and the 16th of the sorted ratios.
const ROUNDS: usize = 21;
const PORT: u16 = 9000;
const PAYLOAD: usize = 18;

/// The bpftrace side of the comparison: per-device receive counts (what XDP
/// and TCX count at their devices) and drops by reason (what the drop probe
/// counts), on the classic tracepoints bpftrace offers.
const BPFTRACE_SCRIPT: &str = "\
tracepoint:net:netif_receive_skb { @rx[str(args->name)] = count(); }
tracepoint:skb:kfree_skb { @drops[args->reason] = count(); }";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    NoProbe,
    Probe,
    Bpftrace,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::NoProbe => "no probe",
            Mode::Probe => "probe watch",
            Mode::Bpftrace => "bpftrace",
        }
    }
}

/// What one probe run measured besides pps.
#[derive(Default)]
struct ProbeRun {
    cpu_percent: f64,
    peak_rss_kib: u64,
    attach_ms: f64,
    detach_ms: f64,
}

pub struct Flood {
    lab: Lab,
    probe: PathBuf,
    mounted_tracefs: bool,
}

impl Drop for Flood {
    fn drop(&mut self) {
        if self.mounted_tracefs {
            let _ = Command::new("umount").arg("/sys/kernel/tracing").status();
        }
    }
}

impl Flood {
    pub fn new(probe: PathBuf) -> Flood {
        let lab = Lab::up("pbench").expect("lab up");
        // bpftrace finds tracepoints through tracefs.
        let mounted_tracefs = !Path::new("/sys/kernel/tracing/events").exists()
            && Command::new("mount")
                .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
                .status()
                .is_ok_and(|s| s.success());
        Flood {
            lab,
            probe,
            mounted_tracefs,
        }
    }

    /// Packets delivered per second to the pods' sockets during one run.
    fn pps(&self) -> f64 {
        let (n1, n2) = (self.lab.node(1), self.lab.node(2));
        let sinks: Vec<lab::UdpSink> = n2
            .pods
            .iter()
            .map(|p| lab::UdpSink::start(&p.netns, PORT).unwrap())
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        // One sender per node-1 pod, alternating between the node-2 pods: four
        // flows, each sender on its own thread (and CPU, when there are two).
        let senders: Vec<_> = n1
            .pods
            .iter()
            .map(|src| {
                let dsts: Vec<SocketAddrV4> = n2
                    .pods
                    .iter()
                    .map(|d| SocketAddrV4::new(d.ip, PORT))
                    .collect();
                let stop = Arc::clone(&stop);
                let netns = src.netns.clone();
                std::thread::spawn(move || {
                    lab::in_netns(&netns, move || {
                        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
                        let payload = [0x5au8; PAYLOAD];
                        let mut i = 0usize;
                        while !stop.load(Ordering::Relaxed) {
                            let _ = s.send_to(&payload, dsts[i % dsts.len()]);
                            i += 1;
                        }
                    })
                    .unwrap()
                })
            })
            .collect();
        // Count only the steady middle: skip the first 200 ms.
        std::thread::sleep(Duration::from_millis(200));
        let start_counts: u64 = sinks.iter().map(|s| s.received()).sum();
        let start = Instant::now();
        std::thread::sleep(RUN);
        let delivered: u64 = sinks.iter().map(|s| s.received()).sum::<u64>() - start_counts;
        let elapsed = start.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for s in senders {
            s.join().unwrap();
        }
        drop(sinks);
        delivered as f64 / elapsed
    }

    fn start_probe(&self, extra: &[&str]) -> (Child, PathBuf) {
        start_probe(&self.probe, &self.lab.node(2).netns, extra)
    }

    fn run_probe(&self) -> (f64, ProbeRun) {
        let (mut child, ready) = self.start_probe(&[]);
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&ready).unwrap()).unwrap();
        let pid = child.id().to_string();
        // Drain stdout so the probe never blocks on a full pipe.
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || BufReader::new(out).lines().count());
        let (cpu0, _, _) = process_usage(&pid);
        let t0 = Instant::now();
        let pps = self.pps();
        let (cpu1, _, peak) = process_usage(&pid);
        let wall = t0.elapsed().as_secs_f64();
        let stop = Instant::now();
        // SAFETY: our child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
        let detach_ms = stop.elapsed().as_secs_f64() * 1e3;
        reader.join().unwrap();
        (
            pps,
            ProbeRun {
                cpu_percent: (cpu1 - cpu0) * 100.0 / wall,
                peak_rss_kib: peak,
                attach_ms: info["attach_ms"].as_f64().unwrap_or(f64::NAN),
                detach_ms,
            },
        )
    }

    fn run_bpftrace(&self) -> f64 {
        let mut child = Command::new("bpftrace")
            .args(["-e", BPFTRACE_SCRIPT])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bpftrace (apt-get install bpftrace)");
        // bpftrace prints "Attaching N probes..." once attached.
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(line.starts_with("Attaching"), "bpftrace: {line:?}");
        let reader = std::thread::spawn(move || out.lines().count());
        let pps = self.pps();
        // Once (in ~60 runs) bpftrace did not act on the first SIGINT and the
        // bench waited forever: repeat it, and kill it if it never exits.
        for _ in 0..10 {
            // SAFETY: our child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            std::thread::sleep(Duration::from_millis(500));
            if child.try_wait().unwrap().is_some() {
                break;
            }
        }
        if child.try_wait().unwrap().is_none() {
            let _ = child.kill();
        }
        child.wait().unwrap();
        reader.join().unwrap();
        pps
    }

    /// Kernel ns per run of each program during a flood, from `--self`, with the
    /// opt-in `--latency` probes attached too so their cost is shown.
    fn program_costs(&self) -> Vec<(String, u64, f64)> {
        let (mut child, _) = self.start_probe(&["--self", "--latency"]);
        let lines = read_lines(&mut child);
        self.pps();
        program_rows(&stop_probe(child, lines))
    }

    /// Runs everything and prints the figures; true when every target is met.
    pub fn run(&self) -> bool {
        let have_bpftrace = Command::new("bpftrace")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        let modes: Vec<Mode> = if have_bpftrace {
            vec![Mode::NoProbe, Mode::Probe, Mode::Bpftrace]
        } else {
            println!("bpftrace not found: the bpftrace column is missing (cargo xtask bench installs it)");
            vec![Mode::NoProbe, Mode::Probe]
        };
        println!(
            "\nLab flood: {} senders (node-1 pods) -> 2 receivers (node-2 pods), 4 flows, {PAYLOAD}-byte UDP payloads, \
             {} s per run, {ROUNDS} rounds of {} (order rotated each round)",
            self.lab.node(1).pods.len(),
            RUN.as_secs(),
            modes.iter().map(|m| m.name()).collect::<Vec<_>>().join(" / ")
        );
        let mut pps: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
        let mut runs: Vec<ProbeRun> = Vec::new();
        for round in 0..ROUNDS {
            let mut line = format!("round {}:", round + 1);
            // Rotate the order each round: no mode always runs first (the
            // first run after a pause measured lower in early trials).
            for k in 0..modes.len() {
                let i = (k + round) % modes.len();
                let mode = &modes[i];
                let p = match mode {
                    Mode::NoProbe => self.pps(),
                    Mode::Probe => {
                        let (p, r) = self.run_probe();
                        runs.push(r);
                        p
                    }
                    Mode::Bpftrace => self.run_bpftrace(),
                };
                line += &format!("  {} {:.0} pps", mode.name(), p);
                pps[i].push(p);
            }
            println!("{line}");
        }
        // Each round's runs are back to back, so per-round ratios cancel the
        // VM's drift between rounds (it moves the absolute pps by +-20%).
        let ratios =
            |i: usize| -> Vec<f64> { (0..ROUNDS).map(|r| pps[i][r] / pps[0][r]).collect() };
        let ratio_of = |i: usize| median(ratios(i));
        // The spread of the per-round ratios: how much one run can be trusted.
        let quartiles = |i: usize| {
            let mut v = ratios(i);
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            (v[ROUNDS / 4] * 100.0, v[ROUNDS * 3 / 4] * 100.0)
        };
        let med: Vec<f64> = pps.iter().map(|v| median(v.clone())).collect();
        let ratio = ratio_of(1);
        println!(
            "median pps: {}; probe watch / no probe per round, median: {:.1}% (target >= 97%)",
            modes
                .iter()
                .zip(&med)
                .map(|(m, p)| format!("{} {p:.0}", m.name()))
                .collect::<Vec<_>>()
                .join(", "),
            ratio * 100.0
        );
        let (q1, q3) = quartiles(1);
        println!("  per-round ratios, interquartile range: {q1:.1}% .. {q3:.1}%");
        let (lo, hi) = median_ci(ratios(1));
        println!(
            "  95% confidence interval of that median: {:.1}% .. {:.1}%: {}",
            lo * 100.0,
            hi * 100.0,
            if lo >= 0.97 {
                "target met"
            } else if hi < 0.97 {
                "target MISSED"
            } else {
                "the target is inside the interval: this run can neither show it met nor missed"
            }
        );
        let mut ok = ratio >= 0.97;
        if modes.len() > 2 {
            let bt = ratio_of(2);
            let (probe_loss, bt_loss) = ((1.0 - ratio).max(0.0), 1.0 - bt);
            let rel = probe_loss / bt_loss;
            println!(
                "bpftrace / no probe per round, median: {:.1}%; loss: probe {:.1}%, bpftrace {:.1}%, ratio {rel:.2} (target <= 0.5)",
                bt * 100.0,
                probe_loss * 100.0,
                bt_loss * 100.0,
            );
            ok &= bt_loss > 0.0 && rel <= 0.5;
        }
        let worst = |f: fn(&ProbeRun) -> f64| runs.iter().map(f).fold(f64::MIN, f64::max);
        let cpu = median(runs.iter().map(|r| r.cpu_percent).collect());
        let rss = runs.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let (attach, detach) = (worst(|r| r.attach_ms), worst(|r| r.detach_ms));
        println!(
            "probe watch --interval 1 during the flood: CPU {cpu:.2}% of one core (median; target <= 1%), \
             peak RSS {rss:.1} MiB (max; target <= 32 MiB)"
        );
        println!(
            "attach (every probe, from the ready file's attach_ms) {attach:.0} ms, detach (SIGTERM to exit) {detach:.0} ms \
             (worst of {} runs; targets <= 1000 ms each)",
            runs.len()
        );
        ok &= cpu <= 1.0 && rss <= 32.0 && attach <= 1000.0 && detach <= 1000.0;
        println!("\nKernel time per run during a flood (probe watch --self --latency, BPF stats; includes the ~2 clock reads stats add):");
        for (name, runs, ns) in self.program_costs() {
            println!("  {name:<32} {runs:>10} runs {ns:>8.1} ns/run");
        }
        ok
    }
}

/// Starts `probe watch --json --interval 1 --netns NETNS EXTRA` and waits
/// until its ready file says every probe is attached: (process, ready file).
/// Its stdout is piped: the caller drains it.
pub fn start_probe(probe: &Path, netns: &str, extra: &[&str]) -> (Child, PathBuf) {
    let ready = std::env::temp_dir().join(format!("probe-bench-{}.ready", std::process::id()));
    let _ = std::fs::remove_file(&ready);
    let child = Command::new(probe)
        .args(["watch", "--json", "--interval", "1", "--netns", netns])
        .arg("--ready-file")
        .arg(&ready)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start probe");
    let start = Instant::now();
    while !ready.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20) * probe_tests::time_scale(),
            "probe did not attach"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    (child, ready)
}

/// Reads the probe's JSON lines on a thread from the start, so that it never
/// blocks on a full pipe.
pub fn read_lines(child: &mut Child) -> std::thread::JoinHandle<Vec<serde_json::Value>> {
    let out = child.stdout.take().expect("stdout piped");
    std::thread::spawn(move || {
        BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str(&l).ok())
            .collect()
    })
}

/// SIGTERM to the probe; its JSON lines once it has printed its summary and exited.
pub fn stop_probe(
    mut child: Child,
    lines: std::thread::JoinHandle<Vec<serde_json::Value>>,
) -> Vec<serde_json::Value> {
    // SAFETY: our child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    lines.join().unwrap()
}

/// (program@iface, runs, ns per run) of every program in the summary's
/// `self.programs` (`--self`).
pub fn program_rows(lines: &[serde_json::Value]) -> Vec<(String, u64, f64)> {
    let summary = lines
        .iter()
        .rev()
        .find(|l| l["type"] == "summary")
        .expect("a summary line");
    summary["self"]["programs"]
        .as_array()
        .expect("--self programs")
        .iter()
        .map(|p| {
            (
                format!(
                    "{}@{}",
                    p["program"].as_str().unwrap(),
                    p["iface"].as_str().unwrap()
                ),
                p["runs"].as_u64().unwrap(),
                p["ns_per_run"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// A distribution-free confidence interval (at least 95%) of the median of
/// `v`: the order statistics x(k) and x(n+1-k), with k the largest index such
/// that P(Binomial(n, 1/2) <= k-1) <= 2.5%.
pub fn median_ci(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    // P(B <= j) for B ~ Binomial(n, 1/2), accumulated term by term.
    let mut term = 0.5f64.powi(n as i32); // P(B = 0)
    let mut cdf = term;
    let mut k = 0; // 0: no interval this small can reach 95%
    for j in 0..n {
        if cdf > 0.025 {
            break;
        }
        k = j + 1; // x(j+1), 1-based
        term *= (n - j) as f64 / (j + 1) as f64;
        cdf += term;
    }
    if k == 0 {
        return (v[0], v[n - 1]);
    }
    (v[k - 1], v[n - k])
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_ci_order_statistics() {
        let v: Vec<f64> = (1..=21).map(f64::from).collect();
        assert_eq!(super::median_ci(v), (6.0, 16.0));
        let v: Vec<f64> = (1..=9).map(f64::from).collect();
        assert_eq!(super::median_ci(v), (2.0, 8.0));
        assert_eq!(super::median_ci(vec![3.0, 1.0, 2.0]), (1.0, 3.0));
    }
}
