//! Frame classification shared by the XDP program and host unit tests.
//!
//! The parser reads through the [`Frame`] trait: in the kernel every read is a
//! bounds-checked load from packet memory, on the host it is a slice index. All
//! offsets are built from constants and from header fields masked to a few bits
//! (IPv4 IHL), so the verifier can bound them.

use core::mem::offset_of;

use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    udp::UdpHdr,
    vlan::VlanHdr,
    vxlan::VxlanHdr,
};

/// Class of a frame received on the NIC. The classes are exclusive: a VXLAN
/// packet is counted as `Vxlan`, not also as IPv4/IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum NicClass {
    /// Not IPv4/IPv6 (ARP, LLDP, ...), or too short to tell.
    NonIp = 0,
    Ipv4 = 1,
    Ipv6 = 2,
    /// UDP to one of the configured VXLAN ports (IPv4 or IPv6 outer header).
    Vxlan = 3,
}

impl NicClass {
    pub const COUNT: usize = 4;
    pub const ALL: [NicClass; Self::COUNT] = [Self::NonIp, Self::Ipv4, Self::Ipv6, Self::Vxlan];

    pub const fn name(self) -> &'static str {
        match self {
            Self::NonIp => "non_ip",
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Vxlan => "vxlan",
        }
    }
}

/// Class of the Ethernet frame carried inside VXLAN (or seen on a VXLAN device).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum InnerClass {
    Ipv4 = 0,
    Ipv6 = 1,
    Other = 2,
    /// The VXLAN header or the inner Ethernet header is cut short.
    Truncated = 3,
}

impl InnerClass {
    pub const COUNT: usize = 4;
    pub const ALL: [InnerClass; Self::COUNT] =
        [Self::Ipv4, Self::Ipv6, Self::Other, Self::Truncated];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Ipv4 => "ipv4",
            Self::Ipv6 => "ipv6",
            Self::Other => "other",
            Self::Truncated => "truncated",
        }
    }

    /// Class of an Ethernet payload from its EtherType (host byte order).
    #[inline(always)]
    pub const fn from_ethertype(ethertype: u16) -> Self {
        match ethertype {
            ETH_P_IPV4 => Self::Ipv4,
            ETH_P_IPV6 => Self::Ipv6,
            _ => Self::Other,
        }
    }
}

// Header layouts from network-types: every length and offset below is a
// compile-time constant, so the classifier costs the same as with literals.
pub const ETH_P_IPV4: u16 = u16::from_be(EtherType::Ipv4 as u16);
pub const ETH_P_IPV6: u16 = u16::from_be(EtherType::Ipv6 as u16);
pub const ETH_P_8021Q: u16 = u16::from_be(EtherType::Ieee8021q as u16);
pub const ETH_P_8021AD: u16 = u16::from_be(EtherType::Ieee8021ad as u16);
const IPPROTO_UDP: u8 = IpProto::Udp as u8;
const ETH_HLEN: usize = EthHdr::LEN;
const ETH_TYPE: usize = offset_of!(EthHdr, ether_type);
const VLAN_HLEN: usize = VlanHdr::LEN;
const VLAN_TYPE: usize = offset_of!(VlanHdr, ether_type);
const IPV4_HLEN: usize = Ipv4Hdr::LEN;
const IPV4_FRAGS: usize = offset_of!(Ipv4Hdr, frags);
const IPV4_PROTO: usize = offset_of!(Ipv4Hdr, proto);
const IPV6_HLEN: usize = Ipv6Hdr::LEN;
const IPV6_NEXT: usize = offset_of!(Ipv6Hdr, next_hdr);
const UDP_HLEN: usize = UdpHdr::LEN;
const UDP_DST: usize = offset_of!(UdpHdr, dst);
const UDP_CHECK: usize = offset_of!(UdpHdr, check);
const VXLAN_HLEN: usize = VxlanHdr::LEN;
const VXLAN_VNI: usize = offset_of!(VxlanHdr, vni);
/// 802.1ad + 802.1Q (QinQ) is the deepest stacking parsed; deeper is NonIp.
const MAX_VLAN_TAGS: usize = 2;

/// Read access to a frame. Every method returns `None` past the end.
pub trait Frame {
    /// The first `N` bytes, if the frame has them. In the kernel this is one
    /// bounds check after which every byte of the array can be read unchecked.
    fn head<const N: usize>(&self) -> Option<&[u8; N]>;
    fn u8_at(&self, offset: usize) -> Option<u8>;
    /// Big-endian (network order) 16-bit field, returned in host order.
    fn be16_at(&self, offset: usize) -> Option<u16>;
    /// Big-endian 32-bit field, returned in host order.
    fn be32_at(&self, offset: usize) -> Option<u32>;
}

/// Result of [`classify`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    pub class: NicClass,
    /// VNI, when `class == Vxlan` and the VXLAN header is complete.
    pub vni: Option<u32>,
    /// UDP destination port, when `class == Vxlan` (0 otherwise).
    pub port: u16,
    /// Inner frame class, when `class == Vxlan`.
    pub inner: InnerClass,
}

impl Classification {
    const fn plain(class: NicClass) -> Self {
        Self {
            class,
            vni: None,
            port: 0,
            inner: InnerClass::Other,
        }
    }
}

/// Classify a frame that starts with an Ethernet header. `is_vxlan_port` says
/// whether a UDP destination port (host order) carries VXLAN.
#[inline(always)]
pub fn classify<F: Frame + ?Sized>(
    frame: &F,
    is_vxlan_port: impl Fn(u16) -> bool,
) -> Classification {
    match classify_untagged_ipv4(frame, &is_vxlan_port) {
        Some(c) => c,
        None => classify_any(frame, is_vxlan_port),
    }
}

/// Fast path for what an underlay NIC mostly carries: untagged Ethernet and
/// IPv4 without options. Every field then sits at a fixed offset, so one
/// bounds check (two for VXLAN) replaces one per field read. `None` means
/// "not this shape": the general parser decides. It must agree with
/// [`classify_any`] on every frame (tested).
#[inline(always)]
fn classify_untagged_ipv4<F: Frame + ?Sized>(
    frame: &F,
    is_vxlan_port: &impl Fn(u16) -> bool,
) -> Option<Classification> {
    // Ethernet 0..14, IPv4 14..34, UDP 34..42.
    const IP: usize = ETH_HLEN;
    const UDP: usize = IP + IPV4_HLEN;
    const VXLAN: usize = UDP + UDP_HLEN;
    const INNER: usize = VXLAN + VXLAN_HLEN;
    let h: &[u8; UDP + UDP_HLEN] = frame.head()?;
    // EtherType IPv4, version 4 with a 20-byte header (IHL 5).
    if h[ETH_TYPE] != 0x08 || h[ETH_TYPE + 1] != 0x00 || h[IP] != 0x45 {
        return None;
    }
    // The fragment offset is the low 13 bits of `frags`.
    let frags = IP + IPV4_FRAGS;
    if (h[frags] & 0x1f) | h[frags + 1] != 0 || h[IP + IPV4_PROTO] != IPPROTO_UDP {
        return Some(Classification::plain(NicClass::Ipv4));
    }
    let dport = u16::from_be_bytes([h[UDP + UDP_DST], h[UDP + UDP_DST + 1]]);
    if dport == 0 || !is_vxlan_port(dport) {
        return Some(Classification::plain(NicClass::Ipv4));
    }
    // The VXLAN header, then the inner Ethernet header.
    let h: &[u8; INNER + ETH_HLEN] = frame.head()?;
    let vni = VXLAN + VXLAN_VNI;
    let vni = (h[vni] as u32) << 16 | (h[vni + 1] as u32) << 8 | h[vni + 2] as u32;
    Some(Classification {
        class: NicClass::Vxlan,
        vni: Some(vni),
        port: dport,
        inner: InnerClass::from_ethertype(u16::from_be_bytes([
            h[INNER + ETH_TYPE],
            h[INNER + ETH_TYPE + 1],
        ])),
    })
}

/// The general parser: VLAN tags, IPv4 options, IPv6, truncated frames.
#[inline(always)]
fn classify_any<F: Frame + ?Sized>(
    frame: &F,
    is_vxlan_port: impl Fn(u16) -> bool,
) -> Classification {
    let Some(mut ethertype) = frame.be16_at(ETH_TYPE) else {
        return Classification::plain(NicClass::NonIp);
    };
    let mut l3 = ETH_HLEN;
    let mut tags = 0;
    while tags < MAX_VLAN_TAGS && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) {
        // The tag: TCI, then the EtherType of what follows.
        match frame.be16_at(l3 + VLAN_TYPE) {
            Some(next) => ethertype = next,
            None => return Classification::plain(NicClass::NonIp),
        }
        l3 += VLAN_HLEN;
        tags += 1;
    }

    let (class, udp) = match ethertype {
        ETH_P_IPV4 => (NicClass::Ipv4, ipv4_udp_offset(frame, l3)),
        ETH_P_IPV6 => (NicClass::Ipv6, ipv6_udp_offset(frame, l3)),
        _ => return Classification::plain(NicClass::NonIp),
    };
    let Some(udp) = udp else {
        return Classification::plain(class);
    };
    match frame.be16_at(udp + UDP_DST) {
        Some(dport) if dport != 0 && is_vxlan_port(dport) => {
            classify_vxlan(frame, udp + UDP_HLEN, dport)
        }
        _ => Classification::plain(class),
    }
}

/// Offset of the UDP header of an IPv4 packet at `l3`, if it is UDP, not a
/// non-first fragment, and the UDP header is present.
#[inline(always)]
fn ipv4_udp_offset<F: Frame + ?Sized>(frame: &F, l3: usize) -> Option<usize> {
    let version_ihl = frame.u8_at(l3)?;
    // Masked to 4 bits: the verifier sees a bounded 0..60 byte offset.
    let ihl = ((version_ihl & 0x0f) as usize) * 4;
    if version_ihl >> 4 != 4 || ihl < IPV4_HLEN {
        return None;
    }
    let fragment_offset = frame.be16_at(l3 + IPV4_FRAGS)? & 0x1fff;
    if fragment_offset != 0 || frame.u8_at(l3 + IPV4_PROTO)? != IPPROTO_UDP {
        return None;
    }
    let udp = l3 + ihl;
    frame.be16_at(udp + UDP_CHECK)?; // whole UDP header present
    Some(udp)
}

/// Offset of the UDP header of an IPv6 packet at `l3` whose next header is UDP.
/// Extension headers are not walked: such packets stay plain IPv6.
#[inline(always)]
fn ipv6_udp_offset<F: Frame + ?Sized>(frame: &F, l3: usize) -> Option<usize> {
    if frame.u8_at(l3)? >> 4 != 6 || frame.u8_at(l3 + IPV6_NEXT)? != IPPROTO_UDP {
        return None;
    }
    let udp = l3 + IPV6_HLEN;
    frame.be16_at(udp + UDP_CHECK)?;
    Some(udp)
}

/// VXLAN header (RFC 7348) at `vxlan`: flags(8) reserved(24) VNI(24) reserved(8),
/// then the inner Ethernet frame.
#[inline(always)]
fn classify_vxlan<F: Frame + ?Sized>(frame: &F, vxlan: usize, port: u16) -> Classification {
    // The 24-bit VNI and the reserved byte after it, read as one word.
    let Some(vni_word) = frame.be32_at(vxlan + VXLAN_VNI) else {
        return Classification {
            class: NicClass::Vxlan,
            vni: None,
            port,
            inner: InnerClass::Truncated,
        };
    };
    let vni = Some(vni_word >> 8);
    let inner = match frame.be16_at(vxlan + VXLAN_HLEN + ETH_TYPE) {
        Some(ethertype) => InnerClass::from_ethertype(ethertype),
        None => InnerClass::Truncated,
    };
    Classification {
        class: NicClass::Vxlan,
        vni,
        port,
        inner,
    }
}

#[cfg(all(test, feature = "user"))]
mod tests;
