//! One sample: every hook's counters and the kernel's own (stats64, ethtool,
//! softnet_stat, /proc/net/snmp), read at one instant.

use std::time::SystemTime;

use super::{
    controllers::Controller,
    names::{refresh_functions, refresh_names},
    Session,
};
use crate::hooks::ReadAt;
use crate::kernel::netns::Netns;
use crate::{error::ProbeError, kernel::rtnl::RtnlSocket};
use probe_model::model::Sample;

/// Reads every hook and kernel counter of `a` now, and what its
/// `controllers` add (paused and attached time).
pub(super) fn sample(
    a: &mut Session,
    controllers: &[Box<dyn Controller>],
) -> Result<Sample, ProbeError> {
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
    let mut sample = Sample {
        wall: Some(SystemTime::now()),
        uptime_s: now.saturating_duration_since(a.started).as_secs_f64(),
        ..Sample::default()
    };
    let at = ReadAt {
        links: &links,
        netns: &a.netns,
    };
    a.hooks.read_into(&at, &mut sample)?;
    for c in controllers {
        c.annotate(a, now, &mut sample);
    }
    let napi_keys: Vec<(u32, u32)> = sample
        .latency
        .iter()
        .flat_map(|l| l.napi.keys().map(|(k, _)| (k.netns, k.ifindex)))
        .collect();
    let drop_keys: Vec<(u32, u32)> = sample
        .drops
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
        sample
            .drops
            .iter()
            .flat_map(|d| d.not_specified_at.keys().copied()),
    );
    // Node-wide and per-netns kernel counters; unreadable ones are left out
    // of the cross-check rather than ending the run.
    let softnet = crate::kernel::procfs::read_softnet().unwrap_or_default();
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
    sample.softnet = softnet;
    sample.snmp = counters.iter().map(|(n, s, _)| (n.clone(), *s)).collect();
    sample.qdisc_drops = counters.into_iter().map(|(n, _, q)| (n, q)).collect();
    sample.names = a.names.clone();
    sample.self_sample = a.self_cost.then(|| self_sample(a));
    Ok(sample)
}

fn self_sample(a: &Session) -> probe_model::counters::selfcost::SelfSample {
    let (cpu_s, rss_kib, peak_rss_kib) = crate::kernel::selfcost::process_usage("self");
    let mut programs = Vec::new();
    if a.bpf_stats.is_some() {
        programs.extend(a.hooks.iter().flat_map(|h| h.program_stats()));
    }
    probe_model::counters::selfcost::SelfSample {
        cpu_s,
        rss_kib,
        peak_rss_kib,
        programs,
    }
}
