use super::*;

/// The reason lists of the kernels the README's kernel table names, read
/// from their BTF by `cargo xtask reason-lists`: (kernel, list, reasons,
/// values that are not drops).
const KERNELS: [(&str, &str, usize, usize); 4] = [
    ("5.10", include_str!("kernels/5.10.txt"), 0, 0),
    ("6.1", include_str!("kernels/6.1.txt"), 65, 1),
    ("6.12", include_str!("kernels/6.12.txt"), 96, 2),
    ("6.18", include_str!("kernels/6.18.txt"), 128, 2),
];

#[test]
fn every_reason_of_every_supported_kernel_is_in_the_table() {
    let mut seen = std::collections::BTreeSet::new();
    for (kernel, list, reasons, not_drops) in KERNELS {
        let Some(names) = ReasonNames::from_list(list).unwrap() else {
            assert_eq!((kernel, reasons), ("5.10", 0), "{kernel} has no reasons");
            assert!(list.contains(NEEDS_REASONS), "{kernel}: {list}");
            continue;
        };
        assert_eq!(names.core_names().count(), reasons, "{kernel}");
        assert_eq!(names.not_drops.len(), not_drops, "{kernel}");
        assert!(names
            .core_names()
            .all(|n| n != "CONSUMED" && !n.contains("NOT_DROPPED")));
        let by_rule: Vec<(String, Placed)> = names
            .core_values()
            .map(|v| names.reason(v))
            .chain(
                names
                    .subsystem_ids()
                    .map(|id| names.slot(CORE_REASON_SLOTS as usize + id as usize)),
            )
            .filter(|(name, placed)| {
                placed.by != Placement::Table && !WITHOUT_SOURCE.contains(&name.as_str())
            })
            .collect();
        assert!(
            by_rule.is_empty(),
            "{kernel}: not in the table: {by_rule:?}"
        );
        for (name, stage) in [
            ("NO_SOCKET", "socket"),
            ("SOCKET_RCVBUFF", "socket"),
            ("NETFILTER_DROP", "ip"),
            ("CPU_BACKLOG", "backlog"),
        ] {
            let value = names
                .value_of(name)
                .unwrap_or_else(|| panic!("{kernel}: {name}"));
            assert_eq!(
                names.reason(value).1.stage.as_str(),
                stage,
                "{kernel} {name}"
            );
        }
        seen.extend(names.core_names().map(String::from));
    }
    // And the table holds no name that none of these kernels has, but
    // 5.17's TCP_FILTER (SOCKET_FILTER from 5.18), which no list here has.
    let stale: Vec<&str> = table_names()
        .filter(|n| !seen.contains(*n) && *n != "TCP_FILTER")
        .collect();
    assert!(
        stale.is_empty(),
        "in the table, in no kernel's list: {stale:?}"
    );
}

/// Reasons of a supported kernel's list that no public kernel tree has
/// (this machine's 6.18.44 build): the table does not guess their stage;
/// they are placed by rule, and reports say so.
const WITHOUT_SOURCE: [&str; 1] = ["SKB_RX_HEADROOM"];

#[test]
fn a_reason_without_source_is_placed_by_rule() {
    let names = ReasonNames::from_list(KERNELS[3].1).unwrap().unwrap();
    let value = names.value_of("SKB_RX_HEADROOM").unwrap();
    assert_eq!(
        names.reason(value).1,
        Placed {
            stage: Stage::Other,
            by: Placement::NoFamily
        }
    );
}

/// A reason the table lacks is placed by its family, and says so.
#[test]
fn unknown_reasons_are_placed_by_family() {
    for (name, stage, rule) in [
        ("VXLAN_FUTURE", Stage::Vxlan, "prefix VXLAN_"),
        ("TCP_FUTURE", Stage::Socket, "prefix TCP_"),
        ("IPV6_FUTURE", Stage::Ip, "prefix IPV6"),
        ("IP_FUTURE", Stage::Ip, "prefix IP_"),
        ("NEIGH_FUTURE", Stage::Tx, "prefix NEIGH_"),
        ("SOMETHING_NEW", Stage::Other, "no family"),
    ] {
        let placed = place(name);
        assert_eq!(
            (placed.stage, placed.by.rule().as_deref()),
            (stage, Some(rule)),
            "{name}"
        );
    }
    // A table entry wins over its family: TCP_OLD_DATA is benign, not socket.
    assert_eq!(
        place("TCP_OLD_DATA"),
        Placed {
            stage: Stage::Benign,
            by: Placement::Table
        }
    );
    let n = ReasonNames::from_lists(&[(2, "NO_SOCKET")], &[(2, "OPENVSWITCH"), (5, "NEW_ONE")]);
    assert_eq!(n.reason(2 << 16 | 3).1.by, Placement::Table);
    assert_eq!(n.reason(2 << 16 | 3).1.stage, Stage::Ip);
    for raw in [5 << 16 | 1, 9 << 16 | 1] {
        assert_eq!(
            n.reason(raw).1,
            Placed {
                stage: Stage::Other,
                by: Placement::Subsystem
            }
        );
    }
    // A core value this kernel's BTF does not name.
    assert_eq!(n.reason(77).1.by, Placement::NoFamily);
    assert_eq!(n.slot(CORE_REASON_SLOTS as usize).1.by, Placement::NoFamily);
}

#[test]
fn reason_lists_round_trip_and_refuse_garbage() {
    let n = ReasonNames::from_list(KERNELS[3].1).unwrap().unwrap();
    let again = ReasonNames::from_list(&n.to_list()).unwrap().unwrap();
    assert_eq!(again.to_list(), n.to_list());
    assert!(ReasonNames::from_list("reason x NO_SOCKET").is_err());
    assert!(ReasonNames::from_list("colour 1 RED").is_err());
    assert!(ReasonNames::from_list("# only a comment\n")
        .unwrap()
        .is_none());
}

/// Reason names of kernels 5.17 to 6.x (some renamed or gone since) map too.
#[test]
fn reason_names_of_older_kernels() {
    let table = [
        // 5.17: the first reasons.
        ("NOT_SPECIFIED", "other"),
        ("NO_SOCKET", "socket"),
        ("PKT_TOO_SMALL", "ip"),
        ("TCP_CSUM", "socket"),
        ("TCP_FILTER", "socket"),
        ("UDP_CSUM", "socket"),
        // 5.18 / 5.19.
        ("SOCKET_FILTER", "socket"),
        ("NETFILTER_DROP", "ip"),
        ("OTHERHOST", "ip"),
        ("IP_CSUM", "ip"),
        ("IP_INHDR", "ip"),
        ("IP_RPFILTER", "ip"),
        ("UNICAST_IN_L2_MULTICAST", "ip"),
        ("XFRM_POLICY", "ip"),
        ("IP_NOPROTO", "ip"),
        ("SOCKET_RCVBUFF", "socket"),
        ("PROTO_MEM", "socket"),
        ("TCP_MD5NOTFOUND", "socket"),
        ("SOCKET_BACKLOG", "socket"),
        ("IP_OUTNOROUTES", "tx"),
        ("BPF_CGROUP_EGRESS", "tx"),
        ("IPV6DISABLED", "ip"),
        ("NEIGH_CREATEFAIL", "tx"),
        ("TC_EGRESS", "tx"),
        ("QDISC_DROP", "tx"),
        ("CPU_BACKLOG", "backlog"),
        ("XDP", "nic"),
        ("TC_INGRESS", "other"),
        ("UNHANDLED_PROTO", "ip"),
        ("SKB_CSUM", "socket"),
        ("SKB_GSO_SEG", "other"),
        ("SKB_UCOPY_FAULT", "socket"),
        ("DEV_HDR", "other"),
        ("DEV_READY", "bridge"),
        ("FULL_RING", "nic"),
        ("NOMEM", "other"),
        ("HDR_TRUNC", "ip"),
        ("TAP_FILTER", "other"),
        ("TAP_TXFILTER", "tx"),
        ("ICMP_CSUM", "ip"),
        ("INVALID_PROTO", "ip"),
        ("IP_INADDRERRORS", "ip"),
        ("IP_INNOROUTES", "ip"),
        ("PKT_TOO_BIG", "ip"),
        // 6.0 - 6.9.
        ("IPV6_NDISC_FRAG", "ip"),
        ("TCP_OFO_QUEUE_PRUNE", "socket"),
        ("FRAG_REASM_TIMEOUT", "ip"),
        ("DUP_FRAG", "ip"),
        ("IPV6_BAD_EXTHDR", "ip"),
        ("QUEUE_PURGE", "benign"),
        ("TC_COOKIE_ERROR", "other"),
        ("TC_CHAIN_NOTFOUND", "other"),
        ("PACKET_SOCK_ERROR", "socket"),
        ("IP_LOCALNET", "ip"),
        // 6.10+: tunnels and bridges.
        ("VXLAN_INVALID_HDR", "vxlan"),
        ("VXLAN_VNI_NOT_FOUND", "vxlan"),
        ("VXLAN_ENTRY_EXISTS", "vxlan"),
        ("NO_TX_TARGET", "tx"),
        ("TCP_OLD_DATA", "benign"),
        ("TCP_OLD_SEQUENCE", "benign"),
        ("TCP_OFOMERGE", "benign"),
        ("TCP_ZEROWINDOW", "socket"),
        ("TUNNEL_TXINFO", "tx"),
        ("MAC_INVALID_SOURCE", "vxlan"),
        ("IP_TUNNEL_ECN", "vxlan"),
        ("BRIDGE_INGRESS_STP_STATE", "bridge"),
        ("MAC_IEEE_MAC_CONTROL", "bridge"),
        ("SOCKET_CLOSE", "benign"),
        ("UNIX_DISCONNECT", "socket"),
        ("PFMEMALLOC", "other"),
    ];
    for (name, stage) in table {
        let placed = place(name);
        assert_eq!(
            (placed.stage.as_str(), placed.by),
            (stage, Placement::Table),
            "{name}"
        );
    }
}

#[test]
fn reason_and_subsystem_names() {
    let n = ReasonNames::from_lists(
        &[(2, "NOT_SPECIFIED"), (3, "NO_SOCKET")],
        &[(2, "OPENVSWITCH")],
    );
    assert_eq!(n.name(3), "NO_SOCKET");
    assert_eq!(n.name(99), "REASON_99");
    assert_eq!(n.name(2 << 16 | 5), "OPENVSWITCH_5");
    assert_eq!(n.name(7 << 16 | 1), "SUBSYS_7_1");
    assert_eq!(n.slot_name(3), "NO_SOCKET");
    assert_eq!(n.slot_name(CORE_REASON_SLOTS as usize + 2), "OPENVSWITCH");
    assert_eq!(n.slot_name(CORE_REASON_SLOTS as usize + 9), "SUBSYS_9");
    assert_eq!(
        n.slot_name(CORE_REASON_SLOTS as usize),
        "REASON_240_OR_ABOVE"
    );
}
