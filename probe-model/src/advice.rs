//! Advice: rules that fire only on evidence in a report, and cite it (the
//! counts, their rate and share of the traffic, and the current setting).
//! The traffic rules need a sustained rate over the report's period and a
//! minimum count (consts below); they are silent on thin evidence.

use crate::{
    model::{Advice, Report},
    settings::Snapshot,
    stage::Stage,
};

fn setting<'a>(s: &'a Snapshot, name: &str) -> Option<&'a str> {
    s.sysctls
        .iter()
        .find(|x| x.name == name)
        .and_then(|x| x.value.as_deref())
        .map(|v| v.trim_end_matches(" (node-wide)"))
}

fn device_setting<'a>(s: &'a Snapshot, iface: &str, name: &str) -> Option<&'a str> {
    s.devices
        .iter()
        .find(|d| d.iface == iface)?
        .settings
        .iter()
        .find(|x| x.name == name)?
        .value
        .as_deref()
}

/// Segments (wire packets) `stage` dropped for `reason`: the ledger's unit.
fn reason_count(r: &Report, stage: Stage, reason: &str) -> u64 {
    r.ledger
        .ledger
        .iter()
        .find(|row| row.stage == stage)
        .and_then(|row| row.reasons.get(reason))
        .map_or(0, |c| c.segments)
}

/// How many CPUs a cpu list (`0-2,5`, as in smp_affinity_list) names.
fn cpu_count(list: &str) -> Option<usize> {
    list.split(',').try_fold(0, |n, part| {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
        Some(n + b.checked_sub(a)? + 1)
    })
}

/// "0-1,3" style list of CPU numbers.
fn cpu_list(cpus: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let start = cpus[i];
        let mut end = start;
        while i + 1 < cpus.len() && cpus[i + 1] == end + 1 {
            i += 1;
            end = cpus[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// The fewest events (drops, squeezes) a rate rule fires on: below this a
/// count is one burst or one unlucky moment, whatever rate it works out to.
const MIN_EVENTS: u64 = 10;
/// Drops per second a drop rule needs: one a second, for the whole period,
/// is steady loss worth a setting change; fewer is background noise.
const MIN_DROPS_PER_S: f64 = 1.0;
/// Share of its input a stage must lose, where that input is known: 0.1% is
/// about where loss starts to cost TCP throughput (it scales with 1/sqrt of
/// the loss rate) and where UDP applications notice; below it, a node with
/// much traffic loses a rounding error and a tuning change is not called for.
const MIN_DROP_SHARE: f64 = 0.001;
/// The shortest period a rate is taken over (`watch --interval` allows no
/// less): shorter, "per second" is an extrapolation, and 0 s divides by zero.
const MIN_RATE_PERIOD_S: f64 = 0.1;
/// Squeezes per second one CPU needs: each one is a NET_RX run cut short with
/// work left, and one a second means the CPU is regularly out of budget.
const MIN_SQUEEZES_PER_S: f64 = 1.0;
/// Squeezes come in bursts (one burst of packets can cut several runs in a
/// row short), so their rate has to hold over at least this long.
const MIN_SQUEEZE_PERIOD_S: f64 = 2.0;
/// Packets per second a squeezing CPU must process for its squeezes to be
/// receive load: a squeeze a second takes netdev_budget (300 by default)
/// packets a second, or packets slow enough to fill netdev_budget_usecs.
/// Under 100 a second neither is plausible: the runs were cut short by
/// something else, and a larger budget would not help.
const MIN_SQUEEZED_PPS: f64 = 100.0;

/// `n` per second over `elapsed_s`; none for a period too short (or not a
/// number) to give a rate.
fn per_s(n: u64, elapsed_s: f64) -> Option<f64> {
    (elapsed_s >= MIN_RATE_PERIOD_S).then(|| n as f64 / elapsed_s)
}

/// A rate or a percentage for the text: whole above 100, else one decimal.
fn num(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// What entered `stage`, as the verdict takes it: its own `segments_in`, else
/// the nearest upstream stage's. None when that input cannot hold the drops
/// (they were counted on another node of the scope).
fn stage_input(r: &Report, stage: Stage, drops: u64) -> Option<u64> {
    crate::ledger::input_at(&r.ledger.ledger, stage).filter(|n| *n > 0 && *n >= drops)
}

/// "1234 packets (41.1/s, 2.1% of 58000)" when `drops` over the period meet
/// every threshold (the share only when `input` is known); None otherwise.
fn drop_evidence(r: &Report, drops: u64, input: Option<u64>) -> Option<String> {
    let rate = per_s(drops, r.elapsed_s)?;
    if drops < MIN_EVENTS || rate < MIN_DROPS_PER_S {
        return None;
    }
    let share = match input {
        Some(n) if (drops as f64 / n as f64) < MIN_DROP_SHARE => return None,
        Some(n) => format!(", {}% of {n}", num(drops as f64 * 100.0 / n as f64)),
        None => String::new(),
    };
    Some(format!("{drops} packets ({}/s{share})", num(rate)))
}

/// Every rule that has evidence in `r` (with the settings in `s`).
pub fn advise(r: &Report, s: &Snapshot) -> Vec<Advice> {
    let mut out = Vec::new();
    let backlog = reason_count(r, Stage::Backlog, "CPU_BACKLOG");
    // The backlog's input: upstream of it, else what the CPUs processed plus
    // what they dropped (a dropped packet is never processed). `processed`
    // counts skbs after GRO, at most the segments: that fallback share errs
    // high, but the rate and count must still hold.
    let input = stage_input(r, Stage::Backlog, backlog).or_else(|| {
        (!r.softnet.is_empty())
            .then(|| r.softnet.iter().map(|c| c.processed).sum::<u64>() + backlog)
    });
    if let Some(evidence) = drop_evidence(r, backlog, input) {
        out.push(Advice {
            rule: "backlog",
            text: format!(
                "{evidence} dropped at the per-CPU backlog (CPU_BACKLOG) with net.core.netdev_max_backlog={}: raise it, or spread the load with RPS",
                setting(s, "net.core.netdev_max_backlog").unwrap_or("?")
            ),
        });
    }
    // time_squeeze is node-wide: only CPUs that squeezed often while doing
    // real receive work count, and only over a period long enough.
    let mut squeezed: Vec<(u32, u64, f64)> = r
        .softnet
        .iter()
        .filter_map(|c| {
            let rate = per_s(c.time_squeeze, r.elapsed_s)?;
            let pps = per_s(c.processed, r.elapsed_s)?;
            (rate >= MIN_SQUEEZES_PER_S && pps >= MIN_SQUEEZED_PPS).then_some((
                c.cpu,
                c.time_squeeze,
                rate,
            ))
        })
        .collect();
    squeezed.sort_unstable_by_key(|c| c.0);
    let total: u64 = squeezed.iter().map(|c| c.1).sum();
    if r.elapsed_s >= MIN_SQUEEZE_PERIOD_S && total >= MIN_EVENTS {
        let cpus: Vec<u32> = squeezed.iter().map(|c| c.0).collect();
        let rates: Vec<String> = squeezed
            .iter()
            .map(|(cpu, _, rate)| format!("{cpu}: {}/s", num(*rate)))
            .collect();
        out.push(Advice {
            rule: "budget",
            text: format!(
                "NET_RX ran out of budget {total} times in {} s (time_squeeze) on CPUs {} ({}) with net.core.netdev_budget={} and netdev_budget_usecs={}: raise them, or spread the receive work over more CPUs",
                num(r.elapsed_s),
                cpu_list(&cpus),
                rates.join(", "),
                setting(s, "net.core.netdev_budget").unwrap_or("?"),
                setting(s, "net.core.netdev_budget_usecs").unwrap_or("?")
            ),
        });
    }
    let rcvbuf = reason_count(r, Stage::Socket, "SOCKET_RCVBUFF");
    if let Some(evidence) = drop_evidence(r, rcvbuf, stage_input(r, Stage::Socket, rcvbuf)) {
        let flow = r
            .ledger
            .flows
            .iter()
            .find(|f| f.reason == "SOCKET_RCVBUFF")
            .map_or(String::new(), |f| {
                format!(" (most for {} -> {}: {} skbs)", f.src, f.dst, f.skbs)
            });
        out.push(Advice {
            rule: "rcvbuf",
            text: format!(
                "{evidence} dropped at full socket buffers (SOCKET_RCVBUFF){flow} with net.core.rmem_default={} and rmem_max={}: raise the application's SO_RCVBUF (up to rmem_max), or rmem_default",
                setting(s, "net.core.rmem_default").unwrap_or("?"),
                setting(s, "net.core.rmem_max").unwrap_or("?")
            ),
        });
    }
    // A listener's refusals: ListenDrops without an event, and the
    // handshake ACKs freed as TCP_LISTEN_OVERFLOW. No share: SYNs are a
    // sliver of any stage's input, and each one refused is a failed connect.
    let listen_reasons = [crate::ledger::LISTEN_DROPS, "TCP_LISTEN_OVERFLOW"];
    let listen: u64 = listen_reasons
        .iter()
        .map(|reason| reason_count(r, Stage::Socket, reason))
        .sum();
    if let Some(evidence) = drop_evidence(r, listen, None) {
        let mut netns: Vec<&str> = r
            .ledger
            .drops
            .iter()
            .filter(|d| listen_reasons.contains(&d.reason.as_str()))
            .filter_map(|d| d.netns.as_deref())
            .collect();
        netns.sort_unstable();
        netns.dedup();
        out.push(Advice {
            rule: "listen",
            text: format!(
                "{evidence} refused by listening TCP sockets (ListenDrops, in {}): the application accepts too slowly or listens with too small a backlog; listen()'s backlog is capped by net.core.somaxconn, half-open connections by net.ipv4.tcp_max_syn_backlog (in {}: {} and {}; each pod's namespace has its own)",
                if netns.is_empty() { "?".to_string() } else { netns.join(", ") },
                s.netns,
                setting(s, "net.core.somaxconn").unwrap_or("?"),
                setting(s, "net.ipv4.tcp_max_syn_backlog").unwrap_or("?")
            ),
        });
    }
    // Connection tracking refused packets it could not track: a full table
    // with nothing to evict (all entries in use), named with its size.
    let conntrack: u64 = r.snmp.iter().map(|s| s.counters.conntrack_drop).sum();
    if let Some(evidence) = drop_evidence(r, conntrack, None) {
        out.push(Advice {
            rule: "conntrack",
            text: format!(
                "{evidence} dropped by connection tracking (NETFILTER_DROP, conntrack_drop: the table full, nothing to evict) with net.netfilter.nf_conntrack_max={} and nf_conntrack_count={} (in {}): raise nf_conntrack_max, or shorten the timeouts of idle entries",
                setting(s, "net.netfilter.nf_conntrack_max").unwrap_or("?"),
                setting(s, "net.netfilter.nf_conntrack_count").unwrap_or("?"),
                s.netns
            ),
        });
    }
    // IRQ affinity is a configuration fact, not traffic evidence: worth
    // raising only when packets actually arrived over the period (seen by a
    // hook, or counted into a ledger stage's input).
    let received = r.stages.iter().any(|st| st.segments > 0)
        || r.ledger
            .ledger
            .iter()
            .any(|row| row.segments_in.is_some_and(|n| n > 0));
    for d in s.devices.iter().filter(|_| received) {
        let affinities: Vec<&str> = d
            .settings
            .iter()
            .filter(|x| x.name.starts_with("irq ") && x.name.ends_with("smp_affinity_list"))
            .filter_map(|x| x.value.as_deref())
            .collect();
        // Spreading helps only a multi-queue NIC whose queue IRQs all land
        // on fewer CPUs than it has queues (and the node has CPUs): a
        // single-queue NIC (virtio_net's config, input.0 and output.0
        // vectors), or a list that already names every CPU, has nothing to spread.
        let rx_queues = d
            .settings
            .iter()
            .filter(|x| x.name.starts_with("rx-") && x.name.ends_with("/rps_cpus"))
            .count();
        let online = if r.softnet.is_empty() {
            usize::MAX
        } else {
            r.softnet.len()
        };
        let crowded = |list: &str| cpu_count(list).is_some_and(|n| n < rx_queues.min(online));
        if affinities.len() >= 2
            && rx_queues >= 2
            && affinities.iter().all(|a| *a == affinities[0])
            && crowded(affinities[0])
        {
            out.push(Advice {
                rule: "irq_affinity",
                text: format!(
                    "all {} IRQs of {} go to CPU(s) {}: spread them (smp_affinity_list) so the queues' work lands on different CPUs",
                    affinities.len(),
                    d.iface,
                    affinities[0]
                ),
            });
        }
    }
    if let Some(nic) = s.devices.first() {
        let nic_mtu = device_setting(s, &nic.iface, "mtu").and_then(|m| m.parse::<u32>().ok());
        for d in s.devices.iter().skip(1) {
            let mtu = device_setting(s, &d.iface, "mtu").and_then(|m| m.parse::<u32>().ok());
            // VXLAN over IPv4 adds 50 bytes (outer Ethernet 14 excluded: 20 IP + 8 UDP + 8 VXLAN + 14 inner Ethernet).
            if let (Some(nic_mtu), Some(mtu)) = (nic_mtu, mtu) {
                if mtu + 50 > nic_mtu {
                    out.push(Advice {
                        rule: "mtu",
                        text: format!(
                            "{} has MTU {mtu} but {} has {nic_mtu}: full-size pod packets do not fit once VXLAN adds 50 bytes; set {} to at most {}",
                            d.iface,
                            nic.iface,
                            d.iface,
                            nic_mtu.saturating_sub(50)
                        ),
                    });
                }
            }
        }
    }
    // Past the tunnel, every hop must fit in what it carries: a bridge or a
    // pod with a larger MTU sends packets the tunnel fragments or refuses
    // (the overlay's MTU; the NIC's on a node without a tunnel).
    let overlay = s
        .mtu_chain
        .iter()
        .find(|h| h.role == "vxlan")
        .or_else(|| s.mtu_chain.iter().find(|h| h.role == "nic"));
    if let Some((carrier, Some(limit))) = overlay.map(|h| (h, h.mtu)) {
        for h in s
            .mtu_chain
            .iter()
            .filter(|h| h.role == "bridge" || h.role == "pod")
        {
            if let Some(mtu) = h.mtu.filter(|m| *m > limit) {
                let at = match &h.netns {
                    Some(ns) => format!("pod {ns} ({})", h.iface),
                    None => format!("{} {}", h.role, h.iface),
                };
                out.push(Advice {
                    rule: "mtu",
                    text: format!(
                        "{at} has MTU {mtu} but {} carries {limit}: its full-size packets do not fit; set it to at most {limit}",
                        carrier.iface
                    ),
                });
            }
        }
    }
    // The NIC's link, and its lower devices' (a bond's members): a member
    // that negotiated down (10 Mb/s, half duplex) caps and drops the node's
    // traffic whatever the rest is tuned to.
    for d in s.devices.iter().take(1).chain(&s.lower) {
        let link = d.settings.iter().find(|x| x.name == "link");
        let Some(link) = link.and_then(|x| x.value.as_deref()) else {
            continue;
        };
        let speed = link
            .split_whitespace()
            .skip_while(|w| *w != "speed")
            .nth(1)
            .and_then(|v| v.strip_suffix("Mb/s"))
            .and_then(|v| v.parse::<u32>().ok());
        let half = link.contains("duplex half");
        if half || speed.is_some_and(|s| s < MIN_LINK_MBPS) {
            out.push(Advice {
                rule: "link",
                text: format!(
                    "{} links at {link}: a link below {MIN_LINK_MBPS} Mb/s or at half duplex caps the node's traffic and drops it under load; check the cable, the switch port and autonegotiation (ethtool -s)",
                    d.iface
                ),
            });
        }
    }
    out
}

/// The slowest link a node's NIC (or a bond member) is expected at: below
/// it, the link negotiated down.
const MIN_LINK_MBPS: u32 = 1000;

#[cfg(test)]
mod tests;
