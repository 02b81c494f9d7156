//! The NIC hook's counters: skbs, segments and bytes per RX queue, class and
//! (UDP port, VNI).

use probe_common::{NicCounters, QueueCounters, VniCounters, VNI_SLOTS};

/// Raw cumulative counters of one NIC hook: `queues[slot][cpu]`, and
/// `vnis[slot][cpu]` summed over the queues.
#[derive(Clone, Debug, Default)]
pub struct NicCounts {
    pub queues: Vec<Vec<NicCounters>>,
    pub vnis: Vec<Vec<VniCounters>>,
}

impl NicCounts {
    /// Splits the map's per-queue entries (`entries[queue][cpu]`) into the
    /// queue counters and the VNI counters summed over queues.
    pub fn from_queue_entries(entries: &[Vec<QueueCounters>]) -> NicCounts {
        let cpus = entries.first().map_or(0, Vec::len);
        let mut vnis = vec![vec![VniCounters::default(); cpus]; VNI_SLOTS as usize];
        for per_cpu in entries {
            for (cpu, entry) in per_cpu.iter().enumerate() {
                for (sum, v) in vnis.iter_mut().zip(&entry.vnis) {
                    let sum = &mut sum[cpu];
                    sum.outer_bytes += v.outer_bytes;
                    sum.outer_skbs += v.outer_skbs;
                    for (s, n) in sum.inner.iter_mut().zip(v.inner) {
                        *s += n;
                    }
                }
            }
        }
        NicCounts {
            queues: entries
                .iter()
                .map(|per_cpu| per_cpu.iter().map(|e| e.classes).collect())
                .collect(),
            vnis,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_counters_are_summed_over_queues_per_cpu() {
        let mut q0 = vec![QueueCounters::default(); 2];
        let mut q1 = vec![QueueCounters::default(); 2];
        q0[0].classes.segments[3] = 5;
        q0[0].vnis[0].inner[0] = 5;
        q0[0].vnis[0].outer_skbs = 1;
        q0[0].vnis[0].outer_bytes = 500;
        q1[0].vnis[0].inner[1] = 2;
        q1[1].vnis[8].inner[3] = 1;
        let n = NicCounts::from_queue_entries(&[q0, q1]);
        assert_eq!(n.queues.len(), 2);
        assert_eq!(n.queues[0][0].segments[3], 5);
        assert_eq!(n.vnis.len(), VNI_SLOTS as usize);
        assert_eq!(n.vnis[0][0].inner, [5, 2, 0, 0]);
        assert_eq!(n.vnis[0][0].outer_segments(), 7);
        assert_eq!(n.vnis[0][0].outer_skbs, 1);
        assert_eq!(n.vnis[0][0].outer_bytes, 500);
        assert_eq!(n.vnis[0][1], VniCounters::default());
        assert_eq!(n.vnis[8][1].outer_segments(), 1);
        assert!(NicCounts::from_queue_entries(&[])
            .vnis
            .iter()
            .all(Vec::is_empty));
    }
}
