//! Loading, attaching and reading the kernel programs.
//!
//! Each hooked interface gets its own instance of the BPF object, so its maps
//! hold that interface's counters only. Every attachment is a bpf_link (XDP
//! link, TCX link): the kernel detaches it when the last fd closes, so nothing
//! stays attached after exit, a crash or SIGKILL.

use aya::{
    maps::PerCpuArray,
    programs::{tc::TcAttachOptions, LinkOrder, SchedClassifier, TcAttachType, Xdp, XdpMode},
    Ebpf, EbpfLoader, Pod,
};
use probe_common::{
    DevCounters, NicCounters, QueueCounters, VniCounters, GLOBAL_QUEUE_SLOTS, GLOBAL_VNIS,
    GLOBAL_VNI_COUNT, GLOBAL_VNI_PORTS, GLOBAL_VXLAN_PORTS, MAP_NIC_QUEUES, MAP_VXLAN_DEV,
    MAX_VNIS, MAX_VXLAN_PORTS, PROG_NIC_TC, PROG_NIC_XDP, PROG_VXLAN_INGRESS, VNI_SLOTS,
};

use crate::{
    netns::Netns,
    objects,
    rtnl::{Link, LinkStats},
};

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
}

/// A probe that could not be attached, and why. The others still run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Unavailable {
    pub stage: &'static str,
    pub iface: String,
    pub reason: String,
}

/// The NIC's counters: TCX ingress, or XDP on request.
pub struct NicHook {
    pub iface: String,
    pub ifindex: u32,
    /// "tcx/ingress", or "xdp/native" / "xdp/generic" as the kernel reports
    /// the attachment.
    pub hook: String,
    /// With `--nic-hook xdp`: the program id of another owner's XDP program
    /// found on the NIC. We never replace one, and count from TCX instead.
    pub foreign_xdp: Option<u32>,
    program: &'static str,
    pub queue_slots: u32,
    pub vnis: Vec<(u16, u32)>,
    ebpf: Ebpf,
}

/// TCX ingress + egress on a VXLAN device.
pub struct VxlanHook {
    pub iface: String,
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

/// Raw cumulative counters of one NIC hook: `queues[slot][cpu]`, and
/// `vnis[slot][cpu]` summed over the queues.
#[derive(Clone, Debug, Default)]
pub struct NicCounts {
    pub queues: Vec<Vec<NicCounters>>,
    pub vnis: Vec<Vec<VniCounters>>,
}

impl NicCounts {
    /// Splits the map's per-queue entries (`entries[queue][cpu]`) into the
    /// queue counters and the VNI counters summed over queues.
    pub fn from_queue_entries(entries: &[Vec<QueueCounters>]) -> NicCounts {
        let cpus = entries.first().map_or(0, Vec::len);
        let mut vnis = vec![vec![VniCounters::default(); cpus]; VNI_SLOTS as usize];
        for per_cpu in entries {
            for (cpu, entry) in per_cpu.iter().enumerate() {
                for (sum, v) in vnis.iter_mut().zip(&entry.vnis) {
                    let sum = &mut sum[cpu];
                    sum.outer_bytes += v.outer_bytes;
                    sum.outer_skbs += v.outer_skbs;
                    for (s, n) in sum.inner.iter_mut().zip(v.inner) {
                        *s += n;
                    }
                }
            }
        }
        NicCounts {
            queues: entries
                .iter()
                .map(|per_cpu| per_cpu.iter().map(|e| e.classes).collect())
                .collect(),
            vnis,
        }
    }
}

/// Raw cumulative counters of one VXLAN-device hook: `per_cpu[cpu]`.
#[derive(Clone, Debug, Default)]
pub struct DevCounts {
    pub per_cpu: Vec<DevCounters>,
}

impl DevCounts {
    /// Adds `other` per CPU and class.
    pub fn add(&mut self, other: &DevCounts) {
        for (mine, theirs) in self.per_cpu.iter_mut().zip(&other.per_cpu) {
            for (a, b) in [
                (&mut mine.skbs, &theirs.skbs),
                (&mut mine.segments, &theirs.segments),
                (&mut mine.bytes, &theirs.bytes),
            ] {
                for (a, b) in a.iter_mut().zip(b) {
                    *a += b;
                }
            }
        }
    }
}

fn load_error(e: impl std::fmt::Display) -> String {
    // aya puts the verifier log into the error text: keep all of it.
    format!("loading the BPF object failed: {e}")
}

/// Loads the object for the NIC and attaches it to `link` inside `netns`:
/// TCX ingress, or XDP with `--nic-hook xdp`.
pub fn attach_nic(netns: &Netns, link: &Link, cfg: &NicConfig) -> Result<NicHook, String> {
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
    let mut ebpf = EbpfLoader::new()
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_VXLAN_PORTS, &ports, true)
        .override_global(GLOBAL_VNIS, &vnis, true)
        .override_global(GLOBAL_VNI_PORTS, &vni_ports, true)
        .override_global(GLOBAL_VNI_COUNT, &vni_count, true)
        .override_global(GLOBAL_QUEUE_SLOTS, &queue_slots, true)
        .map_max_entries(MAP_NIC_QUEUES, queue_slots + 1)
        .load(objects::NIC)
        .map_err(load_error)?;
    // A device has one XDP program per mode, and native and generic cannot be
    // mixed (dev_xdp_attach). If someone else's is there, it stays: the
    // kernel would refuse our link anyway (EBUSY/EEXIST), and replacing it
    // through netlink would take the CNI's datapath away.
    let foreign_xdp = link
        .xdp
        .prog_id
        .filter(|id| *id != 0 && cfg.hook == NicHookArg::Xdp);
    let (program_name, hook) = if cfg.hook == NicHookArg::Tc || foreign_xdp.is_some() {
        attach_tcx(netns, &mut ebpf, PROG_NIC_TC, TcAttachType::Ingress, link)?;
        (PROG_NIC_TC, "tcx/ingress")
    } else {
        let prog: &mut Xdp = program(&mut ebpf, PROG_NIC_XDP)?;
        prog.load()
            .map_err(|e| format!("the verifier rejected {PROG_NIC_XDP}: {e}"))?;
        let mode = cfg.mode.aya();
        netns
            .run(|| prog.attach_to_if_index(link.ifindex, mode))
            .map_err(|e| e.to_string())?
            .map_err(|e| match cfg.mode {
                XdpModeArg::Native => format!("native XDP is not available on {}: {e}", link.name),
                _ => format!("attaching XDP to {} failed: {e}", link.name),
            })?;
        (PROG_NIC_XDP, "xdp")
    };
    Ok(NicHook {
        iface: link.name.clone(),
        ifindex: link.ifindex,
        hook: hook.into(),
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

    pub fn read(&self) -> Result<NicCounts, String> {
        let entries =
            read_per_cpu::<QueueCounters>(&self.ebpf, MAP_NIC_QUEUES, self.queue_slots + 1)?;
        Ok(NicCounts::from_queue_entries(&entries))
    }
}

/// Verifies program `name` of `ebpf` and attaches it to `link`'s TCX hook
/// inside `netns`, ahead of every program already there (LinkOrder::first):
/// it only counts and returns "continue" (TC_ACT_UNSPEC), so the CNI's
/// programs after it still get every packet, and it sees the packets that
/// those programs redirect or drop. A TCX link needs no qdisc, so nobody's
/// clsact qdisc or tc filter is touched.
fn attach_tcx(
    netns: &Netns,
    ebpf: &mut Ebpf,
    name: &str,
    attach_type: TcAttachType,
    link: &Link,
) -> Result<(), String> {
    let prog: &mut SchedClassifier = program(ebpf, name)?;
    prog.load()
        .map_err(|e| format!("the verifier rejected {name}: {e}"))?;
    netns
        .run(|| {
            prog.attach_with_options(
                &link.name,
                attach_type,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
        })
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "TCX attach ({attach_type:?}) to {} failed (TCX needs Linux >= 6.6): {e}",
                link.name
            )
        })?;
    Ok(())
}

/// Loads the object for a VXLAN device and attaches TCX ingress inside
/// `netns` (see attach_tcx for the order).
pub fn attach_vxlan_dev(netns: &Netns, link: &Link) -> Result<VxlanHook, String> {
    let mut ebpf = EbpfLoader::new()
        .btf(None)
        .load(objects::VXLAN)
        .map_err(load_error)?;
    attach_tcx(
        netns,
        &mut ebpf,
        PROG_VXLAN_INGRESS,
        TcAttachType::Ingress,
        link,
    )?;
    Ok(VxlanHook {
        iface: link.name.clone(),
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
    pub fn read(&self) -> Result<DevCounts, String> {
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

    /// Takes over `old`'s counts (a hook on the device this one replaces):
    /// its maps outlive the device, so they hold every packet it counted;
    /// its stats64 are what was last read before the device went.
    pub fn carry_over(&mut self, old: &VxlanHook) -> Result<(), String> {
        self.carried = Some(old.read()?);
        self.kernel_carried = old.kernel_last.unwrap_or(old.kernel_carried);
        Ok(())
    }
}

/// Every hook owns the BPF object it loaded; dropping the hook closes its
/// links and unloads its programs.
pub trait HookObject {
    fn object(&self) -> &Ebpf;

    /// The interface its programs are attached to; "*" for tracing hooks.
    fn iface(&self) -> &str {
        "*"
    }

    /// Names of the programs this hook loaded (the object's others stay
    /// unloaded, e.g. nic_tc while nic_xdp is used), sorted.
    fn loaded_programs(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .object()
            .programs()
            .filter(|(_, p)| p.fd().is_ok())
            .map(|(name, _)| name)
            .collect();
        names.sort_unstable();
        names
    }

    /// Kernel ids of the programs this hook loaded (`bpftool prog show id N`).
    fn program_ids(&self) -> Vec<u32> {
        self.loaded_programs()
            .into_iter()
            .filter_map(|name| Some(self.object().program(name)?.info().ok()?.id()))
            .collect()
    }

    /// Runs and kernel run time of each loaded program (BPF stats, `--self`).
    fn program_stats(&self) -> Vec<crate::selfcost::ProgramStat> {
        self.loaded_programs()
            .into_iter()
            .filter_map(|name| crate::selfcost::program_stat(self.object(), name, self.iface()))
            .collect()
    }
}

impl HookObject for NicHook {
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }

    fn iface(&self) -> &str {
        &self.iface
    }
}

impl HookObject for VxlanHook {
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }

    fn iface(&self) -> &str {
        &self.iface
    }
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, String>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf
        .program_mut(name)
        .ok_or_else(|| format!("program {name} missing from the BPF object"))?;
    prog.try_into().map_err(|e| format!("program {name}: {e}"))
}

/// Verifies and attaches tp_btf programs of `ebpf`: `(program, tracepoint)`.
/// `kernel_btf`: aya's parse of the kernel's BTF (tp_btf needs the
/// tracepoint's BTF id).
pub fn attach_btf_tracepoints(
    ebpf: &mut Ebpf,
    programs: &[(&str, &str)],
    kernel_btf: &aya::Btf,
) -> Result<(), String> {
    for (name, tracepoint) in programs {
        let prog: &mut aya::programs::BtfTracePoint = program(ebpf, name)?;
        prog.load(tracepoint, kernel_btf)
            .map_err(|e| format!("the verifier rejected {name}: {e}"))?;
        prog.attach()
            .map_err(|e| format!("attaching to tp_btf/{tracepoint} failed: {e}"))?;
    }
    Ok(())
}

/// Every entry of a per-CPU array: `result[index][cpu]`.
pub fn read_per_cpu<T: Pod>(ebpf: &Ebpf, name: &str, entries: u32) -> Result<Vec<Vec<T>>, String> {
    let map = ebpf
        .map(name)
        .ok_or_else(|| format!("map {name} missing from the BPF object"))?;
    let array = PerCpuArray::<_, T>::try_from(map).map_err(|e| format!("map {name}: {e}"))?;
    (0..entries)
        .map(|i| {
            array
                .get(&i, 0)
                .map(|v| v.iter().copied().collect())
                .map_err(|e| format!("reading {name}[{i}]: {e}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_counters_are_summed_over_queues_per_cpu() {
        let mut q0 = vec![QueueCounters::default(); 2];
        let mut q1 = vec![QueueCounters::default(); 2];
        q0[0].classes.segments[3] = 5;
        q0[0].vnis[0].inner[0] = 5;
        q0[0].vnis[0].outer_skbs = 1;
        q0[0].vnis[0].outer_bytes = 500;
        q1[0].vnis[0].inner[1] = 2;
        q1[1].vnis[8].inner[3] = 1;
        let n = NicCounts::from_queue_entries(&[q0, q1]);
        assert_eq!(n.queues.len(), 2);
        assert_eq!(n.queues[0][0].segments[3], 5);
        assert_eq!(n.vnis.len(), VNI_SLOTS as usize);
        assert_eq!(n.vnis[0][0].inner, [5, 2, 0, 0]);
        assert_eq!(n.vnis[0][0].outer_segments(), 7);
        assert_eq!(n.vnis[0][0].outer_skbs, 1);
        assert_eq!(n.vnis[0][0].outer_bytes, 500);
        assert_eq!(n.vnis[0][1], VniCounters::default());
        assert_eq!(n.vnis[8][1].outer_segments(), 1);
        assert!(NicCounts::from_queue_entries(&[])
            .vnis
            .iter()
            .all(Vec::is_empty));
    }
}
