//! What the registry (registry.rs) is made of: a tracing hook's entry (whether
//! a configuration asks for it, how it is set up and loaded), a tunnel
//! device kind's entry (how its hook is attached), and what each is given.
//! Every hook file names its own entry with these types.

use std::time::Duration;

use super::{BpfLog, Hook, HookError, TcMode};
use crate::kernel::{btf::Btf, netns::Netns, rtnl::Link};
use probe_model::model::HookKind;

/// A tracing hook: whether a configuration asks for it, and how it is set up.
pub struct TracingEntry {
    /// The stage it is reported unavailable under.
    pub kind: HookKind,
    pub wanted: fn(&TracingContext) -> bool,
    /// Reads what the hook needs from the compact BTF parse, and returns
    /// what loads it (called once that parse is freed).
    pub setup: fn(&Btf, &TracingContext) -> Result<Loader, HookError>,
}

/// Loads a tracing hook's object (verified and attached later).
pub type Loader = Box<dyn FnOnce() -> Result<Box<dyn Hook>, HookError>>;

/// A kind of tunnel device and how its hook is attached.
pub struct DeviceEntry {
    /// IFLA_INFO_KIND, as `ip -d link` shows it.
    pub kind: &'static str,
    pub attach: AttachDevice,
}

/// Loads a device hook's object and attaches it to the device.
pub type AttachDevice = fn(&Netns, &Link, &DeviceContext) -> Result<Box<dyn Hook>, HookError>;

/// What a device hook is attached with.
#[derive(Clone, Copy, Debug)]
pub struct DeviceContext {
    pub bpf_log: BpfLog,
    pub tc_mode: TcMode,
}

/// What the tracing hooks are set up from: the session's choices and the
/// devices resolved before them.
#[derive(Clone, Debug)]
pub struct TracingContext {
    /// `--latency` on or auto.
    pub latency: bool,
    pub latency_sample: u32,
    /// `--latency auto`: the NET_RX runs/s above which the governor pauses
    /// the latency probes.
    pub latency_max_runs: Option<u64>,
    pub steering: bool,
    /// Follow one packet in this many (`--stage-latency`; 1 for a trace).
    pub stage_sampling: Option<u32>,
    pub stage_window: Option<(Duration, Duration)>,
    /// `probe trace`'s signature.
    pub trace_magic: Option<u64>,
    pub bpf_log: BpfLog,
    /// `--drop-netns`' inode numbers (empty: every namespace).
    pub scope_inums: Vec<u32>,
    /// UDP ports that carry VXLAN.
    pub tunnel_ports: Vec<u16>,
    pub nic_ifindex: u32,
    /// The NIC's namespace inode, or why it is unknown.
    pub nic_netns: Result<u32, String>,
    /// The hooked tunnel devices' ifindexes.
    pub tunnel_ifindexes: Vec<u32>,
}

/// Where a hook's counters are read from.
pub struct ReadAt<'a> {
    /// The namespace's interfaces with their stats64, dumped once per sample.
    pub links: &'a [Link],
    pub netns: &'a Netns,
}

impl ReadAt<'_> {
    pub fn stats(&self, ifindex: u32) -> Option<probe_model::counters::link::LinkStats> {
        self.links
            .iter()
            .find(|l| l.ifindex == ifindex)
            .and_then(|l| l.stats)
    }
}
