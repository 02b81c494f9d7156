//! A session: attach every hook a configuration asks for, sample the
//! kernel's counters every interval into a `Sample`, hand each period's
//! `Report` to the caller (`watch`, `serve`, `record`), follow devices that
//! come and go, and detach on exit. Resolved once from the flags
//! (`SessionConfig`); nothing here knows about the command line.

mod attach;
mod governor;
mod names;
mod reattach;
mod sample;
mod stage_window;
mod targets;

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

pub use targets::{nic_link, vxlan_port_set};

use crate::{
    error::ProbeError,
    hooks::{
        drops::DropHook,
        latency::{LatencyHook, LatencyMode},
        nic::{NicHook, NicHookArg, XdpModeArg},
        stage_latency::StageHook,
        steering::SteerHook,
        vxlan::VxlanHook,
        BpfLog, BpfLogReader, Hook, TcMode,
    },
    kernel::caps,
    kernel::netns::Netns,
    kernel::rtnl::RtnlSocket,
};
use probe_model::{
    model::{Report, ReportKind, Sample, Topology},
    names::Names,
    settings::Snapshot,
};

/// What to watch and how, resolved from `watch`'s flags (also `serve`'s
/// and `record`'s), already validated.
#[derive(Clone, Debug, Default)]
pub struct SessionConfig {
    /// A network namespace under /run/netns to attach in; None: this one.
    pub netns: Option<String>,
    /// The NIC; None: the interface of the default route.
    pub iface: Option<String>,
    /// VXLAN devices; empty: every device of kind vxlan.
    pub vxlan_ifaces: Vec<String>,
    pub vxlan_ports: Vec<u16>,
    pub nic_hook: NicHookArg,
    pub xdp_mode: XdpModeArg,
    /// TCX, or legacy tc where the kernel lacks it.
    pub tc_mode: TcMode,
    /// Namespaces whose drops count; empty: every namespace.
    pub drop_netns: Vec<String>,
    pub latency: LatencyMode,
    /// `--latency auto`: NET_RX runs per second on the busiest CPU above
    /// which the latency probes pause.
    pub latency_max_runs: u64,
    /// Time one NET_RX run in this many (`--latency-sample`).
    pub latency_sample: u32,
    pub steering: bool,
    /// `--stage-latency`: follow one received packet in this many; None: off.
    pub stage_latency: Option<u32>,
    /// `--stage-window`: the stage probes attached ON of every EVERY
    /// seconds; None: all the time (and always for `probe trace`).
    pub stage_window: Option<(f64, f64)>,
    /// `probe trace`: follow the packets carrying this signature (and their
    /// drops) instead of sampling.
    pub trace_magic: Option<u64>,
    pub self_cost: bool,
    /// The kernel programs' diagnostics (`--debug-bpf`).
    pub bpf_log: BpfLog,
    /// Seconds between reports, and the run's length (None: until a signal).
    pub interval: f64,
    pub duration: Option<f64>,
    pub ready_file: Option<PathBuf>,
    /// No human-readable lines on stderr (JSON output).
    pub quiet: bool,
}

impl SessionConfig {
    /// The capabilities a session with this configuration needs.
    pub fn requirements(&self) -> Vec<caps::Requirement> {
        caps::watch_requirements(self.netns.is_some() || !self.drop_netns.is_empty())
    }
}

/// An attached session. Dropping it detaches everything.
pub struct Session {
    pub(crate) netns: Netns,
    pub(crate) rtnl: RtnlSocket,
    pub(crate) nic: Option<NicHook>,
    pub(crate) devs: Vec<VxlanHook>,
    pub(crate) drops: Option<DropHook>,
    pub(crate) latency: Option<LatencyHook>,
    pub(crate) steering: Option<SteerHook>,
    pub(crate) stage_latency: Option<StageHook>,
    /// Where the protocol counters (/proc/net/snmp, snmp6, netstat) are
    /// read: the --drop-netns namespaces; None: every named one and `host`.
    pub(crate) snmp_netns: Option<Vec<Netns>>,
    pub(crate) names: Names,
    /// Held while `--self` runs: BPF run-time statistics stay on until closed.
    pub(crate) bpf_stats: Option<std::os::fd::OwnedFd>,
    pub(crate) self_cost: bool,
    /// Time it took to load, verify and attach every probe.
    pub(crate) attach_ms: f64,
    /// The receive-path settings at attach time, for advice.
    pub(crate) settings: Option<Snapshot>,
    pub(crate) topology: Topology,
    pub(crate) started: Instant,
    pub(crate) last_device_check: Instant,
    /// `--latency auto`: pauses and resumes the latency probes.
    pub(crate) governor: Option<governor::Governor>,
    /// `--stage-window`: closes and opens the stage latency probes' windows.
    pub(crate) stage_window: Option<stage_window::StageWindow>,
    /// Per VXLAN hook: after a failed re-attach, when to try again (each try
    /// loads and verifies the programs).
    pub(crate) devs_retry_at: Vec<Option<Instant>>,
    /// `--debug-bpf`: whether the programs log, and the log records of
    /// every object that does.
    pub(crate) bpf_log: BpfLog,
    /// For hooks attached later (re-attach).
    pub(crate) tc_mode: TcMode,
    pub(crate) bpf_logs: Vec<BpfLogReader>,
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
fn report(kind: ReportKind, a: &Session, earlier: &Sample, later: &Sample) -> Report {
    let mut r = Report::between(kind, &a.topology, earlier, later);
    if let Some(settings) = &a.settings {
        r.advice = probe_model::advice::advise(&r, settings);
    }
    r
}

/// An interval's report, its VXLAN balance carried over from the intervals
/// before it (ledger::VxlanCarry).
fn carried_interval(
    carry: &mut probe_model::ledger::VxlanCarry,
    a: &Session,
    earlier: &Sample,
    later: &Sample,
) -> Report {
    let mut r = report(ReportKind::Interval, a, earlier, later);
    if let Some(loss) = r.ledger.vxlan_loss.as_mut() {
        carry.apply(loss);
    }
    r
}

/// Attaches, runs `during` (`probe trace` sends its probes there), samples,
/// detaches: `during`'s result and the summary of what the probes saw
/// meanwhile. `during` is handed a flag that SIGINT or SIGTERM sets: it
/// should end early when it is set (the links are then detached as usual).
pub fn around<T>(
    cfg: &SessionConfig,
    during: impl FnOnce(&AtomicBool) -> Result<T, ProbeError>,
) -> Result<(T, Report), ProbeError> {
    let stop = stop_on_signal()?;
    let mut session = open(cfg)?;
    let first = sample::sample(&mut session)?;
    if let Some(path) = &cfg.ready_file {
        write_ready_file(path, &session)?;
    }
    let result = during(&stop);
    if let Some(path) = &cfg.ready_file {
        let _ = std::fs::remove_file(path);
    }
    let result = result?;
    let last = sample::sample(&mut session)?;
    let summary = report(ReportKind::Summary, &session, &first, &last);
    drop(session); // detaches every link
    Ok((result, summary))
}

/// A flag that SIGINT and SIGTERM set, registered before attaching: a signal
/// during attach ends the run cleanly.
fn stop_on_signal() -> Result<Arc<AtomicBool>, ProbeError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| ProbeError::Runtime(format!("cannot install signal handler: {e}")))?;
    }
    Ok(stop)
}

/// The session's namespace, its privileges checked, every probe attached.
fn open(cfg: &SessionConfig) -> Result<Session, ProbeError> {
    let netns = match &cfg.netns {
        Some(name) => Netns::named(name)?,
        None => Netns::current(),
    };
    caps::check(&cfg.requirements())?;
    attach::attach(cfg, netns)
}

/// Attaches, calls `on_attached` once every probe is attached, hands every
/// interval's report (covering `period`) and then the summary to `out` (which
/// returns false to stop early), detaches. Returns the settings snapshot taken
/// at attach time and the summary.
pub fn run(
    cfg: &SessionConfig,
    period: Period,
    on_attached: impl FnOnce(&Topology),
    mut out: impl FnMut(&Report) -> Result<bool, ProbeError>,
) -> Result<(Option<Snapshot>, Report), ProbeError> {
    let stop = stop_on_signal()?;
    let mut session = open(cfg)?;
    // Every total counts from this sample: the BPF maps and the kernel's
    // counters are read together here, after the last hook attached. (The
    // maps' counts before it, from each hook's own attach on, are left out:
    // the kernel counters have no reading at those instants to match them.)
    // A first reading is slower than later ones (first touches of the maps'
    // buffers): the NIC's map and the VXLAN devices' are read further apart,
    // and the packets that cross between the two reads would stand as a
    // shortfall in every total after it. One reading warms the path; the
    // baseline is the next, read as fast as every later one.
    sample::sample(&mut session)?;
    // The run's clock starts with the baseline: the stage window's, the
    // intervals' and --duration's (a summary of `--duration 1` spans 1 s,
    // however long attaching took).
    let counting_from = Instant::now();
    if let Some(window) = session.stage_window.as_mut() {
        window.start_at(counting_from);
    }
    let first = sample::sample(&mut session)?;
    let baseline = first.clone();
    if period == Period::SinceAttach {
        // Totals start at zero with every hook listed, before the first interval.
        out(&report(ReportKind::Summary, &session, &baseline, &first))?;
    }
    // Ready (the file, /readyz): attached, and counting from here.
    on_attached(&session.topology);
    if let Some(path) = &cfg.ready_file {
        write_ready_file(path, &session)?;
    }
    let mut previous = first;
    // Both were range-checked before attaching (cli::SecondsRange).
    let interval = seconds(cfg.interval);
    let deadline = cfg
        .duration
        .and_then(|d| counting_from.checked_add(seconds(d)));
    let mut next_tick = counting_from + interval;
    // `--netns NAME` removed while watching: the run ends with its totals.
    let mut netns_gone = false;
    let mut carry = probe_model::ledger::VxlanCarry::default();
    loop {
        let now = Instant::now();
        let end = deadline.is_some_and(|d| now >= d) || stop.load(Ordering::Relaxed);
        if end {
            break;
        }
        if session
            .governor
            .as_ref()
            .is_some_and(|g| now >= g.last_check + governor::EVERY)
        {
            govern_latency(&mut session, now);
        }
        if session.stage_window.is_some() {
            window_stage_latency(&mut session, now);
        }
        if now >= session.last_device_check + reattach::DEVICE_CHECK {
            session.last_device_check = now;
            if !session.netns.still_named() {
                netns_gone = true;
                break;
            }
            reattach::check_devices(&mut session);
        }
        let mut wake = deadline.map_or(next_tick, |d| d.min(next_tick));
        if let Some(w) = &session.stage_window {
            wake = wake.min(w.next_check(now));
        }
        if now < wake {
            std::thread::sleep((wake - now).min(Duration::from_millis(50)));
            continue;
        }
        if now >= next_tick {
            let current = sample::sample(&mut session)?;
            let r = match period {
                Period::SinceLast => carried_interval(&mut carry, &session, &previous, &current),
                Period::SinceAttach => report(ReportKind::Summary, &session, &baseline, &current),
            };
            let reader_gone = !out(&r)?;
            previous = current;
            next_tick += interval;
            if reader_gone {
                break;
            }
        }
    }
    let last = sample::sample(&mut session)?;
    if period == Period::SinceLast && last.uptime_s - previous.uptime_s >= cfg.interval / 2.0 {
        out(&carried_interval(&mut carry, &session, &previous, &last))?;
    }
    let summary = report(ReportKind::Summary, &session, &baseline, &last);
    out(&summary)?;
    if let Some(path) = &cfg.ready_file {
        let _ = std::fs::remove_file(path);
    }
    let settings = session.settings.take();
    let netns = session.netns.label();
    drop(session); // detaches every link
    if netns_gone {
        return Err(ProbeError::Runtime(format!(
            "the namespace {netns} was removed while watching (ip netns del, or its name \
             given to another namespace): nothing is left there to watch. The summary \
             above covers the run until then"
        )));
    }
    Ok((settings, summary))
}

impl Session {
    /// Every hook, in path order.
    fn hooks(&self) -> impl Iterator<Item = &dyn Hook> {
        let nic = self.nic.iter().map(|h| h as &dyn Hook);
        let devs = self.devs.iter().map(|h| h as &dyn Hook);
        let drops = self.drops.iter().map(|h| h as &dyn Hook);
        let latency = self.latency.iter().map(|h| h as &dyn Hook);
        let steering = self.steering.iter().map(|h| h as &dyn Hook);
        let stages = self.stage_latency.iter().map(|h| h as &dyn Hook);
        nic.chain(devs)
            .chain(drops)
            .chain(latency)
            .chain(steering)
            .chain(stages)
    }

    /// Every hook, mutable.
    fn hooks_mut(&mut self) -> impl Iterator<Item = &mut dyn Hook> {
        let nic = self.nic.iter_mut().map(|h| h as &mut dyn Hook);
        let devs = self.devs.iter_mut().map(|h| h as &mut dyn Hook);
        let drops = self.drops.iter_mut().map(|h| h as &mut dyn Hook);
        let latency = self.latency.iter_mut().map(|h| h as &mut dyn Hook);
        let steering = self.steering.iter_mut().map(|h| h as &mut dyn Hook);
        let stages = self.stage_latency.iter_mut().map(|h| h as &mut dyn Hook);
        nic.chain(devs)
            .chain(drops)
            .chain(latency)
            .chain(steering)
            .chain(stages)
    }

    /// Kernel ids of every program this run loaded.
    fn program_ids(&self) -> Vec<u32> {
        self.hooks().flat_map(|h| h.program_ids()).collect()
    }
}

/// `s` seconds of a flag its parser range-checked: the conversion cannot
/// fail, and a checked one keeps it so.
pub(crate) fn seconds(s: f64) -> Duration {
    Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
}

/// `--latency auto`: one reading of the NET_RX run rate, and the pause or
/// resume it calls for, said on stderr (also with --json: stdout stays the
/// reports').
fn govern_latency(session: &mut Session, now: Instant) {
    let (Some(g), Some(hook)) = (&mut session.governor, &mut session.latency) else {
        return;
    };
    let runs = match crate::kernel::procfs::read_net_rx_runs() {
        Ok(runs) => runs,
        Err(e) => {
            g.last_check = now;
            eprintln!("probe: --latency auto: {e}");
            return;
        }
    };
    let result = match g.observe(now, &runs) {
        governor::Step::Stay => return,
        governor::Step::Pause(rate) => {
            eprintln!(
                "probe: --latency auto: softirq/NAPI probes paused: NET_RX ran {rate} times/s \
                 on a CPU (above --latency-max-runs); they resume when it stays below 3/4 of that"
            );
            let result = hook.pause();
            g.detached_at(Instant::now());
            result
        }
        governor::Step::Resume => {
            let result = hook.resume();
            match &result {
                Ok(()) => eprintln!("probe: --latency auto: softirq/NAPI probes resumed"),
                Err(_) => g.resume_failed(now),
            }
            result
        }
    };
    if let Err(e) = result {
        eprintln!("probe: --latency auto: {e}");
    }
}

/// `--stage-window`: one check of the window, and the step it calls for. A
/// failure is said on stderr; the next check tries again.
fn window_stage_latency(session: &mut Session, now: Instant) {
    let (Some(w), Some(hook)) = (&mut session.stage_window, &mut session.stage_latency) else {
        return;
    };
    let mut error = None;
    let step = w.check(now, || {
        hook.in_flight().unwrap_or_else(|e| {
            error = Some(e);
            0
        })
    });
    let result = match step {
        stage_window::Step::Stay => Ok(()),
        stage_window::Step::Close => hook.close_window(),
        stage_window::Step::Detach => hook.detach_window().map(|_| ()),
        stage_window::Step::Reopen => hook.reopen_window().inspect_err(|_| w.reopen_failed()),
    };
    if let Some(e) = error.or(result.err()) {
        eprintln!("probe: --stage-window: {e}");
    }
}

/// `--ready-file`: written once every probe is attached (atomically: a
/// temporary file renamed), removed on exit.
fn write_ready_file(path: &std::path::Path, a: &Session) -> Result<(), ProbeError> {
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

/// The first line of `text`, cut at 300 characters: what a report carries of
/// a reason (a verifier log can be long; stderr gets all of it once).
pub(crate) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}

/// One line naming every attached hook, for stderr and the ready file.
fn describe_hooks(t: &Topology) -> String {
    let mut parts = Vec::new();
    if let Some(n) = &t.nic {
        parts.push(format!("{} on {}", n.hook, n.iface));
    }
    for d in &t.vxlan_devs {
        parts.push(format!("{} on {}", d.hook, d.iface));
    }
    if t.latency {
        parts.push(match t.latency_max_runs {
            Some(n) => format!(
                "tp_btf/softirq_raise+entry+exit, tp_btf/napi_poll (paused above {n} NET_RX runs/s on a CPU)"
            ),
            None => "tp_btf/softirq_raise+entry+exit, tp_btf/napi_poll".to_string(),
        });
    }
    if t.steering {
        parts.push(
            "tp_btf/napi_gro_receive_entry+netif_receive_skb+sk_data_ready+sock_recv_length"
                .to_string(),
        );
    }
    if let Some(s) = &t.stage_latency {
        let socket = if s.socket_stages {
            "+sk_data_ready+sock_recv_length"
        } else {
            ""
        };
        parts.push(if s.trace {
            let drops = if s.drops_unavailable.is_none() {
                "+kfree_skb+consume_skb"
            } else {
                ""
            };
            format!("tp_btf/netif_receive_skb{socket}{drops} (the marked packets)")
        } else {
            let window = match s.window {
                Some((on, every)) => format!(
                    ", attached {} s in every {} s",
                    on.as_secs_f64(),
                    every.as_secs_f64()
                ),
                None => String::new(),
            };
            format!(
                "tp_btf/netif_receive_skb{socket} (1 packet in {}{window})",
                s.sample_every
            )
        });
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
