use super::*;
use crate::fixtures::{sample, topo};

#[test]
fn interval_is_the_difference_of_two_samples() {
    let a = sample(1.0, 0, 10, 5, 9, 1000);
    let b = sample(2.5, 0, 110, 7, 100, 1102);
    let r = Report::between(ReportKind::Interval, &Run::watching(&topo()), &a, &b);
    assert_eq!(r.elapsed_s, 1.5);
    let nic = r.stage(HookKind::Nic, "eth0").unwrap();
    assert_eq!(
        (nic.skbs, nic.segments, nic.bytes),
        (102, 102, 100 * 100 + 2 * 60)
    );
    assert_eq!(nic.gro_ratio, Some(1.0));
    assert_eq!(nic.classes["vxlan"], 100);
    assert_eq!(nic.classes["ipv4"], 2);
    assert_eq!(nic.kernel.unwrap().rx_packets, 102);
    assert_eq!(nic.drops, Some(0));
    assert_eq!(nic.hook, "tcx/ingress");
    // 9 -> 100 segments in 1 -> 10 skbs: 91 segments in 9 skbs.
    let vx = r.stage(HookKind::Vxlan, "flannel.1").unwrap();
    assert_eq!((vx.skbs, vx.segments, vx.bytes), (9, 91, 91 * 50));
    assert_eq!(vx.gro_ratio, Some(10.11));
    assert_eq!(
        r.queues,
        vec![QueueRow {
            iface: "eth0".into(),
            queue: 0,
            skbs: 102,
            segments: 102,
            bytes: 10120
        }]
    );
    // TX from the device's own counters (the samples' are equal: 0 over the period).
    assert_eq!(
        r.tx,
        vec![TxRow {
            iface: "flannel.1".into(),
            skbs: 0,
            bytes: 0,
            dropped_skbs: 0
        }]
    );
}

#[test]
fn vxlan_rows_join_outer_and_inner_by_vni() {
    let zero = sample(0.0, 0, 0, 0, 0, 0);
    let now = sample(3.0, 1, 500, 0, 498, 500);
    let r = Report::between(ReportKind::Summary, &Run::watching(&topo()), &zero, &now);
    let row = &r.vxlan[0];
    assert_eq!((row.port, row.vni), (Some(8472), Some(1)));
    assert_eq!(row.iface.as_deref(), Some("flannel.1"));
    assert_eq!(row.nic.as_deref(), Some("eth0"));
    assert_eq!(
        (row.outer_segments, row.inner_segments, row.inner_skbs),
        (Some(500), Some(498), Some(50))
    );
    assert_eq!(row.outer_inner.as_ref().unwrap()["ipv4"], 500);
    let other = &r.vxlan[1];
    assert_eq!(
        (
            other.port,
            other.vni,
            other.outer_segments,
            other.inner_segments
        ),
        (None, None, Some(0), None)
    );
    // The balance compares segments with segments.
    let loss = r.ledger.vxlan_loss.as_ref().unwrap();
    assert_eq!(
        (loss.outer_segments, loss.inner_segments, loss.lost),
        (500, 498, 2)
    );
}

#[test]
fn per_cpu_rows_keep_the_cpu() {
    let zero = sample(0.0, 0, 0, 0, 0, 0);
    let r = Report::between(
        ReportKind::Summary,
        &Run::watching(&topo()),
        &zero,
        &sample(1.0, 1, 7, 0, 7, 7),
    );
    let nic: Vec<_> = r
        .cpus
        .iter()
        .filter(|c| c.stage == "nic")
        .map(|c| (c.cpu, c.segments))
        .collect();
    assert_eq!(nic, vec![(0, 0), (1, 7)]);
    let vx: Vec<_> = r
        .cpus
        .iter()
        .filter(|c| c.stage == "vxlan")
        .map(|c| (c.cpu, c.segments))
        .collect();
    assert_eq!(vx, vec![(0, 0), (1, 7)]);
}

#[test]
fn missing_hooks_give_nulls_not_zeros() {
    let mut t = topo();
    t.nic = None;
    let a = sample(0.0, 0, 0, 0, 0, 0);
    let b = sample(1.0, 0, 0, 0, 4, 0);
    let r = Report::between(ReportKind::Interval, &Run::watching(&t), &a, &b);
    assert!(r.stage(HookKind::Nic, "eth0").is_none());
    assert_eq!(r.vxlan.len(), 1);
    assert_eq!(
        (r.vxlan[0].outer_segments, r.vxlan[0].inner_segments),
        (None, Some(4))
    );
}

#[test]
fn json_has_the_documented_fields() {
    let zero = sample(0.0, 0, 0, 0, 0, 0);
    let r = Report::between(
        ReportKind::Summary,
        &Run::watching(&topo()),
        &zero,
        &sample(1.0, 0, 1, 0, 1, 1),
    );
    let v: serde_json::Value = serde_json::to_value(&r).unwrap();
    assert_eq!(v["type"], "summary");
    assert_eq!(v["ts"], "1970-01-01T00:00:00.000Z");
    for key in ["stages", "vxlan", "cpus", "queues", "tx", "unavailable"] {
        assert!(v[key].is_array(), "{key}");
    }
    for key in [
        "stage",
        "iface",
        "skbs",
        "segments",
        "gro_ratio",
        "bytes",
        "drops",
    ] {
        assert!(v["stages"][0].get(key).is_some(), "{key}");
    }
    for key in [
        "iface",
        "port",
        "vni",
        "outer_segments",
        "outer_skbs",
        "inner_segments",
        "inner_skbs",
    ] {
        assert!(v["vxlan"][0].get(key).is_some(), "{key}");
    }
}

/// Every number in `v` (recursively) that is negative.
pub(crate) fn negatives(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    numbers_where(v, path, &|n| n.as_f64().is_some_and(|f| f < 0.0), out);
}

/// Every number in `v` (recursively) that `bad` picks, with its path.
fn numbers_where(
    v: &serde_json::Value,
    path: &str,
    bad: &dyn Fn(&serde_json::Number) -> bool,
    out: &mut Vec<String>,
) {
    match v {
        serde_json::Value::Number(n) if bad(n) => out.push(format!("{path} = {n}")),
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                numbers_where(x, &format!("{path}[{i}]"), bad, out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, x) in o {
                numbers_where(x, &format!("{path}.{k}"), bad, out);
            }
        }
        _ => {}
    }
}

mod properties {
    use proptest::prelude::*;

    use super::*;
    use crate::{counters::drops::DropCounts, reasons::ReasonNames};

    fn drops(by_reason: &[(usize, u64, u64, u64)]) -> DropCounts {
        let mut c = DropCounts::zeroed();
        for (slot, skbs, gro, outer) in by_reason {
            c.by_reason[*slot] += skbs;
            c.segments[*slot] += skbs * gro;
            c.vxlan_outer[*slot] += outer;
            // Some of them decapsulated (at most all).
            c.decap_skbs[*slot] += skbs / 2;
            c.decap_segments[*slot] += skbs / 2 * gro;
        }
        c
    }

    proptest! {
        /// Whatever the counts (in flight at the edges, more out of the
        /// device than into the NIC, drops of any reason, outer or not),
        /// no report holds a negative number, segments are never fewer than
        /// skbs, and the VXLAN balance adds up.
        #[test]
        fn no_report_has_a_negative_count(
            outer0 in 0u64..1000, outer_add in 0u64..100_000,
            inner0 in 0u64..1000, inner_add in 0u64..100_000,
            ipv4 in 0u64..10_000,
            reasons in proptest::collection::vec((0usize..8, 0u64..5000, 1u64..64, 0u64..5000), 0..6),
        ) {
            let mut t = topo();
            t.reasons = Some(ReasonNames::from_lists(
                &[(0, "NOT_SPECIFIED"), (1, "NO_SOCKET"), (2, "NETFILTER_DROP"), (3, "CPU_BACKLOG"),
                  (4, "VXLAN_INVALID_HDR"), (5, "NO_TX_TARGET"), (6, "SOCKET_RCVBUFF"), (7, "FULL_RING")],
                &[],
            ));
            let mut a = sample(1.0, 0, outer0, 0, inner0, 10);
            let mut b = sample(2.0, 0, outer0 + outer_add, ipv4, inner0 + inner_add, 10 + outer_add);
            a.drops = Some(drops(&[]));
            b.drops = Some(drops(&reasons));
            let r = Report::between(ReportKind::Interval, &Run::watching(&t), &a, &b);
            let v = serde_json::to_value(&r).unwrap();
            let mut neg = Vec::new();
            negatives(&v, "", &mut neg);
            prop_assert!(neg.is_empty(), "negative values: {neg:?}");
            for s in &r.stages {
                prop_assert!(s.segments >= s.skbs);
            }
            for row in &r.ledger.ledger {
                prop_assert!(row.drops >= row.drop_skbs);
            }
            let l = r.ledger.vxlan_loss.as_ref().unwrap();
            prop_assert_eq!(l.lost, l.outer_segments.saturating_sub(l.inner_segments));
            prop_assert!(l.unexplained <= l.lost);
            prop_assert_eq!(l.unexplained, l.lost.saturating_sub(l.explained));
        }
    }
}

/// A kernel newer than the stage table: its new reasons are placed by their
/// family, and the report names them (probe-user's render.rs tests it on the terminal).
#[test]
fn a_reason_the_table_lacks_is_named_as_placed_by_rule() {
    use crate::{counters::drops::DropCounts, reasons::ReasonNames};
    use probe_common::drops::CORE_REASON_SLOTS;

    let mut t = topo();
    t.reasons = Some(ReasonNames::from_lists(
        &[(2, "NO_SOCKET"), (3, "VXLAN_NEW_CHECK"), (4, "BRAND_NEW")],
        &[(2, "OPENVSWITCH"), (9, "NEW_SUBSYSTEM")],
    ));
    let mut a = sample(1.0, 0, 0, 0, 0, 0);
    let mut b = sample(2.0, 0, 100, 0, 90, 100);
    a.drops = Some(DropCounts::zeroed());
    let mut d = DropCounts::zeroed();
    let slot = CORE_REASON_SLOTS as usize;
    for (slot, skbs) in [(2, 4), (3, 5), (4, 6), (slot + 2, 7), (slot + 9, 8)] {
        d.by_reason[slot] = skbs;
        d.segments[slot] = skbs;
    }
    b.drops = Some(d);
    let r = Report::between(ReportKind::Interval, &Run::watching(&t), &a, &b);
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["placed_by_rule"],
        serde_json::json!([
            {"reason": "VXLAN_NEW_CHECK", "stage": "vxlan", "rule": "prefix VXLAN_"},
            {"reason": "BRAND_NEW", "stage": "other", "rule": "no family"},
            {"reason": "NEW_SUBSYSTEM", "stage": "other", "rule": "subsystem"},
        ])
    );
    // Placed where the rule says: 5 at vxlan, 6 + 8 at other; OPENVSWITCH's
    // subsystem (in the table) at ip.
    let drops_at = |stage: &str| {
        r.ledger
            .ledger
            .iter()
            .find(|row| row.stage.as_str() == stage)
            .map(|row| row.drop_skbs)
    };
    assert_eq!(
        [
            drops_at("vxlan"),
            drops_at("other"),
            drops_at("ip"),
            drops_at("socket")
        ],
        [Some(5), Some(14), Some(7), Some(4)]
    );
}

/// A device's counters that go backwards (a driver reset, or the device
/// re-created) count from their new value, and the report names them: no
/// wrapped difference anywhere.
#[test]
fn a_counter_reset_is_counted_from_its_new_value_and_named() {
    let a = sample(1.0, 0, 10, 0, 10, 5000);
    let b = sample(2.0, 0, 20, 0, 20, 40);
    let r = Report::between(ReportKind::Interval, &Run::watching(&topo()), &a, &b);
    let nic = r.stage(HookKind::Nic, "eth0").unwrap();
    assert_eq!(nic.kernel.unwrap().rx_packets, 40);
    assert_eq!(
        r.resets,
        [CounterReset {
            counters: "stats64",
            of: "eth0".into()
        }]
    );
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v["resets"],
        serde_json::json!([{"counters": "stats64", "of": "eth0"}])
    );
    let mut huge = Vec::new();
    numbers_where(
        &v,
        "",
        &|n| n.as_u64().is_some_and(|n| n > 1 << 40),
        &mut huge,
    );
    assert!(huge.is_empty(), "wrapped values: {huge:?}");
    // Counters that only grow: no reset.
    let later = sample(3.0, 0, 30, 0, 30, 80);
    assert!(
        Report::between(ReportKind::Interval, &Run::watching(&topo()), &b, &later)
            .resets
            .is_empty()
    );
}
