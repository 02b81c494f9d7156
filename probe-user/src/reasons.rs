//! Drop reasons: their names on the running kernel (from its BTF) and the
//! receive-path stage of each. Pure: tested without a kernel.

use std::collections::BTreeMap;

use probe_common::drops::{Benign, CORE_REASON_SLOTS};

use crate::{btf::Btf, stage::Stage};

/// Stage of a drop reason (name without the `SKB_DROP_REASON_` prefix).
/// Rules are exact names, or prefixes ending in `*`. Names of every kernel
/// from 5.17 (when reasons appeared) to 6.18 are covered; the tests check that
/// every reason of the running kernel matches a rule. Unknown names are `other`.
const STAGE_RULES: &[(&str, Stage)] = &[
    // Generic XDP (XDP_DROP/ABORTED in skb mode) and the NIC ring.
    ("XDP", Stage::Nic),
    ("FULL_RING", Stage::Nic),
    // Transmit side: a VXLAN device without an FDB entry or tunnel info, the
    // neighbour layer, qdiscs, output routing, egress filters.
    ("NO_TX_TARGET", Stage::Tx),
    ("TUNNEL_TXINFO", Stage::Tx),
    ("NEIGH_*", Stage::Tx),
    ("QDISC_*", Stage::Tx),
    ("TC_EGRESS", Stage::Tx),
    ("IP_OUTNOROUTES", Stage::Tx),
    ("CAKE_FLOOD", Stage::Tx),
    ("FQ_*", Stage::Tx),
    ("DUALPI2_*", Stage::Tx),
    ("BPF_CGROUP_EGRESS", Stage::Tx),
    ("TAP_TXFILTER", Stage::Tx),
    ("PSP_OUTPUT", Stage::Tx),
    // enqueue_to_backlog: per-CPU backlog full (netdev_max_backlog), RPS.
    ("CPU_BACKLOG", Stage::Backlog),
    // VXLAN decapsulation and the overlay device.
    ("VXLAN_*", Stage::Vxlan),
    ("MAC_INVALID_SOURCE", Stage::Vxlan),
    ("IP_TUNNEL_ECN", Stage::Vxlan),
    ("LOCAL_MAC", Stage::Vxlan),
    // The bridge and the veth into the pod.
    ("BRIDGE_*", Stage::Bridge),
    ("DEV_READY", Stage::Bridge),
    ("MAC_IEEE_MAC_CONTROL", Stage::Bridge),
    ("ARP_PVLAN_DISABLE", Stage::Bridge),
    ("VLAN_*", Stage::Bridge),
    // IP input, routing, netfilter/conntrack, fragments, IPv6.
    ("NETFILTER_DROP", Stage::Ip),
    ("OTHERHOST", Stage::Ip),
    ("IP_*", Stage::Ip),
    ("IPV6*", Stage::Ip),
    ("PKT_TOO_SMALL", Stage::Ip),
    ("PKT_TOO_BIG", Stage::Ip),
    ("UNICAST_IN_L2_MULTICAST", Stage::Ip),
    ("XFRM_POLICY", Stage::Ip),
    ("INVALID_PROTO", Stage::Ip),
    ("UNHANDLED_PROTO", Stage::Ip),
    ("ICMP_CSUM", Stage::Ip),
    ("DUP_FRAG", Stage::Ip),
    ("FRAG_*", Stage::Ip),
    ("HDR_TRUNC", Stage::Ip),
    ("SECURITY_HOOK", Stage::Ip),
    ("PSP_INPUT", Stage::Ip),
    ("OPENVSWITCH*", Stage::Ip),
    // Copies TCP already had, and queues freed by close(): no data lost.
    ("TCP_OLD_DATA", Stage::Benign),
    ("TCP_OLD_SEQUENCE", Stage::Benign),
    ("TCP_OLD_ACK", Stage::Benign),
    ("TCP_OFOMERGE", Stage::Benign),
    ("QUEUE_PURGE", Stage::Benign),
    ("SOCKET_CLOSE", Stage::Benign),
    // Sockets: lookup, filters, buffers, TCP/UDP state.
    ("NO_SOCKET", Stage::Socket),
    ("SOCKET_*", Stage::Socket),
    ("TCP_*", Stage::Socket),
    ("UDP_*", Stage::Socket),
    ("UNIX_*", Stage::Socket),
    ("PROTO_MEM", Stage::Socket),
    ("SKB_CSUM", Stage::Socket),
    ("SKB_UCOPY_FAULT", Stage::Socket),
    ("PACKET_SOCK_ERROR", Stage::Socket),
    // Not on the receive path, or not tied to one stage.
    ("NOT_SPECIFIED", Stage::Other),
    ("NOMEM", Stage::Other),
    ("PFMEMALLOC", Stage::Other),
    ("DEV_HDR", Stage::Other),
    ("RECURSION_LIMIT", Stage::Other),
    ("SKB_GSO_SEG", Stage::Other),
    ("SKB_TRIM", Stage::Other),
    ("TC_*", Stage::Other),
    ("TAP_FILTER", Stage::Other),
    ("CAN_*", Stage::Other),
    ("CANFD_*", Stage::Other),
    ("CANXL_*", Stage::Other),
    ("MAC80211*", Stage::Other),
    ("SUBSYS_*", Stage::Other),
];

fn rule_matches(rule: &str, name: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == rule,
    }
}

/// The stage of a reason name, and whether a rule matched (false: `other` by default).
pub fn stage_of(reason: &str) -> (Stage, bool) {
    STAGE_RULES
        .iter()
        .find(|(rule, _)| rule_matches(rule, reason))
        .map_or((Stage::Other, false), |(_, stage)| (*stage, true))
}

/// The names benign_drops gives the drops the probe recognises as losing no
/// data (probe_common::drops::Benign): the kernel's reason, and what the
/// packet was.
pub fn benign_name(kind: usize) -> &'static str {
    match kind {
        k if k == Benign::EchoReply as usize => "NO_SOCKET_ECHO_REPLY",
        k if k == Benign::TcpIgnored as usize => "NOT_SPECIFIED_TCP",
        k if k == Benign::TcpStale as usize => "NO_SOCKET_TCP_NOT_SYN",
        _ => "BENIGN",
    }
}

/// What the drop probe says where the kernel predates drop reasons (5.17:
/// `enum skb_drop_reason` and kfree_skb's `reason` argument).
pub const NEEDS_REASONS: &str = "drop reasons need Linux >= 5.17";

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
    /// `not_drops` as the kernel programs take it (the NOT_DROPS globals):
    /// two values, NO_REASON where this kernel has fewer.
    pub fn not_drop_values(&self) -> [u32; 2] {
        let mut values = [probe_common::drops::NO_REASON; 2];
        for (slot, value) in values.iter_mut().zip(&self.not_drops) {
            *slot = *value;
        }
        values
    }

    /// Err names what is missing: drop reasons exist only from Linux 5.17.
    pub fn from_btf(btf: &Btf) -> Result<ReasonNames, String> {
        let mut names = ReasonNames::default();
        let values = btf.enum_values("skb_drop_reason").map_err(|_| {
            format!("{NEEDS_REASONS} (no enum skb_drop_reason in this kernel's BTF)")
        })?;
        for (name, value) in values {
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

    /// Names given by hand: tests, and the made-up node of
    /// `metrics::synthetic`.
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
