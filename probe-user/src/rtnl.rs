//! A minimal rtnetlink client: one RTM_GETLINK dump gives every interface of
//! the socket's network namespace with its kind, VXLAN VNI and port, RX queue
//! count, XDP attachment and 64-bit statistics.
//!
//! The socket belongs to the namespace it was created in, so open it inside
//! [`crate::netns::Netns::run`] and keep using it from anywhere.

use std::{
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

// uapi/linux/netlink.h, rtnetlink.h, if_link.h
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;
const NLA_TYPE_MASK: u16 = 0x3fff; // strips NLA_F_NESTED / NLA_F_NET_BYTEORDER

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_STATS64: u16 = 23;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_XDP: u16 = 43;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_PROG_ID: u16 = 4;

/// The receive-side fields of `struct rtnl_link_stats64` the probe uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub rx_over_errors: u64,
    pub rx_fifo_errors: u64,
    pub rx_missed_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

/// The ifindex of the device named `name` in this thread's network namespace
/// (if_nametoindex: one SIOCGIFINDEX ioctl), or None if there is none.
pub fn ifindex_of(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

crate::delta::counters!(LinkStats {
    rx_packets,
    rx_bytes,
    rx_errors,
    rx_dropped,
    rx_over_errors,
    rx_fifo_errors,
    rx_missed_errors,
    tx_packets,
    tx_bytes,
    tx_dropped,
});

impl LinkStats {
    /// Field-wise `self + other`: the counters of a device's earlier
    /// incarnations carried into its successor's.
    pub fn plus(&self, other: &LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets.wrapping_add(other.rx_packets),
            rx_bytes: self.rx_bytes.wrapping_add(other.rx_bytes),
            rx_errors: self.rx_errors.wrapping_add(other.rx_errors),
            rx_dropped: self.rx_dropped.wrapping_add(other.rx_dropped),
            rx_over_errors: self.rx_over_errors.wrapping_add(other.rx_over_errors),
            rx_fifo_errors: self.rx_fifo_errors.wrapping_add(other.rx_fifo_errors),
            rx_missed_errors: self.rx_missed_errors.wrapping_add(other.rx_missed_errors),
            tx_packets: self.tx_packets.wrapping_add(other.tx_packets),
            tx_bytes: self.tx_bytes.wrapping_add(other.tx_bytes),
            tx_dropped: self.tx_dropped.wrapping_add(other.tx_dropped),
        }
    }

    /// Receive drops the device itself accounts: dropped by the stack/driver,
    /// missed by the NIC, FIFO and ring overruns.
    pub fn rx_drops(&self) -> u64 {
        self.rx_dropped + self.rx_missed_errors + self.rx_fifo_errors + self.rx_over_errors
    }
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
}

impl Link {
    pub fn is_vxlan(&self) -> bool {
        self.kind.as_deref() == Some("vxlan")
    }
}

/// A NETLINK_ROUTE socket bound to the namespace it was opened in.
pub struct RtnlSocket {
    fd: OwnedFd,
    seq: u32,
}

impl RtnlSocket {
    pub fn open() -> io::Result<Self> {
        // SAFETY: plain syscall; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            seq: 1,
        })
    }

    /// Dumps every link of the socket's namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        self.seq = self.seq.wrapping_add(1);
        let req = getlink_dump_request(self.seq);
        // SAFETY: req is a valid buffer; the kernel is the destination (pid 0).
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                req.as_ptr().cast(),
                req.len(),
                0,
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut links = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is valid for buf.len() bytes.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if parse_dump(&buf[..n as usize], self.seq, &mut links)? {
                return Ok(links);
            }
        }
    }
}

fn getlink_dump_request(seq: u32) -> Vec<u8> {
    let len = (NLMSG_HDRLEN + IFINFOMSG_LEN) as u32;
    let mut req = Vec::with_capacity(len as usize);
    req.extend_from_slice(&len.to_ne_bytes());
    req.extend_from_slice(&RTM_GETLINK.to_ne_bytes());
    req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    req.extend_from_slice(&seq.to_ne_bytes());
    req.extend_from_slice(&0u32.to_ne_bytes());
    req.extend_from_slice(&[0u8; IFINFOMSG_LEN]); // AF_UNSPEC, every index
    req
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

fn ne_u16(b: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(..2)?.try_into().ok()?))
}
fn ne_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(..4)?.try_into().ok()?))
}
fn ne_u64(b: &[u8], index: usize) -> u64 {
    b.get(index * 8..index * 8 + 8)
        .map_or(0, |s| u64::from_ne_bytes(s.try_into().expect("8 bytes")))
}

/// Iterates the netlink attributes (type, payload) packed in `buf`.
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = ne_u16(buf)? as usize;
        let kind = ne_u16(buf.get(2..)?)? & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = buf.get(align4(len)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

fn c_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// Parses one datagram of a RTM_GETLINK dump into `out`. Returns true once
/// NLMSG_DONE (of sequence `seq`) is seen.
pub fn parse_dump(mut buf: &[u8], seq: u32, out: &mut Vec<Link>) -> io::Result<bool> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("rtnetlink: {what}"));
    while buf.len() >= NLMSG_HDRLEN {
        let len = ne_u32(buf).ok_or_else(|| bad("short header"))? as usize;
        let kind = ne_u16(&buf[4..]).ok_or_else(|| bad("short header"))?;
        let msg_seq = ne_u32(&buf[8..]).ok_or_else(|| bad("short header"))?;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return Err(bad("message length out of range"));
        }
        let body = &buf[NLMSG_HDRLEN..len];
        buf = buf.get(align4(len)..).unwrap_or(&[]);
        if msg_seq != seq {
            continue; // a stale answer to an earlier request
        }
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = ne_u32(body).map(|e| e as i32).unwrap_or(0);
                if errno != 0 {
                    return Err(io::Error::from_raw_os_error(-errno));
                }
            }
            RTM_NEWLINK => out.push(parse_link(body).ok_or_else(|| bad("malformed RTM_NEWLINK"))?),
            _ => {}
        }
    }
    Ok(false)
}

fn parse_link(body: &[u8]) -> Option<Link> {
    let ifindex = ne_u32(body.get(4..)?)?;
    let mut link = Link {
        ifindex,
        ..Default::default()
    };
    for (kind, payload) in attrs(body.get(IFINFOMSG_LEN..)?) {
        match kind {
            IFLA_IFNAME => link.name = c_string(payload),
            IFLA_MTU => link.mtu = ne_u32(payload),
            IFLA_NUM_RX_QUEUES => link.num_rx_queues = ne_u32(payload),
            IFLA_STATS64 => {
                // struct rtnl_link_stats64: rx_packets, tx_packets, rx_bytes, tx_bytes,
                // rx_errors, tx_errors, rx_dropped, tx_dropped, multicast, collisions,
                // rx_length_errors, rx_over_errors, rx_crc_errors, rx_frame_errors,
                // rx_fifo_errors, rx_missed_errors, ...
                link.stats = Some(LinkStats {
                    rx_packets: ne_u64(payload, 0),
                    tx_packets: ne_u64(payload, 1),
                    rx_bytes: ne_u64(payload, 2),
                    tx_bytes: ne_u64(payload, 3),
                    rx_errors: ne_u64(payload, 4),
                    rx_dropped: ne_u64(payload, 6),
                    tx_dropped: ne_u64(payload, 7),
                    rx_over_errors: ne_u64(payload, 11),
                    rx_fifo_errors: ne_u64(payload, 14),
                    rx_missed_errors: ne_u64(payload, 15),
                });
            }
            IFLA_LINKINFO => parse_linkinfo(payload, &mut link),
            IFLA_XDP => {
                for (k, p) in attrs(payload) {
                    match k {
                        IFLA_XDP_ATTACHED => {
                            link.xdp.attached_mode = p.first().copied().unwrap_or(0)
                        }
                        IFLA_XDP_PROG_ID => link.xdp.prog_id = ne_u32(p),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn parse_linkinfo(payload: &[u8], link: &mut Link) {
    let mut data = None;
    for (k, p) in attrs(payload) {
        match k {
            IFLA_INFO_KIND => link.kind = Some(c_string(p)),
            IFLA_INFO_DATA => data = Some(p),
            _ => {}
        }
    }
    if link.is_vxlan() {
        let mut info = VxlanInfo::default();
        for (k, p) in attrs(data.unwrap_or(&[])) {
            match k {
                IFLA_VXLAN_ID => info.vni = ne_u32(p),
                // The port travels in network byte order.
                IFLA_VXLAN_PORT => info.port = p.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])),
                _ => {}
            }
        }
        link.vxlan = Some(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::Delta;

    fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = Vec::new();
        a.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        a.extend_from_slice(&kind.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(align4(a.len()), 0);
        a
    }

    fn message(kind: u16, seq: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDRLEN + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(body);
        m
    }

    fn vxlan_link_body() -> Vec<u8> {
        let mut body = vec![0u8; IFINFOMSG_LEN];
        body[4..8].copy_from_slice(&7u32.to_ne_bytes());
        body.extend(attr(IFLA_IFNAME, b"flannel.1\0"));
        body.extend(attr(IFLA_MTU, &1450u32.to_ne_bytes()));
        body.extend(attr(IFLA_NUM_RX_QUEUES, &1u32.to_ne_bytes()));
        let mut stats = vec![0u8; 8 * 24];
        for (i, v) in [(0usize, 100u64), (2, 15000), (6, 3), (15, 2)] {
            stats[i * 8..i * 8 + 8].copy_from_slice(&v.to_ne_bytes());
        }
        body.extend(attr(IFLA_STATS64, &stats));
        let mut data = attr(IFLA_VXLAN_ID, &1u32.to_ne_bytes());
        data.extend(attr(IFLA_VXLAN_PORT, &8472u16.to_be_bytes()));
        let mut info = attr(IFLA_INFO_KIND, b"vxlan\0");
        info.extend(attr(IFLA_INFO_DATA | 0x8000, &data));
        body.extend(attr(IFLA_LINKINFO | 0x8000, &info));
        let mut xdp = attr(IFLA_XDP_ATTACHED, &[1]);
        xdp.extend(attr(IFLA_XDP_PROG_ID, &42u32.to_ne_bytes()));
        body.extend(attr(IFLA_XDP | 0x8000, &xdp));
        body
    }

    #[test]
    fn parses_a_vxlan_link_and_done() {
        let mut dump = message(RTM_NEWLINK, 9, &vxlan_link_body());
        dump.extend(message(NLMSG_DONE, 9, &0u32.to_ne_bytes()));
        let mut links = Vec::new();
        assert!(parse_dump(&dump, 9, &mut links).unwrap());
        let l = &links[0];
        assert_eq!(
            (l.ifindex, l.name.as_str(), l.mtu),
            (7, "flannel.1", Some(1450))
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
    fn skips_other_sequences_and_reports_errors() {
        let mut links = Vec::new();
        let stale = message(NLMSG_DONE, 1, &0u32.to_ne_bytes());
        assert!(!parse_dump(&stale, 2, &mut links).unwrap());
        let err = message(NLMSG_ERROR, 2, &(-(libc::EPERM)).to_ne_bytes());
        assert_eq!(
            parse_dump(&err, 2, &mut links).unwrap_err().raw_os_error(),
            Some(libc::EPERM)
        );
    }

    #[test]
    fn rejects_truncated_messages() {
        let mut m = message(RTM_NEWLINK, 3, &vxlan_link_body());
        m.truncate(40);
        assert!(parse_dump(&m, 3, &mut Vec::new()).is_err());
    }

    #[test]
    fn stats_delta_wraps() {
        let a = LinkStats {
            rx_packets: 5,
            ..Default::default()
        };
        let b = LinkStats {
            rx_packets: 15,
            ..Default::default()
        };
        assert_eq!(b.delta(&a).rx_packets, 10);
    }
}
