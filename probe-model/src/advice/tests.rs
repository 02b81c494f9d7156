use super::*;
use crate::{
    counters::procfs::SoftnetCpu,
    model::{ReportKind, Sample, Topology},
    settings::{DeviceSettings, Setting},
};

fn set(name: &str, value: &str) -> Setting {
    Setting {
        name: name.into(),
        value: Some(value.into()),
        error: None,
    }
}

fn snapshot(nic_mtu: &str, vxlan_mtu: &str, irqs: &[&str]) -> Snapshot {
    let mut nic = vec![set("mtu", nic_mtu)];
    // One RX queue per IRQ, as a multi-queue NIC has.
    for q in 0..irqs.len() {
        nic.push(set(&format!("rx-{q}/rps_cpus"), "0"));
    }
    for (i, a) in irqs.iter().enumerate() {
        nic.push(set(&format!("irq {} smp_affinity_list", 30 + i), a));
    }
    Snapshot {
        netns: "current".into(),
        sysctls: vec![
            set("net.core.netdev_max_backlog", "1000 (node-wide)"),
            set("net.core.netdev_budget", "300 (node-wide)"),
            set("net.core.netdev_budget_usecs", "8000 (node-wide)"),
            set("net.core.rmem_default", "212992"),
            set("net.core.rmem_max", "4194304"),
        ],
        devices: vec![
            DeviceSettings {
                iface: "eth0".into(),
                settings: nic,
            },
            DeviceSettings {
                iface: "flannel.1".into(),
                settings: vec![set("mtu", vxlan_mtu)],
            },
        ],
        lower: Vec::new(),
        mtu_chain: Vec::new(),
    }
}

fn hop(role: &str, iface: &str, netns: Option<&str>, mtu: u32) -> crate::settings::MtuHop {
    crate::settings::MtuHop {
        role: role.into(),
        iface: iface.into(),
        netns: netns.map(Into::into),
        mtu: Some(mtu),
    }
}

/// A pod (or bridge) whose MTU exceeds the tunnel's is named; a chain that
/// fits says nothing. Without a tunnel the NIC's MTU is the limit.
#[test]
fn a_pod_mtu_above_the_overlays_is_named() {
    let mut s = snapshot("1500", "1450", &[]);
    s.mtu_chain = vec![
        hop("nic", "eth0", None, 1500),
        hop("vxlan", "flannel.1", None, 1450),
        hop("bridge", "cni0", None, 1450),
        hop("pod", "eth0", Some("cni-a"), 1450),
        hop("pod", "eth0", Some("cni-b"), 1500),
    ];
    let a = advise(&quiet_report(), &s);
    assert_eq!(rules(&a), ["mtu"]);
    assert_eq!(
        a[0].text,
        "pod cni-b (eth0) has MTU 1500 but flannel.1 carries 1450: its full-size packets do not fit; set it to at most 1450"
    );
    s.mtu_chain[4].mtu = Some(1450);
    assert!(advise(&quiet_report(), &s).is_empty());
    // host-gw: no tunnel, the NIC carries the pods' packets as they are.
    s.mtu_chain = vec![
        hop("nic", "eth0", None, 1500),
        hop("pod", "eth0", Some("cni-a"), 9000),
    ];
    assert!(advise(&quiet_report(), &s)[0]
        .text
        .contains("but eth0 carries 1500"));
}

/// A NIC or bond member that negotiated down is named; 10 Gb/s full duplex,
/// or a link the driver does not report, is not.
#[test]
fn a_slow_or_half_duplex_link_is_named() {
    let mut s = snapshot("1500", "1450", &[]);
    s.devices[0]
        .settings
        .push(set("link", "speed 10000Mb/s duplex full autoneg on"));
    assert!(advise(&quiet_report(), &s).is_empty());
    s.lower = vec![DeviceSettings {
        iface: "ens5".into(),
        settings: vec![set("link", "speed 10Mb/s duplex half autoneg on")],
    }];
    let a = advise(&quiet_report(), &s);
    assert_eq!(rules(&a), ["link"]);
    assert!(
        a[0].text
            .starts_with("ens5 links at speed 10Mb/s duplex half"),
        "{}",
        a[0].text
    );
    s.lower[0].settings = vec![set("link", "speed 10000Mb/s duplex half autoneg off")];
    assert_eq!(rules(&advise(&quiet_report(), &s)), ["link"]);
    s.lower[0].settings = vec![set("link", "speed unknown duplex unknown autoneg off")];
    assert!(advise(&quiet_report(), &s).is_empty());
}

fn quiet_report() -> Report {
    Report::between(
        ReportKind::Interval,
        &crate::model::Run::watching(&Topology::default()),
        &Sample::default(),
        &Sample::default(),
    )
}

/// `n` drops of a reason, as many segments as skbs (no GRO).
fn reason_count_of(n: u64) -> crate::ledger::ReasonCount {
    crate::ledger::ReasonCount {
        segments: n,
        skbs: n,
        ..Default::default()
    }
}

fn with_reason(stage: &str, reason: &str, n: u64) -> Report {
    let mut r = quiet_report();
    r.ledger = crate::ledger::build(&Default::default());
    let row = r
        .ledger
        .ledger
        .iter_mut()
        .find(|x| x.stage == stage)
        .unwrap();
    row.reasons.insert(reason.into(), reason_count_of(n));
    row.drops = n;
    r
}

#[test]
fn silent_without_evidence() {
    let good = snapshot("1500", "1450", &["0", "1"]);
    assert!(advise(&quiet_report(), &good).is_empty());
    let mut r = with_reason("socket", "NO_SOCKET", 5);
    r.softnet = vec![SoftnetCpu::default(); 2];
    assert!(
        advise(&r, &good).is_empty(),
        "no listener is not a tuning matter"
    );
}

/// `n` CPU_BACKLOG drops over `elapsed_s`, with `input` packets into the
/// first ledger stage (the NIC, upstream of the backlog).
fn backlog(n: u64, elapsed_s: f64, input: Option<u64>) -> Report {
    let mut r = with_reason("backlog", "CPU_BACKLOG", n);
    r.elapsed_s = elapsed_s;
    r.ledger.ledger[0].segments_in = input;
    r
}

/// Softnet rows of (time_squeeze, processed) per CPU 0.., over `elapsed_s`.
fn squeezes(elapsed_s: f64, cpus: &[(u64, u64)]) -> Report {
    let mut r = quiet_report();
    r.ledger = crate::ledger::build(&Default::default());
    r.elapsed_s = elapsed_s;
    r.softnet = (0..)
        .zip(cpus)
        .map(|(cpu, &(time_squeeze, processed))| SoftnetCpu {
            cpu,
            time_squeeze,
            processed,
            ..Default::default()
        })
        .collect();
    r
}

/// `n` SOCKET_RCVBUFF drops over `elapsed_s`, all of one flow.
fn rcvbuf(n: u64, elapsed_s: f64) -> Report {
    let mut r = with_reason("socket", "SOCKET_RCVBUFF", n);
    r.elapsed_s = elapsed_s;
    r.ledger.flows.push(crate::ledger::FlowRow {
        src: "10.244.1.2".into(),
        dst: "10.244.2.2".into(),
        inner: false,
        netns: None,
        stage: Stage::Socket,
        reason: "SOCKET_RCVBUFF".into(),
        skbs: n,
    });
    r
}

fn rules(a: &[Advice]) -> Vec<&'static str> {
    a.iter().map(|x| x.rule).collect()
}

#[test]
fn backlog_fires_on_rate_and_share() {
    let a = advise(
        &backlog(1234, 30.0, Some(58000)),
        &snapshot("1500", "1450", &[]),
    );
    assert_eq!(rules(&a), ["backlog"]);
    assert!(
        a[0].text.starts_with(
            "1234 packets (41.1/s, 2.1% of 58000) dropped at the per-CPU backlog (CPU_BACKLOG)"
        ),
        "{}",
        a[0].text
    );
    assert!(
        a[0].text.contains("netdev_max_backlog=1000:"),
        "{}",
        a[0].text
    );
}

#[test]
fn backlog_share_falls_back_to_softnet_processed() {
    // No stage input: the share is of processed + dropped on every CPU.
    let mut r = backlog(100, 10.0, None);
    r.softnet = vec![
        SoftnetCpu {
            cpu: 0,
            processed: 4900,
            ..Default::default()
        },
        SoftnetCpu {
            cpu: 1,
            processed: 5000,
            ..Default::default()
        },
    ];
    let a = advise(&r, &snapshot("1500", "1450", &[]));
    assert!(
        a[0].text
            .starts_with("100 packets (10.0/s, 1.0% of 10000) dropped"),
        "{}",
        a[0].text
    );
    // No input known at all: rate and count alone.
    let a = advise(&backlog(100, 10.0, None), &snapshot("1500", "1450", &[]));
    assert!(
        a[0].text.starts_with("100 packets (10.0/s) dropped"),
        "{}",
        a[0].text
    );
}

#[test]
fn backlog_silent_on_thin_evidence() {
    let good = snapshot("1500", "1450", &[]);
    for (what, r) in [
        ("9 drops: too few", backlog(9, 1.0, Some(100))),
        (
            "100 drops in 120 s: under 1/s",
            backlog(100, 120.0, Some(1000)),
        ),
        (
            "1000 of 10^7 packets: 0.01%",
            backlog(1000, 10.0, Some(10_000_000)),
        ),
    ] {
        assert!(advise(&r, &good).is_empty(), "{what}");
    }
}

#[test]
fn budget_fires_on_sustained_squeezes() {
    // CPU 2 squeezes under 1/s, CPU 3 squeezes without receive traffic.
    let r = squeezes(
        10.0,
        &[
            (30, 100_000),
            (15, 100_000),
            (5, 100_000),
            (50, 10),
            (0, 100_000),
        ],
    );
    let a = advise(&r, &snapshot("1500", "1450", &[]));
    assert_eq!(rules(&a), ["budget"]);
    assert!(
        a[0].text.starts_with(
            "NET_RX ran out of budget 45 times in 10.0 s (time_squeeze) on CPUs 0-1 (0: 3.0/s, 1: 1.5/s)"
        ),
        "{}",
        a[0].text
    );
    assert!(a[0]
        .text
        .contains("netdev_budget=300 and netdev_budget_usecs=8000"));
}

#[test]
fn budget_silent_on_thin_evidence() {
    let good = snapshot("1500", "1450", &["0", "1"]);
    // The regression: one squeeze in 120 s, node-wide, no backlog drops.
    let r = squeezes(120.0, &[(1, 1_000_000), (0, 1_000_000)]);
    assert_eq!(reason_count(&r, Stage::Backlog, "CPU_BACKLOG"), 0);
    assert!(advise(&r, &good).is_empty());
    for (what, r) in [
        ("5/s but 5 in all", squeezes(1.0, &[(5, 10_000)])),
        ("20 in 1.5 s: too short", squeezes(1.5, &[(20, 10_000)])),
        ("9 in all at 3/s", squeezes(3.0, &[(9, 10_000)])),
        ("no receive traffic", squeezes(10.0, &[(100, 500)])),
        (
            "0.5/s on each of 4 CPUs",
            squeezes(40.0, &[(20, 99_000); 4]),
        ),
    ] {
        assert!(advise(&r, &good).is_empty(), "{what}");
    }
}

#[test]
fn rcvbuf_fires_with_rate_share_and_flow() {
    let mut r = rcvbuf(70, 10.0);
    r.ledger.ledger[0].segments_in = Some(1000);
    let a = advise(&r, &snapshot("1500", "1450", &[]));
    assert_eq!(rules(&a), ["rcvbuf"]);
    assert!(
        a[0].text.starts_with(
            "70 packets (7.0/s, 7.0% of 1000) dropped at full socket buffers (SOCKET_RCVBUFF) (most for 10.244.1.2 -> 10.244.2.2: 70 skbs)"
        ),
        "{}",
        a[0].text
    );
    assert!(a[0].text.contains("rmem_max=4194304"));
    // Without a known input: rate and count alone.
    let a = advise(&rcvbuf(70, 10.0), &snapshot("1500", "1450", &[]));
    assert!(
        a[0].text.starts_with("70 packets (7.0/s) dropped"),
        "{}",
        a[0].text
    );
}

#[test]
fn rcvbuf_silent_on_thin_evidence() {
    let good = snapshot("1500", "1450", &[]);
    let mut tiny_share = rcvbuf(500, 10.0);
    tiny_share.ledger.ledger[0].segments_in = Some(1_000_000);
    for (what, r) in [
        ("7 drops: too few", rcvbuf(7, 1.0)),
        ("50 drops in 100 s: under 1/s", rcvbuf(50, 100.0)),
        ("500 of 10^6 packets: 0.05%", tiny_share),
    ] {
        assert!(advise(&r, &good).is_empty(), "{what}");
    }
}

#[test]
fn zero_elapsed_gives_no_rate_advice() {
    // Ample evidence for backlog, budget and rcvbuf, but no period to take a
    // rate over: nothing fires, and no text divides by zero.
    let mut r = squeezes(0.0, &[(1000, 100_000), (1000, 100_000)]);
    for (stage, reason) in [("backlog", "CPU_BACKLOG"), ("socket", "SOCKET_RCVBUFF")] {
        let row = r
            .ledger
            .ledger
            .iter_mut()
            .find(|x| x.stage == stage)
            .unwrap();
        row.reasons.insert(reason.into(), reason_count_of(1000));
        row.drops = 1000;
    }
    let good = snapshot("1500", "1450", &[]);
    for elapsed in [0.0, 1e-9, f64::NAN] {
        r.elapsed_s = elapsed;
        assert!(advise(&r, &good).is_empty(), "{elapsed}");
    }
    // The same counts over 10 s: all three fire, with finite rates.
    r.elapsed_s = 10.0;
    let a = advise(&r, &good);
    assert_eq!(rules(&a), ["backlog", "budget", "rcvbuf"]);
    for x in &a {
        assert!(
            !x.text.contains("NaN") && !x.text.contains("inf"),
            "{}",
            x.text
        );
    }
}

#[test]
fn irqs_on_one_cpu_and_mtu_mismatch() {
    // IRQs on one CPU matter only once the NIC receives: silent on a quiet
    // report, where only the MTU (a configuration fact) is raised.
    let one_cpu = snapshot("1500", "1500", &["2", "2", "2"]);
    assert_eq!(rules(&advise(&quiet_report(), &one_cpu)), ["mtu"]);
    let mut busy = quiet_report();
    busy.ledger = crate::ledger::build(&Default::default());
    busy.ledger.ledger[0].segments_in = Some(1);
    let a = advise(&busy, &one_cpu);
    assert_eq!(rules(&a), ["irq_affinity", "mtu"]);
    assert!(a[0].text.contains("all 3 IRQs of eth0 go to CPU(s) 2"));
    assert!(a[1].text.contains("set flannel.1 to at most 1450"));
    // A single IRQ, or IRQs spread out: nothing to say.
    assert!(advise(&busy, &snapshot("9000", "8950", &["0"])).is_empty());
    assert!(advise(&busy, &snapshot("1500", "1450", &["0", "1"])).is_empty());
    assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
    // A list that names every CPU of the node has nothing to spread.
    busy.softnet = (0..2)
        .map(|cpu| SoftnetCpu {
            cpu,
            ..Default::default()
        })
        .collect();
    assert_eq!(
        rules(&advise(
            &busy,
            &snapshot("1500", "1450", &["0-1", "0-1", "0-1"])
        )),
        Vec::<&str>::new()
    );
}

#[test]
fn a_single_queue_nic_has_no_irqs_to_spread() {
    // virtio_net with one queue pair: config, input.0, output.0 on CPUs 0-1.
    let mut single = snapshot("1500", "1450", &["0-1", "0-1", "0-1"]);
    single.devices[0]
        .settings
        .retain(|x| !x.name.starts_with("rx-") || x.name == "rx-0/rps_cpus");
    let mut busy = quiet_report();
    busy.ledger = crate::ledger::build(&Default::default());
    busy.ledger.ledger[0].segments_in = Some(1);
    assert!(advise(&busy, &single).is_empty());
    single.devices[0].settings.iter_mut().for_each(|x| {
        if x.name.starts_with("irq ") {
            x.value = Some("0".into());
        }
    });
    assert!(
        advise(&busy, &single).is_empty(),
        "one queue: nothing to spread"
    );
}

#[test]
fn cpu_lists_are_counted() {
    assert_eq!(cpu_count("0-1"), Some(2));
    assert_eq!(cpu_count("0-2,5,7-8"), Some(6));
    assert_eq!(cpu_count("3"), Some(1));
    assert_eq!(cpu_count("2-1"), None);
    assert_eq!(cpu_count("x"), None);
}
