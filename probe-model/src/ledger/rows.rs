//! The drop rows (per namespace, device and reason) and the top flows.

use probe_common::drops::{Benign, FlowKey, FAMILY_V4, REASON_SLOTS};

use super::{DropRow, FlowRow, Names, TOP_FLOWS};
use crate::{counters::drops::DropCounts, reasons::ReasonNames, stage::Stage};

/// The stage of a drop at the reason's `stage`: that stage, except that
/// `ip`-stage drops of decapsulated packets (skb->dev a VXLAN device) are at
/// `forward`.
pub(super) fn stage_for(stage: Stage, decap: bool) -> Stage {
    match stage {
        Stage::Ip if decap => Stage::Forward,
        stage => stage,
    }
}

/// Drops per (netns, device, reason), in skbs. What the keyed table could
/// not hold is listed without a device, so the rows add up to the exact
/// per-reason totals. Sorted by stage in path order, then by count.
pub(super) fn drop_rows(d: &DropCounts, names: &ReasonNames, who: &Names) -> Vec<DropRow> {
    let mut out = Vec::new();
    let mut attributed = vec![0u64; REASON_SLOTS];
    for (key, n) in &d.keyed {
        let (reason, placed) = names.reason(key.reason);
        attributed[probe_common::drops::reason_slot(key.reason)] += n;
        out.push(DropRow {
            stage: stage_for(placed.stage, key.decap == 1),
            reason,
            iface: who.iface(key.netns, key.ifindex),
            netns: who.netns(key.netns),
            skbs: *n,
        });
    }
    for (slot, n) in d.by_reason.iter().enumerate() {
        let rest = n.saturating_sub(attributed[slot]);
        if rest > 0 {
            let (reason, placed) = names.slot(slot);
            out.push(DropRow {
                stage: placed.stage,
                reason,
                iface: None,
                netns: None,
                skbs: rest,
            });
        }
    }
    sort_rows(&mut out);
    out
}

/// Drop rows by stage in path order (then tx and benign: the variants'
/// order), then by count.
pub(super) fn sort_rows(rows: &mut [DropRow]) {
    let order = |r: &DropRow| (r.stage, std::cmp::Reverse(r.skbs));
    rows.sort_by(|a, b| {
        (order(a), &a.reason, &a.netns, &a.iface).cmp(&(order(b), &b.reason, &b.netns, &b.iface))
    });
}

/// NOT_SPECIFIED drops by the function that freed them, the most first; the
/// ones whose address found no slot under `function: None`. The in-scope
/// NOT_SPECIFIED drops are the reason's own count plus the benign kinds the
/// probe tells apart from the packet (they are NOT_SPECIFIED to the kernel).
pub(super) fn freed_at(d: &DropCounts, names: &ReasonNames, who: &Names) -> Vec<super::FreedAt> {
    let Some(reason) = names.value_of("NOT_SPECIFIED") else {
        return Vec::new();
    };
    let mut by_function: std::collections::BTreeMap<Option<String>, u64> = Default::default();
    for (addr, n) in &d.not_specified_at {
        let named = who
            .functions
            .get(addr)
            .cloned()
            .unwrap_or_else(|| format!("0x{addr:x}"));
        let function = crate::names::function_of(&named).to_string();
        *by_function.entry(Some(function)).or_default() += n;
    }
    let located: u64 = by_function.values().sum();
    let benign: u64 = [Benign::TcpIgnored, Benign::Control]
        .iter()
        .map(|k| d.benign_skbs[*k as usize])
        .sum();
    let total = d
        .by_reason
        .get(probe_common::drops::reason_slot(reason))
        .copied()
        .unwrap_or(0)
        + benign;
    if total > located {
        by_function.insert(None, total - located);
    }
    let mut out: Vec<super::FreedAt> = by_function
        .into_iter()
        .map(|(function, skbs)| super::FreedAt { function, skbs })
        .collect();
    out.sort_by(|a, b| {
        b.skbs
            .cmp(&a.skbs)
            .then_with(|| a.function.cmp(&b.function))
    });
    out
}

/// The flows with the most drops, in skbs.
pub(super) fn flow_rows(d: &DropCounts, names: &ReasonNames, who: &Names) -> Vec<FlowRow> {
    let mut flows: Vec<(&FlowKey, &u64)> = d.flows.iter().collect();
    flows.sort_by_key(|(k, n)| (std::cmp::Reverse(**n), **k));
    flows
        .into_iter()
        .take(TOP_FLOWS)
        .map(|(k, n)| {
            let (reason, placed) = names.reason(k.reason);
            FlowRow {
                src: address(k.family, &k.src),
                dst: address(k.family, &k.dst),
                inner: k.inner == 1,
                netns: who.netns(k.netns),
                stage: stage_for(placed.stage, k.decap == 1),
                reason,
                skbs: *n,
            }
        })
        .collect()
}

fn address(family: u8, bytes: &[u8; 16]) -> String {
    if family == FAMILY_V4 {
        std::net::Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_string()
    } else {
        std::net::Ipv6Addr::from(*bytes).to_string()
    }
}
