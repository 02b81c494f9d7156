//! Drop reasons: their names on the running kernel (from its BTF) and the
//! receive-path stage of each. Pure: tested without a kernel.

use std::collections::BTreeMap;

use probe_common::drops::CORE_REASON_SLOTS;

use crate::btf::Btf;

/// Receive-path stages, in path order (`other`: not tied to one stage).
pub const STAGES: [&str; 8] = [
    "nic", "backlog", "ip", "vxlan", "forward", "bridge", "socket", "other",
];
/// `ip`-stage drops of decapsulated packets (skb->dev a VXLAN device) are
/// shown at this stage: the inner packet's routing and netfilter FORWARD,
/// after the VXLAN stage, not before it.
pub const FORWARD_STAGE: &str = "forward";
/// Transmit-side drops: the sending half of a node, not the receive ledger.
pub const TX_STAGE: &str = "tx";
/// Drops that lose no data: a copy TCP already had (a retransmission that
/// raced the original, an old ACK), or the unread queue of a socket being
/// closed. Counted apart: on a healthy node TCP makes them all the time.
pub const BENIGN_STAGE: &str = "benign";

/// Stage of a drop reason (name without the `SKB_DROP_REASON_` prefix).
/// Rules are exact names, or prefixes ending in `*`. Names of every kernel
/// from 5.17 (when reasons appeared) to 6.18 are covered; the tests check that
/// every reason of the running kernel matches a rule. Unknown names are `other`.
const STAGE_RULES: &[(&str, &str)] = &[
    // Generic XDP (XDP_DROP/ABORTED in skb mode) and the NIC ring.
    ("XDP", "nic"),
    ("FULL_RING", "nic"),
    // Transmit side: a VXLAN device without an FDB entry or tunnel info, the
    // neighbour layer, qdiscs, output routing, egress filters.
    ("NO_TX_TARGET", "tx"),
    ("TUNNEL_TXINFO", "tx"),
    ("NEIGH_*", "tx"),
    ("QDISC_*", "tx"),
    ("TC_EGRESS", "tx"),
    ("IP_OUTNOROUTES", "tx"),
    ("CAKE_FLOOD", "tx"),
    ("FQ_*", "tx"),
    ("DUALPI2_*", "tx"),
    ("BPF_CGROUP_EGRESS", "tx"),
    ("TAP_TXFILTER", "tx"),
    ("PSP_OUTPUT", "tx"),
    // enqueue_to_backlog: per-CPU backlog full (netdev_max_backlog), RPS.
    ("CPU_BACKLOG", "backlog"),
    // VXLAN decapsulation and the overlay device.
    ("VXLAN_*", "vxlan"),
    ("MAC_INVALID_SOURCE", "vxlan"),
    ("IP_TUNNEL_ECN", "vxlan"),
    ("LOCAL_MAC", "vxlan"),
    // The bridge and the veth into the pod.
    ("BRIDGE_*", "bridge"),
    ("DEV_READY", "bridge"),
    ("MAC_IEEE_MAC_CONTROL", "bridge"),
    ("ARP_PVLAN_DISABLE", "bridge"),
    ("VLAN_*", "bridge"),
    // IP input, routing, netfilter/conntrack, fragments, IPv6.
    ("NETFILTER_DROP", "ip"),
    ("OTHERHOST", "ip"),
    ("IP_*", "ip"),
    ("IPV6*", "ip"),
    ("PKT_TOO_SMALL", "ip"),
    ("PKT_TOO_BIG", "ip"),
    ("UNICAST_IN_L2_MULTICAST", "ip"),
    ("XFRM_POLICY", "ip"),
    ("INVALID_PROTO", "ip"),
    ("UNHANDLED_PROTO", "ip"),
    ("ICMP_CSUM", "ip"),
    ("DUP_FRAG", "ip"),
    ("FRAG_*", "ip"),
    ("HDR_TRUNC", "ip"),
    ("SECURITY_HOOK", "ip"),
    ("PSP_INPUT", "ip"),
    ("OPENVSWITCH*", "ip"),
    // Copies TCP already had, and queues freed by close(): no data lost.
    ("TCP_OLD_DATA", "benign"),
    ("TCP_OLD_SEQUENCE", "benign"),
    ("TCP_OLD_ACK", "benign"),
    ("TCP_OFOMERGE", "benign"),
    ("QUEUE_PURGE", "benign"),
    ("SOCKET_CLOSE", "benign"),
    // Sockets: lookup, filters, buffers, TCP/UDP state.
    ("NO_SOCKET", "socket"),
    ("SOCKET_*", "socket"),
    ("TCP_*", "socket"),
    ("UDP_*", "socket"),
    ("UNIX_*", "socket"),
    ("PROTO_MEM", "socket"),
    ("SKB_CSUM", "socket"),
    ("SKB_UCOPY_FAULT", "socket"),
    ("PACKET_SOCK_ERROR", "socket"),
    // Not on the receive path, or not tied to one stage.
    ("NOT_SPECIFIED", "other"),
    ("NOMEM", "other"),
    ("PFMEMALLOC", "other"),
    ("DEV_HDR", "other"),
    ("RECURSION_LIMIT", "other"),
    ("SKB_GSO_SEG", "other"),
    ("SKB_TRIM", "other"),
    ("TC_*", "other"),
    ("TAP_FILTER", "other"),
    ("CAN_*", "other"),
    ("CANFD_*", "other"),
    ("CANXL_*", "other"),
    ("MAC80211*", "other"),
    ("SUBSYS_*", "other"),
];

fn rule_matches(rule: &str, name: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == rule,
    }
}

/// The stage of a reason name, and whether a rule matched (false: `other` by default).
pub fn stage_of(reason: &str) -> (&'static str, bool) {
    STAGE_RULES
        .iter()
        .find(|(rule, _)| rule_matches(rule, reason))
        .map_or(("other", false), |(_, stage)| (stage, true))
}

/// Drop reason names of the running kernel, from the BTF enums.
#[derive(Clone, Debug, Default)]
pub struct ReasonNames {
    /// Core reasons by value, without the `SKB_DROP_REASON_` prefix.
    core: BTreeMap<u32, String>,
    /// Subsystems by id (1 = MAC80211_UNUSABLE, ...).
    subsystems: BTreeMap<u32, String>,
    /// Values that are not drops (SKB_NOT_DROPPED_YET, SKB_CONSUMED) where
    /// this kernel has them.
    pub not_drops: Vec<u32>,
}

impl ReasonNames {
    pub fn from_btf(btf: &Btf) -> Result<ReasonNames, String> {
        let mut names = ReasonNames::default();
        for (name, value) in btf.enum_values("skb_drop_reason")? {
            // SKB_NOT_DROPPED_YET and SKB_CONSUMED are not drops; the _MAX and
            // _SUBSYS_MASK entries are not reasons.
            let Some(short) = name.strip_prefix("SKB_DROP_REASON_") else {
                if name == "SKB_NOT_DROPPED_YET" || name == "SKB_CONSUMED" {
                    names.not_drops.push(value as u32);
                }
                continue;
            };
            if short == "MAX" || short == "SUBSYS_MASK" || !(0..1 << 16).contains(&value) {
                continue;
            }
            names.core.insert(value as u32, short.to_string());
        }
        // Absent before Linux 6.4: no subsystems then.
        if let Ok(subsystems) = btf.enum_values("skb_drop_reason_subsys") {
            for (name, value) in subsystems {
                let short = name.trim_start_matches("SKB_DROP_REASON_SUBSYS_");
                if value > 0 && short != "NUM" {
                    names.subsystems.insert(value as u32, short.to_string());
                }
            }
        }
        Ok(names)
    }

    #[cfg(test)]
    pub fn from_lists(core: &[(u32, &str)], subsystems: &[(u32, &str)]) -> ReasonNames {
        ReasonNames {
            core: core.iter().map(|(v, n)| (*v, n.to_string())).collect(),
            subsystems: subsystems
                .iter()
                .map(|(v, n)| (*v, n.to_string()))
                .collect(),
            not_drops: Vec::new(),
        }
    }

    /// The value of the core reason `name` (without the prefix) on this kernel.
    pub fn value_of(&self, name: &str) -> Option<u32> {
        self.core.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }

    /// Every core reason name of this kernel.
    pub fn core_names(&self) -> impl Iterator<Item = &str> {
        self.core.values().map(String::as_str)
    }

    /// Name of a raw reason value as the tracepoint reports it.
    pub fn name(&self, reason: u32) -> String {
        let subsys = reason >> 16;
        if subsys == 0 {
            return self
                .core
                .get(&reason)
                .cloned()
                .unwrap_or_else(|| format!("REASON_{reason}"));
        }
        match self.subsystems.get(&subsys) {
            Some(s) => format!("{s}_{}", reason & 0xffff),
            None => format!("SUBSYS_{subsys}_{}", reason & 0xffff),
        }
    }

    /// Name of a slot of `DropTable::by_reason`.
    pub fn slot_name(&self, slot: usize) -> String {
        if (slot as u32) < CORE_REASON_SLOTS {
            self.name(slot as u32)
        } else {
            let subsys = slot as u32 - CORE_REASON_SLOTS;
            if subsys == 0 {
                return format!("REASON_{CORE_REASON_SLOTS}_OR_ABOVE");
            }
            match self.subsystems.get(&subsys) {
                Some(s) => s.clone(),
                None => format!("SUBSYS_{subsys}"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
