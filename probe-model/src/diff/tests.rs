use serde_json::json;

use super::*;
use crate::settings::{Setting, Snapshot};

fn recording(rcvbuf: u64, elapsed: f64, rmem: &str, wait_p50: u64, squeeze: u64) -> Recording {
    Recording {
        format: "probe-record".into(),
        version: 1,
        kernel: "6.18".into(),
        hostname: "n".into(),
        settings: Some(Snapshot {
            netns: "current".into(),
            sysctls: vec![Setting {
                name: "net.core.netdev_budget".into(),
                value: Some("300".into()),
                error: None,
            }],
            devices: vec![],
            lower: vec![],
            mtu_chain: vec![],
        }),
        netns_settings: vec![crate::recording::NetnsSettings {
            netns: "pod".into(),
            sysctls: vec![Setting {
                name: "net.core.rmem_default".into(),
                value: Some(rmem.into()),
                error: None,
            }],
            sockets: vec![],
        }],
        summary: json!({
            "elapsed_s": elapsed,
            "ledger": [
                {"stage": "socket", "drops": rcvbuf, "reasons": {"SOCKET_RCVBUFF": rcvbuf}},
                {"stage": "ip", "drops": 0, "reasons": {}}
            ],
            "softirq": [{"wait_ns": {"p50": wait_p50, "p99": 4095}, "run_ns": {"p50": 16383, "p99": 65535}}],
            "softnet": [{"cpu": 0, "time_squeeze": squeeze}, {"cpu": 1, "time_squeeze": 0}],
            "cpus": [{"stage": "xdp", "cpu": 0, "packets": 90}, {"stage": "xdp", "cpu": 1, "packets": 10}],
            "advice": []
        }),
    }
}

fn metric<'a>(d: &'a Diff, name: &str) -> &'a Metric {
    d.metrics
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("no {name}: {:?}", d.metrics))
}

#[test]
fn rates_latency_and_settings() {
    let a = recording(100, 10.0, "212992", 511, 50);
    let b = recording(0, 20.0, "4194304", 511, 49);
    let d = diff(&a, &b);
    let m = metric(&d, "drops socket/SOCKET_RCVBUFF");
    assert_eq!(
        (m.a, m.b, m.verdict),
        (Some(10.0), Some(0.0), Verdict::Better)
    );
    assert_eq!(metric(&d, "drops socket").verdict, Verdict::Better);
    // All-zero stages are not listed.
    assert!(d.metrics.iter().all(|m| m.name != "drops ip"));
    // 5/s -> 2.45/s: more than 10% and 1/s: better.
    assert_eq!(metric(&d, "time_squeeze").verdict, Verdict::Better);
    assert_eq!(metric(&d, "softirq wait p50").verdict, Verdict::Unchanged);
    assert_eq!(metric(&d, "NIC segments on the busiest CPU").a, Some(90.0));
    assert_eq!(
        d.settings_changed,
        vec![SettingChange {
            name: "[pod] net.core.rmem_default".into(),
            a: Some("212992".into()),
            b: Some("4194304".into())
        }]
    );
    let text = human(&d);
    assert!(
        text.contains("[pod] net.core.rmem_default: 212992 -> 4194304"),
        "{text}"
    );
    assert!(text.contains("noise threshold"));
}

#[test]
fn noise_is_unchanged_and_regressions_are_worse() {
    // 10.0/s vs 10.5/s: within 10%; latency 511 -> 767: same log2 bucket scale.
    let a = recording(100, 10.0, "1", 511, 0);
    let b = recording(105, 10.0, "1", 767, 0);
    let d = diff(&a, &b);
    assert_eq!(metric(&d, "drops socket").verdict, Verdict::Unchanged);
    assert_eq!(metric(&d, "softirq wait p50").verdict, Verdict::Unchanged);
    assert!(d.settings_changed.is_empty());
    let worse = diff(&a, &recording(300, 10.0, "1", 2047, 0));
    assert_eq!(metric(&worse, "drops socket").verdict, Verdict::Worse);
    assert_eq!(metric(&worse, "softirq wait p50").verdict, Verdict::Worse);
    // Below 1/s both ways: noise.
    let tiny = diff(
        &recording(5, 10.0, "1", 1, 0),
        &recording(0, 10.0, "1", 1, 0),
    );
    assert_eq!(metric(&tiny, "drops socket").verdict, Verdict::Unchanged);
}

/// The regression: 100% loss of 2,000 segments vs 100% of 200 reads "better"
/// by rate; the loss ratio says it is the same.
#[test]
fn loss_ratio_is_judged_apart_from_the_rate() {
    let with = |input: u64, drops: u64| {
        let mut r = recording(0, 10.0, "212992", 511, 0);
        r.summary["ledger"] = json!([
            {"stage": "nic", "segments_in": input, "drops": 0, "reasons": {}},
            {"stage": "socket", "segments_in": null, "drops": drops,
             "reasons": {"SOCKET_RCVBUFF": {"segments": drops, "skbs": drops}}}
        ]);
        r
    };
    let d = diff(&with(2000, 2000), &with(200, 200));
    assert_eq!(metric(&d, "drops socket").verdict, Verdict::Better);
    let ratio = metric(&d, "loss ratio socket");
    assert_eq!(
        (ratio.a, ratio.b, ratio.verdict),
        (Some(100.0), Some(100.0), Verdict::Unchanged)
    );
    let d = diff(&with(2000, 20), &with(2000, 200));
    let ratio = metric(&d, "loss ratio socket");
    assert_eq!(
        (ratio.a, ratio.b, ratio.verdict),
        (Some(1.0), Some(10.0), Verdict::Worse)
    );
    // Segments per reason are read from the object form.
    assert_eq!(metric(&d, "drops socket/SOCKET_RCVBUFF").b, Some(20.0));
}
