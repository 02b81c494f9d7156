//! The one model every output is rendered from: cumulative samples of the
//! kernel counters, and reports (what happened between two samples).
//!
//! Pure arithmetic, no I/O: unit-tested without root.

use std::{collections::BTreeMap, time::SystemTime};

use probe_common::{InnerClass, NicClass, DIR_EGRESS, DIR_INGRESS, VNI_OTHER_SLOT};
use serde::Serialize;

use crate::{
    drops::{DropCounts, ReasonNames},
    latency::{self as lat, LatencyCounts, NapiRow, SoftirqRow},
    ledger::{self, Ledger, LedgerInput, Names},
    probes::{DevCounts, NicCounts, Unavailable},
    procfs::{Snmp, SoftnetCpu},
    rtnl::LinkStats,
    selfcost::{SelfCost, SelfSample},
};

/// What is being watched: fixed for the whole run.
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
    /// `--steering`: the steering probes are attached.
    pub steering: bool,
    /// Watched devices that disappeared, and when their hooks came back.
    pub gaps: Vec<Gap>,
}

/// A watched device disappeared (its hooks with it) and, once a device of the
/// same name came back (a flanneld restart recreates flannel.1), the probe
/// attached to it. Counters carry on from where the old hooks stopped; what
/// the device received between the two is not counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    pub stage: &'static str,
    pub iface: String,
    /// Seconds since attach when the probe found the device gone or
    /// replaced (it looks every 200 ms).
    pub lost_s: f64,
    /// Seconds since attach when the hooks were attached to the new device;
    /// null while it is still missing.
    pub reattached_s: Option<f64>,
    pub old_ifindex: u32,
    pub new_ifindex: Option<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct NicInfo {
    pub iface: String,
    /// How the NIC stage is hooked: "xdp/native", "xdp/generic", or
    /// "tcx/ingress" when another owner's program holds the XDP hook.
    pub hook: String,
    pub queue_slots: u32,
    /// VNIs with their own slot, in slot order.
    pub vnis: Vec<u32>,
}

#[derive(Clone, Debug, Default)]
pub struct DevInfo {
    pub iface: String,
    pub vni: Option<u32>,
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
    /// /proc/net/snmp per namespace read (label, counters).
    pub snmp: Vec<(String, Snmp)>,
    pub names: Names,
    /// With `--self`: the probe's own CPU, memory and BPF program counters.
    pub self_sample: Option<SelfSample>,
    /// NET_RX softirq and NAPI counters.
    pub latency: Option<LatencyCounts>,
    /// `--steering` matrices.
    pub steering: Option<crate::steering::SteerCounts>,
}

impl Sample {
    /// The same sample with every BPF counter at zero (the maps' state at
    /// attach time) but the kernel's device counters kept: the baseline for
    /// "since attach" totals.
    pub fn attach_baseline(&self) -> Sample {
        let mut s = self.clone();
        s.uptime_s = 0.0;
        s.nic = s.nic.map(|n| NicCounts {
            queues: n
                .queues
                .iter()
                .map(|q| vec![Default::default(); q.len()])
                .collect(),
            vnis: n
                .vnis
                .iter()
                .map(|v| vec![Default::default(); v.len()])
                .collect(),
        });
        s.devs = s
            .devs
            .iter()
            .map(|d| DevCounts {
                dirs: d
                    .dirs
                    .iter()
                    .map(|x| vec![Default::default(); x.len()])
                    .collect(),
            })
            .collect();
        // Programs ran 0 times at attach; the process's CPU and memory are what they are.
        if let Some(own) = s.self_sample.as_mut() {
            for p in &mut own.programs {
                (p.runs, p.run_ns) = (0, 0);
            }
        }
        s.latency = s.latency.map(|l| LatencyCounts {
            softirq: vec![Default::default(); l.softirq.len()],
            napi: Default::default(),
        });
        s.steering = s.steering.map(|st| crate::steering::SteerCounts {
            napi_to_stack: vec![0; st.napi_to_stack.len()],
            ready_to_reader: vec![0; st.ready_to_reader.len()],
        });
        s.drops = s.drops.map(|d| DropCounts {
            by_reason: vec![0; d.by_reason.len()],
            ..Default::default()
        });
        s
    }
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
    /// /proc/net/snmp over the period, per namespace read.
    pub snmp: Vec<SnmpRow>,
    /// `--self`: what the probe cost over the period; null without `--self`.
    #[serde(rename = "self")]
    pub self_cost: Option<SelfCost>,
    /// NET_RX softirq timing: the all-CPU row (`cpu: null`) first, then per CPU.
    pub softirq: Vec<SoftirqRow>,
    /// NAPI polls per device and CPU.
    pub napi: Vec<NapiRow>,
    /// Rules that fired on this report's evidence (advice.rs).
    pub advice: Vec<crate::advice::Advice>,
    /// `--steering`: poll CPU -> stack CPU, and queueing CPU -> reader CPU.
    pub steering: Option<crate::steering::Steering>,
    /// Watched devices that disappeared during the period, and when the
    /// probe re-attached to their successors (see [`Gap`]).
    pub gaps: Vec<Gap>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SnmpRow {
    pub netns: String,
    #[serde(flatten)]
    pub counters: Snmp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageRow {
    /// `xdp` (XDP on the NIC) or `vxlan` (TCX ingress on the VXLAN device).
    pub stage: &'static str,
    pub iface: String,
    /// `xdp/native`, `xdp/generic`, `tcx/ingress`.
    pub hook: String,
    pub packets: u64,
    pub bytes: u64,
    /// Receive drops the device's own counters report (rx_dropped +
    /// rx_missed_errors + rx_fifo_errors + rx_over_errors); null if unreadable.
    pub drops: Option<u64>,
    /// Packets per class: NIC classes at `xdp`, inner classes at `vxlan`.
    pub classes: BTreeMap<&'static str, u64>,
    /// The device's kernel counters over the same period, for cross-checking.
    pub kernel: Option<LinkStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VxlanRow {
    /// The VXLAN device of this VNI, when one is watched.
    pub iface: Option<String>,
    /// The NIC where the outer packets were counted.
    pub nic: Option<String>,
    /// None: VXLAN packets of VNIs outside the watched set (or too short to carry one).
    pub vni: Option<u32>,
    /// Outer VXLAN packets seen by XDP on the NIC (null if that hook is missing).
    pub outer_packets: Option<u64>,
    pub outer_bytes: Option<u64>,
    /// Outer packets by inner frame class.
    pub outer_inner: Option<BTreeMap<&'static str, u64>>,
    /// Decapsulated packets seen entering the VXLAN device (null if not watched).
    pub inner_packets: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TxRow {
    pub iface: String,
    pub packets: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CpuRow {
    pub cpu: u32,
    pub stage: &'static str,
    pub iface: String,
    pub packets: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueueRow {
    pub iface: String,
    pub queue: u32,
    pub packets: u64,
    pub bytes: u64,
}

fn sub(a: u64, b: u64) -> u64 {
    a.wrapping_sub(b)
}

fn kernel_delta(later: Option<&LinkStats>, earlier: Option<&LinkStats>) -> Option<LinkStats> {
    Some(later?.delta(earlier?))
}

/// `later[i][cpu] - earlier[i][cpu]` through a field accessor, summed per CPU.
fn per_cpu_delta<T>(later: &[T], earlier: Option<&[T]>, f: impl Fn(&T) -> u64) -> Vec<u64> {
    later
        .iter()
        .enumerate()
        .map(|(cpu, v)| sub(f(v), earlier.and_then(|e| e.get(cpu)).map_or(0, &f)))
        .collect()
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
            napi: Vec::new(),
            advice: Vec::new(),
            steering: None,
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
        };
        let mut outer_by_slot: Vec<(u64, u64, BTreeMap<&'static str, u64>)> = Vec::new();
        if let (Some(nic), Some(now)) = (&topo.nic, &later.nic) {
            let before = earlier.nic.as_ref();
            let mut classes = [0u64; NicClass::COUNT];
            let mut class_bytes = [0u64; NicClass::COUNT];
            let mut cpu_packets: Vec<u64> = Vec::new();
            for (slot, per_cpu) in now.queues.iter().enumerate() {
                let prev = before.and_then(|b| b.queues.get(slot)).map(Vec::as_slice);
                let (mut q_packets, mut q_bytes) = (0, 0);
                for class in 0..NicClass::COUNT {
                    let p = per_cpu_delta(per_cpu, prev, |c| c.packets[class]);
                    let b: u64 = per_cpu_delta(per_cpu, prev, |c| c.bytes[class])
                        .iter()
                        .sum();
                    if cpu_packets.len() < p.len() {
                        cpu_packets.resize(p.len(), 0);
                    }
                    for (cpu, n) in p.iter().enumerate() {
                        cpu_packets[cpu] += n;
                    }
                    let total: u64 = p.iter().sum();
                    classes[class] += total;
                    class_bytes[class] += b;
                    q_packets += total;
                    q_bytes += b;
                }
                // The last slot is the overflow slot: counted in the totals only.
                if (slot as u32) < nic.queue_slots {
                    r.queues.push(QueueRow {
                        iface: nic.iface.clone(),
                        queue: slot as u32,
                        packets: q_packets,
                        bytes: q_bytes,
                    });
                }
            }
            for (slot, per_cpu) in now.vnis.iter().enumerate() {
                let prev = before.and_then(|b| b.vnis.get(slot)).map(Vec::as_slice);
                let packets = per_cpu_delta(per_cpu, prev, |v| v.outer_packets())
                    .iter()
                    .sum();
                let bytes = per_cpu_delta(per_cpu, prev, |v| v.outer_bytes).iter().sum();
                let inner = InnerClass::ALL
                    .iter()
                    .map(|c| {
                        (
                            c.name(),
                            per_cpu_delta(per_cpu, prev, |v| v.inner[*c as usize])
                                .iter()
                                .sum(),
                        )
                    })
                    .collect();
                outer_by_slot.push((packets, bytes, inner));
            }
            let kernel = kernel_delta(later.nic_kernel.as_ref(), earlier.nic_kernel.as_ref());
            r.stages.push(StageRow {
                stage: "xdp",
                iface: nic.iface.clone(),
                hook: nic.hook.clone(),
                packets: classes.iter().sum(),
                bytes: class_bytes.iter().sum(),
                drops: kernel.map(|k| k.rx_drops()),
                classes: NicClass::ALL
                    .iter()
                    .map(|c| (c.name(), classes[*c as usize]))
                    .collect(),
                kernel,
            });
            for (cpu, packets) in cpu_packets.into_iter().enumerate() {
                r.cpus.push(CpuRow {
                    cpu: cpu as u32,
                    stage: "xdp",
                    iface: nic.iface.clone(),
                    packets,
                });
            }
        }

        let mut inner_by_vni: BTreeMap<u32, (String, u64)> = BTreeMap::new();
        for (i, dev) in topo.vxlan_devs.iter().enumerate() {
            let Some(now) = later.devs.get(i) else {
                continue;
            };
            let before = earlier.devs.get(i);
            let dir_delta = |dir: u32, class: usize, bytes: bool| -> Vec<u64> {
                let now = now.dirs.get(dir as usize).map(Vec::as_slice).unwrap_or(&[]);
                let prev = before
                    .and_then(|b| b.dirs.get(dir as usize))
                    .map(Vec::as_slice);
                per_cpu_delta(now, prev, |d| {
                    if bytes {
                        d.bytes[class]
                    } else {
                        d.packets[class]
                    }
                })
            };
            let mut classes = BTreeMap::new();
            let (mut packets, mut bytes, mut tx_packets, mut tx_bytes) = (0, 0, 0, 0);
            let mut cpu_packets: Vec<u64> = Vec::new();
            for class in InnerClass::ALL {
                if class == InnerClass::Truncated {
                    continue; // skb->protocol is always known on the device
                }
                let p = dir_delta(DIR_INGRESS, class as usize, false);
                if cpu_packets.len() < p.len() {
                    cpu_packets.resize(p.len(), 0);
                }
                for (cpu, n) in p.iter().enumerate() {
                    cpu_packets[cpu] += n;
                }
                let n: u64 = p.iter().sum();
                classes.insert(class.name(), n);
                packets += n;
                bytes += dir_delta(DIR_INGRESS, class as usize, true)
                    .iter()
                    .sum::<u64>();
                tx_packets += dir_delta(DIR_EGRESS, class as usize, false)
                    .iter()
                    .sum::<u64>();
                tx_bytes += dir_delta(DIR_EGRESS, class as usize, true)
                    .iter()
                    .sum::<u64>();
            }
            let kernel = kernel_delta(
                later.devs_kernel.get(i).and_then(Option::as_ref),
                earlier.devs_kernel.get(i).and_then(Option::as_ref),
            );
            r.stages.push(StageRow {
                stage: "vxlan",
                iface: dev.iface.clone(),
                hook: "tcx/ingress".into(),
                packets,
                bytes,
                drops: kernel.map(|k| k.rx_drops()),
                classes,
                kernel,
            });
            r.tx.push(TxRow {
                iface: dev.iface.clone(),
                packets: tx_packets,
                bytes: tx_bytes,
            });
            for (cpu, n) in cpu_packets.into_iter().enumerate() {
                r.cpus.push(CpuRow {
                    cpu: cpu as u32,
                    stage: "vxlan",
                    iface: dev.iface.clone(),
                    packets: n,
                });
            }
            if let Some(vni) = dev.vni {
                let e = inner_by_vni
                    .entry(vni)
                    .or_insert_with(|| (dev.iface.clone(), 0));
                e.1 += packets;
            }
        }

        // One row per watched VNI (NIC slot and/or device), then the "other" slot.
        let nic = topo.nic.as_ref();
        let mut vnis: Vec<u32> = nic.map(|n| n.vnis.clone()).unwrap_or_default();
        for vni in inner_by_vni.keys() {
            if !vnis.contains(vni) {
                vnis.push(*vni);
            }
        }
        let outer = |slot: usize| outer_by_slot.get(slot).cloned();
        for vni in vnis {
            let slot = nic.and_then(|n| n.vnis.iter().position(|v| *v == vni));
            let o = slot.and_then(outer);
            let dev = inner_by_vni.get(&vni);
            r.vxlan.push(VxlanRow {
                iface: dev.map(|d| d.0.clone()),
                nic: nic.filter(|_| slot.is_some()).map(|n| n.iface.clone()),
                vni: Some(vni),
                outer_packets: o.as_ref().map(|o| o.0),
                outer_bytes: o.as_ref().map(|o| o.1),
                outer_inner: o.map(|o| o.2),
                inner_packets: dev.map(|d| d.1),
            });
        }
        if let (Some(nic), Some(o)) = (nic, outer(VNI_OTHER_SLOT as usize)) {
            r.vxlan.push(VxlanRow {
                iface: None,
                nic: Some(nic.iface.clone()),
                vni: None,
                outer_packets: Some(o.0),
                outer_bytes: Some(o.1),
                outer_inner: Some(o.2),
                inner_packets: None,
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
        if let Some(now) = &later.steering {
            r.steering = Some(crate::steering::steering(now, earlier.steering.as_ref()));
        }
        if let (Some(a), Some(b)) = (&earlier.self_sample, &later.self_sample) {
            r.self_cost = Some(SelfCost::between(a, b, r.elapsed_s));
        }
        r
    }

    fn add_ledger(&mut self, topo: &Topology, earlier: &Sample, later: &Sample) {
        self.softnet = later
            .softnet
            .iter()
            .map(|now| {
                let before = earlier.softnet.iter().find(|c| c.cpu == now.cpu);
                let d = |f: fn(&SoftnetCpu) -> u64| sub(f(now), before.map_or(0, f));
                SoftnetCpu {
                    cpu: now.cpu,
                    processed: d(|c| c.processed),
                    dropped: d(|c| c.dropped),
                    time_squeeze: d(|c| c.time_squeeze),
                    received_rps: d(|c| c.received_rps),
                    flow_limit_count: d(|c| c.flow_limit_count),
                }
            })
            .collect();
        self.snmp = later
            .snmp
            .iter()
            .filter_map(|(netns, now)| {
                let before = earlier.snmp.iter().find(|(n, _)| n == netns)?;
                Some(SnmpRow {
                    netns: netns.clone(),
                    counters: now.delta(&before.1),
                })
            })
            .collect();
        let xdp = self.stages.iter().find(|s| s.stage == "xdp");
        let vxlan_devs: Vec<&StageRow> =
            self.stages.iter().filter(|s| s.stage == "vxlan").collect();
        let input = LedgerInput {
            reasons: topo.reasons.as_ref(),
            drops: later
                .drops
                .as_ref()
                .map(|d| ledger::drop_delta(d, earlier.drops.as_ref())),
            names: Some(&later.names),
            nic_kernel: xdp.and_then(|s| s.kernel),
            nic_queue_drops: later
                .nic_queue_drops
                .iter()
                .map(|(name, n)| {
                    let before = earlier.nic_queue_drops.iter().find(|(e, _)| e == name);
                    (name.clone(), sub(*n, before.map_or(0, |b| b.1)))
                })
                .collect(),
            xdp_packets: xdp.map(|s| s.packets),
            vxlan_outer: xdp.map(|_| self.vxlan.iter().filter_map(|v| v.outer_packets).sum()),
            vxlan_inner: (!vxlan_devs.is_empty())
                .then(|| vxlan_devs.iter().map(|s| s.packets).sum()),
            softnet: self.softnet.clone(),
            snmp: self
                .snmp
                .iter()
                .map(|s| (s.netns.clone(), s.counters))
                .collect(),
        };
        self.ledger = ledger::build(&input);
    }

    /// The stage row for `stage` on `iface`.
    pub fn stage(&self, stage: &str, iface: &str) -> Option<&StageRow> {
        self.stages
            .iter()
            .find(|s| s.stage == stage && s.iface == iface)
    }
}

#[cfg(test)]
pub(crate) mod tests;
