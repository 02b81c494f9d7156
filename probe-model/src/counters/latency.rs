//! The softirq and NAPI probes' counters.

use std::collections::BTreeMap;

use probe_common::latency::{NapiKey, SoftirqCpu, WORK_BUCKETS};

/// Cumulative counters: per CPU, and NAPI per (netns, device) and CPU.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LatencyCounts {
    pub softirq: Vec<SoftirqCpu>,
    /// (key, cpu) -> counters.
    pub napi: BTreeMap<(NapiKey, u32), NapiCounts>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NapiCounts {
    pub polls: u64,
    pub packets: u64,
    pub full_budget: u64,
    pub work: [u64; WORK_BUCKETS],
}
