//! The compiled programs on crafted frames through BPF_PROG_TEST_RUN: the
//! verifier accepts them, they classify like the host classifier (which the
//! unit tests pin down), and they always let the packet pass.

use probe_common::{
    classify::classify, frames, frames::Outer, InnerClass, NicClass, VNI_OTHER_SLOT,
};
use probe_tests::{privileged, prog_run::Programs};

const XDP_PASS: u32 = 2;
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

fn host_ports(p: u16) -> bool {
    p == 8472 || p == 4789
}

/// Runs nic_xdp once on `frame`; asserts PASS and that exactly one packet was
/// counted, in the class (and VNI slot / inner class) the host classifier gives.
fn check_xdp(progs: &mut Programs, frame: &[u8]) {
    check_nic(progs, probe_common::PROG_NIC_XDP, XDP_PASS, frame)
}

/// The (port, VNI) slot the test globals give a classified frame: only the
/// pair matters, the VNI alone does not (probe_tests::prog_run::TEST_VNI_PORTS).
fn slot_of(c: &probe_common::Classification) -> u32 {
    match (c.port, c.vni) {
        (8472, Some(1)) => 0,
        (4789, Some(0xabcdef)) => 1,
        _ => VNI_OTHER_SLOT,
    }
}

/// As check_xdp, for the NIC program `program` that must return `pass`:
/// nic_xdp, or nic_tc which counts the same way (one skb, one segment).
fn check_nic(progs: &mut Programs, program: &str, pass: u32, frame: &[u8]) {
    let before = progs.nic_classes();
    let expected = classify(frame, host_ports);
    let slot = slot_of(&expected);
    let vni_before = progs.vni_slot(slot);
    let (ret, _) = progs.run(program, frame, 1);
    assert_eq!(ret, pass, "{program} on frame {frame:02x?}");
    let after = progs.nic_classes();
    for class in NicClass::ALL {
        let want = u64::from(class == expected.class);
        let c = class as usize;
        assert_eq!(
            (after.0[c] - before.0[c], after.1[c] - before.1[c]),
            (want, want),
            "{program}: {class:?} skbs and segments for {} bytes",
            frame.len()
        );
    }
    if expected.class == NicClass::Vxlan {
        let (outer, inner) = progs.vni_slot(slot);
        assert_eq!(outer - vni_before.0, 1, "VNI slot {slot}");
        assert_eq!(
            inner[expected.inner as usize] - vni_before.1[expected.inner as usize],
            1,
            "{:?}",
            expected.inner
        );
    }
}

#[test]
fn nic_programs_classify_crafted_frames() {
    if !privileged("nic_programs_classify_crafted_frames") {
        return;
    }
    let mut p = Programs::load();
    let inner4 = frames::udp4(9000, 32);
    let inner6 = frames::udp6(9000, 32);
    // (frame, class, VNI, inner class, (port, VNI) slot)
    type Case = (Vec<u8>, NicClass, Option<u32>, InnerClass, u32);
    let cases: Vec<Case> = vec![
        (
            frames::udp4(53, 32),
            NicClass::Ipv4,
            None,
            InnerClass::Other,
            VNI_OTHER_SLOT,
        ),
        (
            frames::udp6(53, 32),
            NicClass::Ipv6,
            None,
            InnerClass::Other,
            VNI_OTHER_SLOT,
        ),
        (
            frames::vxlan(Outer::V4, 8472, 1, &inner4),
            NicClass::Vxlan,
            Some(1),
            InnerClass::Ipv4,
            0,
        ),
        (
            // VNI 1 on a port no watched device owns: another tunnel.
            frames::vxlan(Outer::V4, 4789, 1, &inner6),
            NicClass::Vxlan,
            Some(1),
            InnerClass::Ipv6,
            VNI_OTHER_SLOT,
        ),
        (
            frames::vxlan(Outer::V6, 8472, 0xabcdef, &inner4),
            NicClass::Vxlan,
            Some(0xabcdef),
            InnerClass::Ipv4,
            VNI_OTHER_SLOT,
        ),
        (
            frames::vxlan(Outer::V6, 4789, 0xabcdef, &inner4),
            NicClass::Vxlan,
            Some(0xabcdef),
            InnerClass::Ipv4,
            1,
        ),
        (
            frames::vxlan(Outer::V6, 4789, 7, &inner6),
            NicClass::Vxlan,
            Some(7),
            InnerClass::Ipv6,
            VNI_OTHER_SLOT,
        ),
        (
            frames::vxlan(Outer::V4, 8472, 1, &frames::ethernet(0x0806)),
            NicClass::Vxlan,
            Some(1),
            InnerClass::Other,
            0,
        ),
        (
            frames::ethernet(0x0806)
                .into_iter()
                .chain([0; 46])
                .collect(),
            NicClass::NonIp,
            None,
            InnerClass::Other,
            VNI_OTHER_SLOT,
        ),
    ];
    for (frame, class, vni, inner, slot) in &cases {
        let c = classify(&frame[..], host_ports);
        assert_eq!((c.class, c.vni, slot_of(&c)), (*class, *vni, *slot));
        if *class == NicClass::Vxlan {
            assert_eq!(c.inner, *inner);
        }
        check_xdp(&mut p, frame);
        check_nic(&mut p, probe_common::PROG_NIC_TC, TC_ACT_UNSPEC, frame);
    }
    // VLAN-tagged VXLAN outer.
    let mut tagged = frames::ethernet_vlan(42, 0x0800);
    let mut payload = frames::vxlan_header(1).to_vec();
    payload.extend_from_slice(&inner4);
    frames::push_ipv4(&mut tagged, 8 + payload.len());
    frames::push_udp(&mut tagged, 1, 8472, &payload);
    assert_eq!(classify(&tagged[..], host_ports).class, NicClass::Vxlan);
    check_xdp(&mut p, &tagged);
}

#[test]
fn xdp_on_every_truncation_of_a_vxlan_frame() {
    if !privileged("xdp_on_every_truncation_of_a_vxlan_frame") {
        return;
    }
    let mut p = Programs::load();
    for outer in [Outer::V4, Outer::V6] {
        let full = frames::vxlan(outer, 8472, 1, &frames::udp4(9000, 16));
        // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header
        // (ETH_HLEN), as no driver hands such a frame to XDP; the classifier
        // unit test covers 0..14.
        for len in 14..=full.len() {
            check_xdp(&mut p, &full[..len]);
        }
    }
}

#[test]
fn xdp_on_random_bytes() {
    if !privileged("xdp_on_random_bytes") {
        return;
    }
    let mut p = Programs::load();
    for seed in 1..=500u64 {
        let mut f = frames::pseudo_random(14 + (seed as usize * 7) % 300, seed);
        if seed % 3 == 0 {
            f[12] = 0x08; // IPv4 EtherType: exercise the IP parser on garbage
            f[13] = 0x00;
        }
        check_xdp(&mut p, &f);
    }
}

#[test]
fn tc_counts_inner_classes_and_continues() {
    if !privileged("tc_counts_inner_classes_and_continues") {
        return;
    }
    let mut p = Programs::load();
    let cases = [
        (frames::udp4(53, 32), InnerClass::Ipv4),
        (frames::udp6(53, 32), InnerClass::Ipv6),
        (
            frames::ethernet(0x0806)
                .into_iter()
                .chain([0; 46])
                .collect::<Vec<u8>>(),
            InnerClass::Other,
        ),
    ];
    for (frame, class) in &cases {
        let before = p.dev_classes();
        let (ret, _) = p.run(probe_common::PROG_VXLAN_INGRESS, frame, 1);
        assert_eq!(ret, TC_ACT_UNSPEC, "tc program must continue");
        let after = p.dev_classes();
        for c in InnerClass::ALL {
            let want = u64::from(c == *class);
            let i = c as usize;
            assert_eq!(
                (after.0[i] - before.0[i], after.1[i] - before.1[i]),
                (want, want),
                "{c:?}"
            );
        }
    }
    for seed in 1..=200u64 {
        let f = frames::pseudo_random(14 + seed as usize % 200, seed);
        assert_eq!(
            p.run(probe_common::PROG_VXLAN_INGRESS, &f, 1).0,
            TC_ACT_UNSPEC
        );
    }
}

/// A GRO-merged skb (gso_segs set through the test run's __sk_buff) is one
/// skb and gso_segs segments at both tc hooks; XDP frames stay 1 and 1.
#[test]
fn tc_programs_count_gro_segments() {
    if !privileged("tc_programs_count_gro_segments") {
        return;
    }
    let mut p = Programs::load();
    let frame = frames::vxlan(Outer::V4, 8472, 1, &frames::udp4(9000, 32));
    let before = (p.nic_classes(), p.vni_slot(0));
    let (ret, _) = p.run_gso(probe_common::PROG_NIC_TC, &frame, 17);
    assert_eq!(ret, TC_ACT_UNSPEC);
    let after = (p.nic_classes(), p.vni_slot(0));
    let v = NicClass::Vxlan as usize;
    assert_eq!(
        (
            after.0 .0[v] - before.0 .0[v],
            after.0 .1[v] - before.0 .1[v]
        ),
        (1, 17),
        "nic_tc: skbs, segments"
    );
    assert_eq!(after.1 .0 - before.1 .0, 17, "outer segments of (8472, 1)");

    let inner = frames::udp4(9000, 32);
    let before = p.dev_classes();
    assert_eq!(
        p.run_gso(probe_common::PROG_VXLAN_INGRESS, &inner, 30).0,
        TC_ACT_UNSPEC
    );
    let after = p.dev_classes();
    let i = InnerClass::Ipv4 as usize;
    assert_eq!(
        (after.0[i] - before.0[i], after.1[i] - before.1[i]),
        (1, 30)
    );
}

/// Without --debug-bpf the log statements cost nothing: with AYA_LOG_LEVEL 0
/// in frozen .rodata the verifier removes them, so each program the kernel
/// runs is smaller than the same program with logging on (by the log code).
#[test]
fn log_code_is_removed_when_debug_is_off() {
    if !privileged("log_code_is_removed_when_debug_is_off") {
        return;
    }
    use aya::programs::SchedClassifier;
    use probe_user::hooks::BpfLog;
    let translated = |log: BpfLog| {
        let mut ebpf = log
            .loader()
            .load(probe_user::objects::NIC)
            .expect("load the NIC object");
        let prog: &mut SchedClassifier = ebpf
            .program_mut(probe_common::PROG_NIC_TC)
            .unwrap()
            .try_into()
            .unwrap();
        prog.load().expect("verifier accepts nic_tc");
        prog.info().unwrap().size_translated().unwrap()
    };
    let (off, on) = (translated(BpfLog::Off), translated(BpfLog::Debug));
    eprintln!("nic_tc as the kernel runs it: {off} B with logging off, {on} B on");
    // One log statement is over 100 instructions (8 bytes each).
    assert!(off + 800 < on, "off {off} B, on {on} B");
}
