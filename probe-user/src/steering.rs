//! `--steering`: loading the steering probes and turning their matrices into
//! CPU pairs and an RFS hit rate.

use aya::{Ebpf, EbpfLoader};
use probe_common::drops::{GLOBAL_SCOPE_COUNT, GLOBAL_SCOPE_NETNS};
use probe_common::latency::{
    SteerMatrix, SteerOffsets, GLOBAL_STEER_NIC, GLOBAL_STEER_OFFSETS, MAP_STEER, PROG_STEER_NAPI,
    PROG_STEER_READY, PROG_STEER_RECV, PROG_STEER_STACK, STEER_CPUS,
};
use serde::Serialize;

use crate::{btf::Btf, objects, probes::read_per_cpu};

const PROGRAMS: [(&str, &str); 4] = [
    (PROG_STEER_NAPI, "napi_gro_receive_entry"),
    (PROG_STEER_STACK, "netif_receive_skb"),
    (PROG_STEER_READY, "sk_data_ready"),
    (PROG_STEER_RECV, "sock_recv_length"),
];

pub fn setup(btf: &Btf) -> Result<SteerOffsets, String> {
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

/// The steering probes. Dropping it detaches them.
pub struct SteerHook {
    ebpf: Ebpf,
}

impl crate::probes::HookObject for SteerHook {
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }
}

/// Loads the object (nothing attached yet: [`SteerHook::attach`]). Packets
/// are followed from the polls of the NIC `nic_ifindex` in the namespace with
/// inode `nic_netns`; socket reads in the `scope` namespaces (all if empty).
pub fn load_steering(
    offsets: SteerOffsets,
    nic_ifindex: u32,
    nic_netns: u32,
    scope: &[u32],
) -> Result<SteerHook, String> {
    let (scope_netns, scope_count) = crate::drops::scope_globals(scope)?;
    let ebpf = EbpfLoader::new()
        .override_global(GLOBAL_SCOPE_NETNS, &scope_netns, true)
        .override_global(GLOBAL_SCOPE_COUNT, &scope_count, true)
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_STEER_OFFSETS, &offsets, true)
        .override_global(GLOBAL_STEER_NIC, &[nic_ifindex, nic_netns], true)
        .load(objects::STEERING)
        .map_err(|e| format!("loading the BPF object failed: {e}"))?;
    Ok(SteerHook { ebpf })
}

/// Cumulative matrices summed over CPUs, `[from * STEER_CPUS + to]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SteerCounts {
    pub napi_to_stack: Vec<u64>,
    pub ready_to_reader: Vec<u64>,
}

impl SteerHook {
    /// Linux >= 6.5 has all four tracepoints.
    pub fn attach(&mut self, kernel_btf: &aya::Btf) -> Result<(), String> {
        crate::probes::attach_btf_tracepoints(&mut self.ebpf, &PROGRAMS, kernel_btf)
    }

    pub fn read(&self) -> Result<SteerCounts, String> {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct CpuPair {
    pub from: u32,
    /// The last CPU index tracked one by one (31) also stands for those above.
    pub to: u32,
    pub count: u64,
}

/// Steering over a period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Steering {
    /// Packets: CPU of the NAPI poll -> CPU of the stack (netif_receive_skb).
    pub poll_to_stack: Vec<CpuPair>,
    /// Socket reads: CPU that queued the data -> CPU of the reading thread.
    pub stack_to_reader: Vec<CpuPair>,
    /// Reads on the CPU that queued the data (what RFS aims for).
    pub rfs_hit_percent: Option<f64>,
}

fn pairs(now: &[u64], before: Option<&[u64]>) -> Vec<CpuPair> {
    now.iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let d = n.wrapping_sub(before.and_then(|b| b.get(i)).copied().unwrap_or(0));
            (d > 0).then_some(CpuPair {
                from: (i / STEER_CPUS) as u32,
                to: (i % STEER_CPUS) as u32,
                count: d,
            })
        })
        .collect()
}

pub fn steering(later: &SteerCounts, earlier: Option<&SteerCounts>) -> Steering {
    let reads = pairs(
        &later.ready_to_reader,
        earlier.map(|e| e.ready_to_reader.as_slice()),
    );
    let total: u64 = reads.iter().map(|p| p.count).sum();
    let hits: u64 = reads
        .iter()
        .filter(|p| p.from == p.to)
        .map(|p| p.count)
        .sum();
    Steering {
        poll_to_stack: pairs(
            &later.napi_to_stack,
            earlier.map(|e| e.napi_to_stack.as_slice()),
        ),
        stack_to_reader: reads,
        rfs_hit_percent: (total > 0).then(|| hits as f64 * 100.0 / total as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_and_rfs_hits() {
        let n = STEER_CPUS;
        let mut later = SteerCounts {
            napi_to_stack: vec![0; n * n],
            ready_to_reader: vec![0; n * n],
        };
        later.napi_to_stack[1] = 10; // cpu0 -> cpu1
        later.ready_to_reader[n + 1] = 7; // cpu1 -> cpu1
        later.ready_to_reader[n] = 3; // cpu1 -> cpu0
        let s = steering(&later, None);
        assert_eq!(
            s.poll_to_stack,
            vec![CpuPair {
                from: 0,
                to: 1,
                count: 10
            }]
        );
        assert_eq!(s.stack_to_reader.len(), 2);
        assert_eq!(s.rfs_hit_percent, Some(70.0));
        let none = steering(&later, Some(&later));
        assert!(none.poll_to_stack.is_empty() && none.rfs_hit_percent.is_none());
    }
}
