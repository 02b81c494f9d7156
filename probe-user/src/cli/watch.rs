//! `probe watch`: attach, print a report per interval, print a summary on exit.

use std::{io::Write, path::PathBuf};

use clap::Args;
use probe_common::MAX_VXLAN_PORTS;

use crate::{
    error::ProbeError,
    hooks::{
        latency::LatencyMode,
        nic::{NicHookArg, XdpModeArg},
        BpfLog, TcMode,
    },
    kernel::caps,
    session::{self, Period, SessionConfig},
};
use probe_model::model::Report;

#[derive(Debug, Args)]
#[command(
    about = "Attach the probes and stream per-interval counts",
    long_about = "Attach the probes and stream per-interval counts.\n\n\
        Units: an skb is what the kernel passes along; a segment is a wire packet. GRO and\n\
        GSO put many TCP segments in one skb, so every count says which it is, and every\n\
        balance compares segments with segments. GRO is a device's segments per skb.\n\n\
        Stages: `nic` counts what the NIC receives (tc ingress by default, after the driver\n\
        and GRO: it changes nothing in the driver; --nic-hook xdp counts wire frames before\n\
        GRO, but XDP changes how many drivers receive), per RX queue, per CPU, by class\n\
        (non_ip / ipv4 / ipv6 / vxlan) and per (UDP port, VNI) with the class of the inner\n\
        frame; `vxlan` counts the decapsulated packets entering each VXLAN device. The VXLAN\n\
        table's OUTER and INNER are segments in and out of the overlay. KERNEL_RX is the\n\
        device's own rx_packets over the same interval, to check the probe against.\n\n\
        The LEDGER follows the receive path stage by stage (nic, backlog, ip, vxlan, bridge,\n\
        socket, other), in segments: what entered, drops by the kernel's drop reason\n\
        (skb:kfree_skb) with segments/skbs and the kernel counter that should agree, and\n\
        stage counters (stats64, ethtool -S, softnet_stat). Then transmit-side drops (TX)\n\
        and drops that lose no data (BENIGN: copies TCP already had, queues freed by close),\n\
        the VXLAN balance (outer - inner = lost, explained by drops of outer packets), and a\n\
        verdict naming the stage that lost the most and its top reason, or `no loss`. Drops\n\
        are counted in every namespace of the node unless --drop-netns narrows it.\n\n\
        With --latency, SOFTIRQ shows how long NET_RX waited after being raised and how long it ran\n\
        (p50/p90/p99/max; log2 histograms in the summary), and how much ran in ksoftirqd.\n\
        NAPI shows each device's polls per CPU and the polls that used the whole budget.\n\n\
        Examples:\n  \
        probe watch                                  # default-route NIC + every VXLAN device\n  \
        probe watch --iface eth0 --vxlan-iface flannel.1 --interval 5\n  \
        probe watch --netns node2 --json --duration 30 > run.jsonl\n  \
        probe watch --drop-netns host --drop-netns cni-5f2e   # drops in these namespaces only",
    after_help = "Exit status: 0 after --duration, SIGINT or SIGTERM (a summary is printed first);\n\
        2 for bad usage (unknown interface or namespace); 1 for run-time failures\n\
        (missing privilege, nothing could be attached)."
)]
pub struct WatchArgs {
    /// The node's NIC (the underlay) [default: the interface of the default route]
    #[arg(long, value_name = "NIC")]
    pub iface: Option<String>,
    /// VXLAN device to attach TCX to; repeatable [default: every VXLAN device]
    #[arg(long = "vxlan-iface", value_name = "DEV")]
    pub vxlan_ifaces: Vec<String>,
    /// Network namespace (a name under /run/netns) to attach in [default: the current one]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// Seconds between reports: 0.1 to 86400 (1 day)
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    pub interval: f64,
    /// Stop after this many seconds: above 0, at most 31536000 (365 days)
    /// [default: run until SIGINT/SIGTERM]
    #[arg(long, value_name = "S")]
    pub duration: Option<f64>,
    /// One JSON object per line instead of tables (schema: docs/json.md)
    #[arg(long)]
    pub json: bool,
    /// Write this file once every probe is attached (for scripts and tests)
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<PathBuf>,
    /// UDP destination port that carries VXLAN; repeatable, at most 4
    /// [default: 8472 and 4789, plus the ports of the watched VXLAN devices]
    #[arg(long = "vxlan-port", value_name = "PORT")]
    pub vxlan_ports: Vec<u16>,
    /// Where the NIC stage counts: `tc` (TCX ingress, after the driver and
    /// GRO: changes nothing in the driver) or `xdp` (every wire frame before
    /// GRO, but attaching XDP changes how many drivers receive: veth turns
    /// off its peer's TSO, virtio_net its guest offloads, mlx5/ice/i40e/
    /// ixgbe/ena reset their rings; see the README)
    #[arg(long, value_enum, default_value_t = NicHookArg::Tc)]
    pub nic_hook: NicHookArg,
    /// XDP attach mode at the NIC, with --nic-hook xdp
    #[arg(long, value_enum, default_value_t = XdpModeArg::Auto)]
    pub xdp_mode: XdpModeArg,
    /// Count drops (and, with --steering, socket reads) only in this network
    /// namespace (a name under /run/netns, or `host`); repeatable, at most 16
    /// [default: every namespace of the node]
    #[arg(long = "drop-netns", value_name = "NAME")]
    pub drop_netns: Vec<String>,
    /// Also report what the probe costs: its CPU and memory, and each of its
    /// BPF programs' runs and ns per run (turns on the kernel's BPF run-time
    /// statistics while running, which adds ~20-40 ns to every BPF program
    /// run on the node)
    #[arg(long = "self")]
    pub self_cost: bool,
    /// When to time NET_RX softirqs (raise -> entry wait, run time, ksoftirqd
    /// share) and count NAPI polls per device. Their cost follows how often
    /// NET_RX runs (three tracepoints per run, one per poll: see BENCHMARKS.md),
    /// so `auto` attaches them but pauses them while the busiest CPU runs NET_RX
    /// more than --latency-max-runs times a second (a NIC that batches stays
    /// below; a softirq per packet does not), `on` keeps them attached, `off`
    /// never attaches them. `--latency` alone means `on`
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = LatencyMode::Auto,
          num_args = 0..=1, default_missing_value = "on")]
    pub latency: LatencyMode,
    /// The same as --latency off
    #[arg(long, conflicts_with = "latency")]
    pub no_latency: bool,
    /// With --latency auto: NET_RX runs per second on the busiest CPU above which
    /// the softirq and NAPI probes pause (at about 0.6 µs per run, 10000 runs/s
    /// cost about 0.6% of that CPU)
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub latency_max_runs: u64,
    /// With --latency: time one NET_RX run in N per CPU (every run is still
    /// counted). The untimed runs skip the clock and comm reads that make up
    /// most of the probes' cost; the histograms then hold one run in N
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub latency_sample: u32,
    /// Also show where receive work runs: packets from the CPU that polled
    /// them to the CPU where the stack processed them (RPS/RFS), and socket
    /// reads from the CPU that queued the data to the reader's CPU, with the
    /// RFS hit rate. Two tracepoints per packet and two per read: for a
    /// diagnosis session, not for leaving on. Linux >= 6.5
    #[arg(long)]
    pub steering: bool,
    /// Also time received packets stage by stage: one packet in N (at the
    /// NIC, per CPU) is followed by its buffer through the VXLAN device and
    /// the pod's device to its socket, and the read that takes it. Reports,
    /// per transition (nic->decap->pod->queued->read), a histogram with
    /// p50/p90/p99/max and how many followed packets reached each stage. One
    /// tracepoint per packet per device, one per socket enqueue and read. The
    /// socket stages need Linux >= 6.5
    #[arg(long)]
    pub stage_latency: bool,
    /// With --stage-latency: follow one packet in N
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub stage_sample: u32,
    /// With --stage-latency: attach its probes ON seconds in every EVERY
    /// (`always`: all the time). Their cost is a program run per packet per
    /// device, followed or not, so it is this fraction of the always-on
    /// cost. A window ends by following no new packet, then detaches once
    /// the followed ones are read (at most 1 s later); reports say how long
    /// the probes were attached (`attached_s`)
    #[arg(long, value_name = "ON/EVERY", default_value = "1/10", value_parser = parse_stage_window)]
    pub stage_window: StageWindow,
    /// Print the kernel programs' diagnostics on stderr as `probe[bpf] ...`
    /// lines (VXLAN traffic no watched device owns, RX queues or drop reasons
    /// beyond the counter tables). Off: the verifier removes the log code, so
    /// it costs nothing per packet
    #[arg(long)]
    pub debug_bpf: bool,
    /// How the tc hooks (the NIC's by default, and the VXLAN devices') attach:
    /// `auto` uses TCX and falls back to a cls_bpf filter on the clsact qdisc
    /// where the kernel has no TCX (Linux < 6.6); `tcx` and `legacy` force one.
    /// The legacy filter runs first (priority 1) and changes no verdict;
    /// `probe cleanup` removes filters a killed probe left
    #[arg(long, value_enum, default_value_t = TcMode::Auto)]
    pub tc_mode: TcMode,
}

impl WatchArgs {
    /// The capabilities a run with these flags needs (checked at start).
    pub fn requirements(&self) -> Vec<caps::Requirement> {
        caps::watch_requirements(self.netns.is_some() || !self.drop_netns.is_empty())
    }
}

impl WatchArgs {
    /// The session these flags describe, once their values are checked
    /// (usage errors, exit status 2).
    pub fn config(&self) -> Result<SessionConfig, ProbeError> {
        validate(self)?;
        Ok(SessionConfig {
            netns: self.netns.clone(),
            iface: self.iface.clone(),
            vxlan_ifaces: self.vxlan_ifaces.clone(),
            vxlan_ports: self.vxlan_ports.clone(),
            nic_hook: self.nic_hook,
            xdp_mode: self.xdp_mode,
            tc_mode: self.tc_mode,
            drop_netns: self.drop_netns.clone(),
            latency: if self.no_latency {
                LatencyMode::Off
            } else {
                self.latency
            },
            latency_max_runs: self.latency_max_runs,
            latency_sample: self.latency_sample,
            steering: self.steering,
            stage_latency: self.stage_latency.then_some(self.stage_sample),
            stage_window: self.stage_window.0,
            trace_magic: None,
            self_cost: self.self_cost,
            bpf_log: if self.debug_bpf {
                BpfLog::Debug
            } else {
                BpfLog::Off
            },
            interval: self.interval,
            duration: self.duration,
            ready_file: self.ready_file.clone(),
            on_event: Some(if self.json {
                crate::notice::event_quiet
            } else {
                crate::notice::event
            }),
        })
    }
}

pub fn run(args: WatchArgs) -> Result<(), ProbeError> {
    let config = args.config()?;
    let mut output = crate::output::writer::Output::stdout(args.json);
    let result = session::run(
        &config,
        Period::SinceLast,
        |_| {},
        |report| output.emit(report),
    );
    let written = output.finish();
    result.and(written)
}

/// Checks the flags' values before anything is opened or attached (usage
/// errors, exit status 2). The ranges of --interval and --duration
/// (`cli::INTERVAL`, `cli::DURATION`) keep `session`'s conversions to
/// `Duration` and `Instant` from overflowing.
pub(crate) fn validate(args: &WatchArgs) -> Result<(), ProbeError> {
    super::INTERVAL.check(args.interval)?;
    if let Some(d) = args.duration {
        super::DURATION.check(d)?;
    }
    if args.drop_netns.len() > probe_common::drops::MAX_SCOPE_NETNS {
        return Err(ProbeError::Usage(format!(
            "--drop-netns is given {} times; at most {} namespaces",
            args.drop_netns.len(),
            probe_common::drops::MAX_SCOPE_NETNS
        )));
    }
    if args.vxlan_ports.contains(&0) {
        return Err(ProbeError::Usage(
            "--vxlan-port 0 is not a UDP port: give a port from 1 to 65535".into(),
        ));
    }
    let mut ports = args.vxlan_ports.clone();
    ports.sort_unstable();
    ports.dedup();
    if ports.len() > MAX_VXLAN_PORTS {
        return Err(ProbeError::Usage(format!(
            "--vxlan-port is given {} different ports; at most {MAX_VXLAN_PORTS}",
            ports.len()
        )));
    }
    Ok(())
}

/// Prints one report. Ok(false) when the reader has gone (`probe watch | head`):
/// a normal way to stop, which ends the run like SIGINT.
pub fn emit(json: bool, report: &Report) -> Result<bool, ProbeError> {
    let text = crate::output::writer::format(json, report)?;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(ProbeError::Runtime(format!("writing output: {e}"))),
    }
}

/// `--stage-window`: the probes' (ON, EVERY) seconds; None: always attached.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StageWindow(pub Option<(f64, f64)>);

/// `--stage-window`'s value: "ON/EVERY" in seconds (ON <= EVERY; equal
/// means always), or "always".
fn parse_stage_window(text: &str) -> Result<StageWindow, String> {
    if text == "always" {
        return Ok(StageWindow(None));
    }
    let bad = || "expected ON/EVERY in seconds (e.g. 1/10), or always".to_string();
    let (on, every) = text.split_once('/').ok_or_else(bad)?;
    let on: f64 = on.trim().parse().map_err(|_| bad())?;
    let every: f64 = every.trim().parse().map_err(|_| bad())?;
    if !(0.1..=3600.0).contains(&on) || !(0.1..=3600.0).contains(&every) {
        return Err("each part must be 0.1 to 3600 seconds".into());
    }
    if on > every {
        return Err("ON must not exceed EVERY".into());
    }
    Ok(StageWindow((on < every).then_some((on, every))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stage_window_takes_on_every_or_always() {
        let parse = |t| parse_stage_window(t).map(|w| w.0);
        assert_eq!(parse("1/5"), Ok(Some((1.0, 5.0))));
        assert_eq!(parse("0.5/10"), Ok(Some((0.5, 10.0))));
        assert_eq!(parse("always"), Ok(None));
        assert_eq!(parse("5/5"), Ok(None), "attached all the time");
        for bad in ["5", "1/", "x/5", "6/5", "0/5", "1/99999"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn interval_and_duration_are_checked() {
        use clap::Parser;
        let parse = |argv: &[&str]| {
            crate::cli::Cli::try_parse_from(argv).map(|c| match c.command {
                crate::cli::Command::Watch(w) => w,
                other => panic!("not watch: {other:?}"),
            })
        };
        let ok = parse(&["probe", "watch", "--interval", "0.5", "--duration", "2"]).unwrap();
        assert!(validate(&ok).is_ok());
        let bad = parse(&["probe", "watch", "--interval", "0"]).unwrap();
        assert_eq!(validate(&bad).unwrap_err().exit_code(), 2);
        let bad = parse(&["probe", "watch", "--duration=-1"]).unwrap();
        assert_eq!(validate(&bad).unwrap_err().exit_code(), 2);
        assert!(parse(&["probe", "watch", "--xdp-mode", "bogus"]).is_err());
    }
}
