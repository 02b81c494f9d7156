//! Coexistence with a CNI's programs: another owner's XDP and TCX programs
//! on the lab NIC (and TCX on flannel.1) stay attached and count every packet
//! before, during and after 20 probe attach/detach cycles (with the default
//! TCX NIC hook, and with `--nic-hook xdp`, which finds the XDP hook taken
//! and counts the NIC stage at TCX ingress instead).

use std::time::Duration;

use aya::{
    programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Ebpf,
};
use probe_tests::{lab, objects, privileged, stage, summary, tcx_prog_ids, xdp_prog_id, Watch};
use tests_ebpf::{
    FIXTURE_SLOT_TC, FIXTURE_SLOT_XDP, MAP_FIXTURE_COUNT, PROG_FIXTURE_COUNT_TC,
    PROG_FIXTURE_COUNT_XDP,
};

const PER_CYCLE: u64 = 100;
const CYCLES: usize = 20;

/// A test-owned counting program attached in `netns`: stands in for a CNI's.
struct Foreign {
    ebpf: Ebpf,
    slot: u32,
}

impl Foreign {
    fn xdp(netns: &str, iface: &str) -> Foreign {
        Self::attach(netns, iface, None)
    }

    fn tcx(netns: &str, iface: &str) -> Foreign {
        Self::attach(netns, iface, Some(TcAttachType::Ingress))
    }

    fn attach(netns: &str, iface: &str, tc: Option<TcAttachType>) -> Foreign {
        let iface = iface.to_string();
        let ebpf = lab::in_netns(netns, move || {
            let mut ebpf = Ebpf::load(objects::FIXTURES).expect("load fixtures");
            match tc {
                None => {
                    let p: &mut Xdp = ebpf
                        .program_mut(PROG_FIXTURE_COUNT_XDP)
                        .unwrap()
                        .try_into()
                        .unwrap();
                    p.load().unwrap();
                    p.attach(&iface, XdpMode::default()).expect("attach XDP");
                }
                Some(t) => {
                    let p: &mut SchedClassifier = ebpf
                        .program_mut(PROG_FIXTURE_COUNT_TC)
                        .unwrap()
                        .try_into()
                        .unwrap();
                    p.load().unwrap();
                    p.attach_with_options(&iface, t, TcAttachOptions::TcxOrder(LinkOrder::first()))
                        .expect("attach TCX");
                }
            }
            ebpf
        })
        .unwrap();
        let slot = if tc.is_some() {
            FIXTURE_SLOT_TC
        } else {
            FIXTURE_SLOT_XDP
        };
        Foreign { ebpf, slot }
    }

    fn id(&self) -> u32 {
        let name = if self.slot == FIXTURE_SLOT_XDP {
            PROG_FIXTURE_COUNT_XDP
        } else {
            PROG_FIXTURE_COUNT_TC
        };
        self.ebpf.program(name).unwrap().info().unwrap().id()
    }

    fn count(&self) -> u64 {
        probe_user::hooks::read_per_cpu::<u64>(&self.ebpf, MAP_FIXTURE_COUNT, 2).unwrap()
            [self.slot as usize]
            .iter()
            .sum()
    }
}

#[test]
fn foreign_xdp_and_tcx_programs_survive_20_cycles_and_see_every_packet() {
    if !privileged("foreign_xdp_and_tcx_programs_survive_20_cycles_and_see_every_packet") {
        return;
    }
    let lab = lab();
    let (n1, n2) = (lab.node(1), lab.node(2));
    let nic0 = lab::dev_stats(&n2.netns, "eth0").unwrap();
    let cni_xdp = Foreign::xdp(&n2.netns, "eth0");
    let cni_tcx = Foreign::tcx(&n2.netns, "eth0");
    let cni_overlay = Foreign::tcx(&n2.netns, "flannel.1");
    let ids = (cni_xdp.id(), cni_tcx.id(), cni_overlay.id());

    let sink = lab::UdpSink::start(&n2.pods[0].netns, 9000).unwrap();
    let dst = format!("{}:9000", n2.pods[0].ip).parse().unwrap();
    let send = || lab::send_udp(&n1.pods[0].netns, dst, PER_CYCLE, 64, 100).unwrap();
    let mut sent = 0;
    send(); // before
    sent += PER_CYCLE;
    for cycle in 0..CYCLES {
        let want_xdp = cycle % 2 == 1;
        let mut args = vec!["--netns", n2.netns.as_str(), "--interval", "0.2"];
        if want_xdp {
            args.extend(["--nic-hook", "xdp"]);
        }
        let w = Watch::start(&args);
        // Ours joined theirs; theirs is still where it was.
        assert_eq!(xdp_prog_id(&n2.netns, "eth0"), Some(ids.0), "cycle {cycle}");
        let nic_tcx = tcx_prog_ids(&n2.netns, "eth0");
        assert_eq!(nic_tcx.len(), 2, "theirs + ours: {nic_tcx:?}");
        assert!(nic_tcx.contains(&ids.1));
        assert!(tcx_prog_ids(&n2.netns, "flannel.1").contains(&ids.2));
        send();
        sent += PER_CYCLE;
        std::thread::sleep(Duration::from_millis(50));
        let (code, lines, err) = w.stop(libc::SIGINT);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(
            err.contains("already has an XDP program"),
            want_xdp,
            "the fallback is announced when XDP was asked for: {err}"
        );
        let s = summary(&lines);
        let nic = stage(s, "nic", "eth0");
        assert_eq!(nic["hook"], "tcx/ingress", "{nic}");
        assert_eq!(nic["segments"], PER_CYCLE, "cycle {cycle}: {nic}");
        assert_eq!(
            stage(s, "vxlan", "flannel.1")["segments"],
            PER_CYCLE,
            "cycle {cycle}"
        );
        // Ours are gone, theirs remain.
        assert_eq!(xdp_prog_id(&n2.netns, "eth0"), Some(ids.0));
        assert_eq!(tcx_prog_ids(&n2.netns, "eth0"), vec![ids.1]);
        assert_eq!(tcx_prog_ids(&n2.netns, "flannel.1"), vec![ids.2]);
    }
    send(); // after
    sent += PER_CYCLE;
    assert_eq!(sink.finish(sent, Duration::from_secs(5)), sent);
    let nic = lab::dev_stats(&n2.netns, "eth0").unwrap();
    assert_eq!(nic.rx_packets - nic0.rx_packets, sent, "kernel rx_packets");
    assert_eq!(cni_xdp.count(), sent, "their XDP program saw every packet");
    assert_eq!(
        cni_tcx.count(),
        sent,
        "their TCX program on eth0 saw every packet"
    );
    assert_eq!(
        cni_overlay.count(),
        sent,
        "their TCX program on flannel.1 saw every packet"
    );
}

/// With `--nic-hook xdp` and no foreign XDP program the probe takes the XDP
/// hook, and a foreign TCX program on the NIC is left as it is.
#[test]
fn xdp_is_used_when_asked_for_and_free() {
    if !privileged("xdp_is_used_when_asked_for_and_free") {
        return;
    }
    let lab = lab();
    let n2 = lab.node(2);
    let cni_tcx = Foreign::tcx(&n2.netns, "eth0");
    let w = Watch::start(&["--netns", &n2.netns, "--nic-hook", "xdp"]);
    assert!(xdp_prog_id(&n2.netns, "eth0").is_some());
    assert_eq!(tcx_prog_ids(&n2.netns, "eth0"), vec![cni_tcx.id()]);
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stage(summary(&lines), "nic", "eth0")["hook"], "xdp/native");
    assert_eq!(xdp_prog_id(&n2.netns, "eth0"), None);
    assert_eq!(tcx_prog_ids(&n2.netns, "eth0"), vec![cni_tcx.id()]);
}
