use probe_common::latency::NapiKey;

use super::*;

#[test]
fn percentiles_from_log2_buckets() {
    // 100 samples: 50 in bucket 10 (512..1023), 40 in 11, 9 in 12, 1 in 20.
    let mut counts = [0u64; HIST_BUCKETS];
    counts[10] = 50;
    counts[11] = 40;
    counts[12] = 9;
    counts[20] = 1;
    let h = Histogram::from_buckets(&counts, 123_456, Some(600_000));
    assert_eq!(h.count, 100);
    assert_eq!(h.p50, Some(1023));
    assert_eq!(h.p90, Some(2047));
    assert_eq!(h.p99, Some(4095));
    assert_eq!(h.max, Some(600_000));
    assert_eq!(h.buckets.len(), 4);
    assert_eq!(
        h.buckets[3],
        Bucket {
            le: (1 << 20) - 1,
            count: 1
        }
    );
    let empty = Histogram::from_buckets(&[0; HIST_BUCKETS], 0, Some(5));
    assert_eq!((empty.p50, empty.max, empty.count), (None, None, 0));
    // Without a kept maximum, the top bucket's bound stands in.
    assert_eq!(
        Histogram::from_buckets(&counts, 0, None).max,
        Some((1 << 20) - 1)
    );
    assert_eq!(bucket_le(0), 0);
    assert_eq!(bucket_le(1), 1);
}

#[test]
fn softirq_deltas_per_cpu_and_all() {
    let mut a = SoftirqCpu::default();
    a.wait[10] = 5;
    a.run[12] = 5;
    a.entries = 5;
    a.wait_max = 900;
    a.run_max = 3000;
    let mut b = a;
    b.wait[10] = 15;
    b.wait[14] = 1;
    b.run[12] = 16;
    b.entries = 16;
    b.ksoftirqd_entries = 4;
    b.run_sum = 1000;
    b.ksoftirqd_run_sum = 250;
    b.wait_max = 9000; // grew: this period's
    let cpu1 = SoftirqCpu::default();
    let rows = softirq_rows(&[b, cpu1], Some(&[a, cpu1]));
    assert_eq!(rows.len(), 3, "all-CPU row first, then one per CPU");
    let (all, c0) = (&rows[0], &rows[1]);
    assert_eq!((all.cpu, c0.cpu), (None, Some(0)));
    assert_eq!((c0.runs, c0.ksoftirqd_runs), (11, 4));
    assert_eq!(c0.ksoftirqd_time_percent, Some(25.0));
    assert_eq!(c0.wait_ns.count, 11);
    assert_eq!(c0.wait_ns.max, Some(9000));
    // run_max did not grow: the bucket bound stands in.
    assert_eq!(c0.run_ns.max, Some(4095));
    assert_eq!(all.runs, 11);
    assert_eq!(all.wait_ns.count, 11);
    assert_eq!(rows[2].runs, 0);
    assert_eq!(rows[2].wait_ns.p50, None);
}

#[test]
fn napi_rows_between_readings() {
    let key = NapiKey {
        netns: 7,
        ifindex: 2,
    };
    let mut work = [0; WORK_BUCKETS];
    work[7] = 3; // 64-127 packets: full 64-packet budgets
    work[1] = 10;
    let later = BTreeMap::from([(
        (key, 1),
        NapiCounts {
            polls: 13,
            packets: 3 * 64 + 10,
            full_budget: 3,
            work,
        },
    )]);
    let rows = napi_rows(&later, None, |k| (Some(format!("if{}", k.ifindex)), None));
    assert_eq!(rows.len(), 1);
    let r = &rows[0];
    assert_eq!(
        (r.cpu, r.polls, r.packets, r.full_budget_polls),
        (1, 13, 202, 3)
    );
    assert_eq!(r.iface.as_deref(), Some("if2"));
    assert_eq!(r.work.p50, Some(1));
    assert_eq!(r.work.p99, Some(127));
    // No polls in the period: no row.
    assert!(napi_rows(&later, Some(&later), |_| (None, None)).is_empty());
}
