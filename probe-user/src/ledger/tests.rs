use probe_common::drops::{CORE_REASON_SLOTS, FAMILY_V4};

use super::*;

const NO_SOCKET: u32 = 3;
const RCVBUFF: u32 = 6;
const NETFILTER: u32 = 12;
const VNI_NOT_FOUND: u32 = 110;

fn names() -> ReasonNames {
    ReasonNames::from_lists(
        &[
            (NO_SOCKET, "NO_SOCKET"),
            (RCVBUFF, "SOCKET_RCVBUFF"),
            (NETFILTER, "NETFILTER_DROP"),
            (VNI_NOT_FOUND, "VXLAN_VNI_NOT_FOUND"),
        ],
        &[(2, "OPENVSWITCH")],
    )
}

fn key(netns: u32, ifindex: u32, reason: u32) -> DropKey {
    DropKey {
        netns,
        ifindex,
        reason,
        _pad: 0,
    }
}

fn counts(by_reason: &[(u32, u64)], keyed: &[(DropKey, u64)]) -> DropCounts {
    let mut c = DropCounts {
        by_reason: vec![0; REASON_SLOTS],
        ..Default::default()
    };
    for (r, n) in by_reason {
        c.by_reason[probe_common::drops::reason_slot(*r)] += n;
    }
    c.keyed = keyed.iter().copied().collect();
    c
}

fn who() -> Names {
    Names {
        netns: BTreeMap::from([(100, "pod-a".to_string())]),
        ifaces: BTreeMap::from([((100, 2), "eth0".to_string())]),
    }
}

#[test]
fn stages_in_path_order_with_reasons_and_verdict() {
    let names = names();
    let who = who();
    let drops = counts(
        &[(RCVBUFF, 30), (NETFILTER, 5), (NO_SOCKET, 2)],
        &[
            (key(100, 2, RCVBUFF), 30),
            (key(100, 2, NETFILTER), 5),
            (key(100, 2, NO_SOCKET), 2),
        ],
    );
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(drops),
        names: Some(&who),
        nic_kernel: Some(LinkStats {
            rx_packets: 990,
            rx_missed_errors: 10,
            rx_dropped: 4,
            ..Default::default()
        }),
        xdp_packets: Some(990),
        ..Default::default()
    });
    let stages: Vec<&str> = l.ledger.iter().map(|r| r.stage).collect();
    assert_eq!(stages, STAGES);
    let nic = &l.ledger[0];
    assert_eq!((nic.packets_in, nic.drops), (Some(1000), 10));
    assert_eq!(nic.kernel["rx_dropped"], 4);
    let socket = l.ledger.iter().find(|r| r.stage == "socket").unwrap();
    assert_eq!(socket.drops, 32);
    assert_eq!(socket.reasons["SOCKET_RCVBUFF"], 30);
    let v = l.verdict.unwrap();
    assert_eq!(
        (v.stage, v.reason.as_str(), v.packets),
        ("socket", "SOCKET_RCVBUFF", 32)
    );
    // No hook at `socket`: the share is of the nearest upstream input (xdp).
    assert_eq!((v.input, v.percent), (Some(990), Some(3.2)));
    assert_eq!(
        v.text,
        "largest loss: stage socket, reason SOCKET_RCVBUFF, 32 packets (3.2% of its input)"
    );
    assert_eq!(
        l.drops[0],
        DropRow {
            stage: "ip",
            reason: "NETFILTER_DROP".into(),
            iface: Some("eth0".into()),
            netns: Some("pod-a".into()),
            count: 5
        }
    );
    assert_eq!(l.drops.len(), 3);
}

#[test]
fn unkeyed_drops_are_listed_without_a_device() {
    let names = names();
    let drops = counts(&[(NO_SOCKET, 7)], &[(key(100, 2, NO_SOCKET), 5)]);
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(drops),
        ..Default::default()
    });
    let counts: Vec<(Option<String>, u64)> =
        l.drops.iter().map(|d| (d.iface.clone(), d.count)).collect();
    assert_eq!(counts, vec![(Some("if2".into()), 5), (None, 2)]);
    assert_eq!(l.drops.iter().map(|d| d.count).sum::<u64>(), 7);
}

#[test]
fn vxlan_loss_is_split_into_explained_and_unexplained() {
    let names = names();
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(VNI_NOT_FOUND, 6)], &[])),
        vxlan_outer: Some(100),
        vxlan_inner: Some(90),
        ..Default::default()
    });
    assert_eq!(
        l.vxlan_loss,
        Some(VxlanLoss {
            outer_packets: 100,
            inner_packets: 90,
            lost: 10,
            explained: 6,
            unexplained: 4
        })
    );
    let v = l.verdict.unwrap();
    assert_eq!((v.stage, v.percent), ("vxlan", Some(6.0)));
}

#[test]
fn no_drops_no_verdict_and_subsystem_reasons_are_other() {
    let names = names();
    let quiet = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[], &[])),
        ..Default::default()
    });
    assert!(quiet.verdict.is_none() && quiet.drops.is_empty());
    let ovs = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(2 << 16 | 3, 1)], &[])),
        ..Default::default()
    });
    assert_eq!(ovs.drops[0].reason, "OPENVSWITCH");
    assert_eq!(ovs.drops[0].stage, "ip");
    assert!(CORE_REASON_SLOTS as usize + 2 < REASON_SLOTS);
}

#[test]
fn counters_for_cross_checks() {
    let l = build(&LedgerInput {
        softnet: vec![
            SoftnetCpu {
                cpu: 0,
                dropped: 3,
                time_squeeze: 1,
                ..Default::default()
            },
            SoftnetCpu {
                cpu: 1,
                dropped: 2,
                ..Default::default()
            },
        ],
        snmp: vec![(
            "pod".into(),
            Snmp {
                udp_rcvbuf_errors: 9,
                udp_no_ports: 1,
                ..Default::default()
            },
        )],
        ..Default::default()
    });
    let backlog = l.ledger.iter().find(|r| r.stage == "backlog").unwrap();
    assert_eq!(backlog.kernel["softnet_dropped"], 5);
    let socket = l.ledger.iter().find(|r| r.stage == "socket").unwrap();
    assert_eq!(socket.kernel["UdpRcvbufErrors"], 9);
    assert_eq!(socket.kernel["UdpNoPorts"], 1);
}

#[test]
fn deltas_and_top_flows() {
    let names = names();
    let flow = |last: u8, n: u64| {
        let mut k = FlowKey {
            netns: 100,
            reason: RCVBUFF,
            family: FAMILY_V4,
            ..Default::default()
        };
        k.src[..4].copy_from_slice(&[10, 244, 1, 2]);
        k.dst[..4].copy_from_slice(&[10, 244, 2, last]);
        (k, n)
    };
    let mut earlier = counts(&[(RCVBUFF, 1)], &[(key(100, 2, RCVBUFF), 1)]);
    earlier.flows = BTreeMap::from([flow(2, 1)]);
    let mut later = counts(&[(RCVBUFF, 20)], &[(key(100, 2, RCVBUFF), 20)]);
    later.flows = (1..=15).map(|i| flow(i, i as u64)).collect();
    later.flows.insert(flow(2, 5).0, 5);
    let d = drop_delta(&later, Some(&earlier));
    assert_eq!(d.by_reason[RCVBUFF as usize], 19);
    assert_eq!(d.keyed[&key(100, 2, RCVBUFF)], 19);
    assert_eq!(d.flows[&flow(2, 0).0], 4);
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(d),
        ..Default::default()
    });
    assert_eq!(l.flows.len(), TOP_FLOWS);
    assert_eq!(
        (
            l.flows[0].src.as_str(),
            l.flows[0].dst.as_str(),
            l.flows[0].count
        ),
        ("10.244.1.2", "10.244.2.15", 15)
    );
    assert_eq!(
        (l.flows[0].stage, l.flows[0].reason.as_str()),
        ("socket", "SOCKET_RCVBUFF")
    );
}

#[test]
fn no_share_when_the_input_was_counted_elsewhere() {
    let names = names();
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(RCVBUFF, 50)], &[])),
        xdp_packets: Some(20),
        ..Default::default()
    });
    let v = l.verdict.unwrap();
    assert_eq!((v.input, v.percent), (Some(20), None));
    assert_eq!(
        v.text,
        "largest loss: stage socket, reason SOCKET_RCVBUFF, 50 packets"
    );
}
