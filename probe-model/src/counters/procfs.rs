//! The kernel's own drop counters that the ledger reconciles against, and
//! their parsers: /proc/net/softnet_stat (per CPU, node-wide), and per
//! namespace /proc/net/snmp, snmp6, netstat and stat/nf_conntrack.

use std::collections::BTreeMap;

use serde::Serialize;

/// One CPU's line of /proc/net/softnet_stat (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SoftnetCpu {
    pub cpu: u32,
    /// Packets taken off the backlog / processed by __netif_receive_skb.
    pub processed: u64,
    /// Packets dropped because the per-CPU backlog was full (netdev_max_backlog).
    pub dropped: u64,
    /// NET_RX runs that stopped with work left (netdev_budget or budget_usecs).
    pub time_squeeze: u64,
    /// Packets this CPU was sent by RPS/RFS.
    pub received_rps: u64,
    pub flow_limit_count: u64,
}

// Hand-written: the procfs crate (0.18) has no softnet_stat reader.
/// Parses /proc/net/softnet_stat: one line per online CPU, hex columns
/// processed, dropped, time_squeeze, 5 unused, cpu_collision, received_rps,
/// flow_limit_count, then (5.10+) backlog length and the CPU number.
pub fn parse_softnet(text: &str) -> Vec<SoftnetCpu> {
    text.lines()
        .enumerate()
        .filter_map(|(line_no, line)| {
            let cols: Vec<u64> = line
                .split_whitespace()
                .map(|c| u64::from_str_radix(c, 16))
                .collect::<Result<_, _>>()
                .ok()?;
            let col = |i: usize| cols.get(i).copied().unwrap_or(0);
            if cols.len() < 3 {
                return None;
            }
            Some(SoftnetCpu {
                // Offline CPUs have no line, so the line number is only a fallback.
                cpu: cols.get(12).map_or(line_no as u32, |c| *c as u32),
                processed: col(0),
                dropped: col(1),
                time_squeeze: col(2),
                received_rps: col(9),
                flow_limit_count: col(10),
            })
        })
        .collect()
}

/// One network namespace's protocol counters (cumulative): /proc/net/snmp
/// (IPv4, UDP), /proc/net/snmp6 (IPv6, UDP over IPv6) and /proc/net/netstat
/// (IpExt, TcpExt). Only the drop counters the ledger checks against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Snmp {
    pub udp_in_errors: u64,
    pub udp_no_ports: u64,
    pub udp_rcvbuf_errors: u64,
    pub ip_in_discards: u64,
    pub ip_in_addr_errors: u64,
    pub ip_in_hdr_errors: u64,
    pub ip_frag_fails: u64,
    pub ip_reasm_timeout: u64,
    pub ip_reasm_fails: u64,
    pub udp_in_csum_errors: u64,
    /// IpExt InNoRoutes (netstat): IPv4's no-route drops (ip_error).
    pub ip_in_no_routes: u64,
    pub udp6_in_errors: u64,
    pub udp6_no_ports: u64,
    pub udp6_rcvbuf_errors: u64,
    pub udp6_in_csum_errors: u64,
    pub ip6_in_discards: u64,
    pub ip6_in_addr_errors: u64,
    pub ip6_in_no_routes: u64,
    pub ip6_in_hdr_errors: u64,
    pub ip6_frag_fails: u64,
    pub ip6_reasm_timeout: u64,
    pub ip6_reasm_fails: u64,
    /// TcpExt ListenOverflows: SYNs and handshake ACKs a listener's full
    /// accept queue refused.
    pub tcp_listen_overflows: u64,
    /// TcpExt ListenDrops: everything a listener dropped (overflows, a full
    /// SYN queue without cookies, failed allocations).
    pub tcp_listen_drops: u64,
    /// /proc/net/stat/nf_conntrack, over every CPU (0 without nf_conntrack):
    /// packets conntrack dropped (NETFILTER_DROP) because it could not
    /// track them: the table full and nothing to evict, or no memory.
    pub conntrack_drop: u64,
    /// Entries evicted to make room for a new one (the table was full).
    pub conntrack_early_drop: u64,
    /// New entries that lost a race to insert (their packet is dropped).
    pub conntrack_insert_failed: u64,
}

crate::delta::counters!(Snmp {
    udp_in_errors,
    udp_no_ports,
    udp_rcvbuf_errors,
    ip_in_discards,
    ip_in_addr_errors,
    ip_in_hdr_errors,
    ip_frag_fails,
    ip_reasm_timeout,
    ip_reasm_fails,
    udp_in_csum_errors,
    ip_in_no_routes,
    udp6_in_errors,
    udp6_no_ports,
    udp6_rcvbuf_errors,
    udp6_in_csum_errors,
    ip6_in_discards,
    ip6_in_addr_errors,
    ip6_in_no_routes,
    ip6_in_hdr_errors,
    ip6_frag_fails,
    ip6_reasm_timeout,
    ip6_reasm_fails,
    tcp_listen_overflows,
    tcp_listen_drops,
    conntrack_drop,
    conntrack_early_drop,
    conntrack_insert_failed,
});

crate::delta::counters!(SoftnetCpu {
    processed,
    dropped,
    time_squeeze,
    received_rps,
    flow_limit_count,
} keep { cpu });

/// Counters by (protocol, name): `("Udp", "NoPorts")`; snmp6's one-per-line
/// names have no protocol part (`("", "Udp6NoPorts")`).
type Fields = BTreeMap<(String, String), u64>;

// Hand-written: procfs 0.18's net::Snmp errors if any of its ~80 fields is missing (e.g. UdpLite).
/// Adds the counters of /proc/net/snmp or /proc/net/netstat to `fields`:
/// pairs of lines `Proto: names...` / `Proto: values...`.
fn parse_pairs(text: &str, fields: &mut Fields) {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.chunks(2) {
        let [names, values] = pair else { continue };
        let (Some((proto, names)), Some((proto2, values))) =
            (names.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if proto != proto2 {
            continue;
        }
        for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
            if let Ok(v) = value.parse::<i64>() {
                fields.insert((proto.to_string(), name.to_string()), v as u64);
            }
        }
    }
}

/// Adds the counters of /proc/net/snmp6 to `fields`: one `Name value` a line.
fn parse_lines(text: &str, fields: &mut Fields) {
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some(name), Some(Ok(v))) = (words.next(), words.next().map(str::parse::<u64>)) {
            fields.insert((String::new(), name.to_string()), v);
        }
    }
}

/// Adds the counters of /proc/net/stat/nf_conntrack to `fields` (protocol
/// `conntrack`): a header of names, then one line of hex values per CPU,
/// summed.
fn parse_conntrack(text: &str, fields: &mut Fields) {
    let mut lines = text.lines();
    let Some(names) = lines.next() else { return };
    let names: Vec<&str> = names.split_whitespace().collect();
    for line in lines {
        for (name, value) in names.iter().zip(line.split_whitespace()) {
            if let Ok(v) = u64::from_str_radix(value, 16) {
                *fields
                    .entry(("conntrack".into(), name.to_string()))
                    .or_default() += v;
            }
        }
    }
}

/// The counters of one namespace from the texts of its /proc/net/snmp,
/// snmp6, netstat and stat/nf_conntrack (a missing file, or counter, reads
/// as 0: a kernel without IPv6 counts nothing there).
pub fn parse_snmp(snmp: &str, snmp6: &str, netstat: &str, conntrack: &str) -> Snmp {
    let mut fields = Fields::new();
    parse_pairs(snmp, &mut fields);
    parse_pairs(netstat, &mut fields);
    parse_lines(snmp6, &mut fields);
    parse_conntrack(conntrack, &mut fields);
    let get = |proto: &str, name: &str| {
        fields
            .get(&(proto.to_string(), name.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let v6 = |name: &str| get("", name);
    Snmp {
        udp_in_errors: get("Udp", "InErrors"),
        udp_no_ports: get("Udp", "NoPorts"),
        udp_rcvbuf_errors: get("Udp", "RcvbufErrors"),
        ip_in_discards: get("Ip", "InDiscards"),
        ip_in_addr_errors: get("Ip", "InAddrErrors"),
        ip_in_hdr_errors: get("Ip", "InHdrErrors"),
        ip_frag_fails: get("Ip", "FragFails"),
        ip_reasm_timeout: get("Ip", "ReasmTimeout"),
        ip_reasm_fails: get("Ip", "ReasmFails"),
        udp_in_csum_errors: get("Udp", "InCsumErrors"),
        ip_in_no_routes: get("IpExt", "InNoRoutes"),
        udp6_in_errors: v6("Udp6InErrors"),
        udp6_no_ports: v6("Udp6NoPorts"),
        udp6_rcvbuf_errors: v6("Udp6RcvbufErrors"),
        udp6_in_csum_errors: v6("Udp6InCsumErrors"),
        ip6_in_discards: v6("Ip6InDiscards"),
        ip6_in_addr_errors: v6("Ip6InAddrErrors"),
        ip6_in_no_routes: v6("Ip6InNoRoutes"),
        ip6_in_hdr_errors: v6("Ip6InHdrErrors"),
        ip6_frag_fails: v6("Ip6FragFails"),
        ip6_reasm_timeout: v6("Ip6ReasmTimeout"),
        ip6_reasm_fails: v6("Ip6ReasmFails"),
        tcp_listen_overflows: get("TcpExt", "ListenOverflows"),
        tcp_listen_drops: get("TcpExt", "ListenDrops"),
        conntrack_drop: get("conntrack", "drop"),
        conntrack_early_drop: get("conntrack", "early_drop"),
        conntrack_insert_failed: get("conntrack", "insert_failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Delta;

    #[test]
    fn softnet_columns() {
        let text = "\
0000a0f1 00000002 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000001 00000000 00000000
00000005 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000002
";
        let s = parse_softnet(text);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0],
            SoftnetCpu {
                cpu: 0,
                processed: 0xa0f1,
                dropped: 2,
                time_squeeze: 3,
                received_rps: 0x10,
                flow_limit_count: 1
            }
        );
        // The CPU number column wins over the line number (CPU 1 offline).
        assert_eq!(s[1].cpu, 2);
        // Old kernels: 11 columns, no CPU number.
        let old = parse_softnet("00000001 00000000 00000000 0 0 0 0 0 0 0 0\n");
        assert_eq!(old[0].cpu, 0);
        assert!(parse_softnet("garbage here\n").is_empty());
    }

    #[test]
    fn snmp_pairs() {
        let text = "\
Ip: Forwarding DefaultTTL InReceives InHdrErrors InAddrErrors ForwDatagrams InUnknownProtos InDiscards ReasmTimeout ReasmFails FragFails
Ip: 1 64 100 1 2 0 0 3 5 6 8
Icmp: InMsgs InErrors
Icmp: 0 0
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 10 4 7 0 7 0 9 0 0
";
        let snmp6 = "Ip6InHdrErrors 3\nIp6InNoRoutes 2\nUdp6NoPorts 11\nUdp6RcvbufErrors 12\n";
        let netstat = "\
TcpExt: SyncookiesSent ListenOverflows ListenDrops
TcpExt: 0 290 291
IpExt: InNoRoutes InTruncatedPkts
IpExt: 6 0
";
        let conntrack = "\
entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop
00000002  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001 0000000a 00000003
00000002  00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000010 00000000
";
        let s = parse_snmp(text, snmp6, netstat, conntrack);
        assert_eq!(
            s,
            Snmp {
                udp_in_errors: 7,
                udp_no_ports: 4,
                udp_rcvbuf_errors: 7,
                ip_in_discards: 3,
                ip_in_addr_errors: 2,
                ip_in_hdr_errors: 1,
                ip_reasm_timeout: 5,
                ip_reasm_fails: 6,
                ip_frag_fails: 8,
                udp_in_csum_errors: 9,
                ip_in_no_routes: 6,
                ip6_in_hdr_errors: 3,
                ip6_in_no_routes: 2,
                udp6_no_ports: 11,
                udp6_rcvbuf_errors: 12,
                tcp_listen_overflows: 290,
                tcp_listen_drops: 291,
                conntrack_drop: 26,
                conntrack_early_drop: 3,
                conntrack_insert_failed: 1,
                ..Default::default()
            }
        );
        let later = Snmp {
            udp_no_ports: 5,
            ..s
        };
        assert_eq!(later.delta(&s).udp_no_ports, 1);
        assert_eq!(parse_snmp("", "", "", ""), Snmp::default());
    }
}
