//! The one model every output is rendered from: cumulative samples of the
//! kernel counters, and reports (what happened between two samples).
//!
//! Pure arithmetic, no I/O: unit-tested without root.

use std::{collections::BTreeMap, time::SystemTime};

use probe_common::stage_latency::{PathCpu, PathDrops, SocketWait};
use serde::Serialize;

use crate::{
    counters::{
        drops::DropCounts,
        latency::LatencyCounts,
        link::LinkStats,
        nic::NicCounts,
        procfs::{Snmp, SoftnetCpu},
        selfcost::{SelfCost, SelfSample},
        steering::SteerCounts,
        vxlan::DevCounts,
    },
    events::{History, TimedEvent},
    latency::{NapiRow, SoftirqRow},
    ledger::Ledger,
    names::Names,
    reasons::ReasonNames,
    settings::Snapshot,
};

pub use crate::events::Gap;
pub use crate::stage::{HookKind, Stage};

/// One namespace's root qdiscs' drops (skbs), by (ifindex, handle).
pub type QdiscDrops = BTreeMap<(u32, u32), u64>;

/// What is being watched: fixed at attach for the whole run (what changes
/// while it runs is its [`History`]).
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub netns: String,
    pub nic: Option<NicInfo>,
    pub vxlan_devs: Vec<DevInfo>,
    pub unavailable: Vec<Unavailable>,
    /// Drop reason names of the running kernel; None without the drop probe.
    pub reasons: Option<ReasonNames>,
    /// `--drop-netns` names; empty: drops in every namespace count.
    pub drop_scope: Vec<String>,
    /// `--latency`: the softirq and NAPI probes are attached.
    pub latency: bool,
    /// `--latency auto`: the NET_RX runs/s above which they pause.
    pub latency_max_runs: Option<u64>,
    /// `--steering`: the steering probes are attached.
    pub steering: bool,
    /// `--stage-latency`: the stage latency probes are attached.
    pub stage_latency: Option<StageLatencyInfo>,
}

/// Everything a report is built from besides its two samples.
#[derive(Clone, Copy, Debug)]
pub struct Run<'a> {
    pub topology: &'a Topology,
    pub history: &'a History,
    /// The receive-path settings read at attach: advice weighs the report's
    /// evidence against them (none without them).
    pub settings: Option<&'a Snapshot>,
}

static NO_HISTORY: History = History {
    events: Vec::new(),
    gaps: Vec::new(),
};

impl<'a> Run<'a> {
    /// A run of `topology` with nothing in its history and no settings.
    pub fn watching(topology: &'a Topology) -> Run<'a> {
        Run {
            topology,
            history: &NO_HISTORY,
            settings: None,
        }
    }
}

/// How the stage latency probes run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageLatencyInfo {
    pub sample_every: u32,
    /// The socket stages are followed (Linux >= 6.5).
    pub socket_stages: bool,
    /// Why they are not, if not.
    pub socket_unavailable: Option<String>,
    /// `probe trace`: only the marked packets are followed.
    pub trace: bool,
    /// `--stage-window`: attached ON seconds in every EVERY; None: always.
    pub window: Option<(std::time::Duration, std::time::Duration)>,
    /// `probe trace` on a kernel that cannot say where marked packets were
    /// dropped (no drop reasons): why.
    pub drops_unavailable: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct NicInfo {
    pub iface: String,
    /// How the NIC stage is hooked: "tcx/ingress", "xdp/native", "xdp/generic".
    pub hook: String,
    pub queue_slots: u32,
    /// (UDP port, VNI) pairs with their own slot, in slot order.
    pub vnis: Vec<(u16, u32)>,
}

#[derive(Clone, Debug, Default)]
pub struct DevInfo {
    pub iface: String,
    /// "tcx/ingress" or "tc/ingress".
    pub hook: String,
    pub vni: Option<u32>,
    /// The UDP port the device receives on.
    pub port: Option<u16>,
}

/// Cumulative counters read at one instant.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub wall: Option<SystemTime>,
    /// Seconds since the probes were attached.
    pub uptime_s: f64,
    pub nic: Option<NicCounts>,
    pub nic_kernel: Option<LinkStats>,
    /// Parallel to `Topology::vxlan_devs`.
    pub devs: Vec<DevCounts>,
    pub devs_kernel: Vec<Option<LinkStats>>,
    pub drops: Option<DropCounts>,
    /// The NIC driver's per-RX-queue drop statistics (ethtool -S).
    pub nic_queue_drops: Vec<(String, u64)>,
    /// /proc/net/softnet_stat, per CPU.
    pub softnet: Vec<SoftnetCpu>,
    /// The protocol counters per namespace read (label, counters).
    pub snmp: Vec<(String, Snmp)>,
    /// The root qdiscs' drops per namespace read.
    pub qdisc_drops: Vec<(String, QdiscDrops)>,
    pub names: Names,
    /// With `--self`: the probe's own CPU, memory and BPF program counters.
    pub self_sample: Option<SelfSample>,
    /// NET_RX softirq and NAPI counters.
    pub latency: Option<LatencyCounts>,
    /// `--steering` matrices.
    pub steering: Option<SteerCounts>,
    /// `--stage-latency` counters, one per CPU.
    pub stage_latency: Option<Vec<PathCpu>>,
    /// `probe trace`: marked packets dropped, per CPU (empty otherwise).
    pub trace_drops: Vec<PathDrops>,
    /// `--latency auto`: seconds paused since attach.
    pub latency_paused_s: Option<f64>,
    /// `--stage-latency`: per-socket reads, `[slot][cpu]` (empty otherwise).
    pub socket_waits: Vec<Vec<SocketWait>>,
    /// `--stage-window`: seconds the stage probes were attached since
    /// attach, and the followed packets still queued when a window closed.
    pub stage_window: Option<(f64, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportKind {
    Interval,
    Summary,
}

/// Counts between two samples. Serialized as one JSON line.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    #[serde(rename = "type")]
    pub kind: ReportKind,
    /// RFC 3339 time of the later sample.
    pub ts: String,
    /// Seconds covered by this report.
    pub elapsed_s: f64,
    pub netns: String,
    pub stages: Vec<StageRow>,
    pub vxlan: Vec<VxlanRow>,
    pub tx: Vec<TxRow>,
    pub cpus: Vec<CpuRow>,
    pub queues: Vec<QueueRow>,
    pub unavailable: Vec<Unavailable>,
    /// The drop ledger: `ledger`, `drops`, `flows`, `vxlan_loss`, `verdict`,
    /// `drops_out_of_scope` (see ledger.rs).
    #[serde(flatten)]
    pub ledger: Ledger,
    /// `--drop-netns` (empty: every namespace).
    pub drop_scope: Vec<String>,
    /// /proc/net/softnet_stat per CPU over the period.
    pub softnet: Vec<SoftnetCpu>,
    /// The protocol counters over the period, per namespace read. In JSON
    /// only the rows that counted something: a node has a namespace per pod.
    #[serde(serialize_with = "rows_that_counted")]
    pub snmp: Vec<SnmpRow>,
    /// `--self`: what the probe cost over the period; null without `--self`.
    #[serde(rename = "self")]
    pub self_cost: Option<SelfCost>,
    /// NET_RX softirq timing: the all-CPU row (`cpu: null`) first, then per CPU.
    pub softirq: Vec<SoftirqRow>,
    /// `--latency auto`: seconds of the period the softirq and NAPI probes
    /// were paused (their rows count the rest); null in other modes.
    pub latency_paused_s: Option<f64>,
    /// NAPI polls per device and CPU.
    pub napi: Vec<NapiRow>,
    /// Rules that fired on this report's evidence (advice.rs).
    pub advice: Vec<Advice>,
    /// `--steering`: poll CPU -> stack CPU, and queueing CPU -> reader CPU.
    pub steering: Option<crate::steering::Steering>,
    /// `--stage-latency`: followed packets and each transition's time.
    pub stage_latency: Option<crate::stage_latency::StageLatency>,
    /// Watched devices that disappeared during the period, and when the
    /// probe re-attached to their successors (see [`Gap`]).
    pub gaps: Vec<Gap>,
    /// Kernel counters that went backwards in the period (see [`CounterReset`]).
    pub resets: Vec<CounterReset>,
    /// What happened to the probes in the period (a summary: in the whole
    /// run, attaching included), in order (see events.rs).
    pub events: Vec<TimedEvent>,
}

/// A kernel counter set that went backwards between two samples: reset by
/// its driver (`ethtool -L`, a reset), or its device or namespace re-created.
/// Its counts in the period are from its new value (delta.rs), never a
/// wrapped difference.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CounterReset {
    /// `stats64` (a device), `ethtool` (a driver statistic), `softnet_stat`, `snmp`.
    pub counters: &'static str,
    /// The device, statistic, CPU (`cpu N`) or namespace.
    pub of: String,
}

/// A probe that could not be attached, and why. The others still run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Unavailable {
    pub stage: HookKind,
    pub iface: String,
    pub reason: String,
}

/// A tuning rule that fired on a report's evidence, and its text citing it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advice {
    /// Rule id: `backlog`, `budget`, `rcvbuf`, `listen`, `conntrack`, `irq_affinity`, `mtu`, `link`.
    pub rule: &'static str,
    pub text: String,
}

/// The rows of `snmp` with a counter above 0.
fn rows_that_counted<S: serde::Serializer>(rows: &[SnmpRow], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        rows.iter()
            .filter(|r| r.counters != Snmp::default() || r.qdisc_drops > 0),
    )
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnmpRow {
    pub netns: String,
    #[serde(flatten)]
    pub counters: Snmp,
    /// What the namespace's root qdiscs dropped (every device's), in skbs.
    pub qdisc_drops: u64,
}

/// What one hook saw. `skbs` and `segments` differ where GRO merged
/// segments into one skb (or a GSO sender never split them): their ratio is
/// the device's GRO ratio.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageRow {
    /// `nic` (the NIC hook) or `vxlan` (TCX ingress on the VXLAN device).
    pub stage: HookKind,
    pub iface: String,
    /// `tcx/ingress`, `xdp/native`, `xdp/generic`.
    pub hook: String,
    pub skbs: u64,
    pub segments: u64,
    pub bytes: u64,
    /// segments / skbs (1.0 without GRO); null without traffic.
    pub gro_ratio: Option<f64>,
    /// Receive drops the device's own counters report (rx_dropped +
    /// rx_missed_errors + rx_fifo_errors + rx_over_errors); null if unreadable.
    pub drops: Option<u64>,
    /// Segments per class: NIC classes at `nic`, inner classes at `vxlan`.
    pub classes: BTreeMap<&'static str, u64>,
    /// The device's kernel counters over the same period, for cross-checking.
    pub kernel: Option<LinkStats>,
}

/// VXLAN traffic of one (UDP port, VNI), outer at the NIC and inner out of
/// the device that owns it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VxlanRow {
    /// The VXLAN device that receives this (port, VNI), when one is watched.
    pub iface: Option<String>,
    /// The NIC where the outer packets were counted.
    pub nic: Option<String>,
    /// None: every (port, VNI) no watched device owns (and packets too short
    /// to carry a VNI).
    pub port: Option<u16>,
    pub vni: Option<u32>,
    /// Outer VXLAN packets seen by the NIC hook (null if that hook is missing).
    pub outer_skbs: Option<u64>,
    pub outer_segments: Option<u64>,
    pub outer_bytes: Option<u64>,
    /// Outer segments by inner frame class.
    pub outer_inner: Option<BTreeMap<&'static str, u64>>,
    /// Decapsulated packets seen entering the VXLAN device (null if not watched).
    pub inner_skbs: Option<u64>,
    pub inner_segments: Option<u64>,
}

/// What a VXLAN device sent, from its own counters (tx_packets counts skbs
/// handed to the device; tx_dropped those it could not send).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TxRow {
    pub iface: String,
    pub skbs: u64,
    pub bytes: u64,
    pub dropped_skbs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CpuRow {
    pub cpu: u32,
    pub stage: HookKind,
    pub iface: String,
    pub segments: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueRow {
    pub iface: String,
    pub queue: u32,
    pub skbs: u64,
    pub segments: u64,
    pub bytes: u64,
}

/// segments / skbs, rounded to 2 decimals; None without skbs.
pub fn gro_ratio(skbs: u64, segments: u64) -> Option<f64> {
    (skbs > 0).then(|| (segments as f64 / skbs as f64 * 100.0).round() / 100.0)
}

mod between;
mod hooks_line;

#[cfg(test)]
pub(crate) mod tests;
