//! The ledger block of the human output: stages in path order with their
//! reasons and kernel counters, the TX and BENIGN sections, the VXLAN
//! balance, the verdict, the drops by namespace and device, the top flows.

use std::fmt::Write;

use super::opt;
use probe_model::model::Report;

/// The drop ledger as a funnel: stages in path order, what entered, what was
/// lost and why, then where (netns/device) and which flows.
pub(super) fn ledger(o: &mut String, r: &Report) {
    let l = &r.ledger;
    if l.ledger.is_empty() {
        return;
    }
    let scope = if r.drop_scope.is_empty() {
        "every netns".to_string()
    } else {
        r.drop_scope.join(", ")
    };
    let _ = writeln!(
        o,
        "LEDGER in segments (drops in {scope})\n  {:<8} {:>10} {:>8} {:>7}  REASONS (segments/skbs, kernel counter) / STAGE COUNTERS",
        "STAGE", "IN", "DROPS", "%IN"
    );
    let reason_notes =
        |reasons: &std::collections::BTreeMap<String, probe_model::ledger::ReasonCount>| {
            reasons
                .iter()
                .map(|(reason, c)| {
                    let check = match (c.counter, c.kernel) {
                        (Some(name), Some(n)) => format!(", {name}={n}"),
                        (Some(name), None) => format!(", {name} not read"),
                        (None, _) => ", no counter".into(),
                    };
                    format!("{reason} {}/{}{check}", c.segments, c.skbs)
                })
                .collect::<Vec<String>>()
        };
    for row in &l.ledger {
        let pct = match row.segments_in {
            Some(n) if n > 0 => format!("{:.1}", row.drops as f64 * 100.0 / n as f64),
            _ => "-".into(),
        };
        let mut notes = reason_notes(&row.reasons);
        let kernel: Vec<String> = row
            .kernel
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        if !kernel.is_empty() {
            notes.push(format!("[kernel: {}]", kernel.join(" ")));
        }
        let _ = writeln!(
            o,
            "  {:<8} {:>10} {:>8} {:>7}  {}",
            row.stage,
            opt(row.segments_in),
            row.drops,
            pct,
            notes.join("; ")
        );
    }
    for (section, what) in [
        (&l.tx_drops, "TX (transmit side, not in the receive ledger)"),
        (
            &l.benign_drops,
            "BENIGN (no data lost: copies TCP already had, queues freed by close())",
        ),
    ] {
        if section.skbs > 0 {
            let _ = writeln!(
                o,
                "  {what}: {} segments / {} skbs: {}",
                section.segments,
                section.skbs,
                reason_notes(&section.reasons).join("; ")
            );
        }
    }
    if let Some(v) = &l.vxlan_loss {
        let by: Vec<String> = v
            .explained_by
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let by = if by.is_empty() {
            String::new()
        } else {
            format!(": {}", by.join(", "))
        };
        let _ = writeln!(
            o,
            "  vxlan: {} outer - {} inner segments = {} lost; {} explained by drops of outer packets{by}; {} unexplained",
            v.outer_segments, v.inner_segments, v.lost, v.explained, v.unexplained
        );
    }
    let _ = writeln!(
        o,
        "  verdict: {}",
        l.verdict
            .as_ref()
            .map_or("unknown (no drop probe)", |v| v.text.as_str())
    );
    if !l.placed_by_rule.is_empty() {
        let placed: Vec<String> = l
            .placed_by_rule
            .iter()
            .map(|p| format!("{} -> {} ({})", p.reason, p.stage, p.rule))
            .collect();
        let _ = writeln!(
            o,
            "  placed by rule, not by table (reasons this kernel has and the table lacks): {}",
            placed.join(", ")
        );
    }
    if !l.not_specified_at.is_empty() {
        let at: Vec<String> = l
            .not_specified_at
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    f.function.as_deref().unwrap_or("(not kept)"),
                    f.skbs
                )
            })
            .collect();
        let _ = writeln!(o, "  NOT_SPECIFIED freed in (skbs): {}", at.join(", "));
    }
    for d in l.drops.iter().take(10) {
        let _ = writeln!(
            o,
            "  DROP  {:<8} {:<24} netns {:<14} dev {:<12} {} skbs",
            d.stage,
            d.reason,
            d.netns.as_deref().unwrap_or("-"),
            d.iface.as_deref().unwrap_or("-"),
            d.skbs
        );
    }
    for f in l.flows.iter().take(5) {
        let _ = writeln!(
            o,
            "  FLOW  {} -> {}{}  netns {}  {} {}  {} skbs",
            f.src,
            f.dst,
            if f.inner { " (inner)" } else { "" },
            f.netns.as_deref().unwrap_or("-"),
            f.stage,
            f.reason,
            f.skbs
        );
    }
    if l.drops_out_of_scope > 0 {
        let _ = writeln!(
            o,
            "  ({} skbs dropped outside the scope, not counted)",
            l.drops_out_of_scope
        );
    }
}
