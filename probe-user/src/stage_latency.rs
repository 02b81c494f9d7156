//! `--stage-latency`: the followed packets' counts and per-transition
//! histograms over a period. Pure: tested without a kernel.

use probe_common::{
    drops::REASON_SLOTS,
    latency::HIST_BUCKETS,
    stage_latency::{PathCpu, PathDrops, Reached, Transition, TRACE_STAGE_NAMES},
};
use serde::Serialize;

use crate::latency::Histogram;

/// Sampled packets over a period (units: skbs, as the stack received them
/// from the NIC: one GRO-merged skb is one sample).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StageLatency {
    /// One packet in this many at the NIC is followed.
    pub sample_every: u32,
    /// Followed packets: chosen at the NIC, then how many reached each
    /// stage. A packet stops being followed where it was dropped, merged
    /// into another by GRO, went elsewhere than a pod, or lost its slot.
    pub sampled: u64,
    pub decap: u64,
    pub pod: u64,
    pub queued: u64,
    pub read: u64,
    /// Reached a socket that already had a followed packet waiting (one
    /// per socket at a time): not followed to the read.
    pub socket_busy: u64,
    /// Each transition's time, ns, per followed packet that made it.
    pub transitions: Vec<TransitionRow>,
    /// Stages this kernel cannot follow, and why; null if it follows all.
    pub unavailable: Option<String>,
    /// `probe trace` only: marked packets dropped, where and why.
    pub drops: Vec<TraceDrop>,
}

/// Marked packets dropped at one stage for one reason.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceDrop {
    /// The last stage the packets reached: `sender` (the NIC never saw
    /// them: dropped on the sending node), `nic`, `decap`, `pod` (in the
    /// pod, before its socket).
    pub stage: &'static str,
    /// The kernel's drop reason (kfree_skb).
    pub reason: String,
    pub skbs: u64,
}

/// Drops of marked packets between two readings (one entry per CPU), by
/// stage and reason; `reason` names a reason slot.
pub fn trace_drops(
    later: &[PathDrops],
    earlier: Option<&[PathDrops]>,
    reason: impl Fn(usize) -> String,
) -> Vec<TraceDrop> {
    let zero = PathDrops::default();
    let mut out = Vec::new();
    for (stage, name) in TRACE_STAGE_NAMES.iter().enumerate() {
        for slot in 0..REASON_SLOTS {
            let skbs: u64 = later
                .iter()
                .enumerate()
                .map(|(cpu, now)| {
                    let before = earlier.and_then(|e| e.get(cpu)).unwrap_or(&zero);
                    now.by_stage[stage][slot].wrapping_sub(before.by_stage[stage][slot])
                })
                .sum();
            if skbs > 0 {
                out.push(TraceDrop {
                    stage: name,
                    reason: reason(slot),
                    skbs,
                });
            }
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TransitionRow {
    /// `nic`, `decap`, `pod`, `queued`, `read`.
    pub from: &'static str,
    pub to: &'static str,
    pub ns: Histogram,
}

impl StageLatency {
    /// The row of a transition (`from`, `to`).
    pub fn transition(&self, from: &str, to: &str) -> Option<&TransitionRow> {
        self.transitions
            .iter()
            .find(|t| t.from == from && t.to == to)
    }
}

/// The period between two cumulative readings (one entry per CPU).
pub fn stage_latency(
    later: &[PathCpu],
    earlier: Option<&[PathCpu]>,
    sample_every: u32,
    unavailable: Option<String>,
) -> StageLatency {
    let zero = PathCpu::default();
    let mut reached = [0u64; Reached::COUNT];
    let mut buckets = [[0u64; HIST_BUCKETS]; Transition::COUNT];
    let mut sums = [0u64; Transition::COUNT];
    let mut maxes = [None::<u64>; Transition::COUNT];
    for (cpu, now) in later.iter().enumerate() {
        let before = earlier.and_then(|e| e.get(cpu)).unwrap_or(&zero);
        for (r, total) in reached.iter_mut().enumerate() {
            *total += now.reached[r].wrapping_sub(before.reached[r]);
        }
        for t in 0..Transition::COUNT {
            let (n, b) = (&now.transitions[t], &before.transitions[t]);
            for (k, total) in buckets[t].iter_mut().enumerate() {
                *total += n.buckets[k].wrapping_sub(b.buckets[k]);
            }
            sums[t] += n.sum.wrapping_sub(b.sum);
            // A running maximum: this period's only if it grew in it.
            if n.max > b.max {
                maxes[t] = maxes[t].max(Some(n.max));
            }
        }
    }
    let transitions = Transition::ALL
        .iter()
        .map(|t| {
            let i = *t as usize;
            let (from, to) = t.stages();
            TransitionRow {
                from,
                to,
                ns: Histogram::from_buckets(&buckets[i], sums[i], maxes[i]),
            }
        })
        .collect();
    StageLatency {
        sample_every,
        sampled: reached[Reached::Sampled as usize],
        decap: reached[Reached::Decap as usize],
        pod: reached[Reached::Pod as usize],
        queued: reached[Reached::Queued as usize],
        read: reached[Reached::Read as usize],
        socket_busy: reached[Reached::SocketBusy as usize],
        transitions,
        unavailable,
        drops: Vec::new(),
    }
}

/// "p50 4.1µs p99 16µs max 20µs (980)" for a terminal line; "-" without samples.
/// A percentile is its bucket's upper bound, shown no higher than the exact
/// maximum.
pub fn short(h: &Histogram) -> String {
    match (h.p50, h.p99) {
        (Some(p50), Some(p99)) => {
            let max = h.max.unwrap_or(p99);
            format!(
                "p50 {} p99 {} max {} ({})",
                ns(p50.min(max)),
                ns(p99.min(max)),
                ns(max),
                h.count
            )
        }
        _ => "-".into(),
    }
}

/// ns as a human duration with its unit: 2 significant digits below 10.
pub fn ns(v: u64) -> String {
    let scaled = |div: f64, unit: &str| {
        let x = v as f64 / div;
        if x < 10.0 {
            format!("{x:.1}{unit}")
        } else {
            format!("{x:.0}{unit}")
        }
    };
    match v {
        0..=999 => format!("{v}ns"),
        1_000..=999_999 => scaled(1e3, "µs"),
        1_000_000..=999_999_999 => scaled(1e6, "ms"),
        _ => scaled(1e9, "s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use probe_common::latency::bucket;

    fn cpu_with(t: Transition, values: &[u64], reached: [u64; Reached::COUNT]) -> PathCpu {
        let mut c = PathCpu {
            reached,
            ..Default::default()
        };
        let h = &mut c.transitions[t as usize];
        for v in values {
            h.buckets[bucket(*v, HIST_BUCKETS)] += 1;
            h.sum += v;
            h.max = h.max.max(*v);
        }
        c
    }

    #[test]
    fn cpus_add_up_and_periods_difference() {
        let a = cpu_with(
            Transition::QueuedToRead,
            &[3_000, 5_000_000],
            [4, 0, 2, 2, 2, 0],
        );
        let b = cpu_with(Transition::QueuedToRead, &[6_000], [1, 0, 1, 1, 1, 1]);
        let s = stage_latency(&[a, b], None, 64, None);
        assert_eq!(
            (s.sampled, s.pod, s.queued, s.read, s.socket_busy),
            (5, 3, 3, 3, 1)
        );
        let q = &s.transition("queued", "read").unwrap().ns;
        assert_eq!(q.count, 3);
        assert_eq!(q.sum, 5_009_000);
        assert_eq!(q.max, Some(5_000_000));
        // 3,000 and 6,000 ns fall in [2048, 4096) and [4096, 8192).
        assert_eq!(q.p50, Some(8191));
        assert_eq!(q.p99, Some((1 << 23) - 1));
        assert_eq!(s.transition("nic", "decap").unwrap().ns.count, 0);
        assert_eq!(s.transitions.len(), Transition::COUNT);

        // The same readings as "earlier": nothing happened in between, and
        // the running maximum that did not grow is not this period's.
        let same = stage_latency(&[a, b], Some(&[a, b]), 64, None);
        assert_eq!(same.sampled, 0);
        let q = &same.transition("queued", "read").unwrap().ns;
        assert_eq!((q.count, q.max, q.p50), (0, None, None));
    }

    #[test]
    fn human_durations_name_their_unit() {
        assert_eq!(ns(950), "950ns");
        assert_eq!(ns(16_383), "16µs");
        assert_eq!(ns(8_388_607), "8.4ms");
        assert_eq!(ns(12_345_678), "12ms");
        assert_eq!(ns(2_500_000_000), "2.5s");
        let h = Histogram::from_buckets(&[0, 0, 0, 4], 20, Some(7));
        assert_eq!(short(&h), "p50 7ns p99 7ns max 7ns (4)");
        assert_eq!(short(&Histogram::default()), "-");
        let h = Histogram::from_buckets(&[0, 0, 0, 0, 0, 3], 60, Some(20));
        assert_eq!(short(&h), "p50 20ns p99 20ns max 20ns (3)");
    }
}
