//! Advice: rules that fire only on evidence in a report, and cite it (the
//! counts and the current setting). Each rule is silent without evidence.

use serde::Serialize;

use crate::{model::Report, tune::Snapshot};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Advice {
    /// Rule id: `backlog`, `budget`, `rcvbuf`, `irq_affinity`, `mtu`.
    pub rule: &'static str,
    pub text: String,
}

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

fn reason_count(r: &Report, stage: &str, reason: &str) -> u64 {
    r.ledger
        .ledger
        .iter()
        .find(|row| row.stage == stage)
        .and_then(|row| row.reasons.get(reason))
        .copied()
        .unwrap_or(0)
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

/// Every rule that has evidence in `r` (with the settings in `s`).
pub fn advise(r: &Report, s: &Snapshot) -> Vec<Advice> {
    let mut out = Vec::new();
    let backlog = reason_count(r, "backlog", "CPU_BACKLOG");
    if backlog > 0 {
        out.push(Advice {
            rule: "backlog",
            text: format!(
                "{backlog} packets dropped at the per-CPU backlog (CPU_BACKLOG) with net.core.netdev_max_backlog={}: raise it, or spread the load with RPS",
                setting(s, "net.core.netdev_max_backlog").unwrap_or("?")
            ),
        });
    }
    let mut squeezed: Vec<u32> = r
        .softnet
        .iter()
        .filter(|c| c.time_squeeze > 0)
        .map(|c| c.cpu)
        .collect();
    squeezed.sort_unstable();
    if !squeezed.is_empty() {
        let total: u64 = r.softnet.iter().map(|c| c.time_squeeze).sum();
        out.push(Advice {
            rule: "budget",
            text: format!(
                "NET_RX ran out of budget {total} times (time_squeeze) on CPUs {} with net.core.netdev_budget={} and netdev_budget_usecs={}: raise them, or spread the receive work over more CPUs",
                cpu_list(&squeezed),
                setting(s, "net.core.netdev_budget").unwrap_or("?"),
                setting(s, "net.core.netdev_budget_usecs").unwrap_or("?")
            ),
        });
    }
    let rcvbuf = reason_count(r, "socket", "SOCKET_RCVBUFF");
    if rcvbuf > 0 {
        let flow = r
            .ledger
            .flows
            .iter()
            .find(|f| f.reason == "SOCKET_RCVBUFF")
            .map_or(String::new(), |f| {
                format!(" (most for {} -> {}: {})", f.src, f.dst, f.count)
            });
        out.push(Advice {
            rule: "rcvbuf",
            text: format!(
                "{rcvbuf} packets dropped at full socket buffers (SOCKET_RCVBUFF){flow} with net.core.rmem_default={} and rmem_max={}: raise the application's SO_RCVBUF (up to rmem_max), or rmem_default",
                setting(s, "net.core.rmem_default").unwrap_or("?"),
                setting(s, "net.core.rmem_max").unwrap_or("?")
            ),
        });
    }
    for d in &s.devices {
        let affinities: Vec<&str> = d
            .settings
            .iter()
            .filter(|x| x.name.starts_with("irq ") && x.name.ends_with("smp_affinity_list"))
            .filter_map(|x| x.value.as_deref())
            .collect();
        if affinities.len() >= 2 && affinities.iter().all(|a| *a == affinities[0]) {
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
    out
}

#[cfg(test)]
mod tests;
