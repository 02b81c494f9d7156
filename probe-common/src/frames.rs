//! Builders for crafted test frames (host only): plain UDP, VXLAN-encapsulated
//! frames, VLAN tags. Checksums are left zero: nothing here is sent on a wire,
//! the frames feed BPF_PROG_TEST_RUN and the classifier tests.

use crate::classify::{ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Ethernet header with the given EtherType.
pub fn ethernet(ethertype: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(128);
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Ethernet + 802.1Q tag (VLAN `vid`) + the given inner EtherType.
pub fn ethernet_vlan(vid: u16, ethertype: u16) -> Vec<u8> {
    let mut f = ethernet(ETH_P_8021Q);
    f.extend_from_slice(&(vid & 0x0fff).to_be_bytes());
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// Appends an IPv4 header (no options) for a UDP payload of `udp_len` bytes.
pub fn push_ipv4(f: &mut Vec<u8>, udp_len: usize) {
    let total = (20 + udp_len) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0x40, 0, 64, 17, 0, 0]); // id, DF, ttl, UDP, csum
    f.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
}

/// Appends an IPv6 header for a UDP payload of `udp_len` bytes.
pub fn push_ipv6(f: &mut Vec<u8>, udp_len: usize) {
    f.extend_from_slice(&[0x60, 0, 0, 0]);
    f.extend_from_slice(&(udp_len as u16).to_be_bytes());
    f.extend_from_slice(&[17, 64]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
}

/// Appends a UDP header followed by `payload`.
pub fn push_udp(f: &mut Vec<u8>, sport: u16, dport: u16, payload: &[u8]) {
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
}

/// Ethernet/IPv4/UDP frame with a payload of `payload_len` zero bytes.
pub fn udp4(dport: u16, payload_len: usize) -> Vec<u8> {
    let mut f = ethernet(ETH_P_IPV4);
    push_ipv4(&mut f, 8 + payload_len);
    push_udp(&mut f, 40000, dport, &vec![0; payload_len]);
    f
}

/// Ethernet/IPv6/UDP frame with a payload of `payload_len` zero bytes.
pub fn udp6(dport: u16, payload_len: usize) -> Vec<u8> {
    let mut f = ethernet(ETH_P_IPV6);
    push_ipv6(&mut f, 8 + payload_len);
    push_udp(&mut f, 40000, dport, &vec![0; payload_len]);
    f
}

/// Outer IP version of a VXLAN frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outer {
    V4,
    V6,
}

/// VXLAN header: I flag set, the 24-bit VNI.
pub fn vxlan_header(vni: u32) -> [u8; 8] {
    let v = (vni & 0x00ff_ffff) << 8;
    let b = v.to_be_bytes();
    [0x08, 0, 0, 0, b[0], b[1], b[2], b[3]]
}

/// A full VXLAN frame: outer Ethernet/IP/UDP to `dport`, VXLAN with `vni`, and
/// `inner` (an Ethernet frame) as payload.
pub fn vxlan(outer: Outer, dport: u16, vni: u32, inner: &[u8]) -> Vec<u8> {
    let mut payload = vxlan_header(vni).to_vec();
    payload.extend_from_slice(inner);
    let (mut f, udp_len) = match outer {
        Outer::V4 => (ethernet(ETH_P_IPV4), 8 + payload.len()),
        Outer::V6 => (ethernet(ETH_P_IPV6), 8 + payload.len()),
    };
    match outer {
        Outer::V4 => push_ipv4(&mut f, udp_len),
        Outer::V6 => push_ipv6(&mut f, udp_len),
    }
    push_udp(&mut f, 51000, dport, &payload);
    f
}

/// Deterministic pseudo-random bytes (xorshift), for garbage-frame tests.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
