//! The stage of each drop reason: the table of every reason the supported
//! kernels have, and the family rules for the ones it lacks.

use crate::stage::Stage;

/// The stage of every core reason (name without `SKB_DROP_REASON_`) of the
/// kernels the project supports: Linux 5.17 (when reasons appeared) to 6.18.
/// Only reasons whose kernel source is known: this machine's 6.18.44 build
/// also has SKB_RX_HEADROOM, in no public tree; it is placed by rule.
pub(super) const REASON_STAGES: &[(Stage, &[&str])] = &[
    // Generic XDP (XDP_DROP/ABORTED in skb mode) and the NIC ring.
    (Stage::Nic, &["XDP", "FULL_RING"]),
    // enqueue_to_backlog: the per-CPU backlog is full (netdev_max_backlog).
    (Stage::Backlog, &["CPU_BACKLOG"]),
    // IP input, routing, netfilter/conntrack, fragments, IPv6.
    (
        Stage::Ip,
        &[
            "PKT_TOO_SMALL",
            "NETFILTER_DROP",
            "OTHERHOST",
            "IP_CSUM",
            "IP_INHDR",
            "IP_RPFILTER",
            "UNICAST_IN_L2_MULTICAST",
            "XFRM_POLICY",
            "IP_NOPROTO",
            "IPV6DISABLED",
            "SECURITY_HOOK",
            "UNHANDLED_PROTO",
            "HDR_TRUNC",
            "ICMP_CSUM",
            "INVALID_PROTO",
            "IP_INADDRERRORS",
            "IP_INNOROUTES",
            "IP_LOCAL_SOURCE",
            "IP_INVALID_SOURCE",
            "IP_LOCALNET",
            "IP_INVALID_DEST",
            "PKT_TOO_BIG",
            "DUP_FRAG",
            "FRAG_REASM_TIMEOUT",
            "FRAG_TOO_FAR",
            "IPV6_BAD_EXTHDR",
            "IPV6_TOO_MANY_EXTHDRS",
            "IPV6_NDISC_FRAG",
            "IPV6_NDISC_HOP_LIMIT",
            "IPV6_NDISC_BAD_CODE",
            "IPV6_NDISC_BAD_OPTIONS",
            "IPV6_NDISC_NS_OTHERHOST",
            "PSP_INPUT",
        ],
    ),
    // VXLAN decapsulation and the overlay device (vxlan_rcv, FDB learning).
    (
        Stage::Vxlan,
        &[
            "VXLAN_INVALID_HDR",
            "VXLAN_VNI_NOT_FOUND",
            "VXLAN_ENTRY_EXISTS",
            "MAC_INVALID_SOURCE",
            "IP_TUNNEL_ECN",
            "LOCAL_MAC",
        ],
    ),
    // The bridge and the veth into the pod.
    (
        Stage::Bridge,
        &[
            "DEV_READY",
            "ARP_PVLAN_DISABLE",
            "MAC_IEEE_MAC_CONTROL",
            "BRIDGE_INGRESS_STP_STATE",
        ],
    ),
    // Sockets: lookup, filters, buffers, TCP/UDP state.
    (
        Stage::Socket,
        &[
            "NO_SOCKET",
            "SOCKET_FILTER",
            // 5.17's name of SOCKET_FILTER.
            "TCP_FILTER",
            "SOCKET_RCVBUFF",
            "SOCKET_BACKLOG",
            "UNIX_DISCONNECT",
            "UNIX_SKIP_OOB",
            "PROTO_MEM",
            "TCP_CSUM",
            "UDP_CSUM",
            "TCP_AUTH_HDR",
            "TCP_MD5NOTFOUND",
            "TCP_MD5UNEXPECTED",
            "TCP_MD5FAILURE",
            "TCP_AONOTFOUND",
            "TCP_AOUNEXPECTED",
            "TCP_AOKEYNOTFOUND",
            "TCP_AOFAILURE",
            "TCP_FLAGS",
            "TCP_ABORT_ON_DATA",
            "TCP_ZEROWINDOW",
            "TCP_OVERWINDOW",
            "TCP_RFC7323_PAWS",
            "TCP_RFC7323_PAWS_ACK",
            "TCP_RFC7323_TW_PAWS",
            "TCP_RFC7323_TSECR",
            "TCP_LISTEN_OVERFLOW",
            "TCP_INVALID_SEQUENCE",
            "TCP_INVALID_END_SEQUENCE",
            "TCP_INVALID_ACK_SEQUENCE",
            "TCP_RESET",
            "TCP_INVALID_SYN",
            "TCP_CLOSE",
            "TCP_FASTOPEN",
            "TCP_TOO_OLD_ACK",
            "TCP_ACK_UNSENT_DATA",
            "TCP_OFO_QUEUE_PRUNE",
            "TCP_OFO_DROP",
            "TCP_MINTTL",
            "SKB_CSUM",
            "SKB_UCOPY_FAULT",
            "PACKET_SOCK_ERROR",
        ],
    ),
    // Not on the receive path, or not tied to one stage.
    (
        Stage::Other,
        &[
            "NOT_SPECIFIED",
            "NOMEM",
            "PFMEMALLOC",
            "DEV_HDR",
            "SKB_GSO_SEG",
            "TC_INGRESS",
            "TC_COOKIE_ERROR",
            "TC_CHAIN_NOTFOUND",
            "TC_RECLASSIFY_LOOP",
            "TAP_FILTER",
            "CAN_RX_INVALID_FRAME",
            "CANFD_RX_INVALID_FRAME",
            "CANXL_RX_INVALID_FRAME",
        ],
    ),
    // Transmit side: output routing, the neighbour layer, qdiscs, egress
    // filters, a VXLAN device without an FDB entry or tunnel info.
    (
        Stage::Tx,
        &[
            "IP_OUTNOROUTES",
            "BPF_CGROUP_EGRESS",
            "NEIGH_CREATEFAIL",
            "NEIGH_FAILED",
            "NEIGH_QUEUEFULL",
            "NEIGH_DEAD",
            "NEIGH_HH_FILLFAIL",
            "TC_EGRESS",
            "QDISC_DROP",
            "QDISC_OVERLIMIT",
            "QDISC_CONGESTED",
            "CAKE_FLOOD",
            "FQ_BAND_LIMIT",
            "FQ_HORIZON_LIMIT",
            "FQ_FLOW_LIMIT",
            "DUALPI2_STEP_DROP",
            "TAP_TXFILTER",
            "NO_TX_TARGET",
            "TUNNEL_TXINFO",
            "PSP_OUTPUT",
            // A dead loop on a virtual device: iptunnel_xmit/ip6tunnel_xmit past
            // the tunnel recursion limit, __dev_queue_xmit on a queueless device
            // (commits d15d3de94a47 and 045f977dd4eb; 7.1, in 6.18.y).
            "RECURSION_LIMIT",
        ],
    ),
    // Copies TCP already had, and queues freed by close(): no data lost.
    (
        Stage::Benign,
        &[
            "TCP_OLD_DATA",
            "TCP_OLD_SEQUENCE",
            "TCP_OLD_ACK",
            "TCP_OFOMERGE",
            "QUEUE_PURGE",
            "SOCKET_CLOSE",
        ],
    ),
];

/// The stage of a reason family, for reasons the table does not know: the
/// first prefix that matches. Names that match none are `other`.
pub(super) const FAMILY_RULES: &[(&str, Stage)] = &[
    ("XDP_", Stage::Nic),
    ("IPV6", Stage::Ip),
    ("IP_", Stage::Ip),
    ("FRAG_", Stage::Ip),
    ("ICMP_", Stage::Ip),
    ("VXLAN_", Stage::Vxlan),
    ("BRIDGE_", Stage::Bridge),
    ("VLAN_", Stage::Bridge),
    ("TCP_", Stage::Socket),
    ("UDP_", Stage::Socket),
    ("SOCKET_", Stage::Socket),
    ("UNIX_", Stage::Socket),
    ("NEIGH_", Stage::Tx),
    ("QDISC_", Stage::Tx),
    ("FQ_", Stage::Tx),
    ("TC_", Stage::Other),
];

/// The stage of every reason of a subsystem (Linux 6.4 packs the subsystem
/// into the reason's high 16 bits), by the subsystem's name.
pub(super) const SUBSYSTEM_STAGES: &[(&str, Stage)] = &[
    // Wi-Fi frames: not on a node's wired receive path.
    ("MAC80211_UNUSABLE", Stage::Other),
    ("MAC80211_MONITOR", Stage::Other),
    // Open vSwitch's datapath: forwarding between the NIC and the pods.
    ("OPENVSWITCH", Stage::Ip),
];
