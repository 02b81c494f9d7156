//! The drop probe: loading it with the running kernel's offsets, reading its
//! tables, naming drop reasons, and mapping each reason to a receive-path stage.

use std::collections::BTreeMap;

use aya::{Ebpf, EbpfLoader};
use probe_common::{
    drops::{
        DropKey, DropOffsets, DropTable, FlowKey, FlowTable, BENIGN_KINDS, CORE_REASON_SLOTS,
        DROP_TRACEPOINT, GLOBAL_DROP_OFFSETS, GLOBAL_NIC_NETNS, GLOBAL_NOT_DROPS,
        GLOBAL_REASON_NOT_SPECIFIED, GLOBAL_REASON_NO_SOCKET, GLOBAL_SCOPE_COUNT,
        GLOBAL_SCOPE_NETNS, MAP_DROPS, MAP_DROP_FLOWS, MAX_SCOPE_NETNS, NO_REASON, PROG_SKB_DROP,
        REASON_SLOTS,
    },
    GLOBAL_VXLAN_PORTS, MAX_VXLAN_PORTS,
};

use crate::{btf::Btf, objects, probes::read_per_cpu};

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

/// Offsets the probe needs, from the running kernel's BTF.
pub fn offsets(btf: &Btf) -> Result<DropOffsets, String> {
    Ok(DropOffsets {
        skb_dev: btf.member_offset("sk_buff", "dev")?,
        skb_head: btf.member_offset("sk_buff", "head")?,
        skb_network_header: btf.member_offset("sk_buff", "network_header")?,
        dev_ifindex: btf.member_offset("net_device", "ifindex")?,
        // nd_net is a possible_net_t: a typedef of an anonymous struct whose
        // only member, with CONFIG_NET_NS, is `struct net *net`, at offset 0.
        dev_nd_net: btf.member_offset("net_device", "nd_net")?,
        net_inum: btf.member_offset("net", "ns")? + btf.member_offset("ns_common", "inum")?,
        skb_end: btf.member_offset("sk_buff", "end")?,
        shinfo_gso_segs: btf.member_offset("skb_shared_info", "gso_segs")?,
        skb_sk: btf.member_offset("sk_buff", "sk")?,
        // skc_net is a possible_net_t, like nd_net above.
        sk_net: btf.member_offset("sock", "__sk_common")?
            + btf.member_offset("sock_common", "skc_net")?,
        dev_rtnl_link_ops: btf.member_offset("net_device", "rtnl_link_ops")?,
        link_ops_kind: btf.member_offset("rtnl_link_ops", "kind")?,
    })
}

/// Cumulative drop counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DropCounts {
    /// Dropped skbs, indexed by reason slot.
    pub by_reason: Vec<u64>,
    /// Dropped segments (max(gso_segs, 1) per skb), indexed by reason slot.
    pub segments: Vec<u64>,
    /// Segments of outer VXLAN packets dropped in the NIC's namespace, by
    /// reason slot (whatever `--drop-netns` says).
    pub vxlan_outer: Vec<u64>,
    /// Of `by_reason` / `segments`: drops of decapsulated packets (skb->dev
    /// a VXLAN device), by reason slot.
    pub decap_skbs: Vec<u64>,
    pub decap_segments: Vec<u64>,
    pub keyed: BTreeMap<DropKey, u64>,
    pub flows: BTreeMap<FlowKey, u64>,
    pub out_of_scope: u64,
    pub flows_unslotted: u64,
    /// Drops that lose no data, by `Benign` kind: skbs and segments.
    pub benign_skbs: [u64; BENIGN_KINDS],
    pub benign_segments: [u64; BENIGN_KINDS],
}

impl DropCounts {
    pub fn from_tables(drops: &[DropTable], flows: &[FlowTable]) -> DropCounts {
        let mut c = DropCounts {
            by_reason: vec![0; REASON_SLOTS],
            segments: vec![0; REASON_SLOTS],
            vxlan_outer: vec![0; REASON_SLOTS],
            decap_skbs: vec![0; REASON_SLOTS],
            decap_segments: vec![0; REASON_SLOTS],
            ..Default::default()
        };
        for t in drops {
            for (sums, counts) in [
                (&mut c.by_reason, &t.by_reason),
                (&mut c.segments, &t.segments),
                (&mut c.vxlan_outer, &t.vxlan_outer),
                (&mut c.decap_skbs, &t.decap_skbs),
                (&mut c.decap_segments, &t.decap_segments),
            ] {
                for (sum, n) in sums.iter_mut().zip(counts) {
                    *sum += n;
                }
            }
            for s in t.slots.iter().filter(|s| s.count > 0) {
                *c.keyed.entry(s.key).or_default() += s.count;
            }
            c.out_of_scope += t.out_of_scope;
            for k in 0..BENIGN_KINDS {
                c.benign_skbs[k] += t.benign_skbs[k];
                c.benign_segments[k] += t.benign_segments[k];
            }
        }
        for t in flows {
            for s in t.slots.iter().filter(|s| s.count > 0) {
                *c.flows.entry(s.key).or_default() += s.count;
            }
            c.flows_unslotted += t.unslotted;
        }
        c
    }
}

/// The attached drop probe. Dropping it detaches it.
pub struct DropHook {
    pub reasons: ReasonNames,
    ebpf: Ebpf,
}

impl crate::probes::HookObject for DropHook {
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }
}

/// What the drop probe needs from the kernel's BTF.
pub struct DropSetup {
    pub reasons: ReasonNames,
    pub offsets: DropOffsets,
}

pub fn setup(btf: &Btf) -> Result<DropSetup, String> {
    Ok(DropSetup {
        reasons: ReasonNames::from_btf(btf)?,
        offsets: offsets(btf)?,
    })
}

/// Loads the drop probe's object with its settings (nothing attached yet:
/// [`DropHook::attach`]). `scope`: network namespace inode numbers whose
/// drops count (empty: every namespace).
/// The SCOPE_NETNS and SCOPE_COUNT globals (probe-ebpf/src/scope.rs) for the
/// namespace inodes of `--drop-netns`.
pub fn scope_globals(scope: &[u32]) -> Result<([u32; MAX_SCOPE_NETNS], u32), String> {
    if scope.len() > MAX_SCOPE_NETNS {
        return Err(format!(
            "at most {MAX_SCOPE_NETNS} namespaces can be given to --drop-netns"
        ));
    }
    let mut netns = [0u32; MAX_SCOPE_NETNS];
    netns[..scope.len()].copy_from_slice(scope);
    Ok((netns, scope.len() as u32))
}

/// `nic_netns`: the inode of the NIC's namespace, where outer VXLAN drops
/// are counted apart (0: nowhere).
pub fn load_drops(
    setup: DropSetup,
    scope: &[u32],
    vxlan_ports: &[u16],
    nic_netns: u32,
) -> Result<DropHook, String> {
    let DropSetup { reasons, offsets } = setup;
    let (netns, count) = scope_globals(scope)?;
    let mut ports = [0u16; MAX_VXLAN_PORTS];
    for (slot, port) in ports.iter_mut().zip(vxlan_ports) {
        *slot = *port;
    }
    let no_socket = reasons.value_of("NO_SOCKET").unwrap_or(NO_REASON);
    let not_specified = reasons.value_of("NOT_SPECIFIED").unwrap_or(NO_REASON);
    let mut not_drops = [NO_REASON; 2];
    for (slot, value) in not_drops.iter_mut().zip(&reasons.not_drops) {
        *slot = *value;
    }
    let ebpf = EbpfLoader::new()
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_NOT_DROPS, &not_drops, true)
        .override_global(GLOBAL_DROP_OFFSETS, &offsets, true)
        .override_global(GLOBAL_SCOPE_NETNS, &netns, true)
        .override_global(GLOBAL_SCOPE_COUNT, &count, true)
        .override_global(GLOBAL_VXLAN_PORTS, &ports, true)
        .override_global(GLOBAL_NIC_NETNS, &nic_netns, true)
        .override_global(GLOBAL_REASON_NO_SOCKET, &no_socket, true)
        .override_global(GLOBAL_REASON_NOT_SPECIFIED, &not_specified, true)
        .load(objects::DROPS)
        .map_err(|e| format!("loading the BPF object failed: {e}"))?;
    Ok(DropHook { reasons, ebpf })
}

impl DropHook {
    /// Verifies the program and attaches it to `skb:kfree_skb`.
    /// `kernel_btf`: aya's parse of the kernel's BTF, for the tp_btf attach.
    pub fn attach(&mut self, kernel_btf: &aya::Btf) -> Result<(), String> {
        crate::probes::attach_btf_tracepoints(
            &mut self.ebpf,
            &[(PROG_SKB_DROP, DROP_TRACEPOINT)],
            kernel_btf,
        )
    }

    pub fn read(&self) -> Result<DropCounts, String> {
        let drops = read_per_cpu::<DropTable>(&self.ebpf, MAP_DROPS, 1)?;
        let flows = read_per_cpu::<FlowTable>(&self.ebpf, MAP_DROP_FLOWS, 1)?;
        Ok(DropCounts::from_tables(&drops[0], &flows[0]))
    }
}

#[cfg(test)]
mod tests;
