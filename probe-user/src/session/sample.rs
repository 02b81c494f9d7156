//! One sample: every hook's counters and the kernel's own (stats64, ethtool,
//! softnet_stat, /proc/net/snmp), read at one instant.

use std::time::SystemTime;

use super::{
    names::{refresh_functions, refresh_names},
    Session,
};
use crate::kernel::netns::Netns;
use crate::{error::ProbeError, kernel::rtnl::RtnlSocket};
use probe_model::{counters::link::LinkStats, model::Sample};

/// Reads every hook and kernel counter of `a` now.
pub(super) fn sample(a: &mut Session) -> Result<Sample, ProbeError> {
    // The sample's clock readings (uptime, paused and attached time) are
    // taken here, at its start: a stage window started just before the
    // baseline then reads ~0 attached in it, however long the reads below
    // take (tens of milliseconds under emulation).
    let now = std::time::Instant::now();
    // --debug-bpf: what the programs logged since the last sample.
    for log in &mut a.bpf_logs {
        log.flush();
    }
    let links = a
        .rtnl
        .links()
        .map_err(|e| ProbeError::Runtime(format!("cannot read interface statistics: {e}")))?;
    let stats = |ifindex: u32| {
        links
            .iter()
            .find(|l| l.ifindex == ifindex)
            .and_then(|l| l.stats)
    };
    // A recreated device's counters start from zero: add its predecessors'.
    let devs_kernel: Vec<Option<LinkStats>> = a
        .devs
        .iter_mut()
        .map(|h| h.kernel_stats(stats(h.ifindex)))
        .collect();
    let nic = a.nic.as_ref().map(|h| h.read()).transpose()?;
    let devs = a
        .devs
        .iter()
        .map(|h| h.read())
        .collect::<Result<Vec<_>, _>>()?;
    let drops = a.drops.as_ref().map(|h| h.read()).transpose()?;
    let latency = a.latency.as_ref().map(|h| h.read()).transpose()?;
    let napi_keys: Vec<(u32, u32)> = latency
        .iter()
        .flat_map(|l| l.napi.keys().map(|(k, _)| (k.netns, k.ifindex)))
        .collect();
    let drop_keys: Vec<(u32, u32)> = drops
        .iter()
        .flat_map(|d| {
            d.keyed
                .keys()
                .map(|k| (k.netns, k.ifindex))
                .chain(d.flows.keys().map(|k| (k.netns, 0)))
        })
        .collect();
    refresh_names(&mut a.names, drop_keys.into_iter().chain(napi_keys));
    refresh_functions(
        &mut a.names,
        drops
            .iter()
            .flat_map(|d| d.not_specified_at.keys().copied()),
    );
    // Node-wide and per-netns kernel counters; unreadable ones are left out
    // of the cross-check rather than ending the run.
    let softnet = crate::kernel::procfs::read_softnet().unwrap_or_default();
    let nic_queue_drops = match &a.nic {
        Some(h) => a
            .netns
            .run(|| crate::kernel::ethtool::stats(&h.iface))
            .ok()
            .and_then(Result::ok)
            .map(|s| crate::kernel::ethtool::queue_drop_stats(&s))
            .unwrap_or_default(),
        None => Vec::new(),
    };
    // A namespace's protocol counters and its root qdiscs' drops, read
    // together (a namespace whose /proc/net/snmp cannot be read is skipped).
    let read = |n: &Netns| {
        let (snmp, qdiscs) = n
            .run(|| {
                let qdiscs = RtnlSocket::open().and_then(|mut s| s.root_qdisc_drops());
                (crate::kernel::procfs::read_snmp(), qdiscs)
            })
            .ok()?;
        Some((n.label(), snmp.ok()?, qdiscs.unwrap_or_default()))
    };
    let counters: Vec<_> = match &a.snmp_netns {
        Some(scope) => scope.iter().filter_map(read).collect(),
        // Every namespace drops are counted in that has a name, opened for
        // this reading only (pods come and go).
        None => a
            .names
            .netns
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .filter_map(|name| read(&Netns::host_or_named(name).ok()?))
            .collect(),
    };
    Ok(Sample {
        wall: Some(SystemTime::now()),
        uptime_s: now.saturating_duration_since(a.started).as_secs_f64(),
        nic,
        nic_kernel: a.nic.as_ref().and_then(|h| stats(h.ifindex)),
        devs,
        devs_kernel,
        drops,
        nic_queue_drops,
        softnet,
        snmp: counters.iter().map(|(n, s, _)| (n.clone(), *s)).collect(),
        qdisc_drops: counters.into_iter().map(|(n, _, q)| (n, q)).collect(),
        names: a.names.clone(),
        self_sample: a.self_cost.then(|| self_sample(a)),
        latency,
        steering: a.steering.as_ref().map(|h| h.read()).transpose()?,
        stage_latency: a.stage_latency.as_ref().map(|h| h.read()).transpose()?,
        trace_drops: match &a.stage_latency {
            Some(h) => h.read_drops()?,
            None => Vec::new(),
        },
        latency_paused_s: a.governor.as_ref().map(|g| g.paused_s(now)),
        socket_waits: match &a.stage_latency {
            Some(h) => h.read_socket_waits()?,
            None => Vec::new(),
        },
        stage_window: match (&a.stage_window, &a.stage_latency) {
            (Some(w), Some(h)) => Some((w.attached_s(now), h.window_closed())),
            _ => None,
        },
    })
}

fn self_sample(a: &Session) -> probe_model::counters::selfcost::SelfSample {
    let (cpu_s, rss_kib, peak_rss_kib) = crate::kernel::selfcost::process_usage("self");
    let mut programs = Vec::new();
    if a.bpf_stats.is_some() {
        programs.extend(a.hooks().flat_map(|h| h.program_stats()));
    }
    probe_model::counters::selfcost::SelfSample {
        cpu_s,
        rss_kib,
        peak_rss_kib,
        programs,
    }
}
