use probe_common::drops::{DropKey, FlowKey, CORE_REASON_SLOTS, FAMILY_V4};

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
        decap: 0,
    }
}

/// Drops of one segment per skb.
fn counts(by_reason: &[(u32, u64)], keyed: &[(DropKey, u64)]) -> DropCounts {
    let mut c = DropCounts::zeroed();
    for (r, n) in by_reason {
        c.by_reason[probe_common::drops::reason_slot(*r)] += n;
        c.segments[probe_common::drops::reason_slot(*r)] += n;
    }
    c.keyed = keyed.iter().copied().collect();
    c
}

fn who() -> Names {
    Names {
        netns: BTreeMap::from([(100, "pod-a".to_string())]),
        ifaces: BTreeMap::from([((100, 2), "eth0".to_string())]),
        functions: BTreeMap::new(),
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
        nic_segments: Some(990),
        ..Default::default()
    });
    let stages: Vec<Stage> = l.ledger.iter().map(|r| r.stage).collect();
    assert_eq!(stages, Stage::RECEIVE);
    let nic = &l.ledger[0];
    // What the hook saw plus what the ring dropped.
    assert_eq!((nic.segments_in, nic.drops), (Some(1000), 10));
    assert_eq!(nic.kernel["rx_dropped"], 4);
    let socket = l.ledger.iter().find(|r| r.stage == "socket").unwrap();
    assert_eq!(socket.drops, 32);
    assert_eq!(socket.reasons["SOCKET_RCVBUFF"].segments, 30);
    let v = l.verdict.unwrap();
    // The stage's total, and the top reason's own count.
    assert_eq!(
        (v.stage, v.reason.as_deref(), v.segments, v.reason_segments),
        (Some(Stage::Socket), Some("SOCKET_RCVBUFF"), 32, 30)
    );
    // No hook at `socket`: the share is of the nearest upstream input (nic).
    assert_eq!((v.input, v.percent), (Some(1000), Some(3.2)));
    assert_eq!(
        v.text,
        "largest loss: stage socket, 32 segments (3.2% of its input); top reason SOCKET_RCVBUFF: 30 segments"
    );
    assert_eq!(
        l.drops[0],
        DropRow {
            stage: Stage::Ip,
            reason: "NETFILTER_DROP".into(),
            iface: Some("eth0".into()),
            netns: Some("pod-a".into()),
            skbs: 5
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
        l.drops.iter().map(|d| (d.iface.clone(), d.skbs)).collect();
    assert_eq!(counts, vec![(Some("if2".into()), 5), (None, 2)]);
    assert_eq!(l.drops.iter().map(|d| d.skbs).sum::<u64>(), 7);
}

#[test]
fn vxlan_loss_is_split_into_explained_and_unexplained() {
    let names = names();
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(VNI_NOT_FOUND, 6)], &[])),
        nic_segments: Some(100),
        vxlan_outer: Some(100),
        vxlan_inner: Some(90),
        ..Default::default()
    });
    assert_eq!(
        l.vxlan_loss,
        Some(VxlanLoss {
            outer_segments: 100,
            inner_segments: 90,
            lost: 10,
            explained: 6,
            explained_by: BTreeMap::from([("VXLAN_VNI_NOT_FOUND".into(), 6)]),
            unexplained: 4,
            pending: None,
        })
    );
    let v = l.verdict.unwrap();
    assert_eq!((v.stage, v.percent), (Some(Stage::Vxlan), Some(6.0)));
}

/// Outer VXLAN packets dropped at ip or socket (bad checksum, no socket on
/// the port) explain VXLAN loss as much as the VXLAN reasons do.
#[test]
fn outer_drops_at_any_stage_explain_vxlan_loss() {
    let names = names();
    let mut d = counts(&[(NO_SOCKET, 4), (NETFILTER, 3)], &[]);
    d.vxlan_outer[NO_SOCKET as usize] = 4;
    // One of the netfilter drops was an outer VXLAN packet (a GRO skb of 2).
    d.vxlan_outer[NETFILTER as usize] = 2;
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(d),
        vxlan_outer: Some(50),
        vxlan_inner: Some(44),
        ..Default::default()
    });
    let v = l.vxlan_loss.unwrap();
    assert_eq!((v.lost, v.explained, v.unexplained), (6, 6, 0));
    assert_eq!(v.explained_by["NO_SOCKET"], 4);
}

/// More out of the device than into the NIC (packets in flight at the
/// period's edges) is no loss, and never a negative number.
#[test]
fn inner_above_outer_is_zero_loss_not_negative() {
    let names = names();
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(VNI_NOT_FOUND, 3)], &[])),
        vxlan_outer: Some(90),
        vxlan_inner: Some(100),
        ..Default::default()
    });
    let v = l.vxlan_loss.unwrap();
    assert_eq!((v.lost, v.explained, v.unexplained), (0, 3, 0));
}

/// Transmit-side reasons (a missing FDB entry on a VXLAN device, neighbour
/// failures) are counted apart, never in the receive ledger or its balance.
#[test]
fn transmit_reasons_are_a_section_of_their_own() {
    const NO_TX_TARGET: u32 = 90;
    const NEIGH_FAILED: u32 = 60;
    let names = ReasonNames::from_lists(
        &[
            (NO_TX_TARGET, "NO_TX_TARGET"),
            (NEIGH_FAILED, "NEIGH_FAILED"),
            (NO_SOCKET, "NO_SOCKET"),
        ],
        &[],
    );
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(
            &[(NO_TX_TARGET, 300), (NEIGH_FAILED, 166), (NO_SOCKET, 1)],
            &[],
        )),
        vxlan_outer: Some(10),
        vxlan_inner: Some(10),
        ..Default::default()
    });
    assert_eq!((l.tx_drops.skbs, l.tx_drops.segments), (466, 466));
    assert_eq!(l.tx_drops.reasons["NEIGH_FAILED"].skbs, 166);
    assert_eq!(l.ledger.iter().map(|r| r.drops).sum::<u64>(), 1);
    let v = l.vxlan_loss.unwrap();
    assert_eq!((v.lost, v.explained, v.unexplained), (0, 0, 0));
    assert_eq!(l.verdict.unwrap().stage, Some(Stage::Socket));
}

/// A GRO skb dropped whole loses all its segments; the ledger counts
/// segments and keeps the skb count beside them.
#[test]
fn drops_count_segments_and_skbs() {
    let names = names();
    let mut d = counts(&[(NETFILTER, 2)], &[]);
    d.segments[NETFILTER as usize] = 45;
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(d),
        nic_segments: Some(1000),
        ..Default::default()
    });
    let ip = l.ledger.iter().find(|r| r.stage == "ip").unwrap();
    assert_eq!((ip.drops, ip.drop_skbs), (45, 2));
    assert_eq!(
        (
            ip.reasons["NETFILTER_DROP"].segments,
            ip.reasons["NETFILTER_DROP"].skbs
        ),
        (45, 2)
    );
    // NETFILTER_DROP has no kernel counter of its own: null, not 0.
    assert_eq!(ip.reasons["NETFILTER_DROP"].counter, None);
    assert_eq!(ip.reasons["NETFILTER_DROP"].kernel, None);
}

#[test]
fn no_drops_verdict_no_loss_and_subsystem_reasons_are_other() {
    let names = names();
    let quiet = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[], &[])),
        ..Default::default()
    });
    let v = quiet.verdict.unwrap();
    assert_eq!((v.stage, v.text.as_str()), (None, "no loss"));
    assert!(quiet.drops.is_empty());
    // Without the drop probe there is no evidence either way.
    assert!(build(&LedgerInput::default()).verdict.is_none());
    let ovs = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(2 << 16 | 3, 1)], &[])),
        ..Default::default()
    });
    assert_eq!(ovs.drops[0].reason, "OPENVSWITCH");
    assert_eq!(ovs.drops[0].stage, "ip");
    assert!(CORE_REASON_SLOTS as usize + 2 < REASON_SLOTS);
}

/// Each reason carries the kernel counter that counts the same drops, read
/// where the drops happened; a counter not read there is null, never 0.
#[test]
fn each_reason_is_checked_against_its_own_counter() {
    const BACKLOG: u32 = 20;
    const TOO_BIG: u32 = 21;
    let names = ReasonNames::from_lists(
        &[
            (RCVBUFF, "SOCKET_RCVBUFF"),
            (BACKLOG, "CPU_BACKLOG"),
            (TOO_BIG, "PKT_TOO_BIG"),
            (NO_SOCKET, "NO_SOCKET"),
        ],
        &[],
    );
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(
            &[(RCVBUFF, 9), (BACKLOG, 5), (TOO_BIG, 2), (NO_SOCKET, 1)],
            &[
                (key(100, 2, RCVBUFF), 9),
                (key(100, 2, TOO_BIG), 2),
                (key(200, 2, NO_SOCKET), 1),
            ],
        )),
        names: Some(&Names {
            netns: BTreeMap::from([(100, "pod".to_string()), (200, "other".to_string())]),
            ifaces: BTreeMap::new(),
            functions: BTreeMap::new(),
        }),
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
                udp_no_ports: 7,
                ip_frag_fails: 2,
                ..Default::default()
            },
        )],
        ..Default::default()
    });
    let reason = |stage: &str, name: &str| {
        l.ledger.iter().find(|r| r.stage == stage).unwrap().reasons[name].clone()
    };
    let backlog = l.ledger.iter().find(|r| r.stage == "backlog").unwrap();
    assert_eq!(backlog.kernel["softnet_dropped"], 5);
    assert_eq!(
        (
            reason("backlog", "CPU_BACKLOG").counter,
            reason("backlog", "CPU_BACKLOG").kernel
        ),
        (Some("softnet_dropped"), Some(5))
    );
    assert_eq!(reason("socket", "SOCKET_RCVBUFF").kernel, Some(9));
    assert_eq!(
        (
            reason("ip", "PKT_TOO_BIG").counter,
            reason("ip", "PKT_TOO_BIG").kernel
        ),
        (Some("IpFragFails+Ip6FragFails"), Some(2))
    );
    // Dropped in "other", whose /proc/net/snmp was not read.
    assert_eq!(
        (
            reason("socket", "NO_SOCKET").counter,
            reason("socket", "NO_SOCKET").kernel
        ),
        (Some("UdpNoPorts+Udp6NoPorts"), None)
    );
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
    let d = crate::delta::Delta::delta(&later, &earlier);
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
            l.flows[0].skbs
        ),
        ("10.244.1.2", "10.244.2.15", 15)
    );
    assert_eq!(
        (l.flows[0].stage, l.flows[0].reason.as_str()),
        (Stage::Socket, "SOCKET_RCVBUFF")
    );
}

#[test]
fn no_share_when_the_input_was_counted_elsewhere() {
    let names = names();
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(RCVBUFF, 50)], &[])),
        nic_segments: Some(20),
        ..Default::default()
    });
    let v = l.verdict.unwrap();
    assert_eq!((v.input, v.percent), (Some(20), None));
    assert_eq!(
        v.text,
        "largest loss: stage socket, 50 segments; top reason SOCKET_RCVBUFF: 50 segments"
    );
}

/// Netfilter drops of decapsulated packets (the node's FORWARD chain, skb->dev
/// flannel.1) are at `forward`, after `vxlan`; those of outer or host
/// packets stay at `ip`. The two add up to the reason's exact total.
#[test]
fn forward_drops_come_after_the_vxlan_stage() {
    let names = names();
    let mut d = counts(&[(NETFILTER, 10)], &[]);
    d.segments[NETFILTER as usize] = 40;
    d.decap_skbs[NETFILTER as usize] = 7;
    d.decap_segments[NETFILTER as usize] = 37;
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(d),
        vxlan_outer: Some(100),
        vxlan_inner: Some(100),
        ..Default::default()
    });
    let row = |stage: &str| l.ledger.iter().find(|r| r.stage == stage).unwrap().clone();
    let (ip, forward) = (row("ip"), row("forward"));
    assert_eq!((ip.drops, ip.drop_skbs), (3, 3));
    assert_eq!((forward.drops, forward.drop_skbs), (37, 7));
    assert_eq!(forward.segments_in, Some(100));
    let order: Vec<Stage> = l.ledger.iter().map(|r| r.stage).collect();
    assert!(
        order.iter().position(|s| *s == "vxlan") < order.iter().position(|s| *s == "forward"),
        "{order:?}"
    );
    assert_eq!(l.verdict.unwrap().stage, Some(Stage::Forward));
}

#[test]
fn small_shares_keep_their_digits() {
    assert_eq!(share_percent(500, 1_772_776), 0.0282);
    assert_eq!(share_percent(32, 1000), 3.2);
    assert_eq!(share_percent(1, 3), 33.3);
    assert_eq!(share_percent(0, 10), 0.0);
    assert_eq!(share_percent(10, 10), 100.0);
}

/// One interval's VXLAN balance: (outer, inner, explained) segments.
fn interval_loss((outer, inner, explained): (u64, u64, u64)) -> VxlanLoss {
    VxlanLoss {
        outer_segments: outer,
        inner_segments: inner,
        lost: outer.saturating_sub(inner),
        explained,
        explained_by: BTreeMap::new(),
        unexplained: outer.saturating_sub(inner).saturating_sub(explained),
        pending: None,
    }
}

/// (lost, unexplained, pending) of each interval, carried.
fn carried(intervals: &[(u64, u64, u64)]) -> Vec<(u64, u64, Option<u64>)> {
    let mut carry = VxlanCarry::default();
    intervals
        .iter()
        .map(|i| {
            let mut l = interval_loss(*i);
            carry.apply(&mut l);
            (l.lost, l.unexplained, l.pending)
        })
        .collect()
}

/// Packets in flight at a sampling instant (counted at the NIC in one
/// interval, at flannel.1 in the next) are not loss, whichever interval
/// counts them first; a real loss is reported once, exactly, one interval
/// late; a loss the drop probe explains is lost but not unexplained.
#[test]
fn the_vxlan_balance_is_carried_across_intervals() {
    // 46 in flight at the first edge, repaid; then the other way round.
    assert_eq!(
        carried(&[
            (1000, 954, 0),
            (1000, 1046, 0),
            (500, 520, 0),
            (500, 480, 0)
        ]),
        [
            (0, 0, Some(46)),
            (0, 0, Some(0)),
            (0, 0, Some(0)),
            (0, 0, Some(0))
        ]
    );
    // 5 in flight at the first edge, and 30 really lost in the second
    // interval: 30 reported in all, none of it before it stood twice.
    assert_eq!(
        carried(&[
            (1000, 995, 0),
            (1000, 975, 0),
            (1000, 1000, 0),
            (1000, 1000, 0)
        ]),
        [
            (0, 0, Some(5)),
            (5, 5, Some(25)),
            (25, 25, Some(0)),
            (0, 0, Some(0))
        ]
    );
    // 20 dropped by the kernel, with a reason: lost, and explained at once.
    assert_eq!(
        carried(&[(1000, 980, 20), (1000, 1000, 0)]),
        [(0, 0, Some(0)), (20, 0, Some(0))]
    );
    // Whatever the in-flight pattern, no more is reported than the
    // balance's own total, and nothing of a balanced run.
    let flights = [3u64, 0, 17, 46, 2, 2, 0, 9];
    let mut intervals = Vec::new();
    for w in flights.windows(2) {
        // in flight w[0] at the start (counted inner now), w[1] at the end.
        intervals.push((10_000, 10_000 + w[0] - w[1], 0));
    }
    let reported: u64 = carried(&intervals).iter().map(|c| c.1).sum();
    assert!(reported <= 46, "{reported}");
}

/// A listener's drops that no event shows enter the socket stage from
/// ListenDrops, per namespace; those a TCP_LISTEN_OVERFLOW event already
/// counted (Linux >= 6.15) are not counted twice.
#[test]
fn listen_drops_without_an_event_are_socket_drops() {
    const OVERFLOW: u32 = 30;
    let names = ReasonNames::from_lists(&[(OVERFLOW, "TCP_LISTEN_OVERFLOW")], &[]);
    let who = Names {
        netns: BTreeMap::from([(100, "pod-a".to_string()), (200, "pod-b".to_string())]),
        ifaces: BTreeMap::new(),
        functions: BTreeMap::new(),
    };
    let listen = |drops| Snmp {
        tcp_listen_drops: drops,
        tcp_listen_overflows: drops,
        ..Default::default()
    };
    let l = build(&LedgerInput {
        reasons: Some(&names),
        // 40 of pod-a's 290 were handshake ACKs, freed with a reason.
        drops: Some(counts(&[(OVERFLOW, 40)], &[(key(100, 2, OVERFLOW), 40)])),
        names: Some(&who),
        snmp: vec![
            ("pod-a".into(), listen(290)),
            ("pod-b".into(), listen(7)),
            ("host".into(), listen(0)),
        ],
        ..Default::default()
    });
    let socket = l.ledger.iter().find(|r| r.stage == "socket").unwrap();
    assert_eq!((socket.drops, socket.drop_skbs), (297, 297));
    let eventless = &socket.reasons[LISTEN_DROPS];
    assert_eq!(
        (
            eventless.skbs,
            eventless.segments,
            eventless.counter,
            eventless.kernel
        ),
        (257, 257, Some("ListenDrops"), Some(297))
    );
    let rows: Vec<(&str, Option<&str>, u64)> = l
        .drops
        .iter()
        .map(|r| (r.reason.as_str(), r.netns.as_deref(), r.skbs))
        .collect();
    assert_eq!(
        rows,
        [
            ("ListenDrops", Some("pod-a"), 250),
            ("TCP_LISTEN_OVERFLOW", Some("pod-a"), 40),
            ("ListenDrops", Some("pod-b"), 7),
        ]
    );
    assert_eq!(l.verdict.unwrap().stage, Some(Stage::Socket));

    // Overflow events without a namespace (the keyed table was full) are
    // taken off the total: never more drops than the kernel counted.
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(counts(&[(OVERFLOW, 40)], &[])),
        names: Some(&who),
        snmp: vec![("pod-a".into(), listen(290))],
        ..Default::default()
    });
    let socket = l.ledger.iter().find(|r| r.stage == "socket").unwrap();
    assert_eq!(socket.drops, 290);
    assert_eq!(socket.reasons[LISTEN_DROPS].skbs, 250);
}

/// NOT_SPECIFIED drops by the function that freed them (two call sites of
/// one function are one row), with the benign ones the probe told apart,
/// and those whose address found no slot under `None`.
#[test]
fn not_specified_drops_are_named_by_the_function_that_freed_them() {
    const NOT_SPECIFIED: u32 = 2;
    let names = ReasonNames::from_lists(&[(NOT_SPECIFIED, "NOT_SPECIFIED")], &[]);
    let mut d = counts(&[(NOT_SPECIFIED, 9)], &[]);
    d.benign_skbs[probe_common::drops::Benign::Control as usize] = 5;
    d.not_specified_at = BTreeMap::from([(0xa010, 4), (0xa020, 2), (0xb000, 5), (0xc000, 1)]);
    let who = Names {
        functions: BTreeMap::from([
            (0xa010, "ip6_mc_input+0x10".to_string()),
            (0xa020, "ip6_mc_input+0x20".to_string()),
            (0xb000, "tcp_v4_rcv+0x1a0".to_string()),
            (0xc000, "0xc000".to_string()),
        ]),
        ..Default::default()
    };
    let l = build(&LedgerInput {
        reasons: Some(&names),
        drops: Some(d),
        names: Some(&who),
        ..Default::default()
    });
    let at: Vec<(Option<&str>, u64)> = l
        .not_specified_at
        .iter()
        .map(|f| (f.function.as_deref(), f.skbs))
        .collect();
    assert_eq!(
        at,
        [
            (Some("ip6_mc_input"), 6),
            (Some("tcp_v4_rcv"), 5),
            (None, 2),
            (Some("0xc000"), 1)
        ]
    );
}
