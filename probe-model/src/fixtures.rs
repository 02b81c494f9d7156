//! Made-up samples and topologies for tests, here and in probe-user (its
//! dev-dependency turns on the `fixtures` feature).

use probe_common::{DevCounters, InnerClass, NicClass, NicCounters, VniCounters};

use crate::{
    counters::{link::LinkStats, nic::NicCounts, vxlan::DevCounts},
    model::{DevInfo, NicInfo, Sample, Topology},
};

/// CPUs in every fixture sample.
pub const CPUS: usize = 2;

pub fn topo() -> Topology {
    Topology {
        netns: "lab".into(),
        nic: Some(NicInfo {
            iface: "eth0".into(),
            hook: "tcx/ingress".into(),
            queue_slots: 1,
            vnis: vec![(8472, 1)],
        }),
        vxlan_devs: vec![DevInfo {
            iface: "flannel.1".into(),
            hook: "tcx/ingress".into(),
            vni: Some(1),
            port: Some(8472),
        }],
        unavailable: vec![],
        ..Default::default()
    }
}

/// A sample where CPU `cpu` saw `vxlan` VXLAN packets of 100 bytes (VNI 1,
/// inner IPv4) on queue 0, `ipv4` plain IPv4 packets, and the device saw
/// `inner` ingress segments, merged by GRO into skbs of up to 10 segments.
pub fn sample(
    uptime_s: f64,
    cpu: usize,
    vxlan: u64,
    ipv4: u64,
    inner: u64,
    kernel_rx: u64,
) -> Sample {
    let mut q = vec![NicCounters::default(); CPUS];
    q[cpu].skbs[NicClass::Vxlan as usize] = vxlan;
    q[cpu].segments[NicClass::Vxlan as usize] = vxlan;
    q[cpu].bytes[NicClass::Vxlan as usize] = vxlan * 100;
    q[cpu].skbs[NicClass::Ipv4 as usize] = ipv4;
    q[cpu].segments[NicClass::Ipv4 as usize] = ipv4;
    q[cpu].bytes[NicClass::Ipv4 as usize] = ipv4 * 60;
    let mut v = vec![VniCounters::default(); CPUS];
    v[cpu].outer_bytes = vxlan * 100;
    v[cpu].outer_skbs = vxlan;
    v[cpu].inner[InnerClass::Ipv4 as usize] = vxlan;
    let mut vnis = vec![vec![VniCounters::default(); CPUS]; probe_common::VNI_SLOTS as usize];
    vnis[0] = v;
    let mut d = vec![DevCounters::default(); CPUS];
    d[cpu].skbs[InnerClass::Ipv4 as usize] = inner.div_ceil(10);
    d[cpu].segments[InnerClass::Ipv4 as usize] = inner;
    d[cpu].bytes[InnerClass::Ipv4 as usize] = inner * 50;
    Sample {
        wall: Some(std::time::UNIX_EPOCH),
        uptime_s,
        nic: Some(NicCounts {
            queues: vec![q, vec![NicCounters::default(); CPUS]],
            vnis,
        }),
        nic_kernel: Some(LinkStats {
            rx_packets: kernel_rx,
            rx_dropped: 1,
            ..Default::default()
        }),
        devs: vec![DevCounts { per_cpu: d }],
        devs_kernel: vec![Some(LinkStats {
            rx_packets: inner,
            tx_packets: 3,
            tx_dropped: 1,
            ..Default::default()
        })],
        ..Default::default()
    }
}
