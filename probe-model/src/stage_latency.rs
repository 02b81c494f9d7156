//! `--stage-latency`: the followed packets' counts and per-transition
//! histograms over a period. Pure: tested without a kernel.

use probe_common::{
    drops::REASON_SLOTS,
    latency::HIST_BUCKETS,
    stage_latency::{
        NsHistogram, PathCpu, PathDrops, Reached, SocketWait, Transition, TRACE_STAGE_NAMES,
    },
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
    /// `--stage-window` ON/EVERY seconds (null: attached all the time).
    pub window: Option<String>,
    /// Seconds of the period the probes were attached (null: all of it).
    pub attached_s: Option<f64>,
    /// Queued, and still waiting in the socket when a window closed (after
    /// up to 1 s): not followed to the read.
    pub window_closed: u64,
    /// Each transition's time, ns, per followed packet that made it.
    pub transitions: Vec<TransitionRow>,
    /// Stages this kernel cannot follow, and why; null if it follows all.
    pub unavailable: Option<String>,
    /// `probe trace` only: marked packets dropped, where and why.
    pub drops: Vec<TraceDrop>,
    /// The sockets that read the most followed packets (at most
    /// [`TOP_SOCKETS`]), each with its own queued->read and nic->read times.
    pub sockets: Vec<SocketRow>,
}

/// The sockets listed in `sockets[]`.
pub const TOP_SOCKETS: usize = 10;

/// One socket's followed packets that were read, over the period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SocketRow {
    /// The socket's network namespace (a pod's), by name where known.
    pub netns: Option<String>,
    /// `udp` or `tcp`.
    pub protocol: &'static str,
    /// Its local port.
    pub port: u16,
    /// The wait in its queue: time from queued to read, ns.
    pub queued_to_read: Histogram,
    /// The whole path: time from the NIC to the read, ns.
    pub nic_to_read: Histogram,
}

/// The sockets whose reads were followed between two readings (`[slot][cpu]`;
/// an empty `earlier`: since zero), the most read first, at most
/// [`TOP_SOCKETS`]. A slot holds one socket per CPU for the whole session,
/// so a socket's rows are summed over CPUs by its key.
pub fn socket_rows(
    later: &[Vec<SocketWait>],
    earlier: &[Vec<SocketWait>],
    netns_name: impl Fn(u32) -> Option<String>,
) -> Vec<SocketRow> {
    let zero = SocketWait::default();
    // Per socket: queued->read, nic->read.
    let mut by_socket: std::collections::BTreeMap<(u32, u16, u16), [PeriodSum; 2]> =
        Default::default();
    for (slot, cpus) in later.iter().enumerate() {
        for (cpu, now) in cpus.iter().enumerate() {
            if now.protocol == 0 {
                continue;
            }
            let before = earlier
                .get(slot)
                .and_then(|e| e.get(cpu))
                .filter(|b| (b.netns, b.port, b.protocol) == (now.netns, now.port, now.protocol))
                .unwrap_or(&zero);
            let [queued, nic] = by_socket
                .entry((now.netns, now.port, now.protocol))
                .or_default();
            queued.add(&now.queued_to_read, &before.queued_to_read);
            nic.add(&now.nic_to_read, &before.nic_to_read);
        }
    }
    let mut rows: Vec<SocketRow> = by_socket
        .into_iter()
        .map(|((netns, port, protocol), [queued, nic])| SocketRow {
            netns: netns_name(netns),
            protocol: if protocol == 6 { "tcp" } else { "udp" },
            port,
            queued_to_read: queued.histogram(),
            nic_to_read: nic.histogram(),
        })
        .filter(|r| r.queued_to_read.count > 0)
        .collect();
    // The most read first; a stable order among equals (the map's).
    rows.sort_by_key(|r| std::cmp::Reverse(r.queued_to_read.count));
    rows.truncate(TOP_SOCKETS);
    rows
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
                    crate::delta::since(now.by_stage[stage][slot], before.by_stage[stage][slot])
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

/// One kernel histogram's change between two readings, summed over CPUs.
#[derive(Clone, Copy, Default)]
struct PeriodSum {
    buckets: [u64; HIST_BUCKETS],
    sum: u64,
    max: Option<u64>,
}

impl PeriodSum {
    /// Adds one CPU's `now - before`.
    fn add(&mut self, now: &NsHistogram, before: &NsHistogram) {
        for (k, total) in self.buckets.iter_mut().enumerate() {
            *total += crate::delta::since(now.buckets[k], before.buckets[k]);
        }
        self.sum += crate::delta::since(now.sum, before.sum);
        // A running maximum: this period's only if it grew in it.
        if now.max > before.max {
            self.max = self.max.max(Some(now.max));
        }
    }

    fn histogram(&self) -> Histogram {
        Histogram::from_buckets(&self.buckets, self.sum, self.max)
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
    let mut periods = [PeriodSum::default(); Transition::COUNT];
    for (cpu, now) in later.iter().enumerate() {
        let before = earlier.and_then(|e| e.get(cpu)).unwrap_or(&zero);
        for (r, total) in reached.iter_mut().enumerate() {
            *total += crate::delta::since(now.reached[r], before.reached[r]);
        }
        for (t, period) in periods.iter_mut().enumerate() {
            period.add(&now.transitions[t], &before.transitions[t]);
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
                ns: periods[i].histogram(),
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
        window: None,
        attached_s: None,
        window_closed: 0,
        transitions,
        unavailable,
        drops: Vec::new(),
        sockets: Vec::new(),
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
mod tests;
