//! Each drop reason's kernel counter: the one that counts the same drops,
//! so the ledger can be checked against the kernel on every row.

use crate::procfs::{Snmp, SoftnetCpu};

/// The kernel counter that counts the same drops as `reason`, where one does.
/// The UDP counters count UDP only (TCP has its own, in TcpExt).
pub fn counter_for(reason: &str) -> Option<&'static str> {
    Some(match reason {
        "CPU_BACKLOG" => "softnet_dropped",
        "SOCKET_RCVBUFF" => "UdpRcvbufErrors",
        "NO_SOCKET" => "UdpNoPorts",
        "UDP_CSUM" => "UdpInCsumErrors",
        "IP_INHDR" => "IpInHdrErrors",
        "IP_INADDRERRORS" | "IP_INNOROUTES" => "IpInAddrErrors",
        "PKT_TOO_BIG" => "IpFragFails",
        "FRAG_REASM_TIMEOUT" => "IpReasmTimeout",
        _ => return None,
    })
}

/// The value of a counter named by [`counter_for`], summed over `snmp`
/// (softnet: over every CPU, node-wide).
pub(super) fn counter_value(
    counter: &str,
    softnet: &[SoftnetCpu],
    snmp: &[(String, Snmp)],
) -> Option<u64> {
    if counter == "softnet_dropped" {
        return (!softnet.is_empty()).then(|| softnet.iter().map(|c| c.dropped).sum());
    }
    let field: fn(&Snmp) -> u64 = match counter {
        "UdpRcvbufErrors" => |s| s.udp_rcvbuf_errors,
        "UdpNoPorts" => |s| s.udp_no_ports,
        "UdpInCsumErrors" => |s| s.udp_in_csum_errors,
        "IpInHdrErrors" => |s| s.ip_in_hdr_errors,
        "IpInAddrErrors" => |s| s.ip_in_addr_errors,
        "IpFragFails" => |s| s.ip_frag_fails,
        "IpReasmTimeout" => |s| s.ip_reasm_timeout,
        _ => return None,
    };
    (!snmp.is_empty()).then(|| snmp.iter().map(|(_, s)| field(s)).sum())
}
