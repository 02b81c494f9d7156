//! `--latency`: the NET_RX softirq probes (raise, entry, exit) and the NAPI
//! poll probe (tp_btf): loading them with the kernel's values, reading them.
//! The histogram arithmetic is probe_model::latency.

use std::collections::BTreeMap;

use aya::{
    maps::{PerCpuArray, PerCpuValues},
    programs::tp_btf::BtfTracePointLinkId,
    Ebpf,
};
use probe_common::latency::{
    NapiOffsets, NapiTable, SoftirqCpu, GLOBAL_NAPI_OFFSETS, GLOBAL_NET_RX_VEC,
    GLOBAL_SOFTIRQ_SAMPLE_EVERY, MAP_NAPI, MAP_SOFTIRQ, PROG_NAPI_POLL, PROG_SOFTIRQ_ENTRY,
    PROG_SOFTIRQ_EXIT, PROG_SOFTIRQ_RAISE,
};

use probe_model::{
    counters::latency::{LatencyCounts, NapiCounts},
    model::{HookKind, Sample, Topology},
};

use super::{
    lifecycle::{Loader, TracingContext, TracingEntry},
    read_per_cpu, BpfLog, Hook, HookError, ReadAt,
};
use crate::{kernel::btf::Btf, objects};

/// Attached unless `--latency off`.
pub const TRACING: TracingEntry = TracingEntry {
    kind: HookKind::Softirq,
    wanted: |ctx| ctx.latency,
    setup: tracing_setup,
};

fn tracing_setup(btf: &Btf, ctx: &TracingContext) -> Result<Loader, HookError> {
    let setup = LatencySetup {
        sample_every: ctx.latency_sample,
        ..setup(btf)?
    };
    let (log, max_runs) = (ctx.bpf_log, ctx.latency_max_runs);
    Ok(Box::new(move || {
        let mut hook = load_latency(setup, log)?;
        hook.max_runs = max_runs;
        Ok(Box::new(hook) as Box<dyn Hook>)
    }))
}

/// `--latency`: when the NET_RX softirq and NAPI probes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LatencyMode {
    /// Attached, paused while the busiest CPU runs NET_RX more often than
    /// `--latency-max-runs` a second (session/governor.rs).
    Auto,
    /// Always attached.
    On,
    #[default]
    Off,
}

/// The attached softirq and NAPI probes. Dropping it detaches them.
pub struct LatencyHook {
    ebpf: Ebpf,
    /// The programs' links while attached; empty while paused.
    links: Vec<(&'static str, BtfTracePointLinkId)>,
    /// `--latency auto`: the NET_RX runs/s above which they pause.
    pub max_runs: Option<u64>,
}

impl Hook for LatencyHook {
    fn kind(&self) -> HookKind {
        HookKind::Softirq
    }
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }
    fn object_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
    /// Verifies the four programs and attaches them.
    fn attach_tracing(&mut self, kernel_btf: &aya::Btf) -> Result<(), HookError> {
        self.links = super::attach_btf_tracepoints(&mut self.ebpf, &PROGRAMS, kernel_btf)?;
        Ok(())
    }
    fn read_into(&mut self, _: &ReadAt, sample: &mut Sample) -> Result<(), HookError> {
        sample.latency = Some(self.read()?);
        Ok(())
    }
    fn describe(&self, topology: &mut Topology) {
        topology.latency = true;
        topology.latency_max_runs = self.max_runs;
    }
}

const PROGRAMS: [(&str, &str); 4] = [
    (PROG_SOFTIRQ_RAISE, "softirq_raise"),
    (PROG_SOFTIRQ_ENTRY, "softirq_entry"),
    (PROG_SOFTIRQ_EXIT, "softirq_exit"),
    (PROG_NAPI_POLL, "napi_poll"),
];

/// What the softirq and NAPI probes need from the kernel's BTF.
pub struct LatencySetup {
    pub net_rx_vec: u32,
    pub offsets: NapiOffsets,
    /// Time one NET_RX run in this many per CPU (1: every run).
    pub sample_every: u32,
}

/// NET_RX_SOFTIRQ's value (from the anonymous enum of softirq vectors) and
/// the napi_struct/net_device offsets of the running kernel.
pub fn setup(btf: &Btf) -> Result<LatencySetup, HookError> {
    Ok(LatencySetup {
        net_rx_vec: btf
            .enum_value("NET_RX_SOFTIRQ")
            .ok_or_else(|| HookError::Kernel("NET_RX_SOFTIRQ not in the kernel's BTF".into()))?
            as u32,
        offsets: NapiOffsets {
            napi_dev: btf.member_offset("napi_struct", "dev")?,
            dev_ifindex: btf.member_offset("net_device", "ifindex")?,
            dev_nd_net: btf.member_offset("net_device", "nd_net")?,
            net_inum: btf.member_offset("net", "ns")? + btf.member_offset("ns_common", "inum")?,
        },
        sample_every: 1,
    })
}

/// Loads the object with its settings (nothing attached yet: [`Hook::attach_tracing`]).
pub fn load_latency(setup: LatencySetup, log: BpfLog) -> Result<LatencyHook, HookError> {
    let LatencySetup {
        net_rx_vec: net_rx,
        offsets,
        sample_every,
    } = setup;
    let sample_every = sample_every.max(1);
    let ebpf = log
        .loader()
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_NET_RX_VEC, &net_rx, true)
        .override_global(GLOBAL_SOFTIRQ_SAMPLE_EVERY, &sample_every, true)
        .override_global(GLOBAL_NAPI_OFFSETS, &offsets, true)
        .load(objects::LATENCY)?;
    Ok(LatencyHook {
        ebpf,
        links: Vec::new(),
        max_runs: None,
    })
}

impl LatencyHook {
    pub fn paused(&self) -> bool {
        self.links.is_empty()
    }

    /// Detaches the programs; the objects and their counts stay.
    pub fn pause(&mut self) -> Result<(), HookError> {
        super::unlink_btf_tracepoints(&mut self.ebpf, std::mem::take(&mut self.links))
    }

    /// Attaches the programs again. A run raised or entered before the
    /// pause would be timed across it: those marks are cleared first (no
    /// program runs while paused, so the per-CPU values can be rewritten).
    pub fn resume(&mut self) -> Result<(), HookError> {
        if !self.paused() {
            return Ok(());
        }
        let map_error = super::map_error(MAP_SOFTIRQ);
        let map = super::map_mut(&mut self.ebpf, MAP_SOFTIRQ)?;
        let mut array = PerCpuArray::<_, SoftirqCpu>::try_from(map).map_err(&map_error)?;
        let cleared: Vec<SoftirqCpu> = array
            .get(&0, 0)
            .map_err(&map_error)?
            .iter()
            .map(|c| SoftirqCpu {
                raised_at: 0,
                entered_at: 0,
                ..*c
            })
            .collect();
        let values = PerCpuValues::try_from(cleared)
            .map_err(|e| HookError::Kernel(format!("{MAP_SOFTIRQ}: {e}")))?;
        array.set(0, values, 0).map_err(map_error)?;
        self.links = super::link_btf_tracepoints(&mut self.ebpf, &PROGRAMS)?;
        Ok(())
    }

    pub fn read(&self) -> Result<LatencyCounts, HookError> {
        let softirq = read_per_cpu::<SoftirqCpu>(&self.ebpf, MAP_SOFTIRQ, 1)?.remove(0);
        let tables = read_per_cpu::<NapiTable>(&self.ebpf, MAP_NAPI, 1)?.remove(0);
        let mut napi = BTreeMap::new();
        for (cpu, t) in tables.iter().enumerate() {
            for s in t.slots.iter().filter(|s| s.polls > 0) {
                napi.insert(
                    (s.key, cpu as u32),
                    NapiCounts {
                        polls: s.polls,
                        packets: s.packets,
                        full_budget: s.full_budget,
                        work: s.work,
                    },
                );
            }
        }
        Ok(LatencyCounts { softirq, napi })
    }
}
