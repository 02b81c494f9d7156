//! The NIC stage: skbs, segments and bytes per RX queue, class and (UDP
//! port, VNI), from TCX ingress (default) or XDP (`--nic-hook xdp`).

use aya::{
    programs::{Xdp, XdpMode},
    Ebpf,
};
use probe_common::{
    QueueCounters, GLOBAL_QUEUE_SLOTS, GLOBAL_VNIS, GLOBAL_VNI_COUNT, GLOBAL_VNI_PORTS,
    GLOBAL_VXLAN_PORTS, MAP_NIC_QUEUES, MAX_VNIS, MAX_VXLAN_PORTS, PROG_NIC_TC, PROG_NIC_XDP,
};

use probe_model::{
    counters::nic::NicCounts,
    events::Event,
    model::{HookKind, NicInfo, Sample, Topology},
};

use super::{
    program, read_per_cpu,
    tc::{self, Attachment, TcMode},
    BpfLog, Hook, HookError, ReadAt,
};
use crate::{kernel::netns::Netns, kernel::rtnl::Link, objects};

/// `--xdp-mode`: how to attach at the NIC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeArg {
    /// Native (driver) mode where the driver supports it, else generic.
    #[default]
    Auto,
    /// Driver mode only: fail (stage unavailable) if the driver lacks XDP.
    Native,
    /// Generic (skb) mode: runs after the skb is built, works on any device.
    Generic,
}

impl XdpModeArg {
    fn aya(self) -> XdpMode {
        match self {
            Self::Auto => XdpMode::Default,
            Self::Native => XdpMode::Driver,
            Self::Generic => XdpMode::Skb,
        }
    }
}

/// `--nic-hook`: where the NIC stage counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NicHookArg {
    /// tc ingress (TCX): after the driver and GRO; changes nothing in the
    /// driver, so the traffic is exactly as without the probe.
    #[default]
    Tc,
    /// XDP: every wire frame before GRO, per RX queue. Attaching XDP makes
    /// drivers change how they receive (veth: NAPI mode, the peer loses TSO;
    /// virtio_net: guest offloads off; mlx5, ice, i40e, ixgbe, ena: rings are
    /// reset, so traffic stops briefly at attach and detach).
    Xdp,
}

/// Settings of the NIC program that come from the command line and the node.
#[derive(Clone, Debug)]
pub struct NicConfig {
    /// UDP destination ports that carry VXLAN (at most MAX_VXLAN_PORTS).
    pub vxlan_ports: Vec<u16>,
    /// (UDP port, VNI) pairs that get their own counters (at most MAX_VNIS):
    /// the watched VXLAN devices'.
    pub vnis: Vec<(u16, u32)>,
    pub hook: NicHookArg,
    pub mode: XdpModeArg,
    /// How the tc hook is attached (TCX or legacy tc).
    pub tc_mode: TcMode,
    pub log: BpfLog,
}

/// The NIC's counters: TCX ingress, or XDP on request.
pub struct NicHook {
    pub iface: String,
    pub ifindex: u32,
    /// "tcx/ingress", "tc/ingress", or "xdp/native" / "xdp/generic" as the kernel reports
    /// the attachment.
    pub hook: String,
    /// The tc attachment (None with XDP); dropped before the object.
    attachment: Option<Attachment>,
    /// With `--nic-hook xdp`: the program id of another owner's XDP program
    /// found on the NIC. We never replace one, and count from TCX instead.
    pub foreign_xdp: Option<u32>,
    program: &'static str,
    pub queue_slots: u32,
    pub vnis: Vec<(u16, u32)>,
    ebpf: Ebpf,
}

/// Loads the object for the NIC and attaches it to `link` inside `netns`:
/// TCX ingress, or XDP with `--nic-hook xdp`.
pub fn attach_nic(netns: &Netns, link: &Link, cfg: &NicConfig) -> Result<NicHook, HookError> {
    let mut ports = [0u16; MAX_VXLAN_PORTS];
    for (slot, port) in ports.iter_mut().zip(&cfg.vxlan_ports) {
        *slot = *port;
    }
    let mut vnis = [0u32; MAX_VNIS];
    let mut vni_ports = [0u16; MAX_VNIS];
    for ((vni_slot, port_slot), (port, vni)) in vnis.iter_mut().zip(&mut vni_ports).zip(&cfg.vnis) {
        (*vni_slot, *port_slot) = (*vni, *port);
    }
    let vni_count = cfg.vnis.len().min(MAX_VNIS) as u32;
    // One slot per RX queue the device can ever have (real_num_rx_queues never
    // exceeds num_rx_queues), plus the overflow slot the program clamps into.
    let queue_slots = link
        .num_rx_queues
        .unwrap_or(probe_common::DEFAULT_QUEUE_SLOTS)
        .max(1);
    let mut ebpf = cfg
        .log
        .loader()
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_VXLAN_PORTS, &ports, true)
        .override_global(GLOBAL_VNIS, &vnis, true)
        .override_global(GLOBAL_VNI_PORTS, &vni_ports, true)
        .override_global(GLOBAL_VNI_COUNT, &vni_count, true)
        .override_global(GLOBAL_QUEUE_SLOTS, &queue_slots, true)
        .map_max_entries(MAP_NIC_QUEUES, queue_slots + 1)
        .load(objects::NIC)?;
    // A device has one XDP program per mode, and native and generic cannot be
    // mixed (dev_xdp_attach). If someone else's is there, it stays: the
    // kernel would refuse our link anyway (EBUSY/EEXIST), and replacing it
    // through netlink would take the CNI's datapath away.
    let foreign_xdp = link
        .xdp
        .prog_id
        .filter(|id| *id != 0 && cfg.hook == NicHookArg::Xdp);
    let mut attachment = None;
    let (program_name, hook) = if cfg.hook == NicHookArg::Tc || foreign_xdp.is_some() {
        let a = tc::attach_ingress(netns, &mut ebpf, PROG_NIC_TC, link, cfg.tc_mode)?;
        let name = a.name();
        attachment = Some(a);
        (PROG_NIC_TC, name)
    } else {
        let prog: &mut Xdp = program(&mut ebpf, PROG_NIC_XDP)?;
        prog.load().map_err(|source| HookError::Verifier {
            name: PROG_NIC_XDP.into(),
            source,
        })?;
        let mode = cfg.mode.aya();
        netns
            .run(|| prog.attach_to_if_index(link.ifindex, mode))
            .map_err(|e| HookError::Netns(e.to_string()))?
            .map_err(|source| HookError::Attach {
                what: match cfg.mode {
                    XdpModeArg::Native => format!("native XDP is not available on {}", link.name),
                    _ => format!("attaching XDP to {} failed", link.name),
                },
                source,
            })?;
        (PROG_NIC_XDP, "xdp")
    };
    Ok(NicHook {
        iface: link.name.clone(),
        ifindex: link.ifindex,
        hook: hook.into(),
        attachment,
        foreign_xdp,
        program: program_name,
        queue_slots,
        vnis: cfg.vnis.iter().copied().take(MAX_VNIS).collect(),
        ebpf,
    })
}

impl NicHook {
    /// Records the XDP mode the kernel chose, from the device's IFLA_XDP.
    pub fn set_hook_from(&mut self, link: &Link) {
        if self.program != PROG_NIC_XDP {
            return;
        }
        let mode = match link.xdp.attached_mode {
            1 => "native",
            2 => "generic",
            3 => "offload",
            4 => "multi",
            _ => "unknown",
        };
        self.hook = format!("xdp/{mode}");
    }

    pub fn read(&self) -> Result<NicCounts, HookError> {
        let entries =
            read_per_cpu::<QueueCounters>(&self.ebpf, MAP_NIC_QUEUES, self.queue_slots + 1)?;
        Ok(NicCounts::from_queue_entries(&entries))
    }
}

impl Hook for NicHook {
    fn kind(&self) -> HookKind {
        HookKind::Nic
    }
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }
    fn object_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    fn iface(&self) -> &str {
        &self.iface
    }

    fn ifindex(&self) -> Option<u32> {
        Some(self.ifindex)
    }

    fn read_into(&mut self, _: &ReadAt, sample: &mut Sample) -> Result<(), HookError> {
        sample.nic = Some(self.read()?);
        Ok(())
    }

    /// The device's stats64, and the driver's per-queue drop statistics
    /// (ethtool -S; none where it has none or is unreadable).
    fn read_kernel_into(&mut self, at: &ReadAt, sample: &mut Sample) {
        sample.nic_kernel = at.stats(self.ifindex);
        sample.nic_queue_drops = at
            .netns
            .run(|| crate::kernel::ethtool::stats(&self.iface))
            .ok()
            .and_then(Result::ok)
            .map(|s| crate::kernel::ethtool::queue_drop_stats(&s))
            .unwrap_or_default();
    }

    fn describe(&self, topology: &mut Topology) {
        topology.nic = Some(NicInfo {
            iface: self.iface.clone(),
            hook: self.hook.clone(),
            queue_slots: self.queue_slots,
            vnis: self.vnis.clone(),
        });
    }

    fn take_events(&mut self) -> Vec<Event> {
        let mut events: Vec<Event> = self
            .foreign_xdp
            .take()
            .map(|prog_id| Event::ForeignXdp {
                iface: self.iface.clone(),
                prog_id,
            })
            .into_iter()
            .collect();
        if let Some(a) = self.attachment.as_mut() {
            events.extend(
                a.take_removed()
                    .into_iter()
                    .map(|filter| Event::StaleFilterRemoved { filter }),
            );
        }
        events
    }
}
