//! The drop probe's counters (skb:kfree_skb), summed over CPUs.

use std::collections::BTreeMap;

use probe_common::drops::{DropKey, DropTable, FlowKey, FlowTable, BENIGN_KINDS, REASON_SLOTS};

/// Cumulative drop counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DropCounts {
    /// Dropped skbs, indexed by reason slot.
    pub by_reason: Vec<u64>,
    /// Dropped segments (max(gso_segs, 1) per skb), indexed by reason slot.
    pub segments: Vec<u64>,
    /// Segments of outer VXLAN packets dropped in the NIC's namespace, by
    /// reason slot (whatever `--drop-netns` says).
    pub vxlan_outer: Vec<u64>,
    /// Of `by_reason` / `segments`: drops of decapsulated packets (skb->dev
    /// a VXLAN device), by reason slot.
    pub decap_skbs: Vec<u64>,
    pub decap_segments: Vec<u64>,
    pub keyed: BTreeMap<DropKey, u64>,
    pub flows: BTreeMap<FlowKey, u64>,
    pub out_of_scope: u64,
    pub flows_unslotted: u64,
    /// Drops that lose no data, by `Benign` kind: skbs and segments.
    pub benign_skbs: [u64; BENIGN_KINDS],
    pub benign_segments: [u64; BENIGN_KINDS],
    /// NOT_SPECIFIED drops (benign ones included) by the kernel address
    /// that freed them.
    pub not_specified_at: BTreeMap<u64, u64>,
}

crate::delta::counters!(DropCounts {
    by_reason,
    segments,
    vxlan_outer,
    decap_skbs,
    decap_segments,
    keyed,
    flows,
    out_of_scope,
    flows_unslotted,
    benign_skbs,
    benign_segments,
    not_specified_at,
});

impl DropCounts {
    /// Every counter at zero, with a slot for every reason: the probe's
    /// tables right after attach.
    pub fn zeroed() -> DropCounts {
        DropCounts {
            by_reason: vec![0; REASON_SLOTS],
            segments: vec![0; REASON_SLOTS],
            vxlan_outer: vec![0; REASON_SLOTS],
            decap_skbs: vec![0; REASON_SLOTS],
            decap_segments: vec![0; REASON_SLOTS],
            ..Default::default()
        }
    }

    pub fn from_tables(drops: &[DropTable], flows: &[FlowTable]) -> DropCounts {
        let mut c = DropCounts::zeroed();
        for t in drops {
            for (sums, counts) in [
                (&mut c.by_reason, &t.by_reason),
                (&mut c.segments, &t.segments),
                (&mut c.vxlan_outer, &t.vxlan_outer),
                (&mut c.decap_skbs, &t.decap_skbs),
                (&mut c.decap_segments, &t.decap_segments),
            ] {
                for (sum, n) in sums.iter_mut().zip(counts) {
                    *sum += n;
                }
            }
            for s in t.slots.iter().filter(|s| s.count > 0) {
                *c.keyed.entry(s.key).or_default() += s.count;
            }
            for s in t.not_specified_at.iter().filter(|s| s.count > 0) {
                *c.not_specified_at.entry(s.key).or_default() += s.count;
            }
            c.out_of_scope += t.out_of_scope;
            for k in 0..BENIGN_KINDS {
                c.benign_skbs[k] += t.benign_skbs[k];
                c.benign_segments[k] += t.benign_segments[k];
            }
        }
        for t in flows {
            for s in t.slots.iter().filter(|s| s.count > 0) {
                *c.flows.entry(s.key).or_default() += s.count;
            }
            c.flows_unslotted += t.unslotted;
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use probe_common::drops::{DropSlot, FlowSlot};

    use super::*;

    #[test]
    fn tables_are_summed_over_cpus_by_key() {
        let key = DropKey {
            netns: 7,
            ifindex: 2,
            reason: 3,
            decap: 0,
        };
        let mut a = DropTable::default();
        let mut b = DropTable::default();
        a.by_reason[3] = 4;
        b.by_reason[3] = 1;
        a.slots[10] = DropSlot { key, count: 4 };
        b.slots[99] = DropSlot { key, count: 1 };
        b.out_of_scope = 6;
        let mut f = FlowTable::default();
        let flow = FlowKey {
            netns: 7,
            reason: 3,
            family: 4,
            ..Default::default()
        };
        f.slots[1] = FlowSlot {
            key: flow,
            count: 2,
        };
        f.unslotted = 1;
        let c = DropCounts::from_tables(&[a, b], &[f, FlowTable::default()]);
        assert_eq!(c.by_reason[3], 5);
        assert_eq!(c.keyed, BTreeMap::from([(key, 5)]));
        assert_eq!(c.out_of_scope, 6);
        assert_eq!(c.flows, BTreeMap::from([(flow, 2)]));
        assert_eq!(c.flows_unslotted, 1);
    }
}
