//! `probe tune`: print the receive-path settings, for a person or as JSON.

use clap::Args;

use crate::{error::ProbeError, kernel::netns::Netns, kernel::rtnl::RtnlSocket, kernel::tune};
use probe_model::settings::{Setting, Snapshot};

#[derive(Debug, Args)]
#[command(
    about = "Show the settings that decide where the receive path drops packets",
    long_about = "Show the settings that decide where the receive path drops packets: NAPI budget\n\
        (net.core.netdev_budget, netdev_budget_usecs, dev_weight), the per-CPU backlog\n\
        (netdev_max_backlog), RFS (rps_sock_flow_entries), socket buffers (rmem_default,\n\
        rmem_max, net.ipv4.udp_mem); and for the NIC and each VXLAN device: MTU, RX/TX queues\n\
        with rps_cpus / rps_flow_cnt / xps_cpus, IRQ affinity, ring sizes, channels,\n\
        interrupt coalescing, GRO and LRO. Items that cannot be read are listed with the reason.\n\n\
        Examples:\n  probe tune\n  probe tune --netns node2 --json"
)]
pub struct TuneArgs {
    /// The NIC [default: the interface of the default route]
    #[arg(long, value_name = "NIC")]
    pub iface: Option<String>,
    /// Network namespace (a name under /run/netns) [default: the current one]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TuneArgs) -> Result<(), ProbeError> {
    let netns = match &args.netns {
        Some(name) => Netns::named(name)?,
        None => Netns::current(),
    };
    let mut rtnl = netns
        .run(RtnlSocket::open)?
        .map_err(|e| ProbeError::Runtime(format!("cannot open an rtnetlink socket: {e}")))?;
    let links = rtnl
        .links()
        .map_err(|e| ProbeError::Runtime(format!("cannot list interfaces: {e}")))?;
    let nic_link = crate::session::nic_link(args.iface.as_deref(), &links, &mut rtnl, &netns)?;
    let mut devices = vec![nic_link];
    devices.extend(links.iter().filter(|l| l.is_vxlan()));

    let out = tune::snapshot(&netns, &devices, &links)?;
    super::print_json_or(args.json, &out, human)
}

fn line(s: &Setting) -> String {
    match (&s.value, &s.error) {
        (Some(v), _) => format!("  {:<34} {v}\n", s.name),
        (None, Some(e)) => format!("  {:<34} (unreadable: {e})\n", s.name),
        (None, None) => format!("  {:<34} -\n", s.name),
    }
}

pub fn human(s: &Snapshot) -> String {
    let mut o = format!("SETTINGS (netns {})\n", s.netns);
    for x in &s.sysctls {
        o += &line(x);
    }
    for (d, lower) in s
        .devices
        .iter()
        .map(|d| (d, false))
        .chain(s.lower.iter().map(|d| (d, true)))
    {
        let of = if lower {
            " (lower device of the NIC)"
        } else {
            ""
        };
        o += &format!("DEVICE {}{of}\n", d.iface);
        for x in &d.settings {
            o += &line(x);
        }
    }
    if !s.mtu_chain.is_empty() {
        o += "MTU CHAIN (NIC -> tunnel -> bridge -> pods)\n";
        for h in &s.mtu_chain {
            let name = match &h.netns {
                Some(ns) => format!("{} {} in {ns}", h.role, h.iface),
                None => format!("{} {}", h.role, h.iface),
            };
            let mtu = h.mtu.map_or("-".to_string(), |m| m.to_string());
            o += &format!("  {name:<34} {mtu}\n");
        }
    }
    o
}
