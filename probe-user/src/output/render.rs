//! Human output: one block of aligned tables per report.

use std::fmt::Write;

use probe_model::model::{HookKind, Report, ReportKind};

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
        let pairs = |v: &[probe_model::steering::CpuPair]| {
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
    if let Some(p) = &r.stage_latency {
        stage_latency(&mut o, p);
    }
    for a in &r.advice {
        let _ = writeln!(o, "ADVICE {}: {}", a.rule, a.text);
    }
    for u in &r.unavailable {
        let _ = writeln!(o, "UNAVAILABLE {} on {}: {}", u.stage, u.iface, u.reason);
    }
    for reset in &r.resets {
        let _ = writeln!(
            o,
            "RESET  {} of {} went backwards in this period (reset, or re-created): counted from its new value",
            reset.counters, reset.of
        );
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

fn percentiles(h: &probe_model::latency::Histogram) -> String {
    format!(
        "p50 {} p90 {} p99 {} max {}",
        ns(h.p50),
        ns(h.p90),
        ns(h.p99),
        ns(h.max)
    )
}

/// A log2 histogram the way bcc's and bpftrace's tools print them.
pub fn histogram(o: &mut String, title: &str, h: &probe_model::latency::Histogram) {
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
    if let Some(paused) = r.latency_paused_s.filter(|s| *s > 0.0) {
        let _ = writeln!(
            o,
            "SOFTIRQ probes paused {paused:.1} s of {:.1} s (--latency auto: NET_RX ran more often \
             than --latency-max-runs on a CPU); the NET_RX and NAPI rows cover the rest",
            r.elapsed_s
        );
    }
    let Some(all) = r.softirq.first() else {
        return;
    };
    let share = all
        .ksoftirqd_time_percent
        .map_or("-".into(), |p| format!("{p:.1}%"));
    let _ = writeln!(
        o,
        "SOFTIRQ NET_RX: {} runs, {} timed ({} of them in ksoftirqd, {share} of run time); wait {}; run {}",
        all.runs,
        all.run_ns.count,
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

mod ledger;

use ledger::ledger;

/// `--stage-latency`: the followed packets, then each transition's times.
fn stage_latency(o: &mut String, p: &probe_model::stage_latency::StageLatency) {
    let _ = writeln!(
        o,
        "PATH   1 packet in {} followed (skbs){}: {} at nic, {} decap, {} pod, {} queued, {} read{}{}",
        p.sample_every,
        match (&p.window, p.attached_s) {
            (Some(w), Some(s)) => format!(" while attached ({s:.1} s; --stage-window {w})"),
            _ => String::new(),
        },
        p.sampled,
        p.decap,
        p.pod,
        p.queued,
        p.read,
        if p.socket_busy > 0 {
            format!(" ({} queued behind another followed packet)", p.socket_busy)
        } else {
            String::new()
        },
        if p.window_closed > 0 {
            format!(" ({} still queued when the window closed)", p.window_closed)
        } else {
            String::new()
        }
    );
    let times: Vec<String> = p
        .transitions
        .iter()
        .filter(|t| t.ns.count > 0)
        .map(|t| {
            format!(
                "{}->{} {}",
                t.from,
                t.to,
                probe_model::stage_latency::short(&t.ns)
            )
        })
        .collect();
    if !times.is_empty() {
        let _ = writeln!(o, "PATH   {}", times.join("  "));
    }
    for sk in &p.sockets {
        let _ = writeln!(
            o,
            "PATH   socket {}/{} in {}: queued->read {}  nic->read {}",
            sk.protocol,
            sk.port,
            sk.netns.as_deref().unwrap_or("?"),
            probe_model::stage_latency::short(&sk.queued_to_read),
            probe_model::stage_latency::short(&sk.nic_to_read),
        );
    }
}

#[cfg(test)]
mod tests;
