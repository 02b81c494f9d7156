//! Coexistence with a CNI's programs: another owner's XDP and TCX programs
//! on the lab NIC (and TCX on flannel.1) stay attached and count every packet
//! before, during and after 20 probe attach/detach cycles (with the default
//! TCX NIC hook, and with `--nic-hook xdp`, which finds the XDP hook taken
//! and counts the NIC stage at TCX ingress instead); and with legacy tc
//! (cls_bpf filters, kernels without TCX): foreign filters keep counting, and
//! the filters of SIGKILLed probes are removed by the next start or `probe cleanup`.

use std::time::Duration;

use aya::{
    programs::{
        tc::{NlOptions, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode,
    },
    Ebpf,
};
use probe_tests::{
    lab, objects, privileged, probe_output, stage, summary, tc_prog_ids, wait_until, xdp_prog_id,
    Watch,
};
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

    /// A cls_bpf filter (direct action) on the clsact ingress hook at
    /// `priority`, as a CNI attaches on kernels without TCX.
    fn cls_bpf(netns: &str, iface: &str, priority: u16) -> Foreign {
        let iface = iface.to_string();
        let ebpf = lab::in_netns(netns, move || {
            let mut ebpf = Ebpf::load(objects::FIXTURES).expect("load fixtures");
            let _ = aya::programs::tc::qdisc_add_clsact(&iface); // EEXIST is fine
            let p: &mut SchedClassifier = ebpf
                .program_mut(PROG_FIXTURE_COUNT_TC)
                .unwrap()
                .try_into()
                .unwrap();
            p.load().unwrap();
            let options = NlOptions {
                priority,
                ..Default::default()
            };
            p.attach_with_options(
                &iface,
                TcAttachType::Ingress,
                TcAttachOptions::Netlink(options),
            )
            .expect("attach cls_bpf");
            ebpf
        })
        .unwrap();
        Foreign {
            ebpf,
            slot: FIXTURE_SLOT_TC,
        }
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

/// A UDP sink in node 2's first pod, and `send()`: PER_CYCLE packets to it
/// from node 1's first pod, across the underlay and both VXLAN ends.
fn pod_flow(lab: &probe_tests::Lab) -> (lab::UdpSink, impl Fn() + '_) {
    let (n1, n2) = (lab.node(1), lab.node(2));
    let sink = lab::UdpSink::start(&n2.pods[0].netns, 9000).unwrap();
    let dst = format!("{}:9000", n2.pods[0].ip).parse().unwrap();
    let send = move || {
        lab::send_udp(&n1.pods[0].netns, dst, PER_CYCLE, 64, 100).unwrap();
    };
    (sink, send)
}

#[test]
fn foreign_xdp_and_tcx_programs_survive_20_cycles_and_see_every_packet() {
    if !privileged("foreign_xdp_and_tcx_programs_survive_20_cycles_and_see_every_packet") {
        return;
    }
    let lab = lab();
    let n2 = lab.node(2);
    let nic0 = lab::dev_stats(&n2.netns, "eth0").unwrap();
    let cni_xdp = Foreign::xdp(&n2.netns, "eth0");
    let cni_tcx = Foreign::tcx(&n2.netns, "eth0");
    let cni_overlay = Foreign::tcx(&n2.netns, "flannel.1");
    let ids = (cni_xdp.id(), cni_tcx.id(), cni_overlay.id());

    let (sink, send) = pod_flow(&lab);
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
        let nic_tcx = tc_prog_ids(&n2.netns, "eth0");
        assert_eq!(nic_tcx.len(), 2, "theirs + ours: {nic_tcx:?}");
        assert!(nic_tcx.contains(&ids.1));
        assert!(tc_prog_ids(&n2.netns, "flannel.1").contains(&ids.2));
        send();
        sent += PER_CYCLE;
        // Through both hooks once the pod has it.
        wait_until(
            "the pod's sink to receive every packet sent",
            Duration::from_secs(5),
            || sink.received() >= sent,
        );
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
        assert_eq!(tc_prog_ids(&n2.netns, "eth0"), vec![ids.1]);
        assert_eq!(tc_prog_ids(&n2.netns, "flannel.1"), vec![ids.2]);
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
    assert_eq!(tc_prog_ids(&n2.netns, "eth0"), vec![cni_tcx.id()]);
    let (code, lines, err) = w.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(stage(summary(&lines), "nic", "eth0")["hook"], "xdp/native");
    assert_eq!(xdp_prog_id(&n2.netns, "eth0"), None);
    assert_eq!(tc_prog_ids(&n2.netns, "eth0"), vec![cni_tcx.id()]);
}

/// A cls_bpf filter: (priority, program name, program id).
type Filter = (u16, String, u32);

/// (priority, program name, program id) of every cls_bpf filter on `iface`'s
/// ingress in `netns`, read over rtnetlink.
fn cls_bpf_filters(netns: &str, iface: &str) -> Vec<Filter> {
    let iface = iface.to_string();
    lab::in_netns(netns, move || {
        let ifindex = probe_user::kernel::rtnl::ifindex_of(&iface).expect("device");
        let mut rtnl = probe_user::kernel::rtnl::RtnlSocket::open().unwrap();
        rtnl.ingress_bpf_filters(ifindex)
            .unwrap()
            .into_iter()
            .map(|f| {
                (
                    f.priority,
                    f.name.unwrap_or_default(),
                    f.prog_id.unwrap_or(0),
                )
            })
            .collect()
    })
    .unwrap()
}

/// Another owner's cls_bpf filters, as a CNI on a kernel without TCX has
/// them: at the probe's own priority 1 on eth0 (as Cilium's) and at a later
/// one on flannel.1; and how the filter lists of both devices looked then.
struct CniFilters {
    nic: Foreign,
    overlay: Foreign,
    /// (eth0's, flannel.1's).
    filters: (Vec<Filter>, Vec<Filter>),
}

impl CniFilters {
    fn attach(netns: &str) -> CniFilters {
        let nic = Foreign::cls_bpf(netns, "eth0", 1);
        let overlay = Foreign::cls_bpf(netns, "flannel.1", 0xc000);
        let filters = (
            cls_bpf_filters(netns, "eth0"),
            cls_bpf_filters(netns, "flannel.1"),
        );
        CniFilters {
            nic,
            overlay,
            filters,
        }
    }

    /// Exactly their filters on both devices, none of the probe's.
    fn assert_unchanged(&self, netns: &str, when: &str) {
        assert_eq!(cls_bpf_filters(netns, "eth0"), self.filters.0, "{when}");
        assert_eq!(
            cls_bpf_filters(netns, "flannel.1"),
            self.filters.1,
            "{when}"
        );
    }
}

/// The probe's own filters among them: priority 1, one of its programs.
fn probe_filters(netns: &str, iface: &str) -> Vec<Filter> {
    cls_bpf_filters(netns, iface)
        .into_iter()
        .filter(|(prio, name, _)| {
            *prio == 1 && probe_user::hooks::tc::TC_PROGRAMS.contains(&name.as_str())
        })
        .collect()
}

/// With legacy tc (`--tc-mode legacy`, what kernels < 6.6 get), another
/// owner's cls_bpf filters, one at the probe's own priority 1 on eth0 (as
/// Cilium's) and one at a later priority on flannel.1, keep counting every
/// packet through 20 probe attach/detach cycles; the probe counts exactly as
/// with TCX and leaves no filter behind.
#[test]
fn legacy_tc_filters_coexist_with_foreign_cls_bpf_for_20_cycles() {
    if !privileged("legacy_tc_filters_coexist_with_foreign_cls_bpf_for_20_cycles") {
        return;
    }
    let lab = lab();
    let n2 = lab.node(2);
    let cni = CniFilters::attach(&n2.netns);
    assert_eq!(
        (cni.filters.0.len(), cni.filters.1.len()),
        (1, 1),
        "{:?}",
        cni.filters
    );

    let (sink, send) = pod_flow(&lab);
    let mut sent = 0;
    for cycle in 0..CYCLES {
        let w = Watch::start(&[
            "--netns",
            n2.netns.as_str(),
            "--interval",
            "0.2",
            "--tc-mode",
            "legacy",
        ]);
        assert_eq!(probe_filters(&n2.netns, "eth0").len(), 1, "cycle {cycle}");
        assert_eq!(
            probe_filters(&n2.netns, "flannel.1").len(),
            1,
            "cycle {cycle}"
        );
        // At the same priority, cls_bpf runs its filters in the order a dump
        // lists them: the probe's, added last, comes first.
        let order = cls_bpf_filters(&n2.netns, "eth0");
        assert_eq!(order[0].1, probe_common::PROG_NIC_TC, "{order:?}");
        send();
        sent += PER_CYCLE;
        // Through both hooks once the pod has it.
        wait_until(
            "the pod's sink to receive every packet sent",
            Duration::from_secs(5),
            || sink.received() >= sent,
        );
        let (code, lines, err) = w.stop(libc::SIGINT);
        assert_eq!(code, Some(0), "{err}");
        let s = summary(&lines);
        let nic = stage(s, "nic", "eth0");
        assert_eq!(nic["hook"], "tc/ingress", "{nic}");
        assert_eq!(nic["segments"], PER_CYCLE, "cycle {cycle}: {nic}");
        assert_eq!(
            nic["skbs"], nic["kernel"]["rx_packets"],
            "cycle {cycle}: {nic}"
        );
        let dev = stage(s, "vxlan", "flannel.1");
        assert_eq!(dev["hook"], "tc/ingress", "{dev}");
        assert_eq!(dev["segments"], PER_CYCLE, "cycle {cycle}: {dev}");
        // Ours are gone, theirs are as they were.
        cni.assert_unchanged(&n2.netns, &format!("cycle {cycle}"));
    }
    assert_eq!(sink.finish(sent, Duration::from_secs(5)), sent);
    assert_eq!(
        cni.nic.count(),
        sent,
        "their filter on eth0 saw every packet"
    );
    assert_eq!(
        cni.overlay.count(),
        sent,
        "their filter on flannel.1 saw every packet"
    );
}

/// A tc filter outlives a SIGKILLed probe: each start removes the one the
/// killed probe left (so there is never more than one of ours), `probe
/// cleanup` leaves a running probe's alone, and after 20 SIGKILLs and one
/// clean run none of ours is left while the foreign filters still count.
#[test]
fn sigkilled_legacy_probes_leave_no_filter_after_a_restart() {
    if !privileged("sigkilled_legacy_probes_leave_no_filter_after_a_restart") {
        return;
    }
    let lab = lab();
    let n2 = lab.node(2);
    let cni = CniFilters::attach(&n2.netns);
    let args = ["--netns", n2.netns.as_str(), "--tc-mode", "legacy"];
    for kill in 0..CYCLES {
        let w = Watch::start(&args);
        for dev in ["eth0", "flannel.1"] {
            assert_eq!(probe_filters(&n2.netns, dev).len(), 1, "kill {kill}: {dev}");
        }
        if kill == 0 {
            // A running probe's filters are not leftovers.
            let (code, out, err) = probe_output(&["cleanup", "--netns", &n2.netns]);
            assert_eq!(code, 0, "{err}");
            assert!(out.contains("no leftover tc filter"), "{out}");
            assert_eq!(probe_filters(&n2.netns, "eth0").len(), 1);
        }
        let (code, _, _) = w.stop_text(libc::SIGKILL);
        assert_eq!(code, None, "killed");
    }
    // The last killed probe's filters are still there...
    assert_eq!(probe_filters(&n2.netns, "eth0").len(), 1);
    // ...and the next start removes them.
    let w = Watch::start(&args);
    let (code, _, err) = w.stop_text(libc::SIGINT);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains("removed a leftover tc filter of an earlier probe from eth0"),
        "{err}"
    );
    cni.assert_unchanged(&n2.netns, "after the restart");

    // `probe cleanup` does the same on demand.
    let w = Watch::start(&args);
    let _ = w.stop_text(libc::SIGKILL);
    let (code, out, err) = probe_output(&["cleanup", "--netns", &n2.netns]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.matches("removed a leftover tc filter").count(),
        2,
        "{out}"
    );
    cni.assert_unchanged(&n2.netns, "after `probe cleanup`");

    let (sink, send) = pod_flow(&lab);
    send();
    assert_eq!(sink.finish(PER_CYCLE, Duration::from_secs(5)), PER_CYCLE);
    assert_eq!(cni.nic.count(), PER_CYCLE);
    assert_eq!(cni.overlay.count(), PER_CYCLE);
}
