//! `probe watch`: attach, print a report per interval, print a summary on exit.

use std::{
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime},
};

use clap::Args;
use probe_common::{DEFAULT_VXLAN_PORTS, MAX_VNIS, MAX_VXLAN_PORTS};

use crate::{
    caps,
    drops::{self, DropHook},
    error::ProbeError,
    ledger::Names,
    model::{DevInfo, NicInfo, Report, ReportKind, Sample, Topology},
    netns::{self, Netns},
    probes::{
        self, HookObject, NicConfig, NicHook, NicHookArg, Unavailable, VxlanHook, XdpModeArg,
    },
    render, route,
    rtnl::{Link, LinkStats, RtnlSocket},
    tune::Snapshot,
};

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
    /// One JSON object per line instead of tables (schema in the README)
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
    /// Also time NET_RX softirqs (raise -> entry wait, run time, ksoftirqd share)
    /// and count NAPI polls per device. Three tracepoints per softirq run and one
    /// per poll: a few hundred ns each time (see BENCHMARKS.md), so off by default
    #[arg(long)]
    pub latency: bool,
    /// Also show where receive work runs: packets from the CPU that polled
    /// them to the CPU where the stack processed them (RPS/RFS), and socket
    /// reads from the CPU that queued the data to the reader's CPU, with the
    /// RFS hit rate. Two tracepoints per packet and two per read: for a
    /// diagnosis session, not for leaving on. Linux >= 6.5
    #[arg(long)]
    pub steering: bool,
}

impl WatchArgs {
    /// The capabilities a run with these flags needs (checked at start).
    pub fn requirements(&self) -> Vec<caps::Requirement> {
        caps::watch_requirements(self.netns.is_some() || !self.drop_netns.is_empty())
    }
}

/// What got attached. Dropping it detaches everything.
struct Attached {
    netns: Netns,
    rtnl: RtnlSocket,
    nic: Option<NicHook>,
    devs: Vec<VxlanHook>,
    drops: Option<DropHook>,
    latency: Option<crate::latency::LatencyHook>,
    steering: Option<crate::steering::SteerHook>,
    /// Where /proc/net/snmp is read: the --drop-netns namespaces, else the watched one.
    snmp_netns: Vec<Netns>,
    names: Names,
    /// Held while `--self` runs: BPF run-time statistics stay on until closed.
    bpf_stats: Option<std::os::fd::OwnedFd>,
    self_cost: bool,
    /// Time it took to load, verify and attach every probe.
    attach_ms: f64,
    /// The receive-path settings at attach time, for advice.
    settings: Option<Snapshot>,
    topology: Topology,
    started: Instant,
    last_device_check: Instant,
    /// Per VXLAN hook: after a failed re-attach, when to try again (each try
    /// loads and verifies the programs).
    devs_retry_at: Vec<Option<Instant>>,
}

pub fn run(args: WatchArgs) -> Result<(), ProbeError> {
    let json = args.json;
    session(
        &args,
        Period::SinceLast,
        |_| {},
        |report| emit(json, report),
    )
    .map(drop)
}

/// What each report of a session covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// The interval since the previous report (`watch`, `record`).
    SinceLast,
    /// Everything since attach, every interval (`serve`: Prometheus counters
    /// are totals).
    SinceAttach,
}

/// A report between two samples, with the advice its evidence supports.
fn report(kind: ReportKind, a: &Attached, earlier: &Sample, later: &Sample) -> Report {
    let mut r = Report::between(kind, &a.topology, earlier, later);
    if let Some(settings) = &a.settings {
        r.advice = crate::advice::advise(&r, settings);
    }
    r
}

/// Attaches, calls `on_attached` once every probe is attached, hands every
/// interval's report (covering `period`) and then the summary to `out` (which
/// returns false to stop early), detaches. Returns the settings snapshot taken
/// at attach time and the summary.
pub fn session(
    args: &WatchArgs,
    period: Period,
    on_attached: impl FnOnce(&Topology),
    mut out: impl FnMut(&Report) -> Result<bool, ProbeError>,
) -> Result<(Option<Snapshot>, Report), ProbeError> {
    // Registered before attaching: a signal during attach ends the run cleanly.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| ProbeError::Runtime(format!("cannot install signal handler: {e}")))?;
    }
    validate(args)?;
    let netns = match &args.netns {
        Some(name) => Netns::named(name)?,
        None => Netns::current(),
    };
    caps::check(&args.requirements())?;
    let mut attached = attach(args, netns)?;
    let first = sample(&mut attached)?;
    let baseline = first.attach_baseline();
    if period == Period::SinceAttach {
        // Totals start at zero with every hook listed, before the first interval.
        out(&report(ReportKind::Summary, &attached, &baseline, &first))?;
    }
    // Ready (the file, /readyz): attached, and counting from here.
    on_attached(&attached.topology);
    if let Some(path) = &args.ready_file {
        write_ready_file(path, &attached)?;
    }
    let mut previous = first;
    // Both were range-checked before attaching (cli::SecondsRange): these
    // conversions cannot fail, and checked ones keep it so.
    let seconds = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
    let interval = seconds(args.interval);
    let deadline = args
        .duration
        .and_then(|d| attached.started.checked_add(seconds(d)));
    let mut next_tick = attached.started + interval;
    loop {
        let now = Instant::now();
        let end = deadline.is_some_and(|d| now >= d) || stop.load(Ordering::Relaxed);
        if end {
            break;
        }
        if now >= attached.last_device_check + DEVICE_CHECK {
            attached.last_device_check = now;
            check_devices(&mut attached);
        }
        let wake = deadline.map_or(next_tick, |d| d.min(next_tick));
        if now < wake {
            std::thread::sleep((wake - now).min(Duration::from_millis(50)));
            continue;
        }
        if now >= next_tick {
            let current = sample(&mut attached)?;
            let r = match period {
                Period::SinceLast => report(ReportKind::Interval, &attached, &previous, &current),
                Period::SinceAttach => report(ReportKind::Summary, &attached, &baseline, &current),
            };
            let reader_gone = !out(&r)?;
            previous = current;
            next_tick += interval;
            if reader_gone {
                break;
            }
        }
    }
    let last = sample(&mut attached)?;
    if period == Period::SinceLast && last.uptime_s - previous.uptime_s >= args.interval / 2.0 {
        out(&report(ReportKind::Interval, &attached, &previous, &last))?;
    }
    let summary = report(ReportKind::Summary, &attached, &baseline, &last);
    out(&summary)?;
    if let Some(path) = &args.ready_file {
        let _ = std::fs::remove_file(path);
    }
    let settings = attached.settings.take();
    drop(attached); // detaches every link
    Ok((settings, summary))
}

/// How often the probe looks for watched VXLAN devices that were deleted or
/// recreated. A lookup by name (SIOCGIFINDEX) in the watched namespace: cheap.
const DEVICE_CHECK: Duration = Duration::from_millis(200);

/// Finds VXLAN devices that disappeared or were replaced by a device of the
/// same name (a flanneld restart), opens a gap for each, and attaches to the
/// successor, carrying the counters over.
fn check_devices(a: &mut Attached) {
    for i in 0..a.devs.len() {
        let (name, old_ifindex) = (a.devs[i].iface.clone(), a.devs[i].ifindex);
        let now_index = match a.netns.run(|| crate::rtnl::ifindex_of(&name)) {
            Ok(index) => index,
            Err(_) => continue,
        };
        if now_index == Some(old_ifindex) {
            continue;
        }
        let now_s = a.started.elapsed().as_secs_f64();
        let open = a
            .topology
            .gaps
            .iter()
            .rposition(|g| g.iface == name && g.reattached_s.is_none());
        let gap = match open {
            Some(gap) => gap,
            None => {
                eprintln!(
                    "probe: {name} (ifindex {old_ifindex}) is gone; its hooks went with it. \
                     Waiting for it to come back"
                );
                a.topology.gaps.push(crate::model::Gap {
                    stage: "vxlan",
                    iface: name.clone(),
                    lost_s: now_s,
                    reattached_s: None,
                    old_ifindex,
                    new_ifindex: None,
                });
                a.topology.gaps.len() - 1
            }
        };
        let Some(new_index) = now_index else {
            continue;
        };
        if a.devs_retry_at[i].is_some_and(|t| Instant::now() < t) {
            continue;
        }
        let link = match a.rtnl.links() {
            Ok(links) => links.into_iter().find(|l| l.ifindex == new_index),
            Err(_) => None,
        };
        let Some(link) = link else { continue };
        let mut hook = match probes::attach_vxlan_dev(&a.netns, &link) {
            Ok(hook) => hook,
            Err(e) => {
                // Perhaps not ready yet (still being set up): try again soon.
                if a.devs_retry_at[i].is_none() {
                    eprintln!(
                        "probe: cannot attach to the new {name} yet: {}",
                        first_line(&e)
                    );
                }
                a.devs_retry_at[i] = Some(Instant::now() + Duration::from_secs(1));
                continue;
            }
        };
        a.devs_retry_at[i] = None;
        if hook.carry_over(&a.devs[i]).is_err() {
            continue;
        }
        a.devs[i] = hook; // drops the old hook: its dead links close
        let g = &mut a.topology.gaps[gap];
        g.reattached_s = Some(a.started.elapsed().as_secs_f64());
        g.new_ifindex = Some(new_index);
        eprintln!(
            "probe: {name} is back (ifindex {new_index}); re-attached {:.2} s after it was found gone",
            g.reattached_s.unwrap() - g.lost_s
        );
    }
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

fn names(links: &[Link]) -> String {
    let mut names: Vec<_> = links.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    names.join(", ")
}

fn find<'a>(links: &'a [Link], name: &str, netns: &Netns) -> Result<&'a Link, ProbeError> {
    links
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| ProbeError::UnknownInterface {
            name: name.into(),
            netns: netns.label(),
            available: names(links),
        })
}

/// The VXLAN ports the XDP program matches: the given or default ones, plus
/// the destination ports of the watched devices.
pub fn vxlan_port_set(given: &[u16], devices: &[&Link]) -> Result<Vec<u16>, ProbeError> {
    let given: Vec<u16> = if given.is_empty() {
        DEFAULT_VXLAN_PORTS
            .iter()
            .copied()
            .filter(|p| *p != 0)
            .collect()
    } else {
        given.to_vec()
    };
    let mut ports: Vec<u16> = Vec::new();
    let device_ports = devices.iter().filter_map(|d| d.vxlan.and_then(|v| v.port));
    for port in given.into_iter().chain(device_ports) {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    if ports.len() > MAX_VXLAN_PORTS {
        return Err(ProbeError::Usage(format!(
            "at most {MAX_VXLAN_PORTS} VXLAN ports can be matched, got {ports:?} (given and from the watched devices)"
        )));
    }
    Ok(ports)
}

fn attach(args: &WatchArgs, netns: Netns) -> Result<Attached, ProbeError> {
    let started_attach = Instant::now();
    let mut rtnl = netns
        .run(RtnlSocket::open)?
        .map_err(|e| ProbeError::Runtime(format!("cannot open an rtnetlink socket: {e}")))?;
    let links = rtnl
        .links()
        .map_err(|e| ProbeError::Runtime(format!("cannot list interfaces: {e}")))?;

    let nic_name = match &args.iface {
        Some(name) => name.clone(),
        None => netns
            .run(route::default_route_iface)?
            .ok_or(ProbeError::NoDefaultRoute {
                netns: netns.label(),
            })?,
    };
    let nic = find(&links, &nic_name, &netns)?.clone();
    if nic.is_vxlan() {
        return Err(ProbeError::Usage(format!(
            "{} is a VXLAN device: --iface takes the NIC its packets arrive on (the underlay), \
             and VXLAN devices are watched with --vxlan-iface",
            nic.name
        )));
    }
    let devices: Vec<&Link> = if args.vxlan_ifaces.is_empty() {
        links.iter().filter(|l| l.is_vxlan()).collect()
    } else {
        args.vxlan_ifaces
            .iter()
            .map(|n| find(&links, n, &netns))
            .collect::<Result<_, _>>()?
    };
    if let Some(not_vxlan) = devices.iter().find(|d| !d.is_vxlan()) {
        let vxlan: Vec<&str> = links
            .iter()
            .filter(|l| l.is_vxlan())
            .map(|l| l.name.as_str())
            .collect();
        return Err(ProbeError::Usage(format!(
            "{} is not a VXLAN device (--vxlan-iface takes the overlay device, e.g. flannel.1); VXLAN devices in {}: {}",
            not_vxlan.name,
            netns.label(),
            if vxlan.is_empty() { "none".to_string() } else { vxlan.join(", ") }
        )));
    }
    let ports = vxlan_port_set(&args.vxlan_ports, &devices)?;
    // (port, VNI) of every watched device: the same VNI on another port is
    // another tunnel, which no watched device receives.
    let mut vnis: Vec<(u16, u32)> = Vec::new();
    for d in &devices {
        if let Some(v) = d.vxlan {
            if let (Some(port), Some(vni)) = (v.port, v.vni) {
                if !vnis.contains(&(port, vni)) {
                    vnis.push((port, vni));
                }
            }
        }
    }
    vnis.truncate(MAX_VNIS);

    // --drop-netns: resolved before anything is attached (bad names exit 2).
    let scope: Vec<Netns> = args
        .drop_netns
        .iter()
        .map(|n| Netns::host_or_named(n))
        .collect::<Result<_, _>>()?;
    let scope_inums: Vec<u32> = scope
        .iter()
        .map(|n| {
            n.inum().map_err(|e| {
                ProbeError::Runtime(format!("cannot identify netns {}: {e}", n.label()))
            })
        })
        .collect::<Result<_, _>>()?;

    let mut unavailable = Vec::new();
    let cfg = NicConfig {
        vxlan_ports: ports.clone(),
        vnis,
        hook: args.nic_hook,
        mode: args.xdp_mode,
    };
    let mut nic_hook = match probes::attach_nic(&netns, &nic, &cfg) {
        Ok(hook) => Some(hook),
        Err(reason) => {
            unavailable.push(Unavailable {
                stage: "nic",
                iface: nic.name.clone(),
                reason,
            });
            None
        }
    };
    let mut dev_hooks = Vec::new();
    for dev in &devices {
        match probes::attach_vxlan_dev(&netns, dev) {
            Ok(hook) => dev_hooks.push(hook),
            Err(reason) => unavailable.push(Unavailable {
                stage: "vxlan",
                iface: dev.name.clone(),
                reason,
            }),
        }
    }
    // The tracing probes. Memory: the kernel's BTF is ~5 MB that parse to
    // ~10 MB, and each object load has a large short-lived allocation of its
    // own. So: read what the probes need from our own compact parse, free it,
    // load the objects, and only then let aya parse the BTF for the tp_btf
    // attach: never two of these at once (peak RSS, BENCHMARKS.md).
    let (drop_setup, latency_setup, steer_setup) = match crate::btf::Btf::from_kernel() {
        Ok(btf) => (
            drops::setup(&btf),
            crate::latency::setup(&btf),
            crate::steering::setup(&btf),
        ),
        Err(e) => (Err(e.clone()), Err(e.clone()), Err(e)),
    };
    let nic_netns_inum = netns.inum().unwrap_or(0);
    let mut drop_hook =
        drop_setup.and_then(|setup| drops::load_drops(setup, &scope_inums, &ports, nic_netns_inum));
    let mut latency_hook = if args.latency {
        latency_setup
            .and_then(crate::latency::load_latency)
            .map(Some)
    } else {
        Ok(None)
    };
    let mut steer_hook = if args.steering {
        let nic_netns = netns
            .inum()
            .map_err(|e| format!("cannot identify netns {}: {e}", netns.label()));
        steer_setup
            .and_then(|offsets| {
                crate::steering::load_steering(offsets, nic.ifindex, nic_netns?, &scope_inums)
            })
            .map(Some)
    } else {
        Ok(None)
    };
    if drop_hook.is_ok() || matches!(latency_hook, Ok(Some(_))) || matches!(steer_hook, Ok(Some(_)))
    {
        match aya::Btf::from_sys_fs() {
            Ok(btf) => {
                if let Ok(hook) = &mut drop_hook {
                    if let Err(e) = hook.attach(&btf) {
                        drop_hook = Err(e);
                    }
                }
                if let Ok(Some(hook)) = &mut latency_hook {
                    if let Err(e) = hook.attach(&btf) {
                        latency_hook = Err(e);
                    }
                }
                if let Ok(Some(hook)) = &mut steer_hook {
                    if let Err(e) = hook.attach(&btf) {
                        steer_hook = Err(e);
                    }
                }
            }
            Err(e) => {
                let e = format!("reading the kernel's BTF: {e}");
                drop_hook = Err(e.clone());
                latency_hook = Err(e.clone());
                steer_hook = Err(e);
            }
        }
    }
    // Give the freed parse buffers back to the system.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    let mut tracing_stage = |stage: &'static str, reason: Option<String>| {
        if let Some(reason) = reason {
            unavailable.push(Unavailable {
                stage,
                iface: "*".into(),
                reason,
            });
        }
    };
    tracing_stage("drops", drop_hook.as_ref().err().cloned());
    tracing_stage("softirq", latency_hook.as_ref().err().cloned());
    tracing_stage("steering", steer_hook.as_ref().err().cloned());
    let steer_hook = steer_hook.ok().flatten();
    let drop_hook = drop_hook.ok();
    let latency_hook = latency_hook.ok().flatten();
    if nic_hook.is_none() && dev_hooks.is_empty() && drop_hook.is_none() {
        let reasons: Vec<_> = unavailable
            .iter()
            .map(|u| format!("{} on {}: {}", u.stage, u.iface, u.reason))
            .collect();
        return Err(ProbeError::Runtime(format!(
            "no probe could be attached: {}",
            reasons.join("; ")
        )));
    }
    // Read back the XDP mode the kernel chose (auto picks native where it can).
    let after = rtnl
        .links()
        .map_err(|e| ProbeError::Runtime(format!("cannot list interfaces: {e}")))?;
    if let Some(hook) = nic_hook.as_mut() {
        if let Some(link) = after.iter().find(|l| l.ifindex == hook.ifindex) {
            hook.set_hook_from(link);
        }
        if let Some(id) = hook.foreign_xdp {
            eprintln!(
                "probe: {} already has an XDP program (id {id}) that is not ours; \
                 leaving it alone and counting the NIC stage at TCX ingress instead",
                hook.iface
            );
        }
    }
    for u in unavailable.iter_mut() {
        // The whole reason (a verifier log can be long) goes to stderr once;
        // reports carry its first line.
        eprintln!(
            "probe: stage {} on {} unavailable: {}",
            u.stage, u.iface, u.reason
        );
        u.reason = first_line(&u.reason);
    }
    let topology = Topology {
        netns: netns.label(),
        nic: nic_hook.as_ref().map(|h| NicInfo {
            iface: h.iface.clone(),
            hook: h.hook.clone(),
            queue_slots: h.queue_slots,
            vnis: h.vnis.clone(),
        }),
        vxlan_devs: dev_hooks
            .iter()
            .map(|h| DevInfo {
                iface: h.iface.clone(),
                vni: h.vni,
                port: h.port,
            })
            .collect(),
        unavailable,
        reasons: drop_hook.as_ref().map(|h| h.reasons.clone()),
        latency: latency_hook.is_some(),
        steering: steer_hook.is_some(),
        drop_scope: args.drop_netns.clone(),
        gaps: Vec::new(),
    };
    let mut bpf_stats = None;
    if args.self_cost {
        match aya::sys::enable_stats(aya::sys::Stats::RunTime) {
            Ok(fd) => bpf_stats = Some(fd),
            Err(e) => eprintln!(
                "probe: --self: cannot enable BPF run-time statistics ({e}); reporting CPU and memory only"
            ),
        }
    }
    let snmp_netns = if scope.is_empty() {
        vec![match netns.name() {
            Some(name) => Netns::named(name)?,
            None => Netns::current(),
        }]
    } else {
        scope
    };
    let dev_hooks_len = dev_hooks.len();
    let attached = Attached {
        netns,
        rtnl,
        nic: nic_hook,
        devs: dev_hooks,
        drops: drop_hook,
        latency: latency_hook,
        steering: steer_hook,
        snmp_netns,
        names: Names::default(),
        bpf_stats,
        self_cost: args.self_cost,
        attach_ms: started_attach.elapsed().as_secs_f64() * 1e3,
        settings: None,
        topology,
        started: Instant::now(),
        last_device_check: Instant::now(),
        devs_retry_at: vec![None; dev_hooks_len],
    };
    // Settings are read after attaching (not counted in attach_ms); failing
    // to read them only costs the advice.
    let mut devices: Vec<&Link> = vec![&nic];
    devices.extend(
        links
            .iter()
            .filter(|l| attached.devs.iter().any(|d| d.ifindex == l.ifindex)),
    );
    let mut attached = attached;
    attached.settings = crate::tune::snapshot(&attached.netns, &devices).ok();
    if !args.json {
        eprintln!(
            "probe: attached in {:.0} ms (netns {}): {}",
            attached.attach_ms,
            attached.netns.label(),
            describe_hooks(&attached.topology)
        );
    }
    Ok(attached)
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

fn describe_hooks(t: &Topology) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &t.nic {
        parts.push(format!("{} on {}", n.hook, n.iface));
    }
    for d in &t.vxlan_devs {
        parts.push(format!("tcx ingress+egress on {}", d.iface));
    }
    if t.latency {
        parts.push("tp_btf/softirq_raise+entry+exit, tp_btf/napi_poll".to_string());
    }
    if t.steering {
        parts.push(
            "tp_btf/napi_gro_receive_entry+netif_receive_skb+sk_data_ready+sock_recv_length"
                .to_string(),
        );
    }
    if t.reasons.is_some() {
        parts.push(if t.drop_scope.is_empty() {
            "tp_btf/kfree_skb (drops in every netns)".to_string()
        } else {
            format!("tp_btf/kfree_skb (drops in {})", t.drop_scope.join(", "))
        });
    }
    parts.join(", ")
}

fn sample(a: &mut Attached) -> Result<Sample, ProbeError> {
    let links = a
        .rtnl
        .links()
        .map_err(|e| ProbeError::Runtime(format!("cannot read interface statistics: {e}")))?;
    let stats = |ifindex: u32| {
        links
            .iter()
            .find(|l| l.ifindex == ifindex)
            .and_then(|l| l.stats)
    };
    // A recreated device's counters start from zero: add its predecessors'.
    let devs_kernel: Vec<Option<LinkStats>> = a
        .devs
        .iter_mut()
        .map(|h| h.kernel_stats(stats(h.ifindex)))
        .collect();
    let nic = a
        .nic
        .as_ref()
        .map(|h| h.read())
        .transpose()
        .map_err(ProbeError::Runtime)?;
    let devs = a
        .devs
        .iter()
        .map(|h| h.read())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ProbeError::Runtime)?;
    let drops = a
        .drops
        .as_ref()
        .map(|h| h.read())
        .transpose()
        .map_err(ProbeError::Runtime)?;
    let latency = a
        .latency
        .as_ref()
        .map(|h| h.read())
        .transpose()
        .map_err(ProbeError::Runtime)?;
    let napi_keys: Vec<(u32, u32)> = latency
        .iter()
        .flat_map(|l| l.napi.keys().map(|(k, _)| (k.netns, k.ifindex)))
        .collect();
    let drop_keys: Vec<(u32, u32)> = drops
        .iter()
        .flat_map(|d| {
            d.keyed
                .keys()
                .map(|k| (k.netns, k.ifindex))
                .chain(d.flows.keys().map(|k| (k.netns, 0)))
        })
        .collect();
    refresh_names(&mut a.names, drop_keys.into_iter().chain(napi_keys));
    // Node-wide and per-netns kernel counters; unreadable ones are left out
    // of the cross-check rather than ending the run.
    let softnet = crate::procfs::read_softnet().unwrap_or_default();
    let nic_queue_drops = match &a.nic {
        Some(h) => a
            .netns
            .run(|| crate::ethtool::stats(&h.iface))
            .ok()
            .and_then(Result::ok)
            .map(|s| crate::ethtool::queue_drop_stats(&s))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let snmp = a
        .snmp_netns
        .iter()
        .filter_map(|n| {
            let s = n.run(crate::procfs::read_snmp).ok()?.ok()?;
            Some((n.label(), s))
        })
        .collect();
    Ok(Sample {
        wall: Some(SystemTime::now()),
        uptime_s: a.started.elapsed().as_secs_f64(),
        nic,
        nic_kernel: a.nic.as_ref().and_then(|h| stats(h.ifindex)),
        devs,
        devs_kernel,
        drops,
        nic_queue_drops,
        softnet,
        snmp,
        names: a.names.clone(),
        self_sample: a.self_cost.then(|| self_sample(a)),
        latency,
        steering: a
            .steering
            .as_ref()
            .map(|h| h.read())
            .transpose()
            .map_err(ProbeError::Runtime)?,
    })
}

fn self_sample(a: &Attached) -> crate::selfcost::SelfSample {
    let (cpu_s, rss_kib, peak_rss_kib) = crate::selfcost::process_usage("self");
    let mut programs = Vec::new();
    if a.bpf_stats.is_some() {
        programs.extend(a.hooks().flat_map(|h| h.program_stats()));
    }
    crate::selfcost::SelfSample {
        cpu_s,
        rss_kib,
        peak_rss_kib,
        programs,
    }
}

/// Names the namespaces and devices that drops and NAPI polls were seen in
/// (netns inode, ifindex). Interface names are listed once per namespace and
/// again only when an unknown one appears.
fn refresh_names(names: &mut Names, seen: impl Iterator<Item = (u32, u32)> + Clone) {
    let missing_netns = seen
        .clone()
        .any(|(n, _)| n != 0 && !names.netns.contains_key(&n));
    if missing_netns || names.netns.is_empty() {
        names.netns = netns::known_namespaces();
    }
    let mut listed = std::collections::BTreeSet::new();
    for (inum, ifindex) in seen {
        if ifindex == 0 || names.ifaces.contains_key(&(inum, ifindex)) || !listed.insert(inum) {
            continue;
        }
        let Some(name) = names.netns.get(&inum) else {
            continue;
        };
        let Ok(ns) = Netns::host_or_named(name) else {
            continue;
        };
        if let Ok(Ok(links)) = ns.run(|| RtnlSocket::open().and_then(|mut s| s.links())) {
            for l in links {
                names.ifaces.insert((inum, l.ifindex), l.name);
            }
        }
    }
}

/// Prints one report. Ok(false) when the reader has gone (`probe watch | head`):
/// a normal way to stop, which ends the run like SIGINT.
pub fn emit(json: bool, report: &Report) -> Result<bool, ProbeError> {
    let text = if json {
        serde_json::to_string(report).map_err(|e| ProbeError::Runtime(e.to_string()))? + "\n"
    } else {
        render::human(report) + "\n"
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(ProbeError::Runtime(format!("writing output: {e}"))),
    }
}

impl Attached {
    /// Every hook, in path order.
    fn hooks(&self) -> impl Iterator<Item = &dyn HookObject> {
        let nic = self.nic.iter().map(|h| h as &dyn HookObject);
        let devs = self.devs.iter().map(|h| h as &dyn HookObject);
        let drops = self.drops.iter().map(|h| h as &dyn HookObject);
        let latency = self.latency.iter().map(|h| h as &dyn HookObject);
        let steering = self.steering.iter().map(|h| h as &dyn HookObject);
        nic.chain(devs).chain(drops).chain(latency).chain(steering)
    }

    /// Kernel ids of every program this run loaded.
    fn program_ids(&self) -> Vec<u32> {
        self.hooks().flat_map(|h| h.program_ids()).collect()
    }
}

/// `{pid, attach_ms, netns, hooks, unavailable, program_ids}`: written once
/// every probe is attached.
fn write_ready_file(path: &std::path::Path, a: &Attached) -> Result<(), ProbeError> {
    let t = &a.topology;
    let body = serde_json::json!({
        "pid": std::process::id(),
        "attach_ms": a.attach_ms,
        "netns": t.netns,
        "hooks": describe_hooks(t),
        "unavailable": t.unavailable,
        "program_ids": a.program_ids(),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string() + "\n")
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            ProbeError::Runtime(format!("cannot write --ready-file {}: {e}", path.display()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtnl::VxlanInfo;

    fn vxlan_dev(port: u16) -> Link {
        Link {
            kind: Some("vxlan".into()),
            vxlan: Some(VxlanInfo {
                vni: Some(1),
                port: Some(port),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn default_ports_plus_device_ports() {
        let d = vxlan_dev(4790);
        assert_eq!(vxlan_port_set(&[], &[&d]).unwrap(), vec![8472, 4789, 4790]);
        let flannel = vxlan_dev(8472);
        assert_eq!(vxlan_port_set(&[], &[&flannel]).unwrap(), vec![8472, 4789]);
        assert_eq!(
            vxlan_port_set(&[9000], &[&flannel]).unwrap(),
            vec![9000, 8472]
        );
    }

    #[test]
    fn too_many_ports_is_a_usage_error() {
        let e = vxlan_port_set(&[1, 2, 3, 4, 5], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
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
