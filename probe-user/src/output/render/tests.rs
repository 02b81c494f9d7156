use super::*;

#[test]
fn units() {
    assert_eq!(si(999), "999");
    assert_eq!(si(12_345), "12.3k");
    assert_eq!(bytes(2048), "2.0 KiB");
    assert_eq!(bytes(3 * 1_048_576), "3.0 MiB");
}

/// An empty report: the sections below are set by hand.
fn report() -> Report {
    Report::between(
        ReportKind::Interval,
        &probe_model::model::Run::watching(&Default::default()),
        &Default::default(),
        &Default::default(),
    )
}

#[test]
fn reasons_placed_by_rule_are_named() {
    use probe_model::{ledger::PlacedByRule, stage::Stage};
    let mut r = report();
    r.ledger.placed_by_rule = vec![
        PlacedByRule {
            reason: "VXLAN_NEW_CHECK".into(),
            stage: Stage::Vxlan,
            rule: "prefix VXLAN_".into(),
        },
        PlacedByRule {
            reason: "BRAND_NEW".into(),
            stage: Stage::Other,
            rule: "no family".into(),
        },
    ];
    let text = human(&r);
    assert!(
        text.contains(
            "placed by rule, not by table (reasons this kernel has and the table lacks): \
             VXLAN_NEW_CHECK -> vxlan (prefix VXLAN_), BRAND_NEW -> other (no family)"
        ),
        "{text}"
    );
}

#[test]
fn a_counter_reset_is_named() {
    let mut r = report();
    r.resets = vec![probe_model::model::CounterReset {
        counters: "stats64",
        of: "eth0".into(),
    }];
    assert!(human(&r).contains(
        "RESET  stats64 of eth0 went backwards in this period (reset, or re-created): counted from its new value"
    ));
}

#[test]
fn not_specified_drops_name_their_function() {
    use probe_model::ledger::FreedAt;
    let mut r = report();
    r.ledger.not_specified_at = [
        (Some("ip6_mc_input"), 6),
        (Some("tcp_v4_rcv"), 5),
        (None, 2),
    ]
    .into_iter()
    .map(|(function, skbs)| FreedAt {
        function: function.map(String::from),
        skbs,
    })
    .collect();
    let text = human(&r);
    assert!(
        text.contains("NOT_SPECIFIED freed in (skbs): ip6_mc_input 6, tcp_v4_rcv 5, (not kept) 2"),
        "{text}"
    );
}
