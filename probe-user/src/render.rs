//! Human output: one block of aligned tables per report.

use std::fmt::Write;

use crate::model::{HookKind, Report, ReportKind};

fn si(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}k", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

fn bytes(n: u64) -> String {
    match n {
        0..1024 => format!("{n} B"),
        1024..1_048_576 => format!("{:.1} KiB", n as f64 / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", n as f64 / 1_048_576.0),
        _ => format!("{:.1} GiB", n as f64 / 1_073_741_824.0),
    }
}

fn opt(n: Option<u64>) -> String {
    n.map_or_else(|| "-".into(), |n| n.to_string())
}

/// Renders a report as text a person reads at a glance.
pub fn human(r: &Report) -> String {
    let mut o = String::new();
    let title = match r.kind {
        ReportKind::Interval => format!("interval {:.2}s", r.elapsed_s),
        ReportKind::Summary => format!("SUMMARY since attach, {:.1}s", r.elapsed_s),
    };
    let _ = writeln!(o, "== {}  {}  netns {} ==", r.ts, title, r.netns);
    let _ = writeln!(
        o,
        "{:<6} {:<12} {:<12} {:>10} {:>10} {:>5} {:>9} {:>11} {:>7} {:>10}",
        "STAGE", "IFACE", "HOOK", "SKBS", "SEGMENTS", "GRO", "SEG/S", "BYTES", "DROPS", "KERNEL_RX"
    );
    for s in &r.stages {
        let rate = if r.elapsed_s > 0.0 {
            (s.segments as f64 / r.elapsed_s) as u64
        } else {
            0
        };
        let _ = writeln!(
            o,
            "{:<6} {:<12} {:<12} {:>10} {:>10} {:>5} {:>9} {:>11} {:>7} {:>10}",
            s.stage,
            s.iface,
            s.hook,
            s.skbs,
            s.segments,
            s.gro_ratio.map_or("-".into(), |g| format!("{g:.1}")),
            si(rate),
            bytes(s.bytes),
            opt(s.drops),
            opt(s.kernel.map(|k| k.rx_packets)),
        );
    }
    for s in &r.stages {
        let classes: Vec<_> = s
            .classes
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        if !classes.is_empty() {
            let _ = writeln!(
                o,
                "  {}/{} segments by class: {}",
                s.stage,
                s.iface,
                classes.join(", ")
            );
        }
    }
    if !r.vxlan.is_empty() {
        let _ = writeln!(
            o,
            "{:<6} {:<12} {:<6} {:<8} {:<12} {:>12} {:>12}  (segments)",
            "VXLAN", "NIC", "PORT", "VNI", "DEVICE", "OUTER", "INNER"
        );
        for v in &r.vxlan {
            let _ = writeln!(
                o,
                "{:<6} {:<12} {:<6} {:<8} {:<12} {:>12} {:>12}",
                "",
                v.nic.as_deref().unwrap_or("-"),
                v.port.map_or_else(|| "other".into(), |n| n.to_string()),
                v.vni.map_or_else(|| "other".into(), |n| n.to_string()),
                v.iface.as_deref().unwrap_or("-"),
                opt(v.outer_segments),
                opt(v.inner_segments),
            );
        }
    }
    let mut stages: Vec<(HookKind, &str)> =
        r.cpus.iter().map(|c| (c.stage, c.iface.as_str())).collect();
    stages.dedup();
    for (stage, iface) in stages {
        let cpus: Vec<_> = r
            .cpus
            .iter()
            .filter(|c| c.stage == stage && c.iface == iface && c.segments > 0)
            .map(|c| format!("cpu{} {}", c.cpu, c.segments))
            .collect();
        if !cpus.is_empty() {
            let _ = writeln!(o, "CPUS   {stage}/{iface} (segments): {}", cpus.join("  "));
        }
    }
    let queues: Vec<_> = r
        .queues
        .iter()
        .filter(|q| q.segments > 0)
        .map(|q| format!("{} rx-{} {}", q.iface, q.queue, q.segments))
        .collect();
    if !queues.is_empty() {
        let _ = writeln!(o, "QUEUES (segments) {}", queues.join("  "));
    }
    for t in r.tx.iter().filter(|t| t.skbs > 0 || t.dropped_skbs > 0) {
        let _ = writeln!(
            o,
            "TX     {} {} skbs sent, {}, {} skbs dropped (the device's counters)",
            t.iface,
            t.skbs,
            bytes(t.bytes),
            t.dropped_skbs
        );
    }
    ledger(&mut o, r);
    softirq(&mut o, r);
    if let Some(c) = &r.self_cost {
        let programs: Vec<String> = c
            .programs
            .iter()
            .map(|p| {
                let per_run = p.ns_per_run.map_or("-".into(), |n| format!("{n:.0}"));
                format!(
                    "{}@{} {} runs {} ns/run",
                    p.program, p.iface, p.runs, per_run
                )
            })
            .collect();
        let _ = writeln!(
            o,
            "SELF   cpu {:.2}%  rss {} (peak {})  {}",
            c.cpu_percent,
            bytes(c.rss_kib * 1024),
            bytes(c.peak_rss_kib * 1024),
            programs.join("  ")
        );
    }
    if let Some(st) = &r.steering {
        let pairs = |v: &[crate::steering::CpuPair]| {
            v.iter()
                .map(|p| format!("cpu{}->cpu{} {}", p.from, p.to, p.count))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let _ = writeln!(
            o,
            "STEERING packets poll->stack: {}\nSTEERING reads queued->reader: {}; RFS hits {}",
            pairs(&st.poll_to_stack),
            pairs(&st.stack_to_reader),
            st.rfs_hit_percent
                .map_or("-".into(), |p| format!("{p:.1}%"))
        );
    }
    for a in &r.advice {
        let _ = writeln!(o, "ADVICE {}: {}", a.rule, a.text);
    }
    for u in &r.unavailable {
        let _ = writeln!(o, "UNAVAILABLE {} on {}: {}", u.stage, u.iface, u.reason);
    }
    for g in &r.gaps {
        let back = match (g.reattached_s, g.new_ifindex) {
            (Some(t), Some(index)) => format!(
                "re-attached at {t:.2}s to ifindex {index} ({:.2}s later); what it received in between is not counted",
                t - g.lost_s
            ),
            _ => "still missing: not counted".into(),
        };
        let _ = writeln!(
            o,
            "GAP {} on {}: gone at {:.2}s (ifindex {}); {back}",
            g.stage, g.iface, g.lost_s, g.old_ifindex
        );
    }
    o
}

/// Nanoseconds as a person reads them.
fn ns(n: Option<u64>) -> String {
    match n {
        None => "-".into(),
        Some(n @ 0..1_000) => format!("{n}ns"),
        Some(n @ 1_000..1_000_000) => format!("{:.1}us", n as f64 / 1e3),
        Some(n @ 1_000_000..1_000_000_000) => format!("{:.1}ms", n as f64 / 1e6),
        Some(n) => format!("{:.2}s", n as f64 / 1e9),
    }
}

fn percentiles(h: &crate::latency::Histogram) -> String {
    format!(
        "p50 {} p90 {} p99 {} max {}",
        ns(h.p50),
        ns(h.p90),
        ns(h.p99),
        ns(h.max)
    )
}

/// A log2 histogram the way bcc's and bpftrace's tools print them.
pub fn histogram(o: &mut String, title: &str, h: &crate::latency::Histogram) {
    let _ = writeln!(o, "  {title}");
    let _ = writeln!(o, "  {:>24} : {:<8} distribution", "range", "count");
    let top = h.buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1);

    for b in &h.buckets {
        let from = if b.le == 0 { 0 } else { b.le / 2 + 1 };

        let bar = "*".repeat(((b.count * 40) / top) as usize);
        let _ = writeln!(
            o,
            "  {:>11} -> {:<10} : {:<8} |{:<40}|",
            from, b.le, b.count, bar
        );
    }
}

/// NET_RX softirq timing and NAPI polls; histograms in the summary.
fn softirq(o: &mut String, r: &Report) {
    let Some(all) = r.softirq.first() else {
        return;
    };
    let share = all
        .ksoftirqd_time_percent
        .map_or("-".into(), |p| format!("{p:.1}%"));
    let _ = writeln!(
        o,
        "SOFTIRQ NET_RX: {} runs ({} in ksoftirqd, {share} of run time); wait {}; run {}",
        all.runs,
        all.ksoftirqd_runs,
        percentiles(&all.wait_ns),
        percentiles(&all.run_ns)
    );
    for n in &r.napi {
        let _ = writeln!(
            o,
            "NAPI   {}{} cpu{}: {} polls, {} packets, {} used the whole budget; packets/poll p50 {} p99 {}",
            n.iface.as_deref().unwrap_or("(backlog)"),
            n.netns.as_deref().map_or(String::new(), |ns| format!(" [{ns}]")),
            n.cpu,
            n.polls,
            n.packets,
            n.full_budget_polls,
            opt(n.work.p50),
            opt(n.work.p99)
        );
    }
    if r.kind == ReportKind::Summary && all.runs > 0 {
        histogram(
            o,
            "NET_RX wait, raise -> entry (ns), all CPUs",
            &all.wait_ns,
        );
        histogram(o, "NET_RX run, entry -> exit (ns), all CPUs", &all.run_ns);
    }
}

/// The drop ledger as a funnel: stages in path order, what entered, what was
/// lost and why, then where (netns/device) and which flows.
fn ledger(o: &mut String, r: &Report) {
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
        |reasons: &std::collections::BTreeMap<String, crate::ledger::ReasonCount>| {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(si(999), "999");
        assert_eq!(si(12_345), "12.3k");
        assert_eq!(bytes(2048), "2.0 KiB");
        assert_eq!(bytes(3 * 1_048_576), "3.0 MiB");
    }
}
