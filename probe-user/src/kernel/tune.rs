//! `probe tune`: a snapshot of the receive-path settings that decide where
//! packets are lost: NAPI budget, backlog, socket buffers, RPS/RFS,
//! IRQ affinity, rings, coalescing, GRO/LRO, MTUs. Every item is reported,
//! with its value or why it could not be read.

use std::{ffi::CString, io, os::fd::AsRawFd};

use probe_model::settings::{DeviceSettings, MtuHop, Setting, Snapshot};

use crate::{
    error::ProbeError,
    kernel::netns::Netns,
    kernel::rtnl::{Link, RootQdisc, RtnlSocket},
};

pub const SYSCTLS: [&str; 13] = [
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.dev_weight",
    "net.core.netdev_max_backlog",
    "net.core.rps_sock_flow_entries",
    "net.core.rmem_default",
    "net.core.rmem_max",
    "net.ipv4.udp_mem",
    // A listener's queues (per namespace: a pod has its own).
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_syncookies",
    // Connection tracking's table (present once nf_conntrack is loaded).
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_conntrack_count",
];

fn read_trimmed(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path)
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .map_err(|e| e.to_string())
}

/// A sysctl from /proc/sys (which shows the reading thread's namespace).
pub fn sysctl(name: &str) -> Result<String, String> {
    read_trimmed(&format!("/proc/sys/{}", name.replace('.', "/")))
}

/// Runs `f` on a thread that sees `netns`'s own /sys: a private mount
/// namespace with sysfs mounted afresh, as `ip netns exec` does, but only for
/// that thread and only for the call (the loader itself never moves).
pub fn with_netns_sysfs<T: Send + 'static>(
    netns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let Some(name) = netns.name() else {
        return Ok(f());
    };
    let path = if name == "host" {
        "/proc/1/ns/net".to_string()
    } else {
        format!("{}/{name}", crate::kernel::netns::NETNS_RUN_DIR)
    };
    std::thread::spawn(move || -> Result<T, String> {
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: plain syscalls on this fresh thread; the fs/mount namespace
        // it unshares are its own and go away with it.
        unsafe {
            if libc::unshare(libc::CLONE_FS | libc::CLONE_NEWNS) != 0 {
                return Err(format!("unshare: {}", io::Error::last_os_error()));
            }
            if libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(format!("setns: {}", io::Error::last_os_error()));
            }
            let root = CString::new("/").unwrap();
            let none = CString::new("none").unwrap();
            if libc::mount(
                none.as_ptr(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) != 0
            {
                return Err(format!(
                    "mount --make-rslave /: {}",
                    io::Error::last_os_error()
                ));
            }
            let sys = CString::new("/sys").unwrap();
            let sysfs = CString::new("sysfs").unwrap();
            if libc::mount(
                sysfs.as_ptr(),
                sys.as_ptr(),
                sysfs.as_ptr(),
                0,
                std::ptr::null(),
            ) != 0
            {
                return Err(format!("mount sysfs: {}", io::Error::last_os_error()));
            }
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "sysfs reader thread panicked".to_string())?
}

/// Per-queue RPS/RFS/XPS and IRQ affinity from /sys/class/net/IFACE (call
/// where that /sys is the device's namespace's).
pub fn queue_settings(iface: &str) -> Vec<Setting> {
    let base = format!("/sys/class/net/{iface}");
    let mut out = Vec::new();
    let mut queues: Vec<String> = std::fs::read_dir(format!("{base}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    queues.sort_by_key(|q| {
        let (kind, n) = q.split_once('-').unwrap_or((q, "0"));
        (kind.to_string(), n.parse::<u32>().unwrap_or(0))
    });
    if queues.is_empty() {
        out.push(Setting::from(
            "queues",
            Err(format!("{base}/queues: not readable")),
        ));
    }
    for q in queues {
        let files: &[&str] = if q.starts_with("rx-") {
            &["rps_cpus", "rps_flow_cnt"]
        } else {
            &["xps_cpus"]
        };
        for f in files {
            out.push(Setting::from(
                format!("{q}/{f}"),
                read_trimmed(&format!("{base}/queues/{q}/{f}")),
            ));
        }
    }
    // MSI(-X) vectors of a PCI NIC, or of the PCI function above a virtio
    // NIC; virtual devices (veth, vxlan) have none.
    match irqs::msi_irqs(std::path::Path::new(&base)) {
        Some(irqs) => {
            for irq in irqs {
                out.push(Setting::from(
                    format!("irq {irq} smp_affinity_list"),
                    read_trimmed(&format!("/proc/irq/{irq}/smp_affinity_list")),
                ));
            }
        }
        None => out.push(Setting::from(
            "irqs",
            Err("no MSI IRQs (a virtual device, or not PCI)".into()),
        )),
    }
    out
}

/// Sysctls as the target namespace sees them; a node-wide one missing there is
/// read in the loader's own namespace and marked `(node-wide)`.
pub fn sysctls(netns: &Netns) -> Vec<Setting> {
    SYSCTLS
        .iter()
        .map(|name| {
            let here = netns.run(|| sysctl(name)).map_err(|e| e.to_string());
            match here {
                Ok(Ok(v)) => Setting::from(*name, Ok(v)),
                _ => Setting::from(*name, sysctl(name).map(|v| format!("{v} (node-wide)"))),
            }
        })
        .collect()
}

/// Parses `ss -uamnH`: a socket line (state, recv-q, send-q, local, peer),
/// then an indented `skmem:(r..,rb<rcvbuf>,...,d<drops>)` line.
pub fn parse_ss_udp(text: &str) -> Vec<Setting> {
    let mut out = Vec::new();
    let mut local: Option<String> = None;
    for line in text.lines() {
        if let Some(skmem) = line.trim().strip_prefix("skmem:(") {
            let Some(addr) = local.take() else { continue };
            for field in skmem.trim_end_matches(')').split(',') {
                if let Some(rb) = field.strip_prefix("rb") {
                    out.push(Setting::from(
                        format!("udp {addr} rcvbuf"),
                        Ok(rb.to_string()),
                    ));
                }
            }
        } else {
            local = line.split_whitespace().nth(3).map(str::to_string);
        }
    }
    out
}

/// Receive buffer sizes of the UDP sockets of the calling thread's network
/// namespace, from `ss` (iproute2): the buffer an application really got.
pub fn udp_socket_buffers() -> Vec<Setting> {
    match std::process::Command::new("ss").args(["-uamnH"]).output() {
        Ok(out) if out.status.success() => parse_ss_udp(&String::from_utf8_lossy(&out.stdout)),
        Ok(out) => vec![Setting::from(
            "udp sockets",
            Err(format!(
                "ss failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        )],
        Err(e) => vec![Setting::from(
            "udp sockets",
            Err(format!("cannot run ss: {e}")),
        )],
    }
}

/// The sysctls, the settings of each of `devices` (the NIC first, then the
/// VXLAN devices) and of the NIC's lower devices, and the MTU chain to the
/// pods; `links` are every link of `netns`.
pub fn snapshot(netns: &Netns, devices: &[&Link], links: &[Link]) -> Result<Snapshot, ProbeError> {
    // One socket in `netns` for its qdiscs and for the pods' namespace ids.
    let mut rtnl = netns.run(RtnlSocket::open)?.map_err(|e| e.to_string());
    let qdiscs = rtnl
        .as_mut()
        .map_err(|e| e.clone())
        .and_then(|s| s.root_qdiscs().map_err(|e| e.to_string()));
    let mut out = Snapshot {
        netns: netns.label(),
        sysctls: sysctls(netns),
        devices: Vec::new(),
        lower: Vec::new(),
        mtu_chain: Vec::new(),
    };
    for link in devices {
        out.devices.push(device_settings(netns, link, &qdiscs)?);
    }
    if let Some(nic) = devices.first() {
        for lower in lower_devices(nic, links) {
            out.lower.push(device_settings(netns, lower, &qdiscs)?);
        }
    }
    out.mtu_chain = mtu_chain(netns, rtnl.as_mut().ok(), devices, links);
    Ok(out)
}

/// A bond's members, or a VLAN's parent, in the same namespace.
fn lower_devices<'a>(nic: &Link, links: &'a [Link]) -> Vec<&'a Link> {
    match nic.kind.as_deref() {
        Some("bond") => links
            .iter()
            .filter(|l| l.master == Some(nic.ifindex))
            .collect(),
        Some("vlan") => links
            .iter()
            .filter(|l| Some(l.ifindex) == nic.link)
            .collect(),
        _ => Vec::new(),
    }
}

/// The NIC, the VXLAN devices, every bridge of `netns` with veth ports, and
/// the pod end of each such port: found in the other named namespaces as
/// the veth whose ifindex is the port's peer and whose peer is the port.
fn mtu_chain(
    netns: &Netns,
    mut rtnl: Option<&mut RtnlSocket>,
    devices: &[&Link],
    links: &[Link],
) -> Vec<MtuHop> {
    let hop = |role: &str, l: &Link, netns: Option<String>| MtuHop {
        role: role.into(),
        iface: l.name.clone(),
        netns,
        mtu: l.mtu,
    };
    let mut out: Vec<MtuHop> = devices
        .iter()
        .enumerate()
        .map(|(i, l)| hop(if i == 0 { "nic" } else { "vxlan" }, l, None))
        .collect();
    let is_veth = |l: &Link| l.kind.as_deref() == Some("veth");
    let ports: Vec<&Link> = links
        .iter()
        .filter(|l| is_veth(l) && l.master.is_some())
        .collect();
    let bridges = links.iter().filter(|b| {
        b.kind.as_deref() == Some("bridge") && ports.iter().any(|p| p.master == Some(b.ifindex))
    });
    // Each other named namespace, with the id `netns` gives it (what a
    // port's IFLA_LINK_NETNSID names its peer's namespace by), and its links.
    let here = netns.inum().ok();
    let mut pods: Vec<(String, i32, Vec<Link>)> = Vec::new();
    for (inum, name) in crate::kernel::netns::known_namespaces() {
        if Some(inum) == here {
            continue;
        }
        let Ok(ns) = Netns::host_or_named(&name) else {
            continue;
        };
        let nsid = match (rtnl.as_deref_mut(), ns.as_fd()) {
            (Some(r), Some(fd)) => r.nsid_of(fd).ok().flatten(),
            _ => None,
        };
        let links = ns.run(|| RtnlSocket::open().and_then(|mut s| s.links()));
        if let (Some(nsid), Ok(Ok(links))) = (nsid, links) {
            pods.push((name, nsid, links));
        }
    }
    for bridge in bridges {
        out.push(hop("bridge", bridge, None));
        for port in ports.iter().filter(|p| p.master == Some(bridge.ifindex)) {
            let pod = pods
                .iter()
                .filter(|(_, nsid, _)| port.link_netnsid == Some(*nsid))
                .find_map(|(name, _, links)| {
                    links
                        .iter()
                        .find(|p| is_veth(p) && Some(p.ifindex) == port.link)
                        .map(|p| (name, p))
                });
            if let Some((name, end)) = pod {
                out.push(hop("pod", end, Some(name.clone())));
            }
        }
    }
    out
}

/// One device's MTU, transmit queue, queues and IRQs, ethtool items.
fn device_settings(
    netns: &Netns,
    link: &Link,
    qdiscs: &Result<Vec<RootQdisc>, String>,
) -> Result<DeviceSettings, ProbeError> {
    let mut settings = vec![
        Setting {
            name: "mtu".into(),
            value: link.mtu.map(|m| m.to_string()),
            error: link.mtu.is_none().then(|| "not reported".to_string()),
        },
        Setting::from(
            "txqueuelen",
            link.txqlen
                .map(|n| n.to_string())
                .ok_or_else(|| "not reported".to_string()),
        ),
        Setting::from(
            "root qdisc",
            qdiscs.clone().and_then(|q| {
                q.iter()
                    .find(|q| q.ifindex == link.ifindex)
                    .map(|q| q.kind.clone().unwrap_or_else(|| "?".into()))
                    .ok_or_else(|| "none".to_string())
            }),
        ),
    ];
    let name = link.name.clone();
    settings.extend(
        with_netns_sysfs(netns, move || queue_settings(&name)).unwrap_or_else(|e| {
            vec![Setting {
                name: "queues".into(),
                value: None,
                error: Some(e),
            }]
        }),
    );
    let name = link.name.clone();
    settings.extend(netns.run(move || ethtool_settings(&name))?);
    Ok(DeviceSettings {
        iface: link.name.clone(),
        settings,
    })
}

mod ethtool_netlink;
pub mod irqs;

pub use ethtool_netlink::ethtool_settings;

#[cfg(test)]
mod tests;
