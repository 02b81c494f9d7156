//! NET_RX softirq latency and NAPI polls: the histogram arithmetic (deltas,
//! percentiles) the reports use. Pure: tested without a kernel.

use std::collections::BTreeMap;

use probe_common::latency::{NapiKey, SoftirqCpu, HIST_BUCKETS, WORK_BUCKETS};
use serde::Serialize;

use crate::counters::latency::NapiCounts;

/// A log2 histogram over a period, in the units of its samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Histogram {
    /// `[{"le": upper bound, "count": n}]` for the non-empty buckets: bucket
    /// k holds values in [2^(k-1), 2^k), so its upper bound is 2^k - 1.
    pub buckets: Vec<Bucket>,
    pub count: u64,
    pub sum: u64,
    /// Percentiles as the upper bound of the bucket they fall in (log2
    /// resolution: the true value is at most 2x lower).
    pub p50: Option<u64>,
    pub p90: Option<u64>,
    pub p99: Option<u64>,
    /// The exact maximum where the probe keeps it, else the top bucket's bound.
    pub max: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Bucket {
    pub le: u64,
    pub count: u64,
}

/// Upper bound of log2 bucket `k`.
pub fn bucket_le(k: usize) -> u64 {
    match k {
        0 => 0,
        64.. => u64::MAX,
        _ => (1u64 << k) - 1,
    }
}

impl Histogram {
    /// From bucket counts (already differenced), their sum and maximum.
    pub fn from_buckets(counts: &[u64], sum: u64, max: Option<u64>) -> Histogram {
        let count: u64 = counts.iter().sum();
        let buckets: Vec<Bucket> = counts
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| Bucket {
                le: bucket_le(k),
                count: *n,
            })
            .collect();
        let percentile = |p: f64| -> Option<u64> {
            if count == 0 {
                return None;
            }
            let rank = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for b in &buckets {
                seen += b.count;
                if seen >= rank {
                    return Some(b.le);
                }
            }
            buckets.last().map(|b| b.le)
        };
        Histogram {
            p50: percentile(0.50),
            p90: percentile(0.90),
            p99: percentile(0.99),
            max: if count == 0 {
                None
            } else {
                max.or(buckets.last().map(|b| b.le))
            },
            buckets,
            count,
            sum,
        }
    }
}

/// Softirq timing of one CPU, or of all of them, over a period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SoftirqRow {
    /// CPU number; null for the all-CPU row.
    pub cpu: Option<u32>,
    pub runs: u64,
    /// Runs in a ksoftirqd thread, and their share of all NET_RX run time.
    pub ksoftirqd_runs: u64,
    pub ksoftirqd_time_percent: Option<f64>,
    /// Raise -> entry, ns.
    pub wait_ns: Histogram,
    /// Entry -> exit, ns.
    pub run_ns: Histogram,
}

/// NAPI polls of one device on one CPU over a period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NapiRow {
    /// null for NAPI without a device (the per-CPU backlog, process_backlog).
    pub iface: Option<String>,
    pub netns: Option<String>,
    pub cpu: u32,
    pub polls: u64,
    pub packets: u64,
    /// Polls that used the whole budget: the device had more to give.
    pub full_budget_polls: u64,
    /// Packets per poll.
    pub work: Histogram,
}

/// Per-CPU and all-CPU softirq rows between two readings.
pub fn softirq_rows(later: &[SoftirqCpu], earlier: Option<&[SoftirqCpu]>) -> Vec<SoftirqRow> {
    let zero = SoftirqCpu::default();
    let mut rows = Vec::new();
    let mut all_wait = [0u64; HIST_BUCKETS];
    let mut all_run = [0u64; HIST_BUCKETS];
    let mut all = SoftirqRow::default();
    let (mut all_wait_sum, mut all_run_sum, mut all_ksoft_ns) = (0, 0, 0);
    let (mut all_wait_max, mut all_run_max) = (None::<u64>, None::<u64>);
    for (cpu, now) in later.iter().enumerate() {
        let before = earlier.and_then(|e| e.get(cpu)).unwrap_or(&zero);
        let d = |a: u64, b: u64| crate::delta::since(a, b);
        let wait: Vec<u64> = (0..HIST_BUCKETS)
            .map(|k| d(now.wait[k], before.wait[k]))
            .collect();
        let run: Vec<u64> = (0..HIST_BUCKETS)
            .map(|k| d(now.run[k], before.run[k]))
            .collect();
        // The kernel keeps a running maximum: it belongs to this period only
        // if it grew during it.
        let max_in = |now: u64, before: u64| (now > before).then_some(now);
        let (wait_sum, run_sum) = (
            d(now.wait_sum, before.wait_sum),
            d(now.run_sum, before.run_sum),
        );
        let ksoft_ns = d(now.ksoftirqd_run_sum, before.ksoftirqd_run_sum);
        let row = SoftirqRow {
            cpu: Some(cpu as u32),
            runs: d(now.entries, before.entries),
            ksoftirqd_runs: d(now.ksoftirqd_entries, before.ksoftirqd_entries),
            ksoftirqd_time_percent: (run_sum > 0).then(|| ksoft_ns as f64 * 100.0 / run_sum as f64),
            wait_ns: Histogram::from_buckets(
                &wait,
                wait_sum,
                max_in(now.wait_max, before.wait_max),
            ),
            run_ns: Histogram::from_buckets(&run, run_sum, max_in(now.run_max, before.run_max)),
        };
        for k in 0..HIST_BUCKETS {
            all_wait[k] += wait[k];
            all_run[k] += run[k];
        }
        all.runs += row.runs;
        all.ksoftirqd_runs += row.ksoftirqd_runs;
        all_wait_sum += wait_sum;
        all_run_sum += run_sum;
        all_ksoft_ns += ksoft_ns;
        all_wait_max = all_wait_max.max(row.wait_ns.max.filter(|_| row.wait_ns.count > 0));
        all_run_max = all_run_max.max(row.run_ns.max.filter(|_| row.run_ns.count > 0));
        rows.push(row);
    }
    all.ksoftirqd_time_percent =
        (all_run_sum > 0).then(|| all_ksoft_ns as f64 * 100.0 / all_run_sum as f64);
    all.wait_ns = Histogram::from_buckets(&all_wait, all_wait_sum, all_wait_max);
    all.run_ns = Histogram::from_buckets(&all_run, all_run_sum, all_run_max);
    rows.insert(0, all);
    rows
}

/// NAPI rows between two readings, with names resolved by `name`.
pub fn napi_rows(
    later: &BTreeMap<(NapiKey, u32), NapiCounts>,
    earlier: Option<&BTreeMap<(NapiKey, u32), NapiCounts>>,
    name: impl Fn(&NapiKey) -> (Option<String>, Option<String>),
) -> Vec<NapiRow> {
    later
        .iter()
        .filter_map(|(k, now)| {
            let before = earlier.and_then(|e| e.get(k)).copied().unwrap_or_default();
            let polls = crate::delta::since(now.polls, before.polls);
            if polls == 0 {
                return None;
            }
            let work: Vec<u64> = (0..WORK_BUCKETS)
                .map(|b| crate::delta::since(now.work[b], before.work[b]))
                .collect();
            let packets = crate::delta::since(now.packets, before.packets);
            let (iface, netns) = name(&k.0);
            Some(NapiRow {
                iface,
                netns,
                cpu: k.1,
                polls,
                packets,
                full_budget_polls: crate::delta::since(now.full_budget, before.full_budget),
                work: Histogram::from_buckets(&work, packets, None),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
