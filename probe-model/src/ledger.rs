//! The drop ledger: where packets were lost between two samples and why,
//! per receive-path stage in path order, reconciled with the kernel's own
//! counters, and one verdict line. Pure arithmetic over the samples.

use std::collections::BTreeMap;

use probe_common::drops::REASON_SLOTS;
use serde::Serialize;

use crate::{
    counters::drops::DropCounts,
    counters::link::LinkStats,
    counters::procfs::{Snmp, SoftnetCpu},
    names::Names,
    reasons::{benign_name, ReasonNames},
    stage::Stage,
};

/// How many flows a report lists.
pub const TOP_FLOWS: usize = 10;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DropRow {
    pub stage: Stage,
    pub reason: String,
    /// skb->dev when the skb was dropped; null if it had none, or if the
    /// drop's (netns, device) could not be kept apart (table full).
    pub iface: Option<String>,
    pub netns: Option<String>,
    /// Dropped skbs.
    pub skbs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    pub src: String,
    pub dst: String,
    /// True: the inner addresses of a VXLAN packet dropped before decapsulation.
    pub inner: bool,
    pub netns: Option<String>,
    pub stage: Stage,
    pub reason: String,
    /// Dropped skbs.
    pub skbs: u64,
}

/// Drops of one reason (at `nic`: of one hardware counter), and the kernel
/// counter that counts the same drops, to check against.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ReasonCount {
    /// Segments: max(gso_segs, 1) per dropped skb.
    pub segments: u64,
    pub skbs: u64,
    /// The kernel counter that should match `skbs` (null: none counts this
    /// reason alone; NETFILTER_DROP, for one, is counted by the rule itself).
    pub counter: Option<&'static str>,
    /// That counter over the period; null without a counter, or when it was
    /// not read in every namespace where this reason dropped packets.
    pub kernel: Option<u64>,
}

/// One receive-path stage. Every count is in segments (wire packets; a GRO
/// skb counts its gso_segs) unless its name says skbs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LedgerRow {
    pub stage: Stage,
    /// Segments that entered the stage, where a hook or counter sees them.
    pub segments_in: Option<u64>,
    /// Segments dropped at this stage: drop reasons, plus the NIC's hardware
    /// drop counters at `nic`.
    pub drops: u64,
    /// The same drops in skbs.
    pub drop_skbs: u64,
    pub reasons: BTreeMap<String, ReasonCount>,
    /// Stage-wide kernel counters over the period (rx_dropped, softnet_stat).
    pub kernel: BTreeMap<String, u64>,
}

/// Drops outside the receive ledger: the transmit side (no FDB entry on a
/// VXLAN device, neighbour resolution, qdiscs, output routes), or benign
/// ones (copies TCP already had, queues freed by close()).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DropSection {
    pub segments: u64,
    pub skbs: u64,
    pub reasons: BTreeMap<String, ReasonCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Verdict {
    /// The stage that lost the most segments; null when nothing was lost.
    pub stage: Option<Stage>,
    /// Segments dropped at that stage (every reason).
    pub segments: u64,
    /// The stage's most frequent reason, and its own count.
    pub reason: Option<String>,
    pub reason_segments: u64,
    /// The input the percentage is taken of: this stage's, else the nearest
    /// upstream stage's `segments_in`.
    pub input: Option<u64>,
    pub percent: Option<f64>,
    pub text: String,
}

/// What the ledger needs from two samples (already differenced).
#[derive(Clone, Debug, Default)]
pub struct LedgerInput<'a> {
    pub reasons: Option<&'a ReasonNames>,
    pub drops: Option<DropCounts>,
    pub names: Option<&'a Names>,
    pub nic_kernel: Option<LinkStats>,
    /// The NIC driver's per-RX-queue drop statistics (ethtool -S), if any.
    pub nic_queue_drops: Vec<(String, u64)>,
    /// Segments the NIC hook saw.
    pub nic_segments: Option<u64>,
    /// Outer VXLAN segments at the NIC hook, and segments out of the VXLAN devices.
    pub vxlan_outer: Option<u64>,
    pub vxlan_inner: Option<u64>,
    pub softnet: Vec<SoftnetCpu>,
    /// The protocol counters per namespace read (its name as in drop rows).
    pub snmp: Vec<(String, Snmp)>,
    /// What each namespace's root qdiscs dropped, in the same namespaces.
    pub qdisc_drops: Vec<(String, u64)>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Ledger {
    pub ledger: Vec<LedgerRow>,
    /// Transmit-side drops.
    pub tx_drops: DropSection,
    /// Drops that lose no data (BENIGN_STAGE in drops.rs).
    pub benign_drops: DropSection,
    pub drops: Vec<DropRow>,
    pub flows: Vec<FlowRow>,
    pub vxlan_loss: Option<VxlanLoss>,
    /// Null only without the drop probe.
    pub verdict: Option<Verdict>,
    /// Drops in namespaces outside `--drop-netns` (not in the ledger), in skbs.
    pub drops_out_of_scope: u64,
    /// The reasons of this period's drops that the table does not know (a
    /// kernel newer than the table), and the family rule that placed each.
    pub placed_by_rule: Vec<PlacedByRule>,
    /// Where the period's NOT_SPECIFIED drops were freed (benign ones
    /// included), the most first: a reason says why, this says where.
    pub not_specified_at: Vec<FreedAt>,
}

/// Drops freed in one kernel function without a reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FreedAt {
    /// The function (/proc/kallsyms), or its address where that is hidden;
    /// `null`: the drops whose address found no slot in the probe's table.
    pub function: Option<String>,
    pub skbs: u64,
}

/// A reason placed by a family rule rather than by the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlacedByRule {
    pub reason: String,
    pub stage: Stage,
    /// `prefix TCP_`, `subsystem` or `no family` (then the stage is `other`).
    pub rule: String,
}

/// What entered `stage`: its own `segments_in`, else the nearest upstream
/// stage's (a stage no hook sees takes the input of the one before it).
pub fn input_at(rows: &[LedgerRow], stage: Stage) -> Option<u64> {
    let i = rows.iter().position(|r| r.stage == stage)?;
    rows[..=i].iter().rev().find_map(|r| r.segments_in)
}

/// The ledger row of a receive stage (`Stage::RECEIVE` is in variant order).
fn stage_index(stage: Stage) -> usize {
    Stage::RECEIVE
        .iter()
        .position(|s| *s == stage)
        .unwrap_or(Stage::RECEIVE.len() - 1)
}

/// Adds `skbs` / `segments` of `reason` to `row`-like totals.
fn add_reason(reasons: &mut BTreeMap<String, ReasonCount>, reason: &str, skbs: u64, segments: u64) {
    let r = reasons.entry(reason.to_string()).or_default();
    r.skbs += skbs;
    r.segments += segments;
    r.counter = counter_for(reason);
}

/// Builds the ledger for one report.
pub fn build(input: &LedgerInput) -> Ledger {
    let mut rows: Vec<LedgerRow> = Stage::RECEIVE
        .iter()
        .map(|&stage| LedgerRow {
            stage,
            segments_in: None,
            drops: 0,
            drop_skbs: 0,
            reasons: BTreeMap::new(),
            kernel: BTreeMap::new(),
        })
        .collect();
    let nic = stage_index(Stage::Nic);

    // nic: what the device counts before any skb exists (frames: segments).
    let mut ring_drops = 0;
    if let Some(k) = input.nic_kernel {
        let hw = [
            ("rx_missed_errors", k.rx_missed_errors),
            ("rx_fifo_errors", k.rx_fifo_errors),
            ("rx_over_errors", k.rx_over_errors),
        ];
        for (name, n) in hw {
            rows[nic].kernel.insert(name.into(), n);
            if n > 0 {
                rows[nic].reasons.insert(
                    name.to_string(),
                    ReasonCount {
                        segments: n,
                        skbs: n,
                        counter: Some(name),
                        kernel: Some(n),
                    },
                );
            }
            ring_drops += n;
        }
        rows[nic].drops += ring_drops;
        rows[nic].drop_skbs += ring_drops;
        // Software drops the driver/stack also count per device; they show
        // up again as drop reasons at later stages, so they are not added.
        rows[nic].kernel.insert("rx_dropped".into(), k.rx_dropped);
    }
    // What reached the NIC: what its hook saw plus what the ring dropped.
    rows[nic].segments_in = input.nic_segments.map(|n| n + ring_drops);
    // Per-queue ring drops as the driver counts them: shown to check against,
    // not added (drivers differ in whether rx_dropped already has them).
    for (name, n) in &input.nic_queue_drops {
        rows[nic].kernel.insert(format!("ethtool:{name}"), *n);
    }
    rows[stage_index(Stage::Vxlan)].segments_in = input.vxlan_outer;
    rows[stage_index(Stage::Forward)].segments_in = input.vxlan_inner;

    let mut out = Ledger::default();
    let mut vxlan_explained: BTreeMap<String, u64> = BTreeMap::new();
    if let (Some(d), Some(names)) = (&input.drops, input.reasons) {
        let who = input.names.cloned().unwrap_or_default();
        out.drops_out_of_scope = d.out_of_scope;
        for (kind, (&skbs, &segments)) in d.benign_skbs.iter().zip(&d.benign_segments).enumerate() {
            if skbs > 0 {
                let b = &mut out.benign_drops;
                let segments = segments.max(skbs);
                (b.skbs, b.segments) = (b.skbs + skbs, b.segments + segments);
                add_reason(&mut b.reasons, benign_name(kind), skbs, segments);
            }
        }
        for slot in 0..REASON_SLOTS {
            let at = |v: &Vec<u64>| v.get(slot).copied().unwrap_or(0);
            let (skbs, segments, outer) = (at(&d.by_reason), at(&d.segments), at(&d.vxlan_outer));
            if skbs == 0 && outer == 0 {
                continue;
            }
            let (reason, placed) = names.slot(slot);
            let stage = placed.stage;
            if let Some(rule) = placed.by.rule() {
                out.placed_by_rule.push(PlacedByRule {
                    reason: reason.clone(),
                    stage,
                    rule,
                });
            }
            // Segments are never fewer than skbs (max(gso_segs, 1) each).
            let segments = segments.max(skbs);
            let section = match stage {
                Stage::Tx => Some(&mut out.tx_drops),
                Stage::Benign => Some(&mut out.benign_drops),
                _ => None,
            };
            if let Some(section) = section {
                section.skbs += skbs;
                section.segments += segments;
                add_reason(&mut section.reasons, &reason, skbs, segments);
                continue;
            }
            // A VXLAN packet dropped before decapsulation, or by the VXLAN
            // code (whose drops the scope may have counted too: not twice).
            let explains = if stage == Stage::Vxlan {
                outer.max(segments)
            } else {
                outer
            };
            if explains > 0 {
                vxlan_explained.insert(reason.clone(), explains);
            }
            // IP drops of decapsulated packets belong after the VXLAN stage.
            let (decap_skbs, decap_segments) = if stage == Stage::Ip {
                let skbs = at(&d.decap_skbs).min(skbs);
                (skbs, at(&d.decap_segments).clamp(skbs, segments))
            } else {
                (0, 0)
            };
            for (stage, skbs, segments) in [
                (stage, skbs - decap_skbs, segments - decap_segments),
                (Stage::Forward, decap_skbs, decap_segments),
            ] {
                if skbs > 0 {
                    let row = &mut rows[stage_index(stage)];
                    row.drops += segments;
                    row.drop_skbs += skbs;
                    add_reason(&mut row.reasons, &reason, skbs, segments);
                }
            }
        }
        out.drops = rows::drop_rows(d, names, &who);
        out.not_specified_at = rows::freed_at(d, names, &who);
        out.flows = rows::flow_rows(d, names, &who);

        // Each reason's kernel counter, where it was read in every namespace
        // whose drops it has (softnet is node-wide).
        let read: Vec<&str> = input.snmp.iter().map(|(n, _)| n.as_str()).collect();
        let covered = |reason: &str, counter: &str| {
            counter == "softnet_dropped"
                || out
                    .drops
                    .iter()
                    .filter(|r| r.reason == reason)
                    .all(|r| r.netns.as_deref().is_some_and(|n| read.contains(&n)))
        };
        let counted = Counted {
            softnet: &input.softnet,
            snmp: &input.snmp,
            qdisc_drops: &input.qdisc_drops,
        };
        let receive = rows.iter_mut().skip(1).map(|row| &mut row.reasons);
        for reasons in receive.chain([&mut out.tx_drops.reasons]) {
            for (reason, c) in reasons.iter_mut() {
                if let Some(counter) = c.counter {
                    if covered(reason, counter) {
                        c.kernel = counted.value(counter);
                    }
                }
            }
        }
        eventless::add_listen_drops(
            &mut rows[stage_index(Stage::Socket)],
            &mut out.drops,
            &input.snmp,
        );
    }

    checks::add_stage_counters(&mut rows, input);

    if let (Some(outer), Some(inner)) = (input.vxlan_outer, input.vxlan_inner) {
        out.vxlan_loss = Some(VxlanLoss::new(outer, inner, vxlan_explained));
    }
    if input.drops.is_some() && input.reasons.is_some() {
        out.verdict = Some(verdict(&rows));
    }
    out.ledger = rows;
    out
}

mod checks;
mod eventless;
mod rows;
mod verdict;
mod vxlan_loss;

pub use checks::counter_for;
use checks::Counted;
pub use eventless::LISTEN_DROPS;
#[cfg(test)]
use verdict::share_percent;
pub use verdict::verdict;
pub use vxlan_loss::{VxlanCarry, VxlanLoss};

#[cfg(test)]
mod tests;
