//! rtnetlink, through the rust-netlink crates: `netlink-packet-route` encodes
//! and decodes the messages, `netlink-sys` owns the socket. One RTM_GETLINK
//! dump gives every interface of the socket's network namespace with its kind,
//! VXLAN VNI and port, RX queue count, XDP attachment and 64-bit statistics;
//! one RTM_GETROUTE dump gives the default route's device.
//!
//! The socket belongs to the namespace it was created in, so open it inside
//! [`crate::kernel::netns::Netns::run`] and keep using it from anywhere. Requests are
//! synchronous: the sampling loop asks once per interval and waits.

mod link;
mod route;
mod tc;

use std::io;

use bytes::BytesMut;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::{link::LinkMessage, route::RouteMessage, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub use link::{ifindex_of, Link, VxlanInfo, XdpState};
pub use tc::{BpfFilter, RootQdisc};

/// Large enough for one datagram of a dump: the kernel fills up to 32 KiB
/// per datagram (netlink_dump's max_recvmsg_len).
const RECV_BUF: usize = 64 * 1024;

/// A NETLINK_ROUTE socket bound to the namespace it was opened in.
pub struct RtnlSocket {
    socket: Socket,
    seq: u32,
    buf: BytesMut,
}

impl RtnlSocket {
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Self {
            socket,
            seq: 0,
            buf: BytesMut::with_capacity(RECV_BUF),
        })
    }

    /// Every link of the socket's namespace.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        let answers = self.dump(RouteNetlinkMessage::GetLink(LinkMessage::default()))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(Link::from_message(l)),
                _ => None,
            })
            .collect())
    }

    /// The ifindex of the namespace's default-route device (IPv4 first, then
    /// IPv6, the lowest metric of each), or None if there is no default route.
    pub fn default_route_ifindex(&mut self) -> io::Result<Option<u32>> {
        let answers = self.dump(RouteNetlinkMessage::GetRoute(RouteMessage::default()))?;
        let routes: Vec<RouteMessage> = answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .collect();
        Ok(route::default_route_ifindex(&routes))
    }

    /// Sends a dump request and collects every answer until NLMSG_DONE.
    fn dump(&mut self, request: RouteNetlinkMessage) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.send(request, NLM_F_REQUEST | NLM_F_DUMP)?;
        let mut answers = Vec::new();
        while !self.receive(&mut answers)? {}
        Ok(answers)
    }

    /// The id this socket's namespace gives the namespace open as `fd`
    /// (RTM_GETNSID; what IFLA_LINK_NETNSID names a peer's namespace by),
    /// or None when it has given it none.
    pub fn nsid_of(&mut self, fd: std::os::fd::BorrowedFd) -> io::Result<Option<i32>> {
        use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
        use std::os::fd::AsRawFd;
        let mut m = NsidMessage::default();
        m.attributes.push(NsidAttribute::Fd(fd.as_raw_fd() as u32));
        self.send(RouteNetlinkMessage::GetNsId(m), NLM_F_REQUEST | NLM_F_ACK)?;
        let mut answers = Vec::new();
        while !self.receive(&mut answers)? {}
        Ok(answers.into_iter().find_map(|a| match a {
            RouteNetlinkMessage::NewNsId(m) => m.attributes.into_iter().find_map(|a| match a {
                NsidAttribute::Id(id) if id >= 0 => Some(id),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Sends a request that changes something and waits for the kernel's ACK.
    fn change(&mut self, request: RouteNetlinkMessage) -> io::Result<()> {
        self.send(request, NLM_F_REQUEST | NLM_F_ACK)?;
        let mut answers = Vec::new();
        while !self.receive(&mut answers)? {}
        Ok(())
    }

    fn send(&mut self, request: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(request));
        packet.finalize();
        let mut out = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0)?;
        Ok(())
    }

    /// Reads one datagram of answers to the last request; true once it is
    /// complete (NLMSG_DONE, or the ACK).
    fn receive(&mut self, answers: &mut Vec<RouteNetlinkMessage>) -> io::Result<bool> {
        loop {
            self.buf.clear();
            match self.socket.recv(&mut self.buf, 0) {
                Ok(_) => return parse_datagram(&self.buf, self.seq, answers),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("rtnetlink: {what}"))
}

/// Decodes one datagram answering request `seq` into `out`. Returns true
/// once the answer is complete: NLMSG_DONE ends a dump, an ACK (an error
/// message with code 0) a change; a NACK becomes its errno.
fn parse_datagram(
    mut datagram: &[u8],
    seq: u32,
    out: &mut Vec<RouteNetlinkMessage>,
) -> io::Result<bool> {
    while !datagram.is_empty() {
        let message: NetlinkMessage<RouteNetlinkMessage> =
            NetlinkMessage::deserialize(datagram).map_err(invalid)?;
        let len = message.header.length as usize;
        if len == 0 || len > datagram.len() {
            return Err(invalid("message length out of range"));
        }
        // Messages are 4-byte aligned inside a datagram.
        datagram = datagram.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        if message.header.sequence_number != seq {
            continue; // a stale answer to an earlier request
        }
        match message.payload {
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(e) => match e.code {
                Some(code) => return Err(io::Error::from_raw_os_error(-code.get())),
                None => return Ok(true),
            },
            NetlinkPayload::InnerMessage(m) => out.push(m),
            _ => {}
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use netlink_packet_core::{DoneMessage, ErrorMessage};

    use super::*;

    fn wire(seq: u32, payload: NetlinkPayload<RouteNetlinkMessage>) -> Vec<u8> {
        let mut header = NetlinkHeader::default();
        header.sequence_number = seq;
        let mut m = NetlinkMessage::new(header, payload);
        m.finalize();
        let mut buf = vec![0u8; m.buffer_len()];
        m.serialize(&mut buf);
        buf
    }

    fn new_link(index: u32) -> NetlinkPayload<RouteNetlinkMessage> {
        let mut l = LinkMessage::default();
        l.header.index = index;
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l))
    }

    #[test]
    fn collects_until_done_and_skips_other_sequences() {
        let mut datagram = wire(9, new_link(7));
        datagram.extend(wire(8, new_link(99))); // stale
        let mut out = Vec::new();
        assert!(!parse_datagram(&datagram, 9, &mut out).unwrap());
        assert_eq!(out.len(), 1);
        let done = wire(9, NetlinkPayload::Done(DoneMessage::default()));
        assert!(parse_datagram(&done, 9, &mut out).unwrap());
    }

    #[test]
    fn a_nack_becomes_its_errno() {
        let mut e = ErrorMessage::default();
        e.code = std::num::NonZeroI32::new(-libc::EPERM);
        let err = parse_datagram(&wire(2, NetlinkPayload::Error(e)), 2, &mut Vec::new());
        assert_eq!(err.unwrap_err().raw_os_error(), Some(libc::EPERM));
    }

    #[test]
    fn rejects_truncated_messages() {
        let mut m = wire(3, new_link(7));
        m.truncate(m.len() - 4);
        assert!(parse_datagram(&m, 3, &mut Vec::new()).is_err());
    }
}
