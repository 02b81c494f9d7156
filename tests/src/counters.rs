//! The kernel's own counters, read inside a lab namespace: what the tests
//! check the probe's counts against, and what they wait on ("the lab is
//! quiet": no packet of the test is still in flight).

use std::time::Duration;

use crate::{
    lab,
    wait::{wait_for, wait_settled},
    Lab,
};

/// A file of `netns`'s /proc/net (`snmp`, `netstat`, `dev`, `udp`, ...),
/// read by a thread inside the namespace: /proc/net itself would follow the
/// process's first thread, not the one in the namespace.
pub fn net_file(netns: &str, name: &str) -> String {
    let path = format!("/proc/thread-self/net/{name}");
    lab::in_netns(netns, move || std::fs::read_to_string(&path))
        .expect("enter the namespace")
        .unwrap_or_else(|e| panic!("read /proc/net/{name} in {netns}: {e}"))
}

/// /proc/net/snmp of `netns`: the kernel's own UDP and IP error counters.
pub fn snmp(netns: &str) -> probe_model::counters::procfs::Snmp {
    lab::in_netns(netns, probe_user::kernel::procfs::read_snmp)
        .expect("enter the namespace")
        .expect("read /proc/net/snmp")
}

/// The counter `name` of the `group` rows (`Tcp`, `Udp`, `TcpExt`, ...) of a
/// /proc/net/snmp or /proc/net/netstat text: a names line, then a values line.
pub fn proc_net_counter(text: &str, group: &str, name: &str) -> u64 {
    let lead = format!("{group}:");
    let mut rows = text.lines().filter(|l| l.starts_with(&lead));
    let (names, values) = (rows.next(), rows.next());
    let (names, values) = names
        .zip(values)
        .unwrap_or_else(|| panic!("no {group} rows in:\n{text}"));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no {group} {name} in:\n{text}"))
}

/// The `rx_packets` of `iface` in `netns`, from its /proc/net/dev.
pub fn rx_packets(netns: &str, iface: &str) -> u64 {
    let dev = net_file(netns, "dev");
    dev.lines()
        .find_map(|l| {
            let (name, counters) = l.split_once(':')?;
            (name.trim() == iface).then(|| counters.split_whitespace().nth(1))?
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {iface} in {netns}'s /proc/net/dev:\n{dev}"))
}

/// Every packet counter of the lab's namespaces (those of its nodes and pods,
/// and any a test added under its prefix): each device's, and the IP, UDP,
/// TCP and netstat ones. A packet that moves changes one of them.
fn lab_counters(lab: &Lab) -> Vec<String> {
    let mut namespaces = lab::lab_namespaces(lab.prefix());
    namespaces.sort();
    namespaces
        .iter()
        .flat_map(|ns| ["dev", "snmp", "netstat"].map(|f| net_file(ns, f)))
        .collect()
}

/// How long the lab's counters must stay put to count as quiet: longer than
/// a packet waits in a backlog or a queue while the machine runs other tests.
const QUIET_FOR: Duration = Duration::from_millis(100);

/// Waits until no packet is in flight in the lab: its counters unchanged for
/// [`QUIET_FOR`] (scaled under emulation). A probe stopped after that has
/// counted every packet the test sent.
pub fn settle_lab(lab: &Lab) {
    wait_settled(
        "the lab's packet counters",
        || lab_counters(lab),
        QUIET_FOR,
        Duration::from_secs(10),
    );
}

/// The bytes queued to be read on the UDP sockets of `netns` bound to local
/// `port` (the rx_queue column of its /proc/net/udp).
pub fn udp_queued(netns: &str, port: u16) -> u64 {
    let local = format!(":{port:04X}");
    net_file(netns, "udp")
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let local_address = cols.nth(1)?;
            let queues = cols.nth(2)?;
            local_address.ends_with(&local).then_some(queues)
        })
        .map(|q| {
            let rx = q.split_once(':').map_or("0", |(_, rx)| rx);
            u64::from_str_radix(rx, 16).unwrap_or(0)
        })
        .sum()
}

/// What a [`lab::UdpSink`] in `netns` on `port` received once it has read
/// everything queued to it (its socket's queue empty, its count no longer
/// moving): for traffic of which some is dropped on the way, where waiting
/// for the number sent would wait for ever.
pub fn sink_drained(sink: &lab::UdpSink, netns: &str, port: u16) -> u64 {
    wait_for(
        "the sink's socket queue to empty",
        Duration::from_secs(5),
        || udp_queued(netns, port),
        |&q| q == 0,
    );
    wait_settled(
        "the sink's count",
        || sink.received(),
        Duration::from_millis(20),
        Duration::from_secs(5),
    )
}
