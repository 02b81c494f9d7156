//! `probe trace --proto tcp-syn`: marked TCP SYNs, sent from a raw socket,
//! and the answers the pod's node sends back (SYN-ACK: a listener took the
//! SYN; RST: nothing listens on the port).
//!
//! A SYN carries the signature as its payload, where the receive-side
//! programs look for it (TRACE_MAGIC_OFFSETS). A listener acknowledges the
//! SYN alone (data in a SYN is kept only with TCP Fast Open), so probe `i`
//! (sequence number `isn + i`) is answered with `ack = isn + i + 1`. Each
//! probe leaves from its own source port (a SYN of a connection the
//! listener still holds half-open would be taken for a retransmission). No
//! socket of the sending node owns those ports: its kernel answers each
//! SYN-ACK with a RST, and the listener drops the half-open connection.

use std::{
    io,
    mem::MaybeUninit,
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use socket2::{Domain, Protocol, Socket, Type};

/// What the SYNs got back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Answers {
    /// Probes answered with a SYN-ACK.
    pub accepted: u64,
    /// Probes answered with a RST.
    pub refused: u64,
}

/// One trace's SYNs: where they go, and their sequence numbers.
pub struct SynProbe {
    to: SocketAddrV4,
    from: Ipv4Addr,
    /// Probe i's source port: FIRST_PORT + (port_seed + i) % PORTS.
    port_seed: u32,
    isn: u32,
    count: u32,
    send: Socket,
    answers: Socket,
}

/// Source ports: above Linux's ephemeral range (32768-60999), so no
/// connection of the sending namespace is likely to own one.
const FIRST_PORT: u16 = 61000;
const PORTS: u32 = 4000;
/// A SYN's payload: the signature, then the probe's number.
const PAYLOAD: usize = 12;

fn raw_socket(protocol: i32) -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(protocol))).map_err(|e| {
        if e.raw_os_error() == Some(libc::EPERM) {
            io::Error::new(
                e.kind(),
                "--proto tcp-syn sends from a raw socket: it needs CAP_NET_RAW",
            )
        } else {
            e
        }
    })
}

/// A classic BPF filter for the answers' raw socket: only TCP from `to`'s
/// address and port. Without it the socket gets a copy of every TCP segment
/// the namespace receives (the node's own, without --from-netns), and busy
/// traffic would overflow it and lose answers.
fn answers_from(to: SocketAddrV4) -> [socket2::SockFilter; 7] {
    use socket2::SockFilter as F;
    // A raw IPPROTO_TCP socket's data starts at the IPv4 header.
    const LD_W_ABS: u16 = 0x20; // A = u32 at k (network order)
    const LD_H_IND: u16 = 0x48; // A = u16 at X + k
    const LDX_B_MSH: u16 = 0xb1; // X = 4 * (byte at k & 0xf): the IP header's length
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    [
        F::new(LD_W_ABS, 0, 0, 12), // source address
        F::new(JEQ_K, 0, 4, u32::from(*to.ip())),
        F::new(LDX_B_MSH, 0, 0, 0),
        F::new(LD_H_IND, 0, 0, 0), // TCP source port
        F::new(JEQ_K, 0, 1, u32::from(to.port())),
        F::new(RET_K, 0, 0, 0xffff),
        F::new(RET_K, 0, 0, 0),
    ]
}

impl SynProbe {
    /// Opens the sockets in the current namespace (the sender's): `seed`
    /// picks the source port and the first sequence number.
    pub fn open(to: SocketAddrV4, count: u32, seed: u64) -> io::Result<SynProbe> {
        // The address the route to `to` leaves from: the SYN's source.
        let route = UdpSocket::bind("0.0.0.0:0")?;
        route.connect(to)?;
        let from = match route.local_addr()? {
            std::net::SocketAddr::V4(a) => *a.ip(),
            other => return Err(io::Error::other(format!("no IPv4 route to {to}: {other}"))),
        };
        // IPPROTO_RAW: the packets carry their own IP header. A second raw
        // socket receives a copy of the TCP packets that come back from `to`.
        let send = raw_socket(libc::IPPROTO_RAW)?;
        let answers = raw_socket(libc::IPPROTO_TCP)?;
        answers.attach_filter(&answers_from(to))?;
        answers.set_read_timeout(Some(Duration::from_millis(50)))?;
        answers.set_recv_buffer_size(1 << 20)?;
        Ok(SynProbe {
            to,
            from,
            port_seed: seed as u32,
            isn: (seed >> 32) as u32,
            count,
            send,
            answers,
        })
    }

    fn sport(&self, i: u32) -> u16 {
        FIRST_PORT + (self.port_seed.wrapping_add(i) % PORTS) as u16
    }

    /// Probe `i`: IPv4 + TCP SYN, the signature (native order, as the
    /// kernel program reads it) and `i` as payload.
    pub fn packet(&self, magic: u64, i: u32) -> Vec<u8> {
        let builder = PacketBuilder::ipv4(self.from.octets(), self.to.ip().octets(), 64)
            .tcp(
                self.sport(i),
                self.to.port(),
                self.isn.wrapping_add(i),
                64240,
            )
            .syn();
        let mut payload = [0u8; PAYLOAD];
        payload[..8].copy_from_slice(&magic.to_ne_bytes());
        payload[8..].copy_from_slice(&i.to_be_bytes());
        let mut out = Vec::with_capacity(builder.size(payload.len()));
        // Writing to a Vec cannot fail.
        let _ = builder.write(&mut out, &payload);
        out
    }

    /// Sends probe `i`.
    pub fn send(&self, magic: u64, i: u32) -> io::Result<()> {
        let to = std::net::SocketAddr::V4(self.to);
        self.send.send_to(&self.packet(magic, i), &to.into())?;
        Ok(())
    }

    /// Which probe a packet from the network answers, and how; None: not an
    /// answer to this trace.
    pub fn answer(&self, packet: &[u8]) -> Option<(u32, bool)> {
        let sliced = SlicedPacket::from_ip(packet).ok()?;
        let Some(NetSlice::Ipv4(ip)) = &sliced.net else {
            return None;
        };
        let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
            return None;
        };
        let from_pod =
            ip.header().source_addr() == *self.to.ip() && tcp.source_port() == self.to.port();
        if !from_pod || !tcp.ack() {
            return None;
        }
        // A SYN-ACK acknowledges the SYN alone; a RST also its payload
        // (tcp_v4_send_reset acknowledges all the segment carried).
        let (accepted, acked) = match (tcp.syn(), tcp.rst()) {
            (true, false) => (true, 1),
            (false, true) => (false, 1 + PAYLOAD as u32),
            _ => return None,
        };
        let i = tcp
            .acknowledgment_number()
            .wrapping_sub(self.isn)
            .wrapping_sub(acked);
        if i >= self.count || tcp.destination_port() != self.sport(i) {
            return None;
        }
        Some((i, accepted))
    }

    /// Reads answers until `until` or `stop`: each probe counted once.
    pub fn collect(&self, until: impl Fn() -> bool, stop: &AtomicBool) -> Answers {
        let mut seen = vec![false; self.count as usize];
        let mut answers = Answers::default();
        let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
        while !until() && !stop.load(Ordering::Relaxed) {
            let Ok(n) = self.answers.recv(&mut buf) else {
                continue; // the read timeout: check the time again
            };
            // SAFETY: recv initialised the first n bytes.
            let packet: Vec<u8> = buf[..n]
                .iter()
                .map(|b| unsafe { b.assume_init() })
                .collect();
            let Some((i, accepted)) = self.answer(&packet) else {
                continue;
            };
            if std::mem::replace(&mut seen[i as usize], true) {
                continue;
            }
            if accepted {
                answers.accepted += 1;
            } else {
                answers.refused += 1;
            }
        }
        answers
    }
}

/// `count` SYNs to `to` at `rate` per second from the current namespace,
/// and the answers that come back until `wait` after the last (or `stop`).
pub fn trace(
    to: SocketAddrV4,
    magic: u64,
    count: u32,
    rate: u32,
    wait: Duration,
    stop: &AtomicBool,
) -> io::Result<(u64, Answers)> {
    let probe = SynProbe::open(to, count, magic.rotate_left(17))?;
    // Set once the last SYN is sent: answers are read until `wait` after.
    let last_sent = std::sync::OnceLock::<Instant>::new();
    std::thread::scope(|s| {
        let collector = s.spawn(|| {
            probe.collect(
                || last_sent.get().is_some_and(|t| t.elapsed() >= wait),
                stop,
            )
        });
        let sent = super::paced(count, rate, stop, |i| probe.send(magic, i));
        let _ = last_sent.set(Instant::now());
        let answers = collector.join().unwrap_or_default();
        sent.map(|sent| (sent, answers))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> SynProbe {
        // Sockets are not opened: only the packet layout is tested.
        SynProbe {
            to: "10.244.2.2:5201".parse().unwrap(),
            from: Ipv4Addr::new(10, 244, 1, 2),
            port_seed: 231, // probe 3 leaves from 61234
            isn: u32::MAX - 1,
            count: 10,
            send: Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap(),
            answers: Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap(),
        }
    }

    #[test]
    fn the_signature_sits_where_the_kernel_program_looks() {
        let p = probe();
        let magic = 0x34e1_a07c_9d5b_2f86;
        let packet = p.packet(magic, 3);
        // From the IP header (skb->data at netif_receive_skb): IPv4, TCP SYN.
        let at = probe_common::stage_latency::TRACE_MAGIC_OFFSETS[3] as usize;
        assert_eq!(&packet[at..at + 8], &magic.to_ne_bytes());
        assert_eq!(packet[9], 6, "TCP");
        assert_eq!(packet[20 + 13], 0x02, "SYN alone");
        let sliced = SlicedPacket::from_ip(&packet).unwrap();
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            panic!("no TCP");
        };
        assert_eq!(tcp.sequence_number(), 1, "the sequence number wraps");
        assert_eq!(tcp.destination_port(), 5201);
    }

    #[test]
    fn answers_are_matched_to_their_probe() {
        let p = probe();
        let answer = |flags: &dyn Fn(
            etherparse::PacketBuilderStep<etherparse::TcpHeader>,
        )
            -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
                      from: [u8; 4],
                      ack: u32| {
            let b = PacketBuilder::ipv4(from, [10, 244, 1, 2], 64).tcp(5201, 61234, 77, 1000);
            let b = flags(b).ack(ack);
            let mut out = Vec::new();
            b.write(&mut out, &[]).unwrap();
            out
        };
        let pod = [10, 244, 2, 2];
        // Probe 3's sequence number is isn + 3 = 1: its SYN acknowledged
        // as 2, its SYN and payload as 14.
        assert_eq!(p.answer(&answer(&|b| b.syn(), pod, 2)), Some((3, true)));
        assert_eq!(p.answer(&answer(&|b| b.rst(), pod, 14)), Some((3, false)));
        assert_eq!(p.answer(&answer(&|b| b.rst(), pod, 2)), None, "probe -9");
        assert_eq!(p.answer(&answer(&|b| b, pod, 2)), None, "a bare ACK");
        assert_eq!(p.answer(&answer(&|b| b.syn(), [10, 0, 0, 9], 2)), None);
        assert_eq!(p.answer(&answer(&|b| b.syn(), pod, 500)), None, "not ours");
    }
}
