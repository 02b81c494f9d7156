//! What a session watches, resolved from its configuration and the
//! namespace's interfaces before anything is attached: the NIC, the VXLAN
//! devices, the UDP ports and (port, VNI) pairs they use, the drop scope.

use probe_common::{DEFAULT_VXLAN_PORTS, MAX_VNIS, MAX_VXLAN_PORTS};

use super::SessionConfig;
use crate::{
    error::ProbeError,
    kernel::netns::Netns,
    kernel::rtnl::{Link, RtnlSocket},
};

/// The devices and settings a session attaches to.
pub(super) struct Targets {
    pub nic: Link,
    pub devices: Vec<Link>,
    /// UDP ports the NIC and drop programs treat as VXLAN.
    pub ports: Vec<u16>,
    /// (port, VNI) of every watched device: the same VNI on another port is
    /// another tunnel, which no watched device receives.
    pub vnis: Vec<(u16, u32)>,
    /// `--drop-netns`, and their inode numbers.
    pub scope: Vec<Netns>,
    pub scope_inums: Vec<u32>,
}

/// The NIC named `iface`, or without a name the device of the default route
/// of `netns` (`rtnl`: a socket opened there).
pub fn nic_link<'a>(
    iface: Option<&str>,
    links: &'a [Link],
    rtnl: &mut RtnlSocket,
    netns: &Netns,
) -> Result<&'a Link, ProbeError> {
    if let Some(name) = iface {
        return find(links, name, netns);
    }
    let no_route = || ProbeError::NoDefaultRoute {
        netns: netns.label(),
    };
    let ifindex = rtnl
        .default_route_ifindex()
        .map_err(|e| ProbeError::Runtime(format!("cannot read the routes: {e}")))?
        .ok_or_else(no_route)?;
    links
        .iter()
        .find(|l| l.ifindex == ifindex)
        .ok_or_else(no_route)
}

/// Resolves `cfg` against the interfaces `links` of `netns`. Every name
/// that does not exist or does not fit is a usage error (exit 2).
pub(super) fn resolve(
    cfg: &SessionConfig,
    links: &[Link],
    rtnl: &mut RtnlSocket,
    netns: &Netns,
) -> Result<Targets, ProbeError> {
    let nic = nic_link(cfg.iface.as_deref(), links, rtnl, netns)?.clone();
    if nic.is_vxlan() {
        return Err(ProbeError::Usage(format!(
            "{} is a VXLAN device: --iface takes the NIC its packets arrive on (the underlay), \
             and VXLAN devices are watched with --vxlan-iface",
            nic.name
        )));
    }
    let devices: Vec<&Link> = if cfg.vxlan_ifaces.is_empty() {
        links.iter().filter(|l| l.is_vxlan()).collect()
    } else {
        cfg.vxlan_ifaces
            .iter()
            .map(|n| find(links, n, netns))
            .collect::<Result<_, _>>()?
    };
    if let Some(not_vxlan) = devices.iter().find(|d| !d.is_vxlan()) {
        let vxlan: Vec<&str> = links
            .iter()
            .filter(|l| l.is_vxlan())
            .map(|l| l.name.as_str())
            .collect();
        return Err(ProbeError::Usage(format!(
            "{} is not a VXLAN device (--vxlan-iface takes the overlay device, e.g. flannel.1); VXLAN devices in {}: {}",
            not_vxlan.name,
            netns.label(),
            if vxlan.is_empty() { "none".to_string() } else { vxlan.join(", ") }
        )));
    }
    let ports = vxlan_port_set(&cfg.vxlan_ports, &devices)?;
    let mut vnis: Vec<(u16, u32)> = Vec::new();
    for d in &devices {
        if let Some(v) = d.vxlan {
            if let (Some(port), Some(vni)) = (v.port, v.vni) {
                if !vnis.contains(&(port, vni)) {
                    vnis.push((port, vni));
                }
            }
        }
    }
    vnis.truncate(MAX_VNIS);

    // --drop-netns: resolved before anything is attached (bad names exit 2).
    let scope: Vec<Netns> = cfg
        .drop_netns
        .iter()
        .map(|n| Netns::host_or_named(n))
        .collect::<Result<_, _>>()?;
    let scope_inums: Vec<u32> = scope
        .iter()
        .map(|n| {
            n.inum().map_err(|e| {
                ProbeError::Runtime(format!("cannot identify netns {}: {e}", n.label()))
            })
        })
        .collect::<Result<_, _>>()?;

    Ok(Targets {
        nic,
        devices: devices.into_iter().cloned().collect(),
        ports,
        vnis,
        scope,
        scope_inums,
    })
}

fn names(links: &[Link]) -> String {
    let mut names: Vec<_> = links.iter().map(|l| l.name.as_str()).collect();
    names.sort_unstable();
    names.join(", ")
}

fn find<'a>(links: &'a [Link], name: &str, netns: &Netns) -> Result<&'a Link, ProbeError> {
    links
        .iter()
        .find(|l| l.name == name)
        .ok_or_else(|| ProbeError::UnknownInterface {
            name: name.into(),
            netns: netns.label(),
            available: names(links),
        })
}

/// The VXLAN ports the XDP program matches: the given or default ones, plus
/// the destination ports of the watched devices.
pub fn vxlan_port_set(given: &[u16], devices: &[&Link]) -> Result<Vec<u16>, ProbeError> {
    let given: Vec<u16> = if given.is_empty() {
        DEFAULT_VXLAN_PORTS
            .iter()
            .copied()
            .filter(|p| *p != 0)
            .collect()
    } else {
        given.to_vec()
    };
    let mut ports: Vec<u16> = Vec::new();
    let device_ports = devices.iter().filter_map(|d| d.vxlan.and_then(|v| v.port));
    for port in given.into_iter().chain(device_ports) {
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    if ports.len() > MAX_VXLAN_PORTS {
        return Err(ProbeError::Usage(format!(
            "at most {MAX_VXLAN_PORTS} VXLAN ports can be matched, got {ports:?} (given and from the watched devices)"
        )));
    }
    Ok(ports)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::rtnl::VxlanInfo;

    fn vxlan_dev(port: u16) -> Link {
        Link {
            kind: Some("vxlan".into()),
            vxlan: Some(VxlanInfo {
                vni: Some(1),
                port: Some(port),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn default_ports_plus_device_ports() {
        let d = vxlan_dev(4790);
        assert_eq!(vxlan_port_set(&[], &[&d]).unwrap(), vec![8472, 4789, 4790]);
        let flannel = vxlan_dev(8472);
        assert_eq!(vxlan_port_set(&[], &[&flannel]).unwrap(), vec![8472, 4789]);
        assert_eq!(
            vxlan_port_set(&[9000], &[&flannel]).unwrap(),
            vec![9000, 8472]
        );
    }

    #[test]
    fn too_many_ports_is_a_usage_error() {
        let e = vxlan_port_set(&[1, 2, 3, 4, 5], &[]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }
}
