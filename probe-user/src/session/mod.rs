//! A session: attach every hook a configuration asks for (attach.rs, through
//! the hooks' registry), sample the kernel's counters every interval into a
//! `Sample` (sample.rs), hand each period's `Report` to the caller (`watch`,
//! `serve`, `record`; run.rs), let its controllers steer the hooks between
//! samples (controllers.rs: the latency governor, the stage window, devices
//! that come and go, the watched namespace), and detach on exit. Resolved
//! once from the flags (`SessionConfig`); nothing here knows about the
//! command line, and nothing here writes to stderr: what happens is an
//! `Event`, recorded in the run's history and handed to `on_event`.

mod attach;
mod controllers;
mod governor;
mod names;
mod reattach;
mod run;
mod sample;
mod stage_window;
mod targets;

use std::{path::PathBuf, time::Instant};

pub use run::{around, run, Period};
pub use targets::{nic_link, vxlan_port_set};

use crate::{
    hooks::{
        latency::LatencyMode,
        nic::{NicHookArg, XdpModeArg},
        registry::DeviceContext,
        BpfLog, BpfLogReader, Hooks, TcMode,
    },
    kernel::caps,
    kernel::netns::Netns,
    kernel::rtnl::RtnlSocket,
};
use probe_model::{
    events::{Event, History, TimedEvent},
    model::{Report, ReportKind, Run, Sample, Topology},
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
    /// Told every event as it happens (the command line says it on stderr).
    pub on_event: Option<fn(&Event)>,
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
    /// Every attached hook, in path order.
    pub(crate) hooks: Hooks,
    /// How tunnel devices are hooked (also those hooked later: reattach).
    pub(crate) device_ctx: DeviceContext,
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
    /// What happened since attach: events and device gaps.
    pub(crate) history: History,
    pub(crate) started: Instant,
    /// `--debug-bpf`: the log records of every object that logs.
    pub(crate) bpf_logs: Vec<BpfLogReader>,
    pub(crate) on_event: Option<fn(&Event)>,
}

impl Session {
    /// Records `event` in the run's history and tells the caller.
    pub(crate) fn emit(&mut self, event: Event) {
        if let Some(tell) = self.on_event {
            tell(&event);
        }
        self.history.events.push(TimedEvent {
            at_s: self.started.elapsed().as_secs_f64(),
            event,
        });
    }

    /// A report between two samples of this session.
    fn report(&self, kind: ReportKind, earlier: &Sample, later: &Sample) -> Report {
        let run = Run {
            topology: &self.topology,
            history: &self.history,
            settings: self.settings.as_ref(),
        };
        probe_model::report::build(kind, &run, earlier, later)
    }

    /// Kernel ids of every program this run loaded.
    fn program_ids(&self) -> Vec<u32> {
        self.hooks.iter().flat_map(|h| h.program_ids()).collect()
    }

    /// Starts reading the `--debug-bpf` log of `hook`'s object, if it logs.
    fn read_bpf_log(&mut self, hook: &mut dyn crate::hooks::Hook) {
        match self.device_ctx.bpf_log.reader(hook.object_mut()) {
            Ok(reader) => self.bpf_logs.extend(reader),
            Err(error) => self.emit(Event::BpfLogUnavailable { error }),
        }
    }
}

/// `s` seconds of a flag its parser range-checked: the conversion cannot
/// fail, and a checked one keeps it so.
pub(crate) fn seconds(s: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(s).unwrap_or(std::time::Duration::MAX)
}

/// The first line of `text`, cut at 300 characters: what a report carries of
/// a reason (a verifier log can be long; the event has all of it).
pub(crate) fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(300) {
        Some((cut, _)) => format!("{}...", &line[..cut]),
        None => line.to_string(),
    }
}
