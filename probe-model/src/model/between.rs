//! `Report::between`: what happened between two samples, stage by stage
//! (the NIC and VXLAN hooks, their CPUs and queues, the (port, VNI) rows),
//! then the ledger. Pure arithmetic on cumulative counters.

use std::collections::BTreeMap;

use probe_common::{InnerClass, NicClass, VNI_OTHER_SLOT};

use super::*;
use crate::{
    delta::{since, Delta},
    latency as lat,
    ledger::{self, LedgerInput},
};

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
    /// What happened between `earlier` and `later`.
    pub fn between(kind: ReportKind, topo: &Topology, earlier: &Sample, later: &Sample) -> Report {
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
            gaps: topo
                .gaps
                .iter()
                .filter(|g| {
                    kind == ReportKind::Summary
                        || (g.lost_s <= later.uptime_s
                            && g.reattached_s.is_none_or(|t| t >= earlier.uptime_s))
                })
                .cloned()
                .collect(),
            resets: counter_resets(topo, earlier, later),
        };
        let outer_by_slot = r.add_nic(topo, earlier, later);
        let inner_by_vni = r.add_vxlan_devs(topo, earlier, later);

        // One row per watched (port, VNI) (NIC slot and/or device), then the
        // "other" slot.
        let nic = topo.nic.as_ref();
        let mut pairs: Vec<(u16, u32)> = nic.map(|n| n.vnis.clone()).unwrap_or_default();
        for pair in inner_by_vni.keys() {
            if !pairs.contains(pair) {
                pairs.push(*pair);
            }
        }
        let outer = |slot: usize| outer_by_slot.get(slot).cloned();
        for (port, vni) in pairs {
            let slot = nic.and_then(|n| n.vnis.iter().position(|p| *p == (port, vni)));
            let o = slot.and_then(outer);
            let dev = inner_by_vni.get(&(port, vni));
            r.vxlan.push(VxlanRow {
                iface: dev.map(|d| d.0.clone()),
                nic: nic.filter(|_| slot.is_some()).map(|n| n.iface.clone()),
                port: Some(port),
                vni: Some(vni),
                outer_skbs: o.as_ref().map(|o| o.skbs),
                outer_segments: o.as_ref().map(|o| o.segments),
                outer_bytes: o.as_ref().map(|o| o.bytes),
                outer_inner: o.map(|o| o.inner),
                inner_skbs: dev.map(|d| d.1),
                inner_segments: dev.map(|d| d.2),
            });
        }
        if let (Some(nic), Some(o)) = (nic, outer(VNI_OTHER_SLOT as usize)) {
            r.vxlan.push(VxlanRow {
                iface: None,
                nic: Some(nic.iface.clone()),
                port: None,
                vni: None,
                outer_skbs: Some(o.skbs),
                outer_segments: Some(o.segments),
                outer_bytes: Some(o.bytes),
                outer_inner: Some(o.inner),
                inner_skbs: None,
                inner_segments: None,
            });
        }
        r.add_ledger(topo, earlier, later);
        if let Some(now) = &later.latency {
            let before = earlier.latency.as_ref();
            r.softirq = lat::softirq_rows(&now.softirq, before.map(|b| b.softirq.as_slice()));
            r.napi = lat::napi_rows(&now.napi, before.map(|b| &b.napi), |k| {
                (
                    later.names.iface(k.netns, k.ifindex),
                    later.names.netns(k.netns),
                )
            });
        }
        if let (Some(now), Some(before)) = (later.latency_paused_s, earlier.latency_paused_s) {
            r.latency_paused_s = Some((now - before).max(0.0));
        }
        if let Some(now) = &later.steering {
            r.steering = Some(crate::steering::steering(now, earlier.steering.as_ref()));
        }
        if let (Some(now), Some(info)) = (&later.stage_latency, &topo.stage_latency) {
            let unavailable = match (&info.socket_unavailable, &info.drops_unavailable) {
                (Some(s), Some(d)) => Some(format!("{s}; {d}")),
                (s, d) => s.clone().or(d.clone()),
            };
            let mut p = crate::stage_latency::stage_latency(
                now,
                earlier.stage_latency.as_deref(),
                info.sample_every,
                unavailable,
            );
            p.drops = crate::stage_latency::trace_drops(
                &later.trace_drops,
                Some(&earlier.trace_drops),
                |slot| match &topo.reasons {
                    Some(names) => names.slot_name(slot),
                    None => format!("reason slot {slot}"),
                },
            );
            p.sockets = crate::stage_latency::socket_rows(
                &later.socket_waits,
                &earlier.socket_waits,
                |netns| later.names.netns(netns),
            );
            if let (Some(now), Some(before)) = (later.stage_window, earlier.stage_window) {
                p.window = info
                    .window
                    .map(|(on, every)| format!("{}/{}", on.as_secs_f64(), every.as_secs_f64()));
                p.attached_s = Some((now.0 - before.0).max(0.0));
                p.window_closed = now.1.saturating_sub(before.1);
            }
            r.stage_latency = Some(p);
        }
        if let (Some(a), Some(b)) = (&earlier.self_sample, &later.self_sample) {
            r.self_cost = Some(SelfCost::between(a, b, r.elapsed_s));
        }
        r
    }

    /// The NIC stage, its queues and CPUs; returns the outer VXLAN counts
    /// per (port, VNI) slot.
    fn add_nic(&mut self, topo: &Topology, earlier: &Sample, later: &Sample) -> Vec<OuterCounts> {
        let (Some(nic), Some(now)) = (&topo.nic, &later.nic) else {
            return Vec::new();
        };
        let before = earlier.nic.as_ref();
        let mut skbs = [0u64; NicClass::COUNT];
        let mut segments = [0u64; NicClass::COUNT];
        let mut bytes = [0u64; NicClass::COUNT];
        let mut cpu_segments: Vec<u64> = Vec::new();
        for (slot, per_cpu) in now.queues.iter().enumerate() {
            let prev = before.and_then(|b| b.queues.get(slot)).map(Vec::as_slice);
            let mut q = (0, 0, 0);
            for class in 0..NicClass::COUNT {
                let segs = per_cpu_delta(per_cpu, prev, |c| c.segments[class]);
                add_per_cpu(&mut cpu_segments, &segs);
                let total = |v: Vec<u64>| v.iter().sum::<u64>();
                let (k, g, b) = (
                    total(per_cpu_delta(per_cpu, prev, |c| c.skbs[class])),
                    total(segs),
                    total(per_cpu_delta(per_cpu, prev, |c| c.bytes[class])),
                );
                (skbs[class], segments[class], bytes[class]) =
                    (skbs[class] + k, segments[class] + g, bytes[class] + b);
                q = (q.0 + k, q.1 + g, q.2 + b);
            }
            // The last slot is the overflow slot: counted in the totals only.
            if (slot as u32) < nic.queue_slots {
                self.queues.push(QueueRow {
                    iface: nic.iface.clone(),
                    queue: slot as u32,
                    skbs: q.0,
                    segments: q.1,
                    bytes: q.2,
                });
            }
        }
        let outer = now
            .vnis
            .iter()
            .enumerate()
            .map(|(slot, per_cpu)| {
                let prev = before.and_then(|b| b.vnis.get(slot)).map(Vec::as_slice);
                let sum = |f: &dyn Fn(&probe_common::VniCounters) -> u64| -> u64 {
                    per_cpu_delta(per_cpu, prev, f).iter().sum()
                };
                OuterCounts {
                    skbs: sum(&|v| v.outer_skbs),
                    segments: sum(&|v| v.outer_segments()),
                    bytes: sum(&|v| v.outer_bytes),
                    inner: InnerClass::ALL
                        .iter()
                        .map(|c| (c.name(), sum(&|v| v.inner[*c as usize])))
                        .collect(),
                }
            })
            .collect();
        let kernel = kernel_delta(later.nic_kernel.as_ref(), earlier.nic_kernel.as_ref());
        let (skbs, segments_total) = (skbs.iter().sum(), segments.iter().sum());
        self.stages.push(StageRow {
            stage: HookKind::Nic,
            iface: nic.iface.clone(),
            hook: nic.hook.clone(),
            skbs,
            segments: segments_total,
            bytes: bytes.iter().sum(),
            gro_ratio: gro_ratio(skbs, segments_total),
            drops: kernel.map(|k| k.rx_drops()),
            classes: NicClass::ALL
                .iter()
                .map(|c| (c.name(), segments[*c as usize]))
                .collect(),
            kernel,
        });
        for (cpu, segments) in cpu_segments.into_iter().enumerate() {
            self.cpus.push(CpuRow {
                cpu: cpu as u32,
                stage: HookKind::Nic,
                iface: nic.iface.clone(),
                segments,
            });
        }
        outer
    }

    /// The VXLAN devices' stages, TX rows and CPUs; returns, per (port, VNI)
    /// a device owns, (device, skbs, segments).
    fn add_vxlan_devs(
        &mut self,
        topo: &Topology,
        earlier: &Sample,
        later: &Sample,
    ) -> BTreeMap<(u16, u32), (String, u64, u64)> {
        let mut inner_by_vni = BTreeMap::new();
        for (i, dev) in topo.vxlan_devs.iter().enumerate() {
            let Some(now) = later.devs.get(i) else {
                continue;
            };
            let prev = earlier.devs.get(i).map(|b| b.per_cpu.as_slice());
            let mut classes = BTreeMap::new();
            let (mut skbs, mut segments, mut bytes) = (0, 0, 0);
            let mut cpu_segments: Vec<u64> = Vec::new();
            for class in InnerClass::ALL {
                if class == InnerClass::Truncated {
                    continue; // skb->protocol is always known on the device
                }
                let c = class as usize;
                let segs = per_cpu_delta(&now.per_cpu, prev, |d| d.segments[c]);
                add_per_cpu(&mut cpu_segments, &segs);
                let n: u64 = segs.iter().sum();
                classes.insert(class.name(), n);
                segments += n;
                skbs += per_cpu_delta(&now.per_cpu, prev, |d| d.skbs[c])
                    .iter()
                    .sum::<u64>();
                bytes += per_cpu_delta(&now.per_cpu, prev, |d| d.bytes[c])
                    .iter()
                    .sum::<u64>();
            }
            let kernel = kernel_delta(
                later.devs_kernel.get(i).and_then(Option::as_ref),
                earlier.devs_kernel.get(i).and_then(Option::as_ref),
            );
            self.stages.push(StageRow {
                stage: HookKind::Vxlan,
                iface: dev.iface.clone(),
                hook: dev.hook.clone(),
                skbs,
                segments,
                bytes,
                gro_ratio: gro_ratio(skbs, segments),
                drops: kernel.map(|k| k.rx_drops()),
                classes,
                kernel,
            });
            if let Some(k) = kernel {
                self.tx.push(TxRow {
                    iface: dev.iface.clone(),
                    skbs: k.tx_packets,
                    bytes: k.tx_bytes,
                    dropped_skbs: k.tx_dropped,
                });
            }
            for (cpu, n) in cpu_segments.into_iter().enumerate() {
                self.cpus.push(CpuRow {
                    cpu: cpu as u32,
                    stage: HookKind::Vxlan,
                    iface: dev.iface.clone(),
                    segments: n,
                });
            }
            if let Some(vni) = dev.vni {
                let port = dev.port.unwrap_or(0);
                let e = inner_by_vni
                    .entry((port, vni))
                    .or_insert_with(|| (dev.iface.clone(), 0, 0));
                (e.1, e.2) = (e.1 + skbs, e.2 + segments);
            }
        }
        inner_by_vni
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
