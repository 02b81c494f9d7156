//! A made-up node for load tests of /metrics: the scrape benchmark
//! (`probe-bench serve`) and the series bound test. No kernel involved: two
//! synthetic [`Sample`]s go through [`Report::between`], the same path as a
//! real run, so whatever bounds a real report (the ledger's top flows, one
//! row per reason slot, per CPU, per NAPI instance) bounds this one too.
//!
//! Every counter is non-zero, every drop-reason slot has drops (the IP ones
//! both before and after decapsulation), every CPU polls every NAPI
//! instance: as many series as a node of that shape can have.

use std::{
    collections::BTreeMap,
    time::{Duration, UNIX_EPOCH},
};

use probe_common::{
    drops::{DropKey, FlowKey, BENIGN_KINDS, CORE_REASON_SLOTS, FAMILY_V4, REASON_SLOTS},
    latency::{NapiKey, SoftirqCpu, HIST_BUCKETS, WORK_BUCKETS},
    stage_latency::{PathCpu, Reached, SocketWait, Transition, PATH_SOCKET_WAIT_SLOTS},
    DevCounters, InnerClass, NicClass, NicCounters, VniCounters, MAX_VNIS, VNI_SLOTS,
};

use super::NodeShape;
use probe_model::{
    counters::{
        drops::DropCounts,
        latency::{LatencyCounts, NapiCounts},
        link::LinkStats,
        nic::NicCounts,
        procfs::{Snmp, SoftnetCpu},
        vxlan::DevCounts,
    },
    model::{DevInfo, NicInfo, Report, ReportKind, Sample, StageLatencyInfo, Topology},
    names::Names,
    reasons::ReasonNames,
};

/// Inode number of the synthetic host namespace.
const HOST: u32 = 4026531840;
/// ifindex of the NIC; VXLAN device d is NIC_IFINDEX + 1 + d, other NAPI
/// devices are from 100 up.
const NIC_IFINDEX: u32 = 2;
const VXLAN_PORT: u16 = 8472;

/// Drop reason name families (prefixes of the stage rules in reasons.rs), so
/// the synthetic reasons land in every stage: IP, sockets, transmit, VXLAN,
/// bridge, other.
const REASON_FAMILIES: [&str; 10] = [
    "IP_", "IPV6_", "TCP_", "UDP_", "SOCKET_", "NEIGH_", "QDISC_", "VXLAN_", "BRIDGE_", "TC_",
];

/// The report since attach of a node shaped like `shape` that saw drops in
/// `flows` distinct flows (IPv4 addresses; any number: a real probe keeps at
/// most FLOW_SLOTS per CPU).
pub fn report(shape: &NodeShape, flows: usize) -> Report {
    let topo = topology(shape);
    Report::between(
        ReportKind::Summary,
        &probe_model::model::Run::watching(&topo),
        &sample(shape, flows, 0),
        &sample(shape, flows, 1),
    )
}

fn vxlan_name(d: usize) -> String {
    format!("flannel.{}", d + 1)
}

fn topology(shape: &NodeShape) -> Topology {
    let core: Vec<(u32, String)> = (0..CORE_REASON_SLOTS)
        .map(|r| {
            let family = REASON_FAMILIES[r as usize % REASON_FAMILIES.len()];
            (r, format!("{family}{r}"))
        })
        .collect();
    let core: Vec<(u32, &str)> = core.iter().map(|(r, n)| (*r, n.as_str())).collect();
    let subsystems = [(1, "MAC80211_UNUSABLE"), (2, "OPENVSWITCH")];
    Topology {
        netns: "host".into(),
        nic: Some(NicInfo {
            iface: "eth0".into(),
            hook: "tcx/ingress".into(),
            queue_slots: shape.nic_queues as u32,
            vnis: (0..shape.vxlan_devs.min(MAX_VNIS))
                .map(|d| (VXLAN_PORT, d as u32 + 1))
                .collect(),
        }),
        vxlan_devs: (0..shape.vxlan_devs)
            .map(|d| DevInfo {
                iface: vxlan_name(d),
                hook: "tcx/ingress".into(),
                vni: Some(d as u32 + 1),
                port: Some(VXLAN_PORT),
            })
            .collect(),
        reasons: Some(ReasonNames::from_lists(&core, &subsystems)),
        latency: true,
        stage_latency: Some(StageLatencyInfo {
            sample_every: 64,
            socket_stages: true,
            socket_unavailable: None,
            trace: false,
            window: Some((Duration::from_secs(1), Duration::from_secs(5))),
            drops_unavailable: None,
        }),
        ..Default::default()
    }
}

/// The cumulative counters at "time" `k` (0: attach, all zero; 1: now).
fn sample(shape: &NodeShape, flows: usize, k: u64) -> Sample {
    let cpus = shape.cpus;
    let per_cpu = |v: u64| (0..cpus).map(move |c| k * (v + c as u64));
    let nic_counters = |q: usize| {
        per_cpu(q as u64 + 1)
            .map(|n| NicCounters {
                skbs: [n; NicClass::COUNT],
                segments: [2 * n; NicClass::COUNT],
                bytes: [1500 * n; NicClass::COUNT],
            })
            .collect::<Vec<_>>()
    };
    let vni_counters = |slot: u32| {
        per_cpu(slot as u64 + 1)
            .map(|n| VniCounters {
                outer_bytes: 1550 * n,
                outer_skbs: n,
                inner: [n; InnerClass::COUNT],
            })
            .collect::<Vec<_>>()
    };
    let mut names = Names::default();
    names.netns.insert(HOST, "host".into());
    names.ifaces.insert((HOST, NIC_IFINDEX), "eth0".into());
    for d in 0..shape.vxlan_devs {
        names
            .ifaces
            .insert((HOST, NIC_IFINDEX + 1 + d as u32), vxlan_name(d));
    }
    let link = |n: u64| LinkStats {
        rx_packets: 1_000_000 * n,
        rx_bytes: 1_500_000_000 * n,
        rx_dropped: 10 * n,
        rx_over_errors: n,
        rx_fifo_errors: n,
        rx_missed_errors: n,
        tx_packets: 1000 * n,
        tx_dropped: n,
        ..Default::default()
    };
    Sample {
        wall: Some(UNIX_EPOCH),
        uptime_s: 3600.0 * k as f64,
        nic: Some(NicCounts {
            // The last slot is the overflow slot.
            queues: (0..=shape.nic_queues).map(nic_counters).collect(),
            vnis: (0..VNI_SLOTS).map(vni_counters).collect(),
        }),
        nic_kernel: Some(link(k)),
        devs: (0..shape.vxlan_devs)
            .map(|d| DevCounts {
                per_cpu: per_cpu(d as u64 + 1)
                    .map(|n| DevCounters {
                        skbs: [n; InnerClass::COUNT],
                        segments: [2 * n; InnerClass::COUNT],
                        bytes: [1450 * n; InnerClass::COUNT],
                    })
                    .collect(),
            })
            .collect(),
        devs_kernel: (0..shape.vxlan_devs).map(|_| Some(link(k))).collect(),
        drops: Some(drops(flows, k)),
        nic_queue_drops: (0..shape.nic_queue_counters)
            .map(|q| (format!("rx_queue_{q}_drops"), k * q as u64))
            .collect(),
        softnet: (0..cpus)
            .map(|c| SoftnetCpu {
                cpu: c as u32,
                processed: k * 1000 * (c as u64 + 1),
                dropped: k,
                time_squeeze: k * 2,
                received_rps: k * 3,
                flow_limit_count: 0,
            })
            .collect(),
        snmp: vec![("host".into(), Snmp::default())],
        names,
        latency: Some(latency(shape, k)),
        latency_paused_s: Some(2.5 * k as f64),
        stage_latency: Some(stage_latency(shape, k)),
        stage_window: Some((1.5 * k as f64, k)),
        socket_waits: socket_waits(shape, k),
        ..Default::default()
    }
}

/// More sockets than `sockets[]` lists, each read on every CPU, every
/// bucket filled.
fn socket_waits(shape: &NodeShape, k: u64) -> Vec<Vec<SocketWait>> {
    (0..PATH_SOCKET_WAIT_SLOTS as u16)
        .map(|slot| {
            let mut w = SocketWait {
                netns: 4026531840 + u32::from(slot),
                port: 8000 + slot,
                protocol: if slot % 2 == 0 { 6 } else { 17 },
                ..Default::default()
            };
            w.queued_to_read.buckets = [k; HIST_BUCKETS];
            w.queued_to_read.sum = k * 1_000_000;
            w.queued_to_read.max = k * 1_000;
            vec![w; shape.cpus]
        })
        .collect()
}

/// Followed packets on every CPU, every transition in every bucket.
fn stage_latency(shape: &NodeShape, k: u64) -> Vec<PathCpu> {
    (0..shape.cpus)
        .map(|_| {
            let mut c = PathCpu {
                reached: [k * 10; Reached::COUNT],
                ..Default::default()
            };
            for t in 0..Transition::COUNT {
                let h = &mut c.transitions[t];
                h.buckets = [k; HIST_BUCKETS];
                h.sum = k * 1_000_000;
                h.max = k * 1_000;
            }
            c
        })
        .collect()
}

/// Drops in every reason slot, `flows` distinct flows, every benign kind.
fn drops(flows: usize, k: u64) -> DropCounts {
    let mut d = DropCounts::zeroed();
    for slot in 0..REASON_SLOTS {
        let n = k * (slot as u64 + 2);
        d.by_reason[slot] = n;
        d.segments[slot] = 2 * n;
        d.vxlan_outer[slot] = k;
        // Some of every IP reason's drops after decapsulation.
        d.decap_skbs[slot] = k;
        d.decap_segments[slot] = k;
        d.keyed.insert(
            DropKey {
                netns: HOST,
                ifindex: NIC_IFINDEX,
                reason: slot as u32,
                decap: 0,
            },
            n,
        );
    }
    for i in 0..flows {
        let b = (i as u32).to_be_bytes();
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[10, b[1], b[2], b[3]]);
        let mut dst = [0u8; 16];
        dst[..4].copy_from_slice(&[10, 244, b[2], b[3]]);
        let key = FlowKey {
            netns: HOST,
            reason: i as u32 % CORE_REASON_SLOTS,
            family: FAMILY_V4,
            src,
            dst,
            ..Default::default()
        };
        d.flows.insert(key, k * (i as u64 % 97 + 1));
    }
    d.benign_skbs = [k; BENIGN_KINDS];
    d.benign_segments = [k; BENIGN_KINDS];
    d.out_of_scope = k;
    d
}

/// NET_RX timing on every CPU, every NAPI instance polled on every CPU
/// (instance 0: the per-CPU backlog, 1: the NIC, then other devices).
fn latency(shape: &NodeShape, k: u64) -> LatencyCounts {
    let softirq = (0..shape.cpus)
        .map(|_| {
            let mut s = SoftirqCpu::default();
            for b in 0..HIST_BUCKETS {
                s.wait[b] = k * (b as u64 + 1);
                s.run[b] = k * (b as u64 + 2);
            }
            s.entries = s.run.iter().sum();
            s.ksoftirqd_entries = k;
            s.wait_sum = k * 1_000_000;
            s.run_sum = k * 2_000_000;
            s.ksoftirqd_run_sum = k * 1000;
            s
        })
        .collect();
    let mut napi = BTreeMap::new();
    for j in 0..shape.napi_instances {
        let key = match j {
            0 => NapiKey {
                netns: 0,
                ifindex: 0,
            },
            1 => NapiKey {
                netns: HOST,
                ifindex: NIC_IFINDEX,
            },
            _ => NapiKey {
                netns: HOST,
                ifindex: 100 + j as u32,
            },
        };
        for cpu in 0..shape.cpus {
            let work = [k * 3; WORK_BUCKETS];
            napi.insert(
                (key, cpu as u32),
                NapiCounts {
                    polls: work.iter().sum(),
                    packets: k * 64 * WORK_BUCKETS as u64,
                    full_budget: k,
                    work,
                },
            );
        }
    }
    LatencyCounts { softirq, napi }
}
