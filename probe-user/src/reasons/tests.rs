use super::*;

#[test]
fn every_reason_of_the_running_kernel_has_a_stage() {
    let btf = Btf::from_kernel().expect("this project requires a kernel with BTF");
    let names = ReasonNames::from_btf(&btf).unwrap();
    let all: Vec<&str> = names.core_names().collect();
    assert!(all.len() > 60, "only {} reasons read from BTF", all.len());
    assert!(!all.contains(&"CONSUMED") && !all.iter().any(|n| n.contains("NOT_DROPPED")));
    // 6.18 has both non-drop values; the probe skips exactly these.
    assert_eq!(names.not_drops.len(), 2, "{:?}", names.not_drops);
    let unmatched: Vec<&&str> = all.iter().filter(|n| !stage_of(n).1).collect();
    assert!(unmatched.is_empty(), "no stage rule for {unmatched:?}");
    for (name, stage) in [
        ("NO_SOCKET", "socket"),
        ("SOCKET_RCVBUFF", "socket"),
        ("NETFILTER_DROP", "ip"),
        ("CPU_BACKLOG", "backlog"),
    ] {
        assert!(all.contains(&name), "{name} missing from this kernel");
        assert_eq!(stage_of(name).0, stage, "{name}");
    }
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
        let (found, matched) = stage_of(name);
        assert_eq!((found.as_str(), matched), (stage, true), "{name}");
    }
    assert_eq!(stage_of("SOMETHING_NEW"), (Stage::Other, false));
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

#[test]
fn from_btf_names_what_an_old_kernel_lacks() {
    use crate::btf::fixture::kernel_like;
    let err = ReasonNames::from_btf(&kernel_like(&[], &[("kfree_skb", 2)])).unwrap_err();
    assert_eq!(
        err,
        "drop reasons need Linux >= 5.17 (no enum skb_drop_reason in this kernel's BTF)"
    );
    let n = ReasonNames::from_btf(&kernel_like(
        &[
            ("SKB_NOT_DROPPED_YET", 0),
            ("SKB_DROP_REASON_NOT_SPECIFIED", 2),
            ("SKB_DROP_REASON_NO_SOCKET", 3),
            ("SKB_DROP_REASON_MAX", 4),
        ],
        &[("kfree_skb", 3)],
    ))
    .unwrap();
    assert_eq!(
        n.core_names().collect::<Vec<_>>(),
        ["NOT_SPECIFIED", "NO_SOCKET"]
    );
    assert_eq!(n.not_drops, [0]);
}
