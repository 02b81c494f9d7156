//! The VXLAN stage: TCX ingress on a VXLAN device (flannel.1), decapsulated
//! skbs, segments and bytes per inner class.

use aya::Ebpf;
use probe_common::{DevCounters, MAP_VXLAN_DEV, PROG_VXLAN_INGRESS};
use probe_model::{
    counters::{link::LinkStats, vxlan::DevCounts},
    events::Event,
    model::{DevInfo, HookKind, Sample, Topology},
};

use super::{
    lifecycle::{DeviceContext, DeviceEntry},
    read_per_cpu,
    tc::{self, Attachment, TcMode},
    BpfLog, Hook, HookError, ReadAt,
};
use crate::{kernel::netns::Netns, kernel::rtnl::Link, objects};

/// A device of kind vxlan (flannel.1).
pub const DEVICE: DeviceEntry = DeviceEntry {
    kind: "vxlan",
    attach: |netns, link, ctx: &DeviceContext| {
        let hook = attach_vxlan_dev(netns, link, ctx.bpf_log, ctx.tc_mode)?;
        Ok(Box::new(hook) as Box<dyn Hook>)
    },
};

/// TCX (or legacy tc) ingress on a VXLAN device.
pub struct VxlanHook {
    pub iface: String,
    /// "tcx/ingress" or "tc/ingress".
    pub hook: &'static str,
    /// Dropped before the object: a legacy filter is deleted first.
    attachment: Attachment,
    pub ifindex: u32,
    pub vni: Option<u32>,
    /// The UDP port the device receives on.
    pub port: Option<u16>,
    ebpf: Ebpf,
    /// Counts of the hooks on earlier incarnations of the device (deleted and
    /// recreated, as by a flanneld restart), so the counters never go back.
    carried: Option<DevCounts>,
    /// The same for the device's stats64: the earlier incarnations' last
    /// readings, and this one's last reading (carried included).
    kernel_carried: LinkStats,
    kernel_last: Option<LinkStats>,
}

/// Loads the object for a VXLAN device and attaches it at its ingress
/// inside `netns` (hooks::tc: TCX, or legacy tc per `tc_mode`).
pub fn attach_vxlan_dev(
    netns: &Netns,
    link: &Link,
    log: BpfLog,
    tc_mode: TcMode,
) -> Result<VxlanHook, HookError> {
    let mut ebpf = log.loader().btf(None).load(objects::VXLAN)?;
    let attachment = tc::attach_ingress(netns, &mut ebpf, PROG_VXLAN_INGRESS, link, tc_mode)?;
    Ok(VxlanHook {
        iface: link.name.clone(),
        hook: attachment.name(),
        attachment,
        ifindex: link.ifindex,
        vni: link.vxlan.and_then(|v| v.vni),
        port: link.vxlan.and_then(|v| v.port),
        ebpf,
        carried: None,
        kernel_carried: LinkStats::default(),
        kernel_last: None,
    })
}

impl VxlanHook {
    pub fn read(&self) -> Result<DevCounts, HookError> {
        let mut counts = DevCounts {
            per_cpu: read_per_cpu::<DevCounters>(&self.ebpf, MAP_VXLAN_DEV, 1)?
                .pop()
                .unwrap_or_default(),
        };
        if let Some(carried) = &self.carried {
            counts.add(carried);
        }
        Ok(counts)
    }

    /// The device's stats64 from `now` (None if unreadable or gone) plus its
    /// earlier incarnations'; remembered for a successor to carry over.
    pub fn kernel_stats(&mut self, now: Option<LinkStats>) -> Option<LinkStats> {
        let total = now.map(|s| s.plus(&self.kernel_carried));
        if total.is_some() {
            self.kernel_last = total;
        }
        total
    }
}

impl Hook for VxlanHook {
    fn kind(&self) -> HookKind {
        HookKind::Vxlan
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

    /// `old`'s maps outlive its device, so they hold every packet it
    /// counted; its stats64 are what was last read before the device went.
    fn carry_over(&mut self, old: &dyn Hook) -> Result<(), HookError> {
        let old: &VxlanHook = old.as_any().downcast_ref().ok_or_else(|| {
            HookError::Config(format!("{} was hooked as another kind", self.iface))
        })?;
        self.carried = Some(old.read()?);
        self.kernel_carried = old.kernel_last.unwrap_or(old.kernel_carried);
        Ok(())
    }

    /// Its counts and the device's stats64, each with its earlier
    /// incarnations' (a recreated device's counters start from zero).
    fn read_into(&mut self, at: &ReadAt, sample: &mut Sample) -> Result<(), HookError> {
        sample.devs.push(self.read()?);
        let stats = self.kernel_stats(at.stats(self.ifindex));
        sample.devs_kernel.push(stats);
        Ok(())
    }

    fn describe(&self, topology: &mut Topology) {
        topology.vxlan_devs.push(DevInfo {
            iface: self.iface.clone(),
            hook: self.hook.into(),
            vni: self.vni,
            port: self.port,
        });
    }

    fn take_events(&mut self) -> Vec<Event> {
        self.attachment
            .take_removed()
            .into_iter()
            .map(|filter| Event::StaleFilterRemoved { filter })
            .collect()
    }
}
