use super::*;
use crate::{
    model::{ReportKind, Sample, Topology},
    procfs::SoftnetCpu,
    tune::{DeviceSettings, Setting},
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
    }
}

fn quiet_report() -> Report {
    Report::between(
        ReportKind::Interval,
        &Topology::default(),
        &Sample::default(),
        &Sample::default(),
    )
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
    row.reasons.insert(reason.into(), n);
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

#[test]
fn backlog_drops_cite_the_setting() {
    let a = advise(
        &with_reason("backlog", "CPU_BACKLOG", 42),
        &snapshot("1500", "1450", &[]),
    );
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].rule, "backlog");
    assert!(a[0]
        .text
        .starts_with("42 packets dropped at the per-CPU backlog"));
    assert!(
        a[0].text.contains("netdev_max_backlog=1000:"),
        "{}",
        a[0].text
    );
}

#[test]
fn time_squeeze_names_the_cpus_and_budget() {
    let mut r = quiet_report();
    r.softnet = (0..4)
        .map(|cpu| SoftnetCpu {
            cpu,
            time_squeeze: if cpu == 3 { 0 } else { 2 },
            ..Default::default()
        })
        .collect();
    let a = advise(&r, &snapshot("1500", "1450", &[]));
    assert_eq!(a.len(), 1);
    assert!(
        a[0].text.contains("6 times (time_squeeze) on CPUs 0-2"),
        "{}",
        a[0].text
    );
    assert!(a[0]
        .text
        .contains("netdev_budget=300 and netdev_budget_usecs=8000"));
}

#[test]
fn rcvbuf_cites_the_flow_and_rmem() {
    let mut r = with_reason("socket", "SOCKET_RCVBUFF", 7);
    r.ledger.flows.push(crate::ledger::FlowRow {
        src: "10.244.1.2".into(),
        dst: "10.244.2.2".into(),
        inner: false,
        netns: None,
        stage: "socket",
        reason: "SOCKET_RCVBUFF".into(),
        count: 7,
    });
    let a = advise(&r, &snapshot("1500", "1450", &[]));
    assert_eq!(a[0].rule, "rcvbuf");
    assert!(a[0].text.contains("(most for 10.244.1.2 -> 10.244.2.2: 7)"));
    assert!(a[0].text.contains("rmem_max=4194304"));
}

#[test]
fn irqs_on_one_cpu_and_mtu_mismatch() {
    let a = advise(&quiet_report(), &snapshot("1500", "1500", &["2", "2", "2"]));
    let rules: Vec<&str> = a.iter().map(|x| x.rule).collect();
    assert_eq!(rules, ["irq_affinity", "mtu"]);
    assert!(a[0].text.contains("all 3 IRQs of eth0 go to CPU(s) 2"));
    assert!(a[1].text.contains("set flannel.1 to at most 1450"));
    // A single IRQ, or IRQs spread out: nothing to say.
    assert!(advise(&quiet_report(), &snapshot("9000", "8950", &["0"])).is_empty());
    assert!(advise(&quiet_report(), &snapshot("1500", "1450", &["0", "1"])).is_empty());
    assert_eq!(cpu_list(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
}
