use super::*;
use crate::frames::{self, Outer};

fn vxlan_ports(port: u16) -> bool {
    port == 8472 || port == 4789
}

fn class_of(frame: &[u8]) -> Classification {
    classify(frame, vxlan_ports)
}

#[test]
fn plain_udp_is_ipv4_or_ipv6() {
    assert_eq!(class_of(&frames::udp4(53, 32)).class, NicClass::Ipv4);
    assert_eq!(class_of(&frames::udp6(53, 32)).class, NicClass::Ipv6);
}

#[test]
fn vxlan_on_both_ports_and_both_outer_versions() {
    let inner4 = frames::udp4(9000, 16);
    let inner6 = frames::udp6(9000, 16);
    for outer in [Outer::V4, Outer::V6] {
        for port in [8472, 4789] {
            let c = class_of(&frames::vxlan(outer, port, 1, &inner4));
            assert_eq!(
                c,
                Classification {
                    class: NicClass::Vxlan,
                    vni: Some(1),
                    inner: InnerClass::Ipv4
                }
            );
            let c = class_of(&frames::vxlan(outer, port, 0xabcdef, &inner6));
            assert_eq!(
                c,
                Classification {
                    class: NicClass::Vxlan,
                    vni: Some(0xabcdef),
                    inner: InnerClass::Ipv6
                }
            );
        }
    }
}

#[test]
fn vxlan_port_set_is_configurable() {
    let f = frames::vxlan(Outer::V4, 4789, 7, &frames::udp4(1, 1));
    assert_eq!(classify(&f[..], |p| p == 8472).class, NicClass::Ipv4);
    assert_eq!(classify(&f[..], |p| p == 4789).class, NicClass::Vxlan);
}

#[test]
fn inner_non_ip_is_other() {
    let arp = frames::ethernet(0x0806);
    let c = class_of(&frames::vxlan(Outer::V4, 8472, 1, &arp));
    assert_eq!(c.inner, InnerClass::Other);
}

#[test]
fn vlan_tagged_frames_are_seen_through() {
    let mut f = frames::ethernet_vlan(100, ETH_P_IPV4);
    frames::push_ipv4(&mut f, 8 + 8 + 14);
    let mut payload = frames::vxlan_header(1).to_vec();
    payload.extend_from_slice(&frames::ethernet(ETH_P_IPV6));
    frames::push_udp(&mut f, 1, 8472, &payload);
    let c = class_of(&f);
    assert_eq!(
        c,
        Classification {
            class: NicClass::Vxlan,
            vni: Some(1),
            inner: InnerClass::Ipv6
        }
    );

    let mut plain = frames::ethernet_vlan(7, ETH_P_IPV6);
    frames::push_ipv6(&mut plain, 8);
    frames::push_udp(&mut plain, 1, 53, &[]);
    assert_eq!(class_of(&plain).class, NicClass::Ipv6);
}

#[test]
fn ipv4_options_move_the_udp_header() {
    let mut f = frames::ethernet(ETH_P_IPV4);
    frames::push_ipv4(&mut f, 8 + 8 + 14);
    f[14] = 0x46; // IHL 6: one 4-byte option word
    f.extend_from_slice(&[1, 1, 1, 0]);
    let mut payload = frames::vxlan_header(3).to_vec();
    payload.extend_from_slice(&frames::ethernet(ETH_P_IPV4));
    frames::push_udp(&mut f, 1, 8472, &payload);
    assert_eq!(class_of(&f).vni, Some(3));
}

#[test]
fn non_first_fragment_is_not_vxlan() {
    let mut f = frames::vxlan(Outer::V4, 8472, 1, &frames::udp4(1, 1));
    f[14 + 6] = 0x00;
    f[14 + 7] = 0x10; // fragment offset 16 * 8 bytes
    assert_eq!(class_of(&f).class, NicClass::Ipv4);
}

#[test]
fn every_truncation_of_a_vxlan_frame() {
    let full = frames::vxlan(Outer::V4, 8472, 1, &frames::udp4(9000, 16));
    let eth_ip_udp = 14 + 20 + 8;
    for len in 0..=full.len() {
        let c = class_of(&full[..len]);
        let expected = if len < 14 {
            NicClass::NonIp
        } else if len < eth_ip_udp {
            NicClass::Ipv4
        } else {
            NicClass::Vxlan
        };
        assert_eq!(c.class, expected, "len {len}");
        if expected == NicClass::Vxlan {
            let vni = if len >= eth_ip_udp + 8 { Some(1) } else { None };
            assert_eq!(c.vni, vni, "len {len}");
            let inner = if len >= eth_ip_udp + 8 + 14 {
                InnerClass::Ipv4
            } else {
                InnerClass::Truncated
            };
            assert_eq!(c.inner, inner, "len {len}");
        }
    }
}

#[test]
fn garbage_never_panics() {
    for seed in 1..2000u64 {
        let f = frames::pseudo_random((seed % 200) as usize, seed);
        let _ = class_of(&f);
    }
}

#[test]
fn bad_ip_version_or_ihl_is_not_parsed_further() {
    let mut f = frames::vxlan(Outer::V4, 8472, 1, &frames::udp4(1, 1));
    f[14] = 0x44; // IHL 4 (< 20 bytes): malformed
    assert_eq!(class_of(&f).class, NicClass::Ipv4);
    f[14] = 0x65; // version 6 in an IPv4 EtherType
    assert_eq!(class_of(&f).class, NicClass::Ipv4);
}
