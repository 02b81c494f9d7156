//! The per-CPU families: /proc/net/softnet_stat, and with `--latency` the
//! NET_RX softirq and NAPI histograms.

use super::{Family, Labels};
use probe_model::{latency::Histogram, model::Report};

pub(super) fn encode(f: &mut Family<'_, '_>, r: &Report) -> std::fmt::Result {
    let softnet =
        |value: fn(&probe_model::counters::procfs::SoftnetCpu) -> u64| -> Vec<(Labels, u64)> {
            r.softnet
                .iter()
                .map(|c| (vec![("cpu", c.cpu.to_string())], value(c)))
                .collect()
        };
    f.counter(
        "softnet_processed",
        "/proc/net/softnet_stat: packets processed, per CPU",
        &softnet(|c| c.processed),
    )?;
    f.counter(
        "softnet_dropped",
        "/proc/net/softnet_stat: packets dropped because the CPU's backlog was full (netdev_max_backlog)",
        &softnet(|c| c.dropped),
    )?;
    f.counter(
        "softnet_time_squeeze",
        "/proc/net/softnet_stat: NET_RX runs that ended with work left (netdev_budget, netdev_budget_usecs)",
        &softnet(|c| c.time_squeeze),
    )?;
    f.counter(
        "softnet_received_rps",
        "/proc/net/softnet_stat: packets this CPU was sent by RPS/RFS",
        &softnet(|c| c.received_rps),
    )?;
    f.counter(
        "latency_paused_seconds",
        "--latency auto: seconds the softirq and NAPI probes were paused (NET_RX ran more often than --latency-max-runs on a CPU); whole seconds",
        &r.latency_paused_s
            .map(|s| vec![(Vec::new(), s as u64)])
            .unwrap_or_default(),
    )?;
    // --latency: per-CPU rows only (the all-CPU row is their sum: PromQL
    // aggregates).
    let cpus: Vec<_> = r.softirq.iter().filter(|s| s.cpu.is_some()).collect();
    let cpu_label = |c: Option<u32>| vec![("cpu", c.map_or(String::new(), |c| c.to_string()))];
    f.counter(
        "softirq_runs",
        "NET_RX softirq runs per CPU (--latency)",
        &cpus
            .iter()
            .map(|s| (cpu_label(s.cpu), s.runs))
            .collect::<Vec<_>>(),
    )?;
    f.counter(
        "softirq_ksoftirqd_runs",
        "Timed NET_RX softirq runs (softirq_run_seconds_count) that ran in a ksoftirqd thread rather than on irq exit (--latency)",
        &cpus
            .iter()
            .map(|s| (cpu_label(s.cpu), s.ksoftirqd_runs))
            .collect::<Vec<_>>(),
    )?;
    let hist_rows = |pick: fn(&probe_model::latency::SoftirqRow) -> &Histogram| {
        cpus.iter()
            .map(|s| (cpu_label(s.cpu), pick(s), 1e9))
            .collect::<Vec<_>>()
    };
    f.histogram(
        "softirq_wait_seconds",
        "Time from raising NET_RX to its softirq starting, per CPU (--latency; log2 buckets)",
        probe_common::latency::HIST_BUCKETS,
        &hist_rows(|s| &s.wait_ns),
    )?;
    f.histogram(
        "softirq_run_seconds",
        "Run time of each NET_RX softirq, per CPU (--latency; log2 buckets)",
        probe_common::latency::HIST_BUCKETS,
        &hist_rows(|s| &s.run_ns),
    )?;
    let napi_label = |n: &probe_model::latency::NapiRow| {
        vec![
            ("iface", n.iface.clone().unwrap_or_else(|| "backlog".into())),
            ("cpu", n.cpu.to_string()),
        ]
    };
    f.counter(
        "napi_polls",
        "NAPI polls per device and CPU (--latency; iface=backlog is the per-CPU backlog)",
        &r.napi
            .iter()
            .map(|n| (napi_label(n), n.polls))
            .collect::<Vec<_>>(),
    )?;
    f.counter(
        "napi_full_budget_polls",
        "NAPI polls that used their whole budget: the device had more to give (--latency)",
        &r.napi
            .iter()
            .map(|n| (napi_label(n), n.full_budget_polls))
            .collect::<Vec<_>>(),
    )?;
    f.histogram(
        "napi_poll_packets",
        "Packets per NAPI poll, per device and CPU (--latency; log2 buckets)",
        probe_common::latency::WORK_BUCKETS,
        &r.napi
            .iter()
            .map(|n| (napi_label(n), &n.work, 1.0))
            .collect::<Vec<_>>(),
    )?;
    Ok(())
}
