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
                    port,
                    inner: InnerClass::Ipv4
                }
            );
            let c = class_of(&frames::vxlan(outer, port, 0xabcdef, &inner6));
            assert_eq!(
                c,
                Classification {
                    class: NicClass::Vxlan,
                    vni: Some(0xabcdef),
                    port,
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
            port: 8472,
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

/// The fixed-offset fast path must answer exactly like the general parser:
/// every byte of the first 64 of a VXLAN and a plain UDP frame set to values
/// that matter (0, the expected byte, VLAN/IP markers, 0xff), at every length.
#[test]
fn fast_path_agrees_with_the_general_parser() {
    let vxlan = frames::vxlan(Outer::V4, 8472, 0x12345, &frames::udp4(9000, 16));
    let udp = frames::udp4(4789, 40);
    let mut checked = 0;
    for base in [&vxlan, &udp] {
        for pos in 0..64.min(base.len()) {
            for value in [
                0x00, 0x01, 0x08, 0x11, 0x1f, 0x20, 0x45, 0x46, 0x81, 0x86, 0xdd, 0xff,
            ] {
                let mut f = base.clone();
                f[pos] = value;
                for len in [f.len(), 64, 63, 50, 49, 42, 41, 34] {
                    let f = &f[..len.min(f.len())];
                    assert_eq!(
                        classify(f, vxlan_ports),
                        classify_any(f, vxlan_ports),
                        "byte {pos} = {value:#x}, len {}",
                        f.len()
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 10_000);
}

#[test]
fn fast_path_takes_untagged_ipv4_only() {
    let is_vx = &vxlan_ports;
    let vxlan = frames::vxlan(Outer::V4, 8472, 9, &frames::udp4(1, 1));
    assert_eq!(
        classify_untagged_ipv4(&vxlan[..], is_vx).map(|c| c.vni),
        Some(Some(9))
    );
    assert!(classify_untagged_ipv4(&frames::udp6(53, 8)[..], is_vx).is_none());
    let mut options = vxlan.clone();
    options[14] = 0x46;
    assert!(classify_untagged_ipv4(&options[..], is_vx).is_none());
    // A truncated VXLAN header is left to the general parser (Truncated inner).
    assert!(classify_untagged_ipv4(&vxlan[..49], is_vx).is_none());
}
