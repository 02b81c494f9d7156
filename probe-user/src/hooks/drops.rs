//! The drop probe (tp_btf on `skb:kfree_skb`): loading it with the running
//! kernel's offsets and reason values, and reading its tables. Reason names
//! and stage rules are probe_model::reasons.

use aya::Ebpf;
use probe_common::{
    drops::{
        DropOffsets, DropTable, FlowTable, DROP_TRACEPOINT, GLOBAL_DROP_OFFSETS, GLOBAL_NIC_NETNS,
        GLOBAL_NOT_DROPS, GLOBAL_REASON_NOT_SPECIFIED, GLOBAL_REASON_NO_SOCKET, GLOBAL_SCOPE_COUNT,
        GLOBAL_SCOPE_NETNS, MAP_DROPS, MAP_DROP_FLOWS, MAX_SCOPE_NETNS, NO_REASON, PROG_SKB_DROP,
    },
    GLOBAL_VXLAN_PORTS, MAX_VXLAN_PORTS,
};
use probe_model::{
    counters::drops::DropCounts,
    model::{HookKind, Sample, Topology},
    reasons::{ReasonNames, NEEDS_REASONS},
};

use super::{
    lifecycle::{Loader, TracingContext, TracingEntry},
    read_per_cpu, BpfLog, Hook, HookError, ReadAt,
};
use crate::{kernel::btf::Btf, objects};

/// Always attached: every drop is counted with its reason.
pub const TRACING: TracingEntry = TracingEntry {
    kind: HookKind::Drops,
    wanted: |_| true,
    setup: tracing_setup,
};

fn tracing_setup(btf: &Btf, ctx: &TracingContext) -> Result<Loader, HookError> {
    let setup = setup(btf)?;
    let ctx = ctx.clone();
    Ok(Box::new(move || {
        // The NIC's namespace, where outer VXLAN drops are counted apart
        // (0: nowhere, if unknown).
        let nic_netns = ctx.nic_netns.as_ref().copied().unwrap_or(0);
        let hook = load_drops(
            setup,
            &ctx.scope_inums,
            &ctx.tunnel_ports,
            nic_netns,
            ctx.bpf_log,
        )?;
        Ok(Box::new(hook) as Box<dyn Hook>)
    }))
}

/// Offsets the probe needs, from the running kernel's BTF.
pub fn offsets(btf: &Btf) -> Result<DropOffsets, HookError> {
    Ok(DropOffsets {
        skb_dev: btf.member_offset("sk_buff", "dev")?,
        skb_head: btf.member_offset("sk_buff", "head")?,
        skb_network_header: btf.member_offset("sk_buff", "network_header")?,
        dev_ifindex: btf.member_offset("net_device", "ifindex")?,
        // nd_net is a possible_net_t: a typedef of an anonymous struct whose
        // only member, with CONFIG_NET_NS, is `struct net *net`, at offset 0.
        dev_nd_net: btf.member_offset("net_device", "nd_net")?,
        net_inum: btf.member_offset("net", "ns")? + btf.member_offset("ns_common", "inum")?,
        skb_end: btf.member_offset("sk_buff", "end")?,
        shinfo_gso_segs: btf.member_offset("skb_shared_info", "gso_segs")?,
        skb_sk: btf.member_offset("sk_buff", "sk")?,
        // skc_net is a possible_net_t, like nd_net above.
        sk_net: btf.member_offset("sock", "__sk_common")?
            + btf.member_offset("sock_common", "skc_net")?,
        dev_rtnl_link_ops: btf.member_offset("net_device", "rtnl_link_ops")?,
        link_ops_kind: btf.member_offset("rtnl_link_ops", "kind")?,
    })
}

/// The attached drop probe. Dropping it detaches it.
pub struct DropHook {
    pub reasons: ReasonNames,
    ebpf: Ebpf,
}

impl Hook for DropHook {
    fn kind(&self) -> HookKind {
        HookKind::Drops
    }
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }
    fn object_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
    /// Verifies the program and attaches it to `skb:kfree_skb`.
    fn attach_tracing(&mut self, kernel_btf: &aya::Btf) -> Result<(), HookError> {
        super::attach_btf_tracepoints(
            &mut self.ebpf,
            &[(PROG_SKB_DROP, DROP_TRACEPOINT)],
            kernel_btf,
        )
        .map(drop)
    }
    fn read_into(&mut self, _: &ReadAt, sample: &mut Sample) -> Result<(), HookError> {
        sample.drops = Some(self.read()?);
        Ok(())
    }
    fn describe(&self, topology: &mut Topology) {
        topology.reasons = Some(self.reasons.clone());
    }
}

/// What the drop probe needs from the kernel's BTF.
pub struct DropSetup {
    pub reasons: ReasonNames,
    pub offsets: DropOffsets,
}

/// Reads the reason names and offsets; first, whether this kernel has drop
/// reasons at all (Linux >= 5.17), so that an older one is named as such.
pub fn setup(btf: &Btf) -> Result<DropSetup, HookError> {
    let reasons = btf.drop_reasons()?;
    check_tracepoint(btf)?;
    Ok(DropSetup {
        reasons,
        offsets: offsets(btf)?,
    })
}

/// The program reads the reason as tracepoint argument 2:
/// `trace_kfree_skb(skb, location, reason)` from 5.17 (6.11 appends `rx_sk`,
/// which it ignores). The tp_btf prototype is the `btf_trace_kfree_skb`
/// typedef, whose first parameter is the tracepoint's `void *__data`.
fn check_tracepoint(btf: &Btf) -> Result<(), HookError> {
    let typedef = format!("btf_trace_{DROP_TRACEPOINT}");
    let args = btf.typedef_fn_params(&typedef)?.saturating_sub(1);
    if args < 3 {
        return Err(HookError::Kernel(format!(
            "{NEEDS_REASONS} (tracepoint {DROP_TRACEPOINT} has {args} arguments in this \
             kernel's BTF; the reason is the 3rd)"
        )));
    }
    Ok(())
}

/// Loads the drop probe's object with its settings (nothing attached yet:
/// [`Hook::attach_tracing`]). `scope`: network namespace inode numbers whose
/// drops count (empty: every namespace).
/// The SCOPE_NETNS and SCOPE_COUNT globals (probe-ebpf/src/scope.rs) for the
/// namespace inodes of `--drop-netns`.
pub fn scope_globals(scope: &[u32]) -> Result<([u32; MAX_SCOPE_NETNS], u32), HookError> {
    if scope.len() > MAX_SCOPE_NETNS {
        return Err(HookError::Config(format!(
            "at most {MAX_SCOPE_NETNS} namespaces can be given to --drop-netns"
        )));
    }
    let mut netns = [0u32; MAX_SCOPE_NETNS];
    netns[..scope.len()].copy_from_slice(scope);
    Ok((netns, scope.len() as u32))
}

/// `nic_netns`: the inode of the NIC's namespace, where outer VXLAN drops
/// are counted apart (0: nowhere).
pub fn load_drops(
    setup: DropSetup,
    scope: &[u32],
    vxlan_ports: &[u16],
    nic_netns: u32,
    log: BpfLog,
) -> Result<DropHook, HookError> {
    let DropSetup { reasons, offsets } = setup;
    let (netns, count) = scope_globals(scope)?;
    let mut ports = [0u16; MAX_VXLAN_PORTS];
    for (slot, port) in ports.iter_mut().zip(vxlan_ports) {
        *slot = *port;
    }
    let no_socket = reasons.value_of("NO_SOCKET").unwrap_or(NO_REASON);
    let not_specified = reasons.value_of("NOT_SPECIFIED").unwrap_or(NO_REASON);
    let not_drops = reasons.not_drop_values();
    let ebpf = log
        .loader()
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_NOT_DROPS, &not_drops, true)
        .override_global(GLOBAL_DROP_OFFSETS, &offsets, true)
        .override_global(GLOBAL_SCOPE_NETNS, &netns, true)
        .override_global(GLOBAL_SCOPE_COUNT, &count, true)
        .override_global(GLOBAL_VXLAN_PORTS, &ports, true)
        .override_global(GLOBAL_NIC_NETNS, &nic_netns, true)
        .override_global(GLOBAL_REASON_NO_SOCKET, &no_socket, true)
        .override_global(GLOBAL_REASON_NOT_SPECIFIED, &not_specified, true)
        .load(objects::DROPS)?;
    Ok(DropHook { reasons, ebpf })
}

impl DropHook {
    pub fn read(&self) -> Result<DropCounts, HookError> {
        let drops = read_per_cpu::<DropTable>(&self.ebpf, MAP_DROPS, 1)?;
        let flows = read_per_cpu::<FlowTable>(&self.ebpf, MAP_DROP_FLOWS, 1)?;
        Ok(DropCounts::from_tables(&drops[0], &flows[0]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kernels before 5.17 are named as such, whichever fact is missing.
    #[test]
    fn old_kernels_are_named_by_what_they_lack() {
        use crate::kernel::btf::fixture::kernel_like;
        let err = |btf: Btf| setup(&btf).err().unwrap().to_string();
        let reasons = [("SKB_NOT_DROPPED_YET", 0), ("SKB_DROP_REASON_NO_SOCKET", 2)];
        // 5.16: neither the enum nor the argument.
        assert_eq!(
            err(kernel_like(&[], &[("kfree_skb", 2)])),
            "drop reasons need Linux >= 5.17 (no enum skb_drop_reason in this kernel's BTF)"
        );
        // The enum without the argument (not in any release, but checked).
        assert_eq!(
            err(kernel_like(&reasons, &[("kfree_skb", 2)])),
            "drop reasons need Linux >= 5.17 (tracepoint kfree_skb has 2 arguments in \
             this kernel's BTF; the reason is the 3rd)"
        );
        assert!(err(kernel_like(&reasons, &[])).contains("typedef btf_trace_kfree_skb"));
        // 5.17 (3 arguments) and 6.11 (4): past the checks, on to the offsets,
        // which this fixture lacks.
        for args in [3, 4] {
            assert!(err(kernel_like(&reasons, &[("kfree_skb", args)])).contains("struct sk_buff"));
        }
        assert!(check_tracepoint(&kernel_like(&reasons, &[("kfree_skb", 3)])).is_ok());
    }
}
