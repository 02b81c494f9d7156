//! The default route's device, chosen from an RTM_GETROUTE dump.

use netlink_packet_route::{
    route::{RouteAttribute, RouteHeader, RouteMessage, RouteType},
    AddressFamily,
};

/// The output device of the lowest-metric default route of the main table,
/// IPv4 before IPv6. Only unicast routes count: the IPv6 `unreachable`
/// placeholders on `lo` are skipped. A multipath route gives its first hop.
pub fn default_route_ifindex(routes: &[RouteMessage]) -> Option<u32> {
    let best = |family: AddressFamily| {
        routes
            .iter()
            .filter(|r| r.header.address_family == family && is_main_default(r))
            .filter_map(|r| Some((metric(r), output_device(r)?)))
            .min()
            .map(|(_, ifindex)| ifindex)
    };
    best(AddressFamily::Inet).or_else(|| best(AddressFamily::Inet6))
}

fn is_main_default(r: &RouteMessage) -> bool {
    // Table ids above 255 travel only in RTA_TABLE; the header then says 252.
    let table = r
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(r.header.table));
    r.header.destination_prefix_length == 0
        && r.header.kind == RouteType::Unicast
        && table == u32::from(RouteHeader::RT_TABLE_MAIN)
}

fn metric(r: &RouteMessage) -> u32 {
    r.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn output_device(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        RouteAttribute::MultiPath(hops) => hops.first().map(|h| h.interface_index),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(
        family: AddressFamily,
        prefix: u8,
        kind: RouteType,
        attrs: Vec<RouteAttribute>,
    ) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = family;
        r.header.destination_prefix_length = prefix;
        r.header.table = RouteHeader::RT_TABLE_MAIN;
        r.header.kind = kind;
        r.attributes = attrs;
        r
    }

    fn default_v4(oif: u32, metric: u32) -> RouteMessage {
        use RouteAttribute::*;
        route(
            AddressFamily::Inet,
            0,
            RouteType::Unicast,
            vec![Oif(oif), Priority(metric)],
        )
    }

    #[test]
    fn lowest_metric_ipv4_default_wins() {
        let subnet = route(
            AddressFamily::Inet,
            24,
            RouteType::Unicast,
            vec![RouteAttribute::Oif(9)],
        );
        let routes = [default_v4(3, 200), default_v4(2, 100), subnet];
        assert_eq!(default_route_ifindex(&routes), Some(2));
    }

    #[test]
    fn no_default_route() {
        let subnet = route(
            AddressFamily::Inet,
            24,
            RouteType::Unicast,
            vec![RouteAttribute::Oif(2)],
        );
        assert_eq!(default_route_ifindex(&[subnet]), None);
        assert_eq!(default_route_ifindex(&[]), None);
    }

    #[test]
    fn ipv6_default_skips_unreachable_and_other_tables() {
        let unreachable = route(
            AddressFamily::Inet6,
            0,
            RouteType::Unreachable,
            vec![RouteAttribute::Oif(1)],
        );
        let mut local_table = route(
            AddressFamily::Inet6,
            0,
            RouteType::Unicast,
            vec![RouteAttribute::Oif(5)],
        );
        local_table.attributes.push(RouteAttribute::Table(255));
        let ens3 = route(
            AddressFamily::Inet6,
            0,
            RouteType::Unicast,
            vec![RouteAttribute::Oif(4)],
        );
        assert_eq!(
            default_route_ifindex(&[unreachable, local_table, ens3]),
            Some(4)
        );
    }

    #[test]
    fn ipv4_wins_over_a_lower_ipv6_metric() {
        let mut v6 = route(
            AddressFamily::Inet6,
            0,
            RouteType::Unicast,
            vec![RouteAttribute::Oif(4)],
        );
        v6.attributes.push(RouteAttribute::Priority(1));
        assert_eq!(default_route_ifindex(&[v6, default_v4(2, 1000)]), Some(2));
    }
}
