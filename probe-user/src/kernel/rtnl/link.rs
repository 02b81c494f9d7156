//! Links as the probe sees them: the fields of an RTM_NEWLINK it uses.
use probe_model::counters::link::LinkStats;

use netlink_packet_route::link::{
    InfoData, InfoVxlan, LinkAttribute, LinkInfo, LinkMessage, LinkXdp, XdpAttached,
};

/// The ifindex of the device named `name` in this thread's network namespace
/// (if_nametoindex: one SIOCGIFINDEX ioctl), or None if there is none.
pub fn ifindex_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VxlanInfo {
    pub vni: Option<u32>,
    /// UDP destination port (host order).
    pub port: Option<u16>,
}

/// `IFLA_XDP_ATTACHED` (XDP_ATTACHED_*) and the program id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpState {
    pub attached_mode: u8,
    pub prog_id: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    pub mtu: Option<u32>,
    /// IFLA_INFO_KIND: "veth", "vxlan", "bridge", ...; None for physical NICs.
    pub kind: Option<String>,
    pub vxlan: Option<VxlanInfo>,
    pub num_rx_queues: Option<u32>,
    pub xdp: XdpState,
    pub stats: Option<LinkStats>,
    /// IFLA_TXQLEN: the transmit queue's length (`ip link ... txqueuelen`).
    pub txqlen: Option<u32>,
    /// IFLA_MASTER: the bond or bridge this device is a port of.
    pub master: Option<u32>,
    /// IFLA_LINK: a VLAN's lower device, a veth's peer (ifindexes in the
    /// peer's namespace when that is another one).
    pub link: Option<u32>,
    /// IFLA_LINK_NETNSID: the namespace `link` is in, by the id this
    /// namespace gives it (absent: this namespace).
    pub link_netnsid: Option<i32>,
}

impl Link {
    pub fn is_vxlan(&self) -> bool {
        self.kind.as_deref() == Some("vxlan")
    }

    /// The fields of one RTM_NEWLINK the probe uses.
    pub fn from_message(message: LinkMessage) -> Link {
        let mut link = Link {
            ifindex: message.header.index,
            ..Default::default()
        };
        for attribute in message.attributes {
            match attribute {
                LinkAttribute::IfName(name) => link.name = name,
                LinkAttribute::Mtu(mtu) => link.mtu = Some(mtu),
                LinkAttribute::NumRxQueues(n) => link.num_rx_queues = Some(n),
                LinkAttribute::TxQueueLen(n) => link.txqlen = Some(n),
                LinkAttribute::Controller(i) => link.master = Some(i),
                LinkAttribute::Link(i) => link.link = Some(i),
                LinkAttribute::LinkNetNsId(id) => link.link_netnsid = Some(id),
                LinkAttribute::Stats64(s) => {
                    link.stats = Some(LinkStats {
                        rx_packets: s.rx_packets,
                        rx_bytes: s.rx_bytes,
                        rx_errors: s.rx_errors,
                        rx_dropped: s.rx_dropped,
                        rx_over_errors: s.rx_over_errors,
                        rx_fifo_errors: s.rx_fifo_errors,
                        rx_missed_errors: s.rx_missed_errors,
                        tx_packets: s.tx_packets,
                        tx_bytes: s.tx_bytes,
                        tx_dropped: s.tx_dropped,
                    })
                }
                LinkAttribute::LinkInfo(infos) => link.read_link_info(infos),
                LinkAttribute::Xdp(xdp) => link.xdp = XdpState::from_attributes(&xdp),
                _ => {}
            }
        }
        link
    }

    fn read_link_info(&mut self, infos: Vec<LinkInfo>) {
        for info in infos {
            match info {
                LinkInfo::Kind(kind) => self.kind = Some(kind.to_string()),
                LinkInfo::Data(InfoData::Vxlan(attributes)) => {
                    let mut vxlan = VxlanInfo::default();
                    for a in attributes {
                        match a {
                            InfoVxlan::Id(vni) => vxlan.vni = Some(vni),
                            // Decoded from network byte order by the crate.
                            InfoVxlan::Port(port) => vxlan.port = Some(port),
                            _ => {}
                        }
                    }
                    self.vxlan = Some(vxlan);
                }
                _ => {}
            }
        }
        // A VXLAN device without IFLA_INFO_DATA still is one.
        if self.is_vxlan() && self.vxlan.is_none() {
            self.vxlan = Some(VxlanInfo::default());
        }
    }
}

impl XdpState {
    fn from_attributes(attributes: &[LinkXdp]) -> XdpState {
        let mut state = XdpState::default();
        for a in attributes {
            match a {
                // uapi XDP_ATTACHED_*: 0 none, 1 drv, 2 skb, 3 hw, 4 multi.
                LinkXdp::Attached(mode) => {
                    state.attached_mode = match mode {
                        XdpAttached::None => 0,
                        XdpAttached::Driver => 1,
                        XdpAttached::SocketBuffer => 2,
                        XdpAttached::Hardware => 3,
                        XdpAttached::Multiple => 4,
                        XdpAttached::Other(m) => *m,
                        _ => 0,
                    }
                }
                LinkXdp::ProgId(id) => state.prog_id = Some(*id),
                _ => {}
            }
        }
        state
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{InfoKind, Stats64};

    use super::*;
    use probe_model::delta::Delta;

    fn vxlan_link_message() -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = 7;
        let mut stats = Stats64::default();
        (
            stats.rx_packets,
            stats.rx_bytes,
            stats.rx_dropped,
            stats.rx_missed_errors,
        ) = (100, 15000, 3, 2);
        m.attributes = vec![
            LinkAttribute::IfName("flannel.1".into()),
            LinkAttribute::Mtu(1450),
            LinkAttribute::NumRxQueues(1),
            LinkAttribute::Stats64(stats),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Vxlan),
                LinkInfo::Data(InfoData::Vxlan(vec![
                    InfoVxlan::Id(1),
                    InfoVxlan::Port(8472),
                ])),
            ]),
            LinkAttribute::Xdp(vec![
                LinkXdp::Attached(XdpAttached::Driver),
                LinkXdp::ProgId(42),
            ]),
        ];
        m
    }

    #[test]
    fn reads_a_vxlan_link() {
        let l = Link::from_message(vxlan_link_message());
        assert_eq!(
            (l.ifindex, l.name.as_str(), l.mtu, l.num_rx_queues),
            (7, "flannel.1", Some(1450), Some(1))
        );
        assert!(l.is_vxlan());
        assert_eq!(
            l.vxlan,
            Some(VxlanInfo {
                vni: Some(1),
                port: Some(8472)
            })
        );
        assert_eq!(
            l.xdp,
            XdpState {
                attached_mode: 1,
                prog_id: Some(42)
            }
        );
        let s = l.stats.unwrap();
        assert_eq!(
            (s.rx_packets, s.rx_bytes, s.rx_dropped, s.rx_missed_errors),
            (100, 15000, 3, 2)
        );
        assert_eq!(s.rx_drops(), 5);
    }

    #[test]
    fn the_vxlan_port_survives_the_wire_in_network_order() {
        // Serialise with the crate and decode again: 8472 must not come back
        // byte-swapped (0x1821 <-> 0x2118).
        use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
        use netlink_packet_route::RouteNetlinkMessage;
        let mut m = NetlinkMessage::from(RouteNetlinkMessage::NewLink(vxlan_link_message()));
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        let decoded = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf).unwrap();
        let NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(back)) = decoded.payload
        else {
            panic!("not a link: {decoded:?}");
        };
        assert_eq!(Link::from_message(back).vxlan.unwrap().port, Some(8472));
    }

    #[test]
    fn a_physical_nic_has_no_kind() {
        let mut m = LinkMessage::default();
        m.attributes = vec![LinkAttribute::IfName("eth0".into())];
        let l = Link::from_message(m);
        assert_eq!((l.kind, l.vxlan, l.stats), (None, None, None));
    }

    #[test]
    fn stats_delta_counts_from_a_reset() {
        let a = LinkStats {
            rx_packets: 5,
            ..Default::default()
        };
        let b = LinkStats {
            rx_packets: 15,
            ..Default::default()
        };
        assert_eq!(b.delta(&a).rx_packets, 10);
        // The device re-created: 5 counted since.
        assert_eq!(a.delta(&b).rx_packets, 5);
        assert!(a.reset_since(&b) && !b.reset_since(&a));
    }
}
