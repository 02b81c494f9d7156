//! The ledger: what entered each stage and what it lost, the drops by stage
//! and reason, and the kernel counters next to them.

use super::{label, Family, Labels};
use probe_model::model::Report;

pub(super) fn encode(f: &mut Family<'_, '_>, r: &Report) -> std::fmt::Result {
    let ledger_in: Vec<(Labels, u64)> = r
        .ledger
        .ledger
        .iter()
        .filter_map(|row| Some((label(&[("stage", row.stage.as_str())]), row.segments_in?)))
        .collect();
    f.counter(
        "ledger_segments_in",
        "Segments that entered this stage of the receive path, where a hook or a kernel counter shows it",
        &ledger_in,
    )?;
    let ledger_drops: Vec<(Labels, u64)> = r
        .ledger
        .ledger
        .iter()
        .map(|row| (label(&[("stage", row.stage.as_str())]), row.drops))
        .collect();
    f.counter(
        "ledger_drop_segments",
        "Segments this stage lost: its kernel drop reasons, plus the NIC's hardware drops at `nic`",
        &ledger_drops,
    )?;
    // Receive stages, then the transmit side and benign drops as stages
    // "tx" and "benign".
    let reasons = || {
        r.ledger
            .ledger
            .iter()
            .map(|row| (row.stage.as_str(), &row.reasons))
            .chain([
                ("tx", &r.ledger.tx_drops.reasons),
                ("benign", &r.ledger.benign_drops.reasons),
            ])
            .flat_map(|(stage, reasons)| {
                reasons
                    .iter()
                    .map(move |(reason, c)| (label(&[("stage", stage), ("reason", reason)]), c))
            })
    };
    f.counter(
        "drop_segments",
        "Segments dropped (skb:kfree_skb, max(gso_segs, 1) per skb) by stage and the kernel's drop reason",
        &reasons().map(|(l, c)| (l, c.segments)).collect::<Vec<_>>(),
    )?;
    f.counter(
        "drop_skbs",
        "skbs dropped (skb:kfree_skb) by stage and the kernel's drop reason",
        &reasons().map(|(l, c)| (l, c.skbs)).collect::<Vec<_>>(),
    )?;
    let kernel: Vec<(Labels, u64)> = r
        .ledger
        .ledger
        .iter()
        .flat_map(|row| {
            row.kernel.iter().map(|(name, n)| {
                (
                    label(&[("stage", row.stage.as_str()), ("counter", name)]),
                    *n,
                )
            })
        })
        .collect();
    f.counter(
        "kernel_counter",
        "The kernel's own counters next to each stage (stats64, ethtool -S, softnet_stat, /proc/net/snmp), to check the drops against",
        &kernel,
    )?;
    f.counter(
        "drops_out_of_scope",
        "Drops in namespaces outside --drop-netns (not in the ledger)",
        &[(Vec::new(), r.ledger.drops_out_of_scope)],
    )?;
    Ok(())
}
