//! `probe tune`: a snapshot of the receive-path settings FIELD-GUIDE.md says
//! decide where packets are lost: NAPI budget, backlog, socket buffers, RPS/RFS,
//! IRQ affinity, rings, coalescing, GRO/LRO, MTUs. Every item is reported,
//! with its value or why it could not be read.

use std::{ffi::CString, io, os::fd::AsRawFd};

use serde::{Deserialize, Serialize};

use crate::{error::ProbeError, netns::Netns};

/// One setting: its value, or why it could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Setting {
    pub name: String,
    pub value: Option<String>,
    pub error: Option<String>,
}

impl Setting {
    fn from(name: impl Into<String>, r: Result<String, String>) -> Setting {
        let (value, error) = match r {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e)),
        };
        Setting {
            name: name.into(),
            value,
            error,
        }
    }
}

/// Settings of one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeviceSettings {
    pub iface: String,
    pub settings: Vec<Setting>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub netns: String,
    /// net.core.*, net.ipv4.udp_mem and the TCP listener's limits. Read in the namespace where they are
    /// visible: most net.core knobs are node-wide and exist only in the host's.
    pub sysctls: Vec<Setting>,
    pub devices: Vec<DeviceSettings>,
}

pub const SYSCTLS: [&str; 11] = [
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
        format!("{}/{name}", crate::netns::NETNS_RUN_DIR)
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

/// The sysctls, and the settings of each of `devices` (the NIC first).
pub fn snapshot(netns: &Netns, devices: &[&crate::rtnl::Link]) -> Result<Snapshot, ProbeError> {
    let mut out = Snapshot {
        netns: netns.label(),
        sysctls: sysctls(netns),
        devices: Vec::new(),
    };
    for link in devices {
        let mut settings = vec![Setting {
            name: "mtu".into(),
            value: link.mtu.map(|m| m.to_string()),
            error: link.mtu.is_none().then(|| "not reported".to_string()),
        }];
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
        out.devices.push(DeviceSettings {
            iface: link.name.clone(),
            settings,
        });
    }
    Ok(out)
}

mod ethtool_netlink;
pub mod irqs;

pub use ethtool_netlink::ethtool_settings;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_keep_their_errors() {
        let s = Setting::from("x", Err("nope".into()));
        assert_eq!((s.value, s.error.as_deref()), (None, Some("nope")));
        assert!(sysctl("net.core.netdev_max_backlog")
            .unwrap()
            .parse::<u64>()
            .is_ok());
        assert!(sysctl("net.core.no_such_knob").is_err());
        assert_eq!(ethtool_netlink::on_off(true), "on");
    }

    #[test]
    fn ss_socket_buffers() {
        let text = "UNCONN 0      0      0.0.0.0:9100 0.0.0.0:*\n\t skmem:(r0,rb200000,t0,tb212992,f0,w0,o0,bl0,d3)\nUNCONN 0 0 [::]:53 [::]:*\n\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)\n";
        let s = parse_ss_udp(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "udp 0.0.0.0:9100 rcvbuf");
        assert_eq!(s[0].value.as_deref(), Some("200000"));
        assert_eq!(s[1].name, "udp [::]:53 rcvbuf");
        assert!(parse_ss_udp("").is_empty());
    }

    #[test]
    fn loopback_reports_every_item() {
        // lo has queues but no IRQs, and the driver lacks most ethtool ops:
        // each item is still listed, with its error.
        let q = queue_settings("lo");
        assert!(
            q.iter()
                .any(|s| s.name == "rx-0/rps_cpus" && s.value.is_some()),
            "{q:?}"
        );
        assert!(q.iter().any(|s| s.name == "irqs" && s.error.is_some()));
        let e = ethtool_settings("lo");
        assert_eq!(e.len(), 6);
        assert!(e.iter().all(|s| s.value.is_some() != s.error.is_some()));
    }
}
