use probe_common::{DevCounters, NicCounters, VniCounters};

use super::*;

const CPUS: usize = 2;

pub(crate) fn topo() -> Topology {
    Topology {
        netns: "lab".into(),
        nic: Some(NicInfo {
            iface: "eth0".into(),
            hook: "xdp/native".into(),
            queue_slots: 1,
            vnis: vec![1],
        }),
        vxlan_devs: vec![DevInfo {
            iface: "flannel.1".into(),
            vni: Some(1),
        }],
        unavailable: vec![],
        ..Default::default()
    }
}

/// A sample where CPU `cpu` saw `vxlan` VXLAN packets of 100 bytes (VNI 1,
/// inner IPv4) on queue 0, `ipv4` plain IPv4 packets, and the device saw
/// `inner` ingress packets.
pub(crate) fn sample(
    uptime_s: f64,
    cpu: usize,
    vxlan: u64,
    ipv4: u64,
    inner: u64,
    kernel_rx: u64,
) -> Sample {
    let mut q = vec![NicCounters::default(); CPUS];
    q[cpu].packets[NicClass::Vxlan as usize] = vxlan;
    q[cpu].bytes[NicClass::Vxlan as usize] = vxlan * 100;
    q[cpu].packets[NicClass::Ipv4 as usize] = ipv4;
    q[cpu].bytes[NicClass::Ipv4 as usize] = ipv4 * 60;
    let mut v = vec![VniCounters::default(); CPUS];
    v[cpu].outer_bytes = vxlan * 100;
    v[cpu].inner[InnerClass::Ipv4 as usize] = vxlan;
    let mut vnis = vec![vec![VniCounters::default(); CPUS]; probe_common::VNI_SLOTS as usize];
    vnis[0] = v;
    let mut d = vec![DevCounters::default(); CPUS];
    d[cpu].packets[InnerClass::Ipv4 as usize] = inner;
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
        devs: vec![DevCounts {
            dirs: vec![d, vec![DevCounters::default(); CPUS]],
        }],
        devs_kernel: vec![Some(LinkStats {
            rx_packets: inner,
            ..Default::default()
        })],
        ..Default::default()
    }
}

#[test]
fn interval_is_the_difference_of_two_samples() {
    let a = sample(1.0, 0, 10, 5, 9, 1000);
    let b = sample(2.5, 0, 110, 7, 100, 1102);
    let r = Report::between(ReportKind::Interval, &topo(), &a, &b);
    assert_eq!(r.elapsed_s, 1.5);
    let xdp = r.stage("xdp", "eth0").unwrap();
    assert_eq!((xdp.packets, xdp.bytes), (102, 100 * 100 + 2 * 60));
    assert_eq!(xdp.classes["vxlan"], 100);
    assert_eq!(xdp.classes["ipv4"], 2);
    assert_eq!(xdp.kernel.unwrap().rx_packets, 102);
    assert_eq!(xdp.drops, Some(0));
    assert_eq!(xdp.hook, "xdp/native");
    let vx = r.stage("vxlan", "flannel.1").unwrap();
    assert_eq!((vx.packets, vx.bytes), (91, 91 * 50));
    assert_eq!(
        r.queues,
        vec![QueueRow {
            iface: "eth0".into(),
            queue: 0,
            packets: 102,
            bytes: 10120
        }]
    );
}

#[test]
fn vxlan_rows_join_outer_and_inner_by_vni() {
    let zero = sample(0.0, 0, 0, 0, 0, 0).attach_baseline();
    let now = sample(3.0, 1, 500, 0, 498, 500);
    let r = Report::between(ReportKind::Summary, &topo(), &zero, &now);
    let row = &r.vxlan[0];
    assert_eq!(row.vni, Some(1));
    assert_eq!(row.iface.as_deref(), Some("flannel.1"));
    assert_eq!(row.nic.as_deref(), Some("eth0"));
    assert_eq!(
        (row.outer_packets, row.inner_packets),
        (Some(500), Some(498))
    );
    assert_eq!(row.outer_inner.as_ref().unwrap()["ipv4"], 500);
    let other = &r.vxlan[1];
    assert_eq!(
        (other.vni, other.outer_packets, other.inner_packets),
        (None, Some(0), None)
    );
}

#[test]
fn per_cpu_rows_keep_the_cpu() {
    let zero = sample(0.0, 0, 0, 0, 0, 0).attach_baseline();
    let r = Report::between(
        ReportKind::Summary,
        &topo(),
        &zero,
        &sample(1.0, 1, 7, 0, 7, 7),
    );
    let xdp: Vec<_> = r
        .cpus
        .iter()
        .filter(|c| c.stage == "xdp")
        .map(|c| (c.cpu, c.packets))
        .collect();
    assert_eq!(xdp, vec![(0, 0), (1, 7)]);
    let vx: Vec<_> = r
        .cpus
        .iter()
        .filter(|c| c.stage == "vxlan")
        .map(|c| (c.cpu, c.packets))
        .collect();
    assert_eq!(vx, vec![(0, 0), (1, 7)]);
}

#[test]
fn baseline_zeroes_bpf_counters_but_keeps_kernel_counters() {
    let s = sample(4.0, 0, 10, 0, 10, 77).attach_baseline();
    assert_eq!(s.uptime_s, 0.0);
    assert!(s
        .nic
        .as_ref()
        .unwrap()
        .queues
        .iter()
        .flatten()
        .all(|c| *c == NicCounters::default()));
    assert_eq!(s.nic_kernel.unwrap().rx_packets, 77);
}

#[test]
fn missing_hooks_give_nulls_not_zeros() {
    let mut t = topo();
    t.nic = None;
    let a = sample(0.0, 0, 0, 0, 0, 0);
    let b = sample(1.0, 0, 0, 0, 4, 0);
    let r = Report::between(ReportKind::Interval, &t, &a, &b);
    assert!(r.stage("xdp", "eth0").is_none());
    assert_eq!(r.vxlan.len(), 1);
    assert_eq!(
        (r.vxlan[0].outer_packets, r.vxlan[0].inner_packets),
        (None, Some(4))
    );
}

#[test]
fn json_has_the_documented_fields() {
    let zero = sample(0.0, 0, 0, 0, 0, 0).attach_baseline();
    let r = Report::between(
        ReportKind::Summary,
        &topo(),
        &zero,
        &sample(1.0, 0, 1, 0, 1, 1),
    );
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["type"], "summary");
    assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
    for key in ["stages", "vxlan", "cpus", "queues", "tx", "unavailable"] {
        assert!(v[key].is_array(), "{key}");
    }
    for key in ["stage", "iface", "packets", "bytes", "drops"] {
        assert!(v["stages"][0].get(key).is_some(), "{key}");
    }
    for key in ["iface", "vni", "outer_packets", "inner_packets"] {
        assert!(v["vxlan"][0].get(key).is_some(), "{key}");
    }
}
