//! Part `traffic`: the traffic users send, with and without the probe on its
//! default hooks. iperf3 pod to pod across the lab: a UDP flood (64-byte
//! datagrams, unlimited rate) and TCP with 4 streams; rounds alternate no
//! probe / probe (order rotated), and the figure is the median of the
//! per-round ratios with its 95% confidence interval; a third mode with only
//! empty tc programs at the probe's hooks shows what the hook itself costs.
//! Then one run per
//! traffic kind with `--self` and an empty tc program attached at the same
//! hooks in the same run: kernel ns per run of each probe program next to
//! that floor. Targets: throughput ratio >= 0.97, each hook <= 1.5x its floor.

use std::{path::PathBuf, process::Child, thread::JoinHandle, time::Duration};

use aya::{
    programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType},
    Ebpf,
};
use probe_tests::{lab, objects, Lab};
use tests_ebpf::PROG_EMPTY_TC;

use crate::{
    flood::{median_ci, program_rows, read_lines, start_probe, stop_probe},
    testrun::median,
};

/// Rounds of every mode: 21 gives a distribution-free 95% confidence interval of
/// the median ratio between the 6th and the 16th of the sorted ratios.
const ROUNDS: usize = 21;
const SECONDS: &str = "4";
/// After attaching, the probe runs a second before a measured run: steady
/// state, as a DaemonSet runs for days (attach cost: the flood part).
const SETTLE: Duration = Duration::from_secs(1);
const TARGET_RATIO: f64 = 0.97;
const TARGET_FLOOR: f64 = 1.5;

#[derive(Clone, Copy)]
enum Kind {
    UdpFlood,
    Tcp4,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::UdpFlood => "iperf3 UDP flood, 64 B (received pps)",
            Kind::Tcp4 => "iperf3 TCP, 4 streams (received bit/s)",
        }
    }
}

pub struct Traffic {
    lab: Lab,
    probe: PathBuf,
    _server: lab::Server,
}

impl Traffic {
    pub fn new(probe: PathBuf) -> Traffic {
        let lab = Lab::up("ptraf").expect("lab up");
        let server = lab::Server::start(
            &lab.node(2).pods[0].netns,
            &["iperf3", "-s"],
            Duration::from_millis(300),
        );
        Traffic {
            lab,
            probe,
            _server: server,
        }
    }

    /// One iperf3 run from pod n1p1 to pod n2p1: what the receiver got per second.
    fn measure(&self, kind: Kind) -> f64 {
        let server = self.lab.node(2).pods[0].ip.to_string();
        let mut argv = vec!["iperf3", "-c", server.as_str(), "-t", SECONDS, "-J"];
        match kind {
            Kind::UdpFlood => argv.extend(["-u", "-b", "0", "-l", "64"]),
            Kind::Tcp4 => argv.extend(["-P", "4"]),
        }
        let out = lab::client(&self.lab.node(1).pods[0].netns, &argv).expect("iperf3 client");
        let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J");
        match kind {
            Kind::UdpFlood => {
                let sum = &v["end"]["sum"];
                let received =
                    sum["packets"].as_f64().unwrap() - sum["lost_packets"].as_f64().unwrap();
                received / sum["seconds"].as_f64().unwrap()
            }
            Kind::Tcp4 => v["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .unwrap(),
        }
    }

    /// `probe watch` on node 2 with `extra` flags, its output read from the start.
    fn start_probe(&self, extra: &[&str]) -> (Child, JoinHandle<Vec<serde_json::Value>>) {
        let (mut child, _) = start_probe(&self.probe, &self.lab.node(2).netns, extra);
        let lines = read_lines(&mut child);
        (child, lines)
    }

    fn with_probe(&self, kind: Kind) -> f64 {
        self.with_probe_flags(kind, &[])
    }

    fn with_probe_flags(&self, kind: Kind, flags: &[&str]) -> f64 {
        let (child, lines) = self.start_probe(flags);
        std::thread::sleep(SETTLE);
        let r = self.measure(kind);
        stop_probe(child, lines);
        r
    }

    /// An empty tc program attached (TCX ingress) on `iface` of node 2: the
    /// floor of what any program at that hook costs.
    fn empty_at(&self, iface: &str) -> Ebpf {
        let iface = iface.to_string();
        lab::in_netns(&self.lab.node(2).netns, move || {
            let mut ebpf = Ebpf::load(objects::FIXTURES).expect("load fixtures");
            let p: &mut SchedClassifier =
                ebpf.program_mut(PROG_EMPTY_TC).unwrap().try_into().unwrap();
            p.load().unwrap();
            p.attach_with_options(
                &iface,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::last()),
            )
            .expect("attach the empty program");
            ebpf
        })
        .unwrap()
    }

    /// (program@iface, runs, ns per run) of the probe's programs and of the
    /// empty ones at the same hooks, in one run of `kind`.
    fn costs(&self, kind: Kind) -> Vec<(String, u64, f64)> {
        let (child, lines) = self.start_probe(&["--self"]);
        let empties: Vec<(String, Ebpf)> = ["eth0", "flannel.1"]
            .into_iter()
            .map(|i| (i.to_string(), self.empty_at(i)))
            .collect();
        let before: Vec<(u64, u64)> = empties.iter().map(|(_, e)| run_stats(e)).collect();
        self.measure(kind);
        let after: Vec<(u64, u64)> = empties.iter().map(|(_, e)| run_stats(e)).collect();
        // The tc programs only: the drop probe (iface `*`) has no floor here.
        let mut out: Vec<(String, u64, f64)> = program_rows(&stop_probe(child, lines))
            .into_iter()
            .filter(|(name, _, _)| !name.ends_with("@*"))
            .collect();
        for (((iface, _), b), a) in empties.iter().zip(before).zip(after) {
            let runs = a.0 - b.0;
            out.push((
                format!("{PROG_EMPTY_TC}@{iface} (floor)"),
                runs,
                (a.1 - b.1) as f64 / runs.max(1) as f64,
            ));
        }
        out
    }

    pub fn run(&self) -> bool {
        println!(
            "\nTraffic users send: iperf3 pod n1p1 -> pod n2p1 across the lab, {SECONDS} s per run, \
             {ROUNDS} rounds of no probe / probe watch (default hooks) / empty tc programs (order rotated each round)"
        );
        let mut ok = true;
        for kind in [Kind::UdpFlood, Kind::Tcp4] {
            // Three modes, order rotated: no probe, the probe, and only empty
            // tc programs at the probe's two hooks (what any tc observer costs).
            let (mut without, mut with, mut floor) = (Vec::new(), Vec::new(), Vec::new());
            for round in 0..ROUNDS {
                for k in 0..3 {
                    match (k + round) % 3 {
                        0 => without.push(self.measure(kind)),
                        1 => with.push(self.with_probe(kind)),
                        _ => {
                            let empties = [self.empty_at("eth0"), self.empty_at("flannel.1")];
                            std::thread::sleep(SETTLE);
                            floor.push(self.measure(kind));
                            drop(empties);
                        }
                    }
                }
            }
            let floor_ratio = median(floor.iter().zip(&without).map(|(f, n)| f / n).collect());
            println!(
                "{}: empty tc programs at the same hooks / no probe, per-round median: {:.1}%",
                kind.name(),
                floor_ratio * 100.0
            );
            let ratios: Vec<f64> = with.iter().zip(&without).map(|(w, n)| w / n).collect();
            let ratio = median(ratios.clone());
            let (lo, hi) = median_ci(ratios);
            println!(
                "{}: no probe {:.4e}, probe {:.4e} (medians); per-round ratio median {:.1}% \
                 (95% CI {:.1}% .. {:.1}%; target >= {:.0}%): {}",
                kind.name(),
                median(without),
                median(with),
                ratio * 100.0,
                lo * 100.0,
                hi * 100.0,
                TARGET_RATIO * 100.0,
                if lo >= TARGET_RATIO {
                    "met"
                } else if hi < TARGET_RATIO {
                    "MISSED"
                } else {
                    "the target is inside the interval"
                }
            );
            ok &= ratio >= TARGET_RATIO;
        }
        for kind in [Kind::UdpFlood, Kind::Tcp4] {
            println!(
                "\nKernel ns per run under {} (probe watch --self, BPF stats; an empty tc program at the same hooks in the same run):",
                kind.name()
            );
            let costs = self.costs(kind);
            for (name, runs, ns) in &costs {
                println!("  {name:<40} {runs:>10} runs {ns:>8.1} ns/run");
            }
            for iface in ["eth0", "flannel.1"] {
                let find = |prefix: &str| {
                    costs
                        .iter()
                        .find(|(n, _, _)| n.starts_with(prefix) && n.contains(&format!("@{iface}")))
                        .map(|c| c.2)
                };
                let program = if iface == "eth0" {
                    "nic_tc"
                } else {
                    "vxlan_dev_ingress"
                };
                if let (Some(ours), Some(floor)) = (find(program), find(PROG_EMPTY_TC)) {
                    let x = ours / floor;
                    println!(
                        "  {program}@{iface}: {x:.2}x the floor (target <= {TARGET_FLOOR}x): {}",
                        if x <= TARGET_FLOOR { "met" } else { "MISSED" }
                    );
                    ok &= x <= TARGET_FLOOR;
                }
            }
        }
        ok
    }
}

/// Rounds of the `latency` and `stage-latency` parts (each round: one run
/// per mode and one without the probe, per traffic kind); $PROBE_BENCH_ROUNDS
/// sets another number (a guest's emulated runs are slower).
fn latency_rounds() -> usize {
    std::env::var("PROBE_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(11)
}

/// Which ratio of the target mode must reach TARGET_RATIO.
#[derive(Clone, Copy)]
enum Target {
    /// TCP's, against no probe (the probe's own target).
    TcpAgainstNoProbe,
    /// TCP's and UDP's, against the default hooks (what a flag adds).
    BothAgainstProbe,
}

/// The programs of `--latency`, and of `--stage-latency`.
const LATENCY_PROGRAMS: [&str; 4] = ["net_rx_raise", "net_rx_entry", "net_rx_exit", "napi_poll"];
const STAGE_PROGRAMS: [&str; 3] = ["path_rx", "path_queued", "path_read"];

impl Traffic {
    /// Part `latency`: what the NET_RX softirq and NAPI probes cost under the
    /// traffic users send: the default (`--latency auto`, which pauses them
    /// while NET_RX runs too often), without them, and always on. The
    /// default must meet the target.
    pub fn latency(&self) -> bool {
        self.flag_cost(
            "--latency",
            "probe",
            &[
                ("probe --latency off", &["--latency", "off"]),
                ("probe --latency on", &["--latency", "on"]),
                (
                    "probe --latency on --latency-sample 16",
                    &["--latency", "on", "--latency-sample", "16"],
                ),
            ],
            &[
                &[],
                &["--latency", "on", "--latency-sample", "1"],
                &["--latency", "on", "--latency-sample", "16"],
            ],
            &LATENCY_PROGRAMS,
            Target::TcpAgainstNoProbe,
        )
    }

    /// Part `stage-latency`: what `--stage-latency` (one packet in 64
    /// followed from the NIC to the read) costs under the same traffic, in
    /// windows and attached all the time. The windows are measured as
    /// `--stage-window 0.2/2`: the default 1/10's share of the time, in
    /// periods a 4 s run holds whole (it attaches and detaches five times
    /// as often as the default, so it costs no less). It must add no more
    /// than 3% to the default hooks, for TCP and UDP.
    pub fn stage_latency(&self) -> bool {
        const WINDOWS: [&str; 3] = ["--stage-latency", "--stage-window", "0.2/2"];
        const ALWAYS: [&str; 3] = ["--stage-latency", "--stage-window", "always"];
        self.flag_cost(
            "--stage-latency",
            "probe --stage-latency (windows)",
            &[
                ("probe --stage-latency (windows)", &WINDOWS),
                ("probe --stage-latency --stage-window always", &ALWAYS),
            ],
            &[
                &WINDOWS,
                &ALWAYS,
                &[
                    "--stage-latency",
                    "--stage-window",
                    "always",
                    "--stage-sample",
                    "1",
                ],
            ],
            &STAGE_PROGRAMS,
            Target::BothAgainstProbe,
        )
    }

    /// What a flag costs: rounds of no probe / probe (default hooks) / the
    /// probe with each of `modes`, order rotated, for iperf3 TCP with 4
    /// streams and the UDP flood (the median ratio of the mode labelled
    /// `target` must reach the target for TCP); then one run per kind and
    /// each of `self_runs` with `--self`:
    /// each program's runs and ns per run, and the flag's `programs` summed
    /// per received skb and per segment.
    fn flag_cost(
        &self,
        flag: &str,
        target: &str,
        modes: &[(&str, &[&str])],
        self_runs: &[&[&str]],
        programs: &[&str],
        against: Target,
    ) -> bool {
        let mut modes: Vec<(&str, &[&str])> = modes.to_vec();
        modes.insert(0, ("probe", &[]));
        let rounds = latency_rounds();
        println!(
            "\n{flag} under iperf3 pod n1p1 -> pod n2p1, {SECONDS} s per run, {rounds} rounds \
             of no probe / {} (order rotated)",
            modes.iter().map(|m| m.0).collect::<Vec<_>>().join(" / ")
        );
        let mut ok = true;
        for kind in [Kind::Tcp4, Kind::UdpFlood] {
            let mut without = Vec::new();
            let mut with: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
            for round in 0..rounds {
                for k in 0..=modes.len() {
                    match (k + round) % (modes.len() + 1) {
                        0 => without.push(self.measure(kind)),
                        m => with[m - 1].push(self.with_probe_flags(kind, modes[m - 1].1)),
                    }
                }
            }
            for ((label, _), runs) in modes.iter().zip(&with) {
                let ratios: Vec<f64> = runs.iter().zip(&without).map(|(w, n)| w / n).collect();
                let ratio = median(ratios.clone());
                let (lo, hi) = median_ci(ratios);
                println!(
                    "{}: {label} / no probe, per-round median {:.1}% (95% CI {:.1}% .. {:.1}%)",
                    kind.name(),
                    ratio * 100.0,
                    lo * 100.0,
                    hi * 100.0,
                );
                // The flag's own cost: against the default hooks of the same round.
                let added: Vec<f64> = runs.iter().zip(&with[0]).map(|(w, p)| w / p).collect();
                let added_ratio = median(added.clone());
                let (alo, ahi) = median_ci(added);
                if *label != "probe" {
                    println!(
                        "{}: {label} / probe, per-round median {:.1}% (95% CI {:.1}% .. {:.1}%)",
                        kind.name(),
                        added_ratio * 100.0,
                        alo * 100.0,
                        ahi * 100.0,
                    );
                }
                if *label == target {
                    let (kind_counts, r, base) = match against {
                        Target::TcpAgainstNoProbe => {
                            (matches!(kind, Kind::Tcp4), ratio, "no probe")
                        }
                        Target::BothAgainstProbe => (true, added_ratio, "probe"),
                    };
                    if kind_counts {
                        println!(
                            "  target: {label} / {base} >= {:.0}%: {}",
                            TARGET_RATIO * 100.0,
                            if r >= TARGET_RATIO { "met" } else { "MISSED" }
                        );
                        ok &= r >= TARGET_RATIO;
                    }
                }
            }
        }
        for kind in [Kind::Tcp4, Kind::UdpFlood] {
            for flags in self_runs {
                let mut args = vec!["--self"];
                args.extend_from_slice(flags);
                let (child, lines) = self.start_probe(&args);
                std::thread::sleep(SETTLE);
                self.measure(kind);
                let lines = stop_probe(child, lines);
                let nic = probe_tests::stage(probe_tests::summary(&lines), "nic", "eth0");
                let (skbs, segments) = (
                    nic["skbs"].as_f64().unwrap(),
                    nic["segments"].as_f64().unwrap(),
                );
                println!(
                    "\n{} with {}: {skbs} skbs, {segments} segments at node 2's eth0",
                    kind.name(),
                    args.join(" ")
                );
                let mut flag_ns = 0.0;
                for (name, runs, ns) in program_rows(&lines) {
                    let ours = programs.iter().any(|p| name.starts_with(p));
                    println!(
                        "  {name:<40} {runs:>10} runs {ns:>8.1} ns/run{}",
                        if ours {
                            format!("  ({flag})")
                        } else {
                            String::new()
                        }
                    );
                    if ours {
                        flag_ns += runs as f64 * ns;
                    }
                }
                println!(
                    "  {flag} programs: {:.0} ns per skb, {:.1} ns per segment",
                    flag_ns / skbs.max(1.0),
                    flag_ns / segments.max(1.0)
                );
                let summary = probe_tests::summary(&lines);
                if let Some(paused) = summary["latency_paused_s"].as_f64() {
                    println!(
                        "  --latency auto: the latency probes were paused {paused:.1} s of {:.1} s",
                        summary["elapsed_s"].as_f64().unwrap_or(f64::NAN)
                    );
                }
                if let Some(p) = probe_tests::summary(&lines).get("stage_latency") {
                    if !p.is_null() {
                        println!(
                            "  followed: {} sampled, {} decap, {} pod, {} queued, {} read",
                            p["sampled"], p["decap"], p["pod"], p["queued"], p["read"]
                        );
                    }
                    if let Some(attached) = p["attached_s"].as_f64() {
                        println!(
                            "  --stage-window {}: attached {attached:.2} s of {:.2} s",
                            p["window"].as_str().unwrap_or("?"),
                            summary["elapsed_s"].as_f64().unwrap_or(f64::NAN)
                        );
                    }
                }
            }
        }
        ok
    }

    /// Attaches one of the probe's hooks alone on node 2, as `probe watch`
    /// would (the library's own attach functions); detached when dropped.
    fn part(&self, which: &str) -> Box<dyn probe_user::hooks::Hook> {
        use probe_user::{hooks, kernel::netns::Netns, kernel::rtnl::RtnlSocket};
        let netns = Netns::named(&self.lab.node(2).netns).expect("node 2 netns");
        let links = netns
            .run(|| RtnlSocket::open().and_then(|mut s| s.links()))
            .unwrap()
            .unwrap();
        let link = |name: &str| links.iter().find(|l| l.name == name).unwrap().clone();
        match which {
            "nic" => {
                let cfg = hooks::nic::NicConfig {
                    vxlan_ports: vec![8472, 4789],
                    vnis: vec![(8472, 1)],
                    hook: hooks::nic::NicHookArg::Tc,
                    mode: hooks::nic::XdpModeArg::Auto,
                    tc_mode: hooks::TcMode::Tcx,
                    log: hooks::BpfLog::Off,
                };
                Box::new(hooks::nic::attach_nic(&netns, &link("eth0"), &cfg).unwrap())
            }
            "vxlan" => Box::new(
                hooks::vxlan::attach_vxlan_dev(
                    &netns,
                    &link("flannel.1"),
                    hooks::BpfLog::Off,
                    hooks::TcMode::Tcx,
                )
                .unwrap(),
            ),
            _ => {
                let btf = probe_user::kernel::btf::Btf::from_kernel().unwrap();
                let setup = hooks::drops::setup(&btf).unwrap();
                let mut hook = hooks::drops::load_drops(
                    setup,
                    &[],
                    &[8472, 4789],
                    netns.inum().unwrap(),
                    hooks::BpfLog::Off,
                )
                .unwrap();
                hooks::Hook::attach_tracing(&mut hook, &aya::Btf::from_sys_fs().unwrap()).unwrap();
                Box::new(hook)
            }
        }
    }

    /// The UDP flood with each of the probe's hooks attached alone, both tc
    /// programs together, and the whole probe: which one costs what (rounds
    /// rotated, medians of per-round ratios).
    pub fn parts(&self) -> bool {
        // "nic+vxlan": both tc programs without the drop probe; "probe": the
        // whole `probe watch`, for the sum against the parts.
        const MODES: [&str; 6] = ["none", "nic", "vxlan", "drops", "nic+vxlan", "probe"];
        let mut pps: Vec<Vec<f64>> = vec![Vec::new(); MODES.len()];
        for round in 0..ROUNDS {
            for k in 0..MODES.len() {
                let i = (k + round) % MODES.len();
                if MODES[i] == "probe" {
                    pps[i].push(self.with_probe(Kind::UdpFlood));
                    continue;
                }
                let held: Vec<Box<dyn probe_user::hooks::Hook>> = MODES[i]
                    .split('+')
                    .filter(|p| *p != "none")
                    .map(|p| self.part(p))
                    .collect();
                if !held.is_empty() {
                    std::thread::sleep(SETTLE);
                }
                pps[i].push(self.measure(Kind::UdpFlood));
                drop(held);
            }
        }
        println!(
            "\n{} with the probe's hooks alone, both tc programs, and the whole probe ({ROUNDS} rotated rounds):",
            Kind::UdpFlood.name()
        );
        for (i, mode) in MODES.iter().enumerate().skip(1) {
            let ratios: Vec<f64> = pps[i].iter().zip(&pps[0]).map(|(p, n)| p / n).collect();
            let (lo, hi) = median_ci(ratios.clone());
            println!(
                "  {mode:<6} / none: {:.1}% (95% CI {:.1}% .. {:.1}%)",
                median(ratios) * 100.0,
                lo * 100.0,
                hi * 100.0
            );
        }
        true
    }
}

/// (run count, run time ns) of the loaded empty program (BPF stats).
fn run_stats(ebpf: &Ebpf) -> (u64, u64) {
    let info = ebpf.program(PROG_EMPTY_TC).unwrap().info().unwrap();
    (info.run_count(), info.run_time().as_nanos() as u64)
}
