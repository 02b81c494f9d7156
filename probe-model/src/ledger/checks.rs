//! Each drop reason's kernel counter: the one that counts the same drops,
//! so the ledger can be checked against the kernel on every row.

use super::{stage_index, LedgerInput, LedgerRow};
use crate::{
    counters::procfs::{Snmp, SoftnetCpu},
    stage::Stage,
};

/// The kernel counter that counts the same drops as `reason`, where one does.
/// A reason row holds both families' drops, so its counter is the IPv4 and
/// the IPv6 counter summed (`a+b`). The UDP counters count UDP only (TCP has
/// its own, in TcpExt).
pub fn counter_for(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "CPU_BACKLOG" => "softnet_dropped",
        "SOCKET_RCVBUFF" => "UdpRcvbufErrors+Udp6RcvbufErrors",
        "NO_SOCKET" => "UdpNoPorts+Udp6NoPorts",
        "UDP_CSUM" => "UdpInCsumErrors+Udp6InCsumErrors",
        "IP_INHDR" => "IpInHdrErrors+Ip6InHdrErrors",
        "IP_INADDRERRORS" => "IpInAddrErrors+Ip6InAddrErrors",
        // ip_error() (IPv4) and ip6_pkt_drop() count IPSTATS_MIB_INNOROUTES.
        "IP_INNOROUTES" => "IpExtInNoRoutes+Ip6InNoRoutes",
        "PKT_TOO_BIG" => "IpFragFails+Ip6FragFails",
        "FRAG_REASM_TIMEOUT" => "IpReasmTimeout+Ip6ReasmTimeout",
        // Every drop a qdisc makes is counted in its qstats.drops, whatever
        // the reason it frees the packet with: the counter is theirs together.
        "QDISC_DROP" | "QDISC_OVERLIMIT" | "QDISC_CONGESTED" | "CAKE_FLOOD" | "FQ_BAND_LIMIT"
        | "FQ_HORIZON_LIMIT" | "FQ_FLOW_LIMIT" => QDISC_DROPS,
        _ => return None,
    })
}

/// The drops of every root qdisc of the namespaces read (tc -s qdisc).
pub const QDISC_DROPS: &str = "qdisc_drops";

/// One counter of [`Snmp`] by the name reports give it.
fn snmp_field(name: &str) -> Option<fn(&Snmp) -> u64> {
    Some(match name {
        "UdpRcvbufErrors" => |s| s.udp_rcvbuf_errors,
        "Udp6RcvbufErrors" => |s| s.udp6_rcvbuf_errors,
        "UdpNoPorts" => |s| s.udp_no_ports,
        "Udp6NoPorts" => |s| s.udp6_no_ports,
        "UdpInCsumErrors" => |s| s.udp_in_csum_errors,
        "Udp6InCsumErrors" => |s| s.udp6_in_csum_errors,
        "IpInHdrErrors" => |s| s.ip_in_hdr_errors,
        "Ip6InHdrErrors" => |s| s.ip6_in_hdr_errors,
        "IpInAddrErrors" => |s| s.ip_in_addr_errors,
        "Ip6InAddrErrors" => |s| s.ip6_in_addr_errors,
        "IpExtInNoRoutes" => |s| s.ip_in_no_routes,
        "Ip6InNoRoutes" => |s| s.ip6_in_no_routes,
        "IpFragFails" => |s| s.ip_frag_fails,
        "Ip6FragFails" => |s| s.ip6_frag_fails,
        "IpReasmTimeout" => |s| s.ip_reasm_timeout,
        "Ip6ReasmTimeout" => |s| s.ip6_reasm_timeout,
        "ListenDrops" => |s| s.tcp_listen_drops,
        _ => return None,
    })
}

/// The kernel counters of a period, as the ledger reads them.
pub(super) struct Counted<'a> {
    pub softnet: &'a [SoftnetCpu],
    pub snmp: &'a [(String, Snmp)],
    pub qdisc_drops: &'a [(String, u64)],
}

impl Counted<'_> {
    /// The value of a counter named by [`counter_for`] (each of its `+`
    /// parts), summed over the namespaces read (softnet: over every CPU,
    /// node-wide); None where it was not read.
    pub fn value(&self, counter: &str) -> Option<u64> {
        match counter {
            "softnet_dropped" => {
                (!self.softnet.is_empty()).then(|| self.softnet.iter().map(|c| c.dropped).sum())
            }
            QDISC_DROPS => (!self.qdisc_drops.is_empty())
                .then(|| self.qdisc_drops.iter().map(|(_, n)| n).sum()),
            _ => {
                let fields = counter
                    .split('+')
                    .map(snmp_field)
                    .collect::<Option<Vec<_>>>()?;
                (!self.snmp.is_empty()).then(|| {
                    self.snmp
                        .iter()
                        .flat_map(|(_, s)| fields.iter().map(move |f| f(s)))
                        .sum()
                })
            }
        }
    }
}

/// Stage-wide kernel counters, shown next to the stage's drops: the
/// backlog's softnet_stat sums, and connection tracking's where it counted
/// something.
pub(super) fn add_stage_counters(rows: &mut [LedgerRow], input: &LedgerInput) {
    // A NETFILTER_DROP of conntrack's own (the table full) is
    // told from a rule's DROP by `conntrack_drop`.
    let netns_sum = |f: fn(&Snmp) -> u64| input.snmp.iter().map(|(_, s)| f(s)).sum::<u64>();
    let conntrack = [
        ("conntrack_drop", netns_sum(|s| s.conntrack_drop)),
        (
            "conntrack_early_drop",
            netns_sum(|s| s.conntrack_early_drop),
        ),
        (
            "conntrack_insert_failed",
            netns_sum(|s| s.conntrack_insert_failed),
        ),
    ];
    if conntrack.iter().any(|(_, n)| *n > 0) {
        let ip = &mut rows[stage_index(Stage::Ip)];
        for (name, n) in conntrack {
            ip.kernel.insert(name.into(), n);
        }
    }
    if !input.softnet.is_empty() {
        let i = stage_index(Stage::Backlog);
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_named_reads_a_field() {
        for reason in [
            "SOCKET_RCVBUFF",
            "NO_SOCKET",
            "UDP_CSUM",
            "IP_INHDR",
            "IP_INADDRERRORS",
            "IP_INNOROUTES",
            "PKT_TOO_BIG",
            "FRAG_REASM_TIMEOUT",
        ] {
            let counter = counter_for(reason).unwrap();
            let snmp = [("pod".to_string(), Snmp::default())];
            let counted = Counted {
                softnet: &[],
                snmp: &snmp,
                qdisc_drops: &[],
            };
            assert_eq!(counted.value(counter), Some(0), "{counter}");
        }
    }

    #[test]
    fn a_counter_sums_both_families_in_every_namespace() {
        let pod = |v4, v6| Snmp {
            udp_no_ports: v4,
            udp6_no_ports: v6,
            ..Default::default()
        };
        let snmp = [("a".to_string(), pod(2, 300)), ("b".to_string(), pod(5, 0))];
        let qdisc_drops = [("a".to_string(), 40), ("b".to_string(), 2)];
        let counted = Counted {
            softnet: &[],
            snmp: &snmp,
            qdisc_drops: &qdisc_drops,
        };
        assert_eq!(counted.value(counter_for("NO_SOCKET").unwrap()), Some(307));
        assert_eq!(
            counted.value(counter_for("FQ_FLOW_LIMIT").unwrap()),
            Some(42)
        );
        assert_eq!(counted.value("NoSuchCounter"), None);
        let unread = Counted {
            softnet: &[],
            snmp: &[],
            qdisc_drops: &[],
        };
        assert_eq!(unread.value(counter_for("NO_SOCKET").unwrap()), None);
        assert_eq!(unread.value(QDISC_DROPS), None);
    }
}
