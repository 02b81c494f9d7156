//! `Report::between`: what happened between two samples, section by
//! section: the hooks' stages (between/stages.rs: the NIC and VXLAN hooks,
//! their CPUs and queues, the (port, VNI) rows), the ledger, the tracing
//! hooks (between/tracing.rs), the probe's own cost. Pure arithmetic on
//! cumulative counters.

use std::collections::BTreeMap;

use super::*;
use crate::{
    delta::{since, Delta},
    ledger::{self, LedgerInput},
};

mod stages;
mod tracing;

fn kernel_delta(later: Option<&LinkStats>, earlier: Option<&LinkStats>) -> Option<LinkStats> {
    Some(later?.delta(earlier?))
}

/// Outer VXLAN counts of one (port, VNI) slot over a period.
#[derive(Clone)]
struct OuterCounts {
    skbs: u64,
    segments: u64,
    bytes: u64,
    inner: BTreeMap<&'static str, u64>,
}

/// Adds `values[cpu]` into `sums[cpu]`, growing `sums` as needed.
fn add_per_cpu(sums: &mut Vec<u64>, values: &[u64]) {
    if sums.len() < values.len() {
        sums.resize(values.len(), 0);
    }
    for (s, v) in sums.iter_mut().zip(values) {
        *s += v;
    }
}

/// `later[i][cpu] - earlier[i][cpu]` through a field accessor, summed per CPU.
fn per_cpu_delta<T>(later: &[T], earlier: Option<&[T]>, f: impl Fn(&T) -> u64) -> Vec<u64> {
    later
        .iter()
        .enumerate()
        .map(|(cpu, v)| since(f(v), earlier.and_then(|e| e.get(cpu)).map_or(0, &f)))
        .collect()
}

/// The kernel counters that went backwards from `earlier` to `later`.
fn counter_resets(topo: &Topology, earlier: &Sample, later: &Sample) -> Vec<CounterReset> {
    let mut out = Vec::new();
    let mut check = |counters: &'static str, of: &str, reset: bool| {
        if reset {
            out.push(CounterReset {
                counters,
                of: of.to_string(),
            });
        }
    };
    if let (Some(nic), Some(now), Some(before)) =
        (&topo.nic, &later.nic_kernel, &earlier.nic_kernel)
    {
        check("stats64", &nic.iface, now.reset_since(before));
    }
    for (i, dev) in topo.vxlan_devs.iter().enumerate() {
        if let (Some(Some(now)), Some(Some(before))) =
            (later.devs_kernel.get(i), earlier.devs_kernel.get(i))
        {
            check("stats64", &dev.iface, now.reset_since(before));
        }
    }
    for (name, now) in &later.nic_queue_drops {
        if let Some((_, before)) = earlier.nic_queue_drops.iter().find(|(n, _)| n == name) {
            check("ethtool", name, now < before);
        }
    }
    for now in &later.softnet {
        if let Some(before) = earlier.softnet.iter().find(|c| c.cpu == now.cpu) {
            check(
                "softnet_stat",
                &format!("cpu {}", now.cpu),
                now.reset_since(before),
            );
        }
    }
    for (netns, now) in &later.snmp {
        if let Some((_, before)) = earlier.snmp.iter().find(|(n, _)| n == netns) {
            check("snmp", netns, now.reset_since(before));
        }
    }
    for (netns, now) in &later.qdisc_drops {
        if let Some((_, before)) = earlier.qdisc_drops.iter().find(|(n, _)| n == netns) {
            check("qdisc", netns, now.reset_since(before));
        }
    }
    out
}

impl Report {
    /// What happened between `earlier` and `later` in `run` (its counts;
    /// crate::report::build adds the advice they support).
    pub fn between(kind: ReportKind, run: &Run, earlier: &Sample, later: &Sample) -> Report {
        let topo = run.topology;
        let summary = kind == ReportKind::Summary;
        let ts = later
            .wall
            .map(|w| humantime::format_rfc3339_millis(w).to_string())
            .unwrap_or_default();
        let mut r = Report {
            kind,
            ts,
            elapsed_s: (later.uptime_s - earlier.uptime_s).max(0.0),
            netns: topo.netns.clone(),
            stages: Vec::new(),
            vxlan: Vec::new(),
            tx: Vec::new(),
            cpus: Vec::new(),
            queues: Vec::new(),
            unavailable: topo.unavailable.clone(),
            ledger: Ledger::default(),
            drop_scope: topo.drop_scope.clone(),
            softnet: Vec::new(),
            snmp: Vec::new(),
            self_cost: None,
            softirq: Vec::new(),
            latency_paused_s: None,
            napi: Vec::new(),
            advice: Vec::new(),
            steering: None,
            stage_latency: None,
            // Every gap for a summary; for an interval, those it overlaps.
            gaps: run
                .history
                .gaps
                .iter()
                .filter(|g| {
                    summary
                        || (g.lost_s <= later.uptime_s
                            && g.reattached_s.is_none_or(|t| t >= earlier.uptime_s))
                })
                .cloned()
                .collect(),
            resets: counter_resets(topo, earlier, later),
            events: run
                .history
                .events_in(summary, earlier.uptime_s, later.uptime_s),
        };
        let outer_by_slot = r.add_nic(topo, earlier, later);
        let inner_by_vni = r.add_vxlan_devs(topo, earlier, later);

        r.add_vxlan_rows(topo, &outer_by_slot, &inner_by_vni);
        r.add_ledger(topo, earlier, later);
        r.add_tracing(topo, earlier, later);
        if let (Some(a), Some(b)) = (&earlier.self_sample, &later.self_sample) {
            r.self_cost = Some(SelfCost::between(a, b, r.elapsed_s));
        }
        r
    }

    fn add_ledger(&mut self, topo: &Topology, earlier: &Sample, later: &Sample) {
        self.softnet = later
            .softnet
            .iter()
            .map(
                |now| match earlier.softnet.iter().find(|c| c.cpu == now.cpu) {
                    Some(before) => now.delta(before),
                    None => *now,
                },
            )
            .collect();
        self.snmp = later
            .snmp
            .iter()
            .filter_map(|(netns, now)| {
                let before = match earlier.snmp.iter().find(|(n, _)| n == netns) {
                    Some((_, before)) => *before,
                    // A namespace named since `earlier` (a pod started)
                    // counted from zero; one named then but not read is
                    // left out (what it counted before is unknown).
                    None if !earlier.names.netns.values().any(|n| n == netns) => Default::default(),
                    None => return None,
                };
                let qdiscs = |s: &Sample| {
                    s.qdisc_drops
                        .iter()
                        .find(|(n, _)| n == netns)
                        .map(|(_, q)| q.clone())
                        .unwrap_or_default()
                };
                Some(SnmpRow {
                    netns: netns.clone(),
                    counters: now.delta(&before),
                    qdisc_drops: qdiscs(later).delta(&qdiscs(earlier)).values().sum(),
                })
            })
            .collect();
        let nic = self.stages.iter().find(|s| s.stage == HookKind::Nic);
        let vxlan_devs: Vec<&StageRow> = self
            .stages
            .iter()
            .filter(|s| s.stage == HookKind::Vxlan)
            .collect();
        let input = LedgerInput {
            reasons: topo.reasons.as_ref(),
            drops: later.drops.as_ref().map(|d| {
                earlier
                    .drops
                    .as_ref()
                    .map_or_else(|| d.clone(), |e| d.delta(e))
            }),
            names: Some(&later.names),
            nic_kernel: nic.and_then(|s| s.kernel),
            nic_queue_drops: later
                .nic_queue_drops
                .iter()
                .map(|(name, n)| {
                    let before = earlier.nic_queue_drops.iter().find(|(e, _)| e == name);
                    (name.clone(), since(*n, before.map_or(0, |b| b.1)))
                })
                .collect(),
            nic_segments: nic.map(|s| s.segments),
            vxlan_outer: nic.map(|_| self.vxlan.iter().filter_map(|v| v.outer_segments).sum()),
            vxlan_inner: (!vxlan_devs.is_empty())
                .then(|| vxlan_devs.iter().map(|s| s.segments).sum()),
            softnet: self.softnet.clone(),
            snmp: self
                .snmp
                .iter()
                .map(|s| (s.netns.clone(), s.counters))
                .collect(),
            qdisc_drops: self
                .snmp
                .iter()
                .map(|s| (s.netns.clone(), s.qdisc_drops))
                .collect(),
        };
        self.ledger = ledger::build(&input);
    }

    /// The stage row for `stage` on `iface`.
    pub fn stage(&self, stage: HookKind, iface: &str) -> Option<&StageRow> {
        self.stages
            .iter()
            .find(|s| s.stage == stage && s.iface == iface)
    }
}
