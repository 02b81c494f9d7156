//! Finds the NIC of the default route from /proc/thread-self/net/{route,ipv6_route},
//! which show the routes of the calling thread's network namespace.

const RTF_UP: u32 = 0x0001;
const RTF_REJECT: u32 = 0x0200;

/// The interface of the lowest-metric IPv4 default route in a
/// /proc/net/route text (columns: Iface Destination Gateway Flags RefCnt Use
/// Metric Mask ...; addresses in hex).
pub fn ipv4_default_iface(route: &str) -> Option<String> {
    route
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(f.get(3)?, 16).ok()?;
            let metric: u32 = f.get(6)?.parse().ok()?;
            let default = *f.get(1)? == "00000000" && *f.get(7)? == "00000000";
            (default && flags & RTF_UP != 0).then(|| (metric, f[0].to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The interface of the lowest-metric IPv6 default route in a
/// /proc/net/ipv6_route text (dest, dest_len, src, src_len, next_hop, metric,
/// refcnt, use, flags, iface; hex). Reject routes (the `lo` placeholders) are skipped.
pub fn ipv6_default_iface(route: &str) -> Option<String> {
    route
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let default = f.first()?.chars().all(|c| c == '0') && *f.get(1)? == "00";
            let metric = u32::from_str_radix(f.get(5)?, 16).ok()?;
            let flags = u32::from_str_radix(f.get(8)?, 16).ok()?;
            let usable = flags & RTF_UP != 0 && flags & RTF_REJECT == 0;
            let iface = f.get(9)?.to_string();
            (default && usable).then_some((metric, iface))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// The default-route NIC of the calling thread's namespace: IPv4 first, then IPv6.
pub fn default_route_iface() -> Option<String> {
    let v4 = std::fs::read_to_string("/proc/thread-self/net/route").ok();
    if let Some(iface) = v4.as_deref().and_then(ipv4_default_iface) {
        return Some(iface);
    }
    let v6 = std::fs::read_to_string("/proc/thread-self/net/ipv6_route").ok();
    v6.as_deref().and_then(ipv6_default_iface)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
eth1\t00000000\t0101A8C0\t0003\t0\t0\t200\t00000000\t0\t0\t0\n\
eth0\t00000000\t0100A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";

    #[test]
    fn lowest_metric_ipv4_default_wins() {
        assert_eq!(ipv4_default_iface(V4).as_deref(), Some("eth0"));
    }

    #[test]
    fn no_default_route() {
        let only_subnet = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n";
        assert_eq!(ipv4_default_iface(only_subnet), None);
        assert_eq!(ipv4_default_iface(""), None);
    }

    #[test]
    fn ipv6_default_skips_reject_routes() {
        let z = "00000000000000000000000000000000";
        let text = format!(
            "{z} 00 {z} 00 {z} ffffffff 00000001 00000000 00200200       lo\n\
             {z} 00 {z} 00 fe800000000000000000000000000001 00000400 00000001 00000000 00450003     ens3\n"
        );
        assert_eq!(ipv6_default_iface(&text).as_deref(), Some("ens3"));
    }
}
