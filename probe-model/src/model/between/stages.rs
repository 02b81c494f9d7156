//! The hooks' stages between two samples: the NIC (queues, CPUs, outer
//! VXLAN counts per (port, VNI) slot), the VXLAN devices, and the VXLAN rows
//! that pair them.

use std::collections::BTreeMap;

use probe_common::{InnerClass, NicClass, VNI_OTHER_SLOT};

use super::{add_per_cpu, kernel_delta, per_cpu_delta, OuterCounts};
use crate::model::*;

impl Report {
    /// The NIC stage, its queues and CPUs; returns the outer VXLAN counts
    /// per (port, VNI) slot.
    pub(super) fn add_nic(
        &mut self,
        topo: &Topology,
        earlier: &Sample,
        later: &Sample,
    ) -> Vec<OuterCounts> {
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
    pub(super) fn add_vxlan_devs(
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

    /// One VXLAN row per watched (port, VNI) (NIC slot and/or device), then
    /// the NIC's "other" slot.
    pub(super) fn add_vxlan_rows(
        &mut self,
        topo: &Topology,
        outer_by_slot: &[OuterCounts],
        inner_by_vni: &BTreeMap<(u16, u32), (String, u64, u64)>,
    ) {
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
            self.vxlan.push(VxlanRow {
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
            self.vxlan.push(VxlanRow {
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
    }
}
