//! The drop ledger: where packets were lost between two samples and why,
//! per receive-path stage in path order, reconciled with the kernel's own
//! counters, and one verdict line. Pure arithmetic over the samples.

use std::collections::BTreeMap;

use probe_common::drops::{DropKey, FlowKey, FAMILY_V4, REASON_SLOTS};
use serde::Serialize;

use crate::{
    drops::{stage_of, DropCounts, ReasonNames, STAGES},
    procfs::{Snmp, SoftnetCpu},
    rtnl::LinkStats,
};

/// How many flows a report lists.
pub const TOP_FLOWS: usize = 10;

/// Names for what the drop probe reports as numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Names {
    /// Network namespace inode number -> name (`host`, or under /run/netns).
    pub netns: BTreeMap<u32, String>,
    /// (netns inode, ifindex) -> interface name.
    pub ifaces: BTreeMap<(u32, u32), String>,
}

impl Names {
    pub fn netns(&self, inum: u32) -> Option<String> {
        match inum {
            0 => None,
            _ => Some(
                self.netns
                    .get(&inum)
                    .cloned()
                    .unwrap_or_else(|| format!("net:[{inum}]")),
            ),
        }
    }

    pub fn iface(&self, netns: u32, ifindex: u32) -> Option<String> {
        match ifindex {
            0 => None,
            _ => Some(
                self.ifaces
                    .get(&(netns, ifindex))
                    .cloned()
                    .unwrap_or_else(|| format!("if{ifindex}")),
            ),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropRow {
    pub stage: &'static str,
    pub reason: String,
    /// skb->dev when the skb was dropped; null if it had none, or if the
    /// drop's (netns, device) could not be kept apart (table full).
    pub iface: Option<String>,
    pub netns: Option<String>,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    pub src: String,
    pub dst: String,
    /// True: the inner addresses of a VXLAN packet dropped before decapsulation.
    pub inner: bool,
    pub netns: Option<String>,
    pub stage: &'static str,
    pub reason: String,
    pub count: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerRow {
    pub stage: &'static str,
    /// Packets that entered the stage, where a hook or counter sees them.
    pub packets_in: Option<u64>,
    /// Drops at this stage: drop reasons, plus NIC counters at `nic`.
    pub drops: u64,
    /// Drops by reason (at `nic`: by NIC counter).
    pub reasons: BTreeMap<String, u64>,
    /// The kernel's own counters for this stage, to check `drops` against.
    pub kernel: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VxlanLoss {
    /// VXLAN packets seen by XDP on the NIC (every VNI).
    pub outer_packets: u64,
    /// Packets seen entering the VXLAN devices.
    pub inner_packets: u64,
    /// outer - inner (negative when the interval boundary split a burst).
    pub lost: i64,
    /// Drops with a `vxlan`-stage reason.
    pub explained: u64,
    /// lost - explained.
    pub unexplained: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    pub stage: &'static str,
    /// The stage's most frequent reason.
    pub reason: String,
    /// Drops at the stage (every reason).
    pub packets: u64,
    /// The input the percentage is taken of: this stage's, else the nearest
    /// upstream stage's `packets_in`.
    pub input: Option<u64>,
    pub percent: Option<f64>,
    pub text: String,
}

/// What the ledger needs from two samples (already differenced).
#[derive(Clone, Debug, Default)]
pub struct LedgerInput<'a> {
    pub reasons: Option<&'a ReasonNames>,
    pub drops: Option<DropCounts>,
    pub names: Option<&'a Names>,
    pub nic_kernel: Option<LinkStats>,
    /// The NIC driver's per-RX-queue drop statistics (ethtool -S), if any.
    pub nic_queue_drops: Vec<(String, u64)>,
    pub xdp_packets: Option<u64>,
    pub vxlan_outer: Option<u64>,
    pub vxlan_inner: Option<u64>,
    pub softnet: Vec<SoftnetCpu>,
    pub snmp: Vec<(String, Snmp)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ledger {
    pub ledger: Vec<LedgerRow>,
    pub drops: Vec<DropRow>,
    pub flows: Vec<FlowRow>,
    pub vxlan_loss: Option<VxlanLoss>,
    pub verdict: Option<Verdict>,
    /// Drops in namespaces outside `--drop-netns` (not in the ledger).
    pub drops_out_of_scope: u64,
}

/// `later - earlier` of cumulative drop counters.
pub fn drop_delta(later: &DropCounts, earlier: Option<&DropCounts>) -> DropCounts {
    let Some(e) = earlier else {
        return later.clone();
    };
    let keyed = |l: &BTreeMap<DropKey, u64>, e: &BTreeMap<DropKey, u64>| {
        l.iter()
            .map(|(k, n)| (*k, n.wrapping_sub(e.get(k).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect()
    };
    DropCounts {
        by_reason: later
            .by_reason
            .iter()
            .enumerate()
            .map(|(i, n)| n.wrapping_sub(e.by_reason.get(i).copied().unwrap_or(0)))
            .collect(),
        keyed: keyed(&later.keyed, &e.keyed),
        flows: later
            .flows
            .iter()
            .map(|(k, n)| (*k, n.wrapping_sub(e.flows.get(k).copied().unwrap_or(0))))
            .filter(|(_, n)| *n > 0)
            .collect(),
        out_of_scope: later.out_of_scope.wrapping_sub(e.out_of_scope),
        flows_unslotted: later.flows_unslotted.wrapping_sub(e.flows_unslotted),
    }
}

fn address(family: u8, bytes: &[u8; 16]) -> String {
    if family == FAMILY_V4 {
        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
    } else {
        std::net::Ipv6Addr::from(*bytes).to_string()
    }
}

fn stage_index(stage: &str) -> usize {
    STAGES
        .iter()
        .position(|s| *s == stage)
        .unwrap_or(STAGES.len() - 1)
}

/// Builds the ledger for one report.
pub fn build(input: &LedgerInput) -> Ledger {
    let mut rows: Vec<LedgerRow> = STAGES
        .iter()
        .map(|stage| LedgerRow {
            stage,
            packets_in: None,
            drops: 0,
            reasons: BTreeMap::new(),
            kernel: BTreeMap::new(),
        })
        .collect();

    // nic: what the device counts before any skb exists.
    if let Some(k) = input.nic_kernel {
        let i = stage_index("nic");
        let hw = [
            ("rx_missed_errors", k.rx_missed_errors),
            ("rx_fifo_errors", k.rx_fifo_errors),
            ("rx_over_errors", k.rx_over_errors),
        ];
        for (name, n) in hw {
            rows[i].kernel.insert(name.into(), n);
            if n > 0 {
                rows[i].reasons.insert(name.to_string(), n);
            }
            rows[i].drops += n;
        }
        // Software drops the driver/stack also count per device; they show
        // up again as drop reasons at later stages, so they are not added.
        rows[i].kernel.insert("rx_dropped".into(), k.rx_dropped);
        rows[i].packets_in = Some(k.rx_packets + rows[i].drops);
    }
    // Per-queue ring drops as the driver counts them: shown to check against,
    // not added (drivers differ in whether rx_dropped already has them).
    for (name, n) in &input.nic_queue_drops {
        rows[stage_index("nic")]
            .kernel
            .insert(format!("ethtool:{name}"), *n);
    }
    rows[stage_index("xdp")].packets_in = input.xdp_packets;
    rows[stage_index("vxlan")].packets_in = input.vxlan_outer;
    rows[stage_index("bridge")].packets_in = input.vxlan_inner;

    let mut out = Ledger::default();
    if let (Some(d), Some(names)) = (&input.drops, input.reasons) {
        let who = input.names.cloned().unwrap_or_default();
        out.drops_out_of_scope = d.out_of_scope;
        for (slot, n) in d.by_reason.iter().enumerate().take(REASON_SLOTS) {
            if *n == 0 {
                continue;
            }
            let reason = names.slot_name(slot);
            let i = stage_index(stage_of(&reason).0);
            rows[i].drops += n;
            *rows[i].reasons.entry(reason).or_default() += n;
        }
        // Per (netns, device, reason); what the keyed table could not hold is
        // listed without a device so that the rows add up to the exact totals.
        let mut attributed = vec![0u64; REASON_SLOTS];
        for (key, n) in &d.keyed {
            let reason = names.name(key.reason);
            attributed[probe_common::drops::reason_slot(key.reason)] += n;
            out.drops.push(DropRow {
                stage: stage_of(&reason).0,
                reason,
                iface: who.iface(key.netns, key.ifindex),
                netns: who.netns(key.netns),
                count: *n,
            });
        }
        for (slot, n) in d.by_reason.iter().enumerate() {
            let rest = n.saturating_sub(attributed[slot]);
            if rest > 0 {
                let reason = names.slot_name(slot);
                out.drops.push(DropRow {
                    stage: stage_of(&reason).0,
                    reason,
                    iface: None,
                    netns: None,
                    count: rest,
                });
            }
        }
        out.drops.sort_by(|a, b| {
            (
                stage_index(a.stage),
                std::cmp::Reverse(a.count),
                &a.reason,
                &a.netns,
                &a.iface,
            )
                .cmp(&(
                    stage_index(b.stage),
                    std::cmp::Reverse(b.count),
                    &b.reason,
                    &b.netns,
                    &b.iface,
                ))
        });
        let mut flows: Vec<(&FlowKey, &u64)> = d.flows.iter().collect();
        flows.sort_by_key(|(k, n)| (std::cmp::Reverse(**n), **k));
        out.flows = flows
            .into_iter()
            .take(TOP_FLOWS)
            .map(|(k, n)| {
                let reason = names.name(k.reason);
                FlowRow {
                    src: address(k.family, &k.src),
                    dst: address(k.family, &k.dst),
                    inner: k.inner == 1,
                    netns: who.netns(k.netns),
                    stage: stage_of(&reason).0,
                    reason,
                    count: *n,
                }
            })
            .collect();
    }

    // Kernel counters to check the drop reasons against.
    if !input.softnet.is_empty() {
        let i = stage_index("backlog");
        let sum = |f: fn(&SoftnetCpu) -> u64| input.softnet.iter().map(f).sum::<u64>();
        rows[i]
            .kernel
            .insert("softnet_dropped".into(), sum(|c| c.dropped));
        rows[i]
            .kernel
            .insert("softnet_time_squeeze".into(), sum(|c| c.time_squeeze));
        rows[i]
            .kernel
            .insert("softnet_processed".into(), sum(|c| c.processed));
    }
    if !input.snmp.is_empty() {
        let sum = |f: fn(&Snmp) -> u64| input.snmp.iter().map(|(_, s)| f(s)).sum::<u64>();
        let s = stage_index("socket");
        rows[s]
            .kernel
            .insert("UdpRcvbufErrors".into(), sum(|s| s.udp_rcvbuf_errors));
        rows[s]
            .kernel
            .insert("UdpNoPorts".into(), sum(|s| s.udp_no_ports));
        rows[s]
            .kernel
            .insert("UdpInErrors".into(), sum(|s| s.udp_in_errors));
        let ip = stage_index("ip");
        rows[ip]
            .kernel
            .insert("IpInDiscards".into(), sum(|s| s.ip_in_discards));
        rows[ip]
            .kernel
            .insert("IpInAddrErrors".into(), sum(|s| s.ip_in_addr_errors));
        rows[ip]
            .kernel
            .insert("IpInHdrErrors".into(), sum(|s| s.ip_in_hdr_errors));
    }

    if let (Some(outer), Some(inner)) = (input.vxlan_outer, input.vxlan_inner) {
        let lost = outer as i64 - inner as i64;
        let explained = rows[stage_index("vxlan")].drops;
        out.vxlan_loss = Some(VxlanLoss {
            outer_packets: outer,
            inner_packets: inner,
            lost,
            explained,
            unexplained: lost - explained as i64,
        });
    }
    out.verdict = verdict(&rows);
    out.ledger = rows;
    out
}

/// The stage that lost the most, its top reason, and the share of its input.
pub fn verdict(rows: &[LedgerRow]) -> Option<Verdict> {
    let (i, worst) = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| r.drops > 0)
        // Earliest stage on a tie: it is upstream of the others.
        .max_by_key(|(i, r)| (r.drops, std::cmp::Reverse(*i)))?;
    let reason = worst
        .reasons
        .iter()
        .max_by_key(|(name, n)| (**n, std::cmp::Reverse(name.as_str())))
        .map(|(name, _)| name.clone())
        .unwrap_or_default();
    let input = rows[..=i].iter().rev().find_map(|r| r.packets_in);
    // Drops above the input mean the input was counted elsewhere (e.g. the
    // drops happened on another node of the scope): no share then.
    let percent = input
        .filter(|n| *n > 0 && *n >= worst.drops)
        .map(|n| (worst.drops as f64 * 1000.0 / n as f64).round() / 10.0);
    let share = percent.map_or_else(String::new, |p| format!(" ({p}% of its input)"));
    Some(Verdict {
        stage: worst.stage,
        text: format!(
            "largest loss: stage {}, reason {}, {} packets{}",
            worst.stage, reason, worst.drops, share
        ),
        reason,
        packets: worst.drops,
        input,
        percent,
    })
}

#[cfg(test)]
mod tests;
