use super::*;
use probe_model::{
    fixtures::{sample, topo},
    latency::{NapiRow, SoftirqRow},
    model::ReportKind,
};

/// The value of the one sample line that starts with `series` (name and labels).
fn value(text: &str, series: &str) -> f64 {
    let hits: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .collect();
    assert_eq!(hits.len(), 1, "{series} in:\n{text}");
    hits[0].rsplit(' ').next().unwrap().parse().unwrap()
}

fn report() -> Report {
    let zero = sample(0.0, 0, 0, 0, 0, 0);
    let now = sample(10.0, 1, 700, 30, 690, 730);
    Report::between(
        ReportKind::Summary,
        &probe_model::model::Run::watching(&topo()),
        &zero,
        &now,
    )
}

#[test]
fn counters_carry_the_reports_totals() {
    let shared = Shared::default();
    shared.set(report());
    let text = shared.render();
    assert_eq!(
        value(
            &text,
            r#"rxprobe_stage_segments_total{stage="nic",iface="eth0"}"#
        ),
        730.0
    );
    assert_eq!(
        value(
            &text,
            r#"rxprobe_stage_skbs_total{stage="vxlan",iface="flannel.1"}"#
        ),
        69.0
    );
    assert_eq!(
        value(
            &text,
            r#"rxprobe_vxlan_outer_segments_total{iface="eth0",port="8472",vni="1"}"#
        ),
        700.0
    );
    assert_eq!(
        value(
            &text,
            r#"rxprobe_vxlan_inner_segments_total{iface="flannel.1",port="8472",vni="1"}"#
        ),
        690.0
    );
    assert_eq!(value(&text, "rxprobe_reattachments_total"), 0.0);
    assert!(
        text.contains("# TYPE rxprobe_stage_segments counter"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"));
}

#[test]
fn before_the_first_report_there_is_nothing() {
    let text = Shared::default().render();
    assert_eq!(text, "# EOF\n");
}

#[test]
fn histograms_are_cumulative_in_seconds_with_every_bucket() {
    let mut r = report();
    // 3 waits in bucket 10 (512..1023 ns), 1 in bucket 12 (2048..4095 ns).
    let mut counts = [0u64; probe_common::latency::HIST_BUCKETS];
    counts[10] = 3;
    counts[12] = 1;
    let wait = Histogram::from_buckets(&counts, 3 * 600 + 3000, None);
    r.softirq = vec![SoftirqRow {
        cpu: Some(1),
        runs: 4,
        wait_ns: wait,
        ..Default::default()
    }];
    let mut work = [0u64; probe_common::latency::WORK_BUCKETS];
    work[1] = 5; // polls of 1 packet
    work[7] = 2; // polls of 64..127 packets
    r.napi = vec![NapiRow {
        iface: Some("eth0".into()),
        netns: None,
        cpu: 0,
        polls: 7,
        packets: 5 + 128,
        full_budget_polls: 2,
        work: Histogram::from_buckets(&work, 133, None),
    }];
    let shared = Shared::default();
    shared.set(r);
    let text = shared.render();
    let series = |le: &str| format!(r#"rxprobe_softirq_wait_seconds_bucket{{le="{le}",cpu="1"}}"#);
    assert_eq!(value(&text, &series("5.11e-7")), 0.0);
    assert_eq!(value(&text, &series("0.000001023")), 3.0);
    assert_eq!(value(&text, &series("0.000002047")), 3.0);
    assert_eq!(value(&text, &series("0.000004095")), 4.0);
    assert_eq!(value(&text, &series("+Inf")), 4.0);
    let buckets = text
        .lines()
        .filter(|l| {
            l.starts_with("rxprobe_softirq_wait_seconds_bucket{") && l.contains(r#"cpu="1""#)
        })
        .count();
    assert_eq!(buckets, probe_common::latency::HIST_BUCKETS + 1);
    assert_eq!(
        value(&text, r#"rxprobe_softirq_wait_seconds_count{cpu="1"}"#),
        4.0
    );
    assert_eq!(
        value(&text, r#"rxprobe_softirq_wait_seconds_sum{cpu="1"}"#),
        4.8e-6
    );
    let napi =
        |le: &str| format!(r#"rxprobe_napi_poll_packets_bucket{{le="{le}",iface="eth0",cpu="0"}}"#);
    assert_eq!(value(&text, &napi("1.0")), 5.0);
    assert_eq!(value(&text, &napi("127.0")), 7.0);
    assert_eq!(
        value(
            &text,
            r#"rxprobe_napi_full_budget_polls_total{iface="eth0",cpu="0"}"#
        ),
        2.0
    );
}

#[test]
fn le_buckets_put_the_remainder_in_inf() {
    let h = Histogram::from_buckets(&[0, 2, 0, 1], 7, None);
    let b = le_buckets(&h, 2, 1.0);
    assert_eq!(b, vec![(0.0, 0), (1.0, 2), (f64::INFINITY, 1)]);
}

/// The largest node the load benchmark simulates (64 CPUs), and a flood of
/// distinct flows: the flows reach the report (its top flows) but not one
/// series, and the series stay under the documented bound.
#[test]
fn series_are_bounded_by_the_node_not_by_flows() {
    let shape = NodeShape {
        cpus: 64,
        vxlan_devs: 2,
        nic_queues: 64,
        nic_queue_counters: 64,
        napi_instances: 4,
    };
    let render = |r: Report| {
        let shared = Shared::default();
        shared.set(r);
        shared.render()
    };
    let many = synthetic::report(&shape, 10_000);
    assert_eq!(many.ledger.flows.len(), probe_model::ledger::TOP_FLOWS);
    let few = render(synthetic::report(&shape, 10));
    let many = render(many);
    let (n, bound) = (series(&many), max_series(&shape));
    eprintln!("64 CPUs, 10,000 flows: {n} series, bound {bound}");
    assert_eq!(series(&few), n, "flows added series");
    assert!(n <= bound, "{n} series > bound {bound}");
    // The synthetic node fills nearly every slot the bound allows (the rest:
    // no unavailable hook, one NIC reason slot per stage), so the bound is
    // not vacuous.
    assert!(n * 10 >= bound * 9, "{n} series, bound {bound}");
    for family in [
        "rxprobe_softirq_wait_seconds_bucket{",
        "rxprobe_napi_poll_packets_bucket{",
        "rxprobe_drop_segments_total{",
        "rxprobe_kernel_counter_total{",
        "rxprobe_latency_paused_seconds_total ",
        "rxprobe_stage_latency_attached_seconds_total ",
        "rxprobe_stage_latency_packets_total{stage=\"window_closed\"}",
    ] {
        assert!(many.contains(family), "{family} missing");
    }
    // 128 sockets read: the 10 that read the most are series.
    let sockets = many
        .lines()
        .filter(|l| l.starts_with("rxprobe_stage_latency_socket_wait_seconds_count{"))
        .count();
    assert_eq!(sockets, probe_model::stage_latency::TOP_SOCKETS);
    // Per CPU: every CPU has its histograms.
    let cpu63 = many
        .lines()
        .filter(|l| {
            l.starts_with("rxprobe_softirq_run_seconds_bucket{") && l.contains(r#"cpu="63""#)
        })
        .count();
    assert_eq!(cpu63, probe_common::latency::HIST_BUCKETS + 1);
    // No address of any flow is a label.
    assert!(!many.contains("10.244."), "a flow address in /metrics");

    // More NAPI instances than the probe's table holds: the table's size bounds them.
    let crowded = NodeShape {
        napi_instances: 1000,
        ..shape
    };
    assert_eq!(
        max_series(&crowded),
        max_series(&NodeShape {
            napi_instances: probe_common::latency::NAPI_SLOTS,
            ..shape
        })
    );
}
