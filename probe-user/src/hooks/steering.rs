//! `--steering`: the steering probes (tp_btf on napi_gro_receive_entry,
//! netif_receive_skb, sk_data_ready, sock_recv_length): loading, reading the
//! CPU matrices. Turning them into CPU pairs is probe_model::steering.

use aya::Ebpf;
use probe_common::drops::{GLOBAL_SCOPE_COUNT, GLOBAL_SCOPE_NETNS};
use probe_common::latency::{
    SteerMatrix, SteerOffsets, GLOBAL_STEER_NIC, GLOBAL_STEER_OFFSETS, MAP_STEER, PROG_STEER_NAPI,
    PROG_STEER_READY, PROG_STEER_RECV, PROG_STEER_STACK, STEER_CPUS,
};
use probe_model::{
    counters::steering::SteerCounts,
    model::{HookKind, Sample, Topology},
};

use super::{
    lifecycle::{Loader, TracingContext, TracingEntry},
    read_per_cpu, BpfLog, Hook, HookError, ReadAt,
};
use crate::{kernel::btf::Btf, objects};

/// `--steering`.
pub const TRACING: TracingEntry = TracingEntry {
    kind: HookKind::Steering,
    wanted: |ctx| ctx.steering,
    setup: tracing_setup,
};

fn tracing_setup(btf: &Btf, ctx: &TracingContext) -> Result<Loader, HookError> {
    let offsets = setup(btf)?;
    let ctx = ctx.clone();
    Ok(Box::new(move || {
        let nic_netns = ctx.nic_netns.clone().map_err(HookError::Kernel)?;
        let hook = load_steering(
            offsets,
            ctx.nic_ifindex,
            nic_netns,
            &ctx.scope_inums,
            ctx.bpf_log,
        )?;
        Ok(Box::new(hook) as Box<dyn Hook>)
    }))
}

const PROGRAMS: [(&str, &str); 4] = [
    (PROG_STEER_NAPI, "napi_gro_receive_entry"),
    (PROG_STEER_STACK, "netif_receive_skb"),
    (PROG_STEER_READY, "sk_data_ready"),
    (PROG_STEER_RECV, "sock_recv_length"),
];

/// Checks the tracepoints by name, then reads the offsets.
pub fn setup(btf: &Btf) -> Result<SteerOffsets, HookError> {
    check_tracepoints(btf)?;
    let common = btf.member_offset("sock", "__sk_common")?;
    Ok(SteerOffsets {
        skb_head: btf.member_offset("sk_buff", "head")?,
        skb_dev: btf.member_offset("sk_buff", "dev")?,
        dev_ifindex: btf.member_offset("net_device", "ifindex")?,
        dev_nd_net: btf.member_offset("net_device", "nd_net")?,
        sk_num: common + btf.member_offset("sock_common", "skc_num")?,
        sk_protocol: btf.member_offset("sock", "sk_protocol")?,
        // possible_net_t: `struct net *net` at 0 (CONFIG_NET_NS).
        sk_net: common + btf.member_offset("sock_common", "skc_net")?,
        net_inum: btf.member_offset("net", "ns")? + btf.member_offset("ns_common", "inum")?,
    })
}

/// The sock tracepoints are missing before Linux 6.5 (6.1 has neither):
/// named here, before the object is loaded, rather than left to the
/// verifier or the attach to fail on.
fn check_tracepoints(btf: &Btf) -> Result<(), HookError> {
    let missing = super::missing_tracepoints(btf, &PROGRAMS);
    if missing.is_empty() {
        return Ok(());
    }
    Err(HookError::Kernel(format!(
        "--steering needs Linux >= 6.5 (no tracepoint {} in this kernel's BTF)",
        missing.join(", ")
    )))
}

/// The steering probes. Dropping it detaches them.
pub struct SteerHook {
    ebpf: Ebpf,
}

impl Hook for SteerHook {
    fn kind(&self) -> HookKind {
        HookKind::Steering
    }
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }
    fn object_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
    /// Linux >= 6.5 has all four tracepoints.
    fn attach_tracing(&mut self, kernel_btf: &aya::Btf) -> Result<(), HookError> {
        super::attach_btf_tracepoints(&mut self.ebpf, &PROGRAMS, kernel_btf).map(drop)
    }
    fn read_into(&mut self, _: &ReadAt, sample: &mut Sample) -> Result<(), HookError> {
        sample.steering = Some(self.read()?);
        Ok(())
    }
    fn describe(&self, topology: &mut Topology) {
        topology.steering = true;
    }
}

/// Loads the object (nothing attached yet: [`Hook::attach_tracing`]). Packets
/// are followed from the polls of the NIC `nic_ifindex` in the namespace with
/// inode `nic_netns`; socket reads in the `scope` namespaces (all if empty).
pub fn load_steering(
    offsets: SteerOffsets,
    nic_ifindex: u32,
    nic_netns: u32,
    scope: &[u32],
    log: BpfLog,
) -> Result<SteerHook, HookError> {
    let (scope_netns, scope_count) = super::drops::scope_globals(scope)?;
    let ebpf = log
        .loader()
        .override_global(GLOBAL_SCOPE_NETNS, &scope_netns, true)
        .override_global(GLOBAL_SCOPE_COUNT, &scope_count, true)
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_STEER_OFFSETS, &offsets, true)
        .override_global(GLOBAL_STEER_NIC, &[nic_ifindex, nic_netns], true)
        .load(objects::STEERING)?;
    Ok(SteerHook { ebpf })
}

impl SteerHook {
    pub fn read(&self) -> Result<SteerCounts, HookError> {
        let per_cpu = read_per_cpu::<SteerMatrix>(&self.ebpf, MAP_STEER, 1)?.remove(0);
        let mut c = SteerCounts {
            napi_to_stack: vec![0; STEER_CPUS * STEER_CPUS],
            ready_to_reader: vec![0; STEER_CPUS * STEER_CPUS],
        };
        for m in per_cpu {
            for (s, n) in c.napi_to_stack.iter_mut().zip(m.napi_to_stack) {
                *s += n;
            }
            for (s, n) in c.ready_to_reader.iter_mut().zip(m.ready_to_reader) {
                *s += n;
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::fixture::kernel_like;

    #[test]
    fn missing_tracepoints_are_named() {
        // Linux 6.1: the NAPI and receive tracepoints, no sock ones.
        let old = kernel_like(
            &[],
            &[("napi_gro_receive_entry", 1), ("netif_receive_skb", 1)],
        );
        assert_eq!(
            setup(&old).err().unwrap().to_string(),
            "--steering needs Linux >= 6.5 (no tracepoint sk_data_ready, sock_recv_length \
             in this kernel's BTF)"
        );
        // All four: past the check, on to the offsets (not in this fixture).
        let all: Vec<(&str, u32)> = PROGRAMS.iter().map(|(_, tp)| (*tp, 1)).collect();
        assert!(check_tracepoints(&kernel_like(&[], &all)).is_ok());
        assert!(setup(&kernel_like(&[], &all))
            .err()
            .unwrap()
            .to_string()
            .contains("struct sock"));
    }
}
