//! `--stage-latency` and `probe trace`: the per-stage latency probes (tp_btf
//! on netif_receive_skb, and sk_data_ready and sock_recv_length where the
//! kernel has them; with `probe trace` also kfree_skb and consume_skb): loading, reading.
//! The histograms become reports in probe_model::stage_latency.

use aya::{maps::Array, programs::tp_btf::BtfTracePointLinkId, Ebpf};
use probe_common::{
    drops::NO_REASON,
    stage_latency::{
        PathCpu, PathDevices, PathDrops, PathOffsets, PathSocket, Reached, SocketWait,
        GLOBAL_PATH_DEVICES, GLOBAL_PATH_NOT_DROPS, GLOBAL_PATH_OFFSETS, GLOBAL_PATH_SAMPLE_EVERY,
        GLOBAL_PATH_TRACE_MAGIC, MAP_PATH_CLOSING, MAP_PATH_CPU, MAP_PATH_DROPS, MAP_PATH_SOCKETS,
        MAP_PATH_SOCKET_WAITS, PATH_SOCKET_SLOTS, PATH_SOCKET_WAIT_SLOTS, PATH_VXLAN_DEVICES,
        PROG_PATH_CONSUME, PROG_PATH_DROP, PROG_PATH_QUEUED, PROG_PATH_READ, PROG_PATH_RX,
    },
};

use probe_model::model::{HookKind, Sample, StageLatencyInfo, Topology, Unavailable};

use super::{
    lifecycle::{Loader, TracingContext, TracingEntry},
    read_per_cpu, BpfLog, Hook, HookError, ReadAt,
};
use crate::{kernel::btf::Btf, objects};

/// `--stage-latency`, and `probe trace` (which follows its marked packets).
pub const TRACING: TracingEntry = TracingEntry {
    kind: HookKind::StageLatency,
    wanted: |ctx| ctx.stage_sampling.is_some(),
    setup: tracing_setup,
};

fn tracing_setup(btf: &Btf, ctx: &TracingContext) -> Result<Loader, HookError> {
    let setup = setup(btf)?;
    // What a trace needs to name its drops: the drop probe's reasons.
    let not_drops = super::drops::setup(btf)
        .map(|d| d.reasons.not_drop_values())
        .map_err(|e| e.to_string());
    let ctx = ctx.clone();
    Ok(Box::new(move || {
        let sample_every = ctx.stage_sampling.unwrap_or(1);
        let node_netns = ctx.nic_netns.clone().map_err(HookError::Kernel)?;
        let mut hook = load_stage_latency(
            &setup,
            ctx.nic_ifindex,
            node_netns,
            &ctx.tunnel_ifindexes,
            sample_every,
            ctx.trace_magic,
            not_drops.as_ref().ok().copied(),
            ctx.bpf_log,
        )?;
        // What the object's globals do not say: the window, and why a
        // trace cannot name its drops.
        hook.info.window = ctx.stage_window.filter(|_| ctx.trace_magic.is_none());
        hook.info.drops_unavailable = match (&ctx.trace_magic, &not_drops) {
            (Some(_), Err(e)) => Some(e.clone()),
            _ => None,
        };
        Ok(Box::new(hook) as Box<dyn Hook>)
    }))
}

const RX: (&str, &str) = (PROG_PATH_RX, "netif_receive_skb");
const SOCKET: [(&str, &str); 2] = [
    (PROG_PATH_QUEUED, "sk_data_ready"),
    (PROG_PATH_READ, "sock_recv_length"),
];
const DROP: [(&str, &str); 2] = [
    (PROG_PATH_DROP, "kfree_skb"),
    (PROG_PATH_CONSUME, "consume_skb"),
];

/// What the probes need from the kernel's BTF, and whether it has the socket
/// tracepoints.
#[derive(Clone, Debug)]
pub struct StageSetup {
    pub offsets: PathOffsets,
    /// None: the socket stages are followed; else why they are not.
    pub socket_unavailable: Option<String>,
}

pub fn setup(btf: &Btf) -> Result<StageSetup, HookError> {
    if !super::missing_tracepoints(btf, &[RX]).is_empty() {
        return Err(HookError::Kernel(
            "--stage-latency needs the net:netif_receive_skb tracepoint in the kernel's BTF".into(),
        ));
    }
    let missing = super::missing_tracepoints(btf, &SOCKET);
    let socket_unavailable = (!missing.is_empty()).then(|| {
        format!(
            "the socket stages (queued, read) need Linux >= 6.5 (no tracepoint {} in this \
             kernel's BTF)",
            missing.join(", ")
        )
    });
    let common = btf.member_offset("sock", "__sk_common")?;
    let offsets = PathOffsets {
        skb_head: btf.member_offset("sk_buff", "head")?,
        skb_dev: btf.member_offset("sk_buff", "dev")?,
        dev_ifindex: btf.member_offset("net_device", "ifindex")?,
        dev_nd_net: btf.member_offset("net_device", "nd_net")?,
        net_inum: btf.member_offset("net", "ns")? + btf.member_offset("ns_common", "inum")?,
        sk_receive_queue: btf.member_offset("sock", "sk_receive_queue")?,
        queue_prev: btf.member_offset("sk_buff_head", "prev")?,
        queue_qlen: btf.member_offset("sk_buff_head", "qlen")?,
        sk_num: common + btf.member_offset("sock_common", "skc_num")?,
        sk_protocol: btf.member_offset("sock", "sk_protocol")?,
        // possible_net_t: `struct net *net` at 0 (CONFIG_NET_NS).
        sk_net: common + btf.member_offset("sock_common", "skc_net")?,
        udp_reader_queue: btf.member_offset("udp_sock", "reader_queue")?,
        tcp_rcv_nxt: btf.member_offset("tcp_sock", "rcv_nxt")?,
        tcp_copied_seq: btf.member_offset("tcp_sock", "copied_seq")?,
        skb_data: btf.member_offset("sk_buff", "data")?,
        skb_len: btf.member_offset("sk_buff", "len")?,
        skb_data_len: btf.member_offset("sk_buff", "data_len")?,
        _pad: 0,
    };
    Ok(StageSetup {
        offsets,
        socket_unavailable,
    })
}

/// The stage latency probes. Dropping it detaches them.
pub struct StageHook {
    ebpf: Ebpf,
    socket_stages: bool,
    /// `probe trace` on a kernel with drop reasons: path_drop attaches.
    trace_drops: bool,
    /// The programs' links while attached; empty while a `--stage-window`
    /// is closed.
    links: Vec<(&'static str, BtfTracePointLinkId)>,
    /// Followed packets still waiting in a socket when a window closed
    /// (not followed to their read), since load.
    window_closed: u64,
    /// How it runs, as reports say.
    pub info: StageLatencyInfo,
}

impl Hook for StageHook {
    fn kind(&self) -> HookKind {
        HookKind::StageLatency
    }
    fn object(&self) -> &Ebpf {
        &self.ebpf
    }
    fn object_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
    /// Verifies the programs and attaches them.
    fn attach_tracing(&mut self, kernel_btf: &aya::Btf) -> Result<(), HookError> {
        let programs = self.programs();
        self.links = super::attach_btf_tracepoints(&mut self.ebpf, &programs, kernel_btf)?;
        Ok(())
    }
    fn read_into(&mut self, _: &ReadAt, sample: &mut Sample) -> Result<(), HookError> {
        sample.stage_latency = Some(self.read()?);
        sample.trace_drops = self.read_drops()?;
        sample.socket_waits = self.read_socket_waits()?;
        Ok(())
    }
    fn describe(&self, topology: &mut Topology) {
        topology.stage_latency = Some(self.info.clone());
        // The socket stages alone missing: the others run, and reports say why.
        if let Some(reason) = &self.info.socket_unavailable {
            topology.unavailable.push(Unavailable {
                stage: HookKind::StageLatency,
                iface: "*".into(),
                reason: reason.clone(),
            });
        }
    }
}

/// Loads the object (nothing attached yet: [`Hook::attach_tracing`]): packets
/// start at the NIC `nic_ifindex` in the namespace `node_netns`, are
/// decapsulated on the `vxlan` devices (ifindexes in that namespace; the
/// first four), and reach a pod in any other namespace. `trace_magic`:
/// `probe trace`'s signature (follow exactly the packets that carry it), or
/// None (one packet in `sample_every`). `not_drops`: the drop probe's
/// kfree_skb values that are not drops (`ReasonNames::not_drop_values`);
/// with them, a trace also says where marked packets were dropped (None:
/// the kernel has no drop reasons).
#[allow(clippy::too_many_arguments, reason = "one per global the object takes")]
pub fn load_stage_latency(
    setup: &StageSetup,
    nic_ifindex: u32,
    node_netns: u32,
    vxlan: &[u32],
    sample_every: u32,
    trace_magic: Option<u64>,
    not_drops: Option<[u32; 2]>,
    log: BpfLog,
) -> Result<StageHook, HookError> {
    let mut devices = PathDevices {
        nic_ifindex,
        node_netns,
        vxlan_ifindex: [0; PATH_VXLAN_DEVICES],
    };
    for (slot, ifindex) in devices.vxlan_ifindex.iter_mut().zip(vxlan) {
        *slot = *ifindex;
    }
    let sample_every = sample_every.max(1);
    let magic = trace_magic.unwrap_or(0);
    let trace_drops = trace_magic.is_some() && not_drops.is_some();
    let not_drops = not_drops.unwrap_or([NO_REASON; 2]);
    let ebpf = log
        .loader()
        // No CO-RE relocations in these programs: skip parsing the kernel's BTF.
        .btf(None)
        .override_global(GLOBAL_PATH_OFFSETS, &setup.offsets, true)
        .override_global(GLOBAL_PATH_DEVICES, &devices, true)
        .override_global(GLOBAL_PATH_SAMPLE_EVERY, &sample_every, true)
        .override_global(GLOBAL_PATH_TRACE_MAGIC, &magic, true)
        .override_global(GLOBAL_PATH_NOT_DROPS, &not_drops, true)
        .load(objects::STAGE_LATENCY)?;
    Ok(StageHook {
        ebpf,
        socket_stages: setup.socket_unavailable.is_none(),
        trace_drops,
        links: Vec::new(),
        window_closed: 0,
        info: StageLatencyInfo {
            sample_every,
            socket_stages: setup.socket_unavailable.is_none(),
            socket_unavailable: setup.socket_unavailable.clone(),
            trace: trace_magic.is_some(),
            window: None,
            drops_unavailable: None,
        },
    })
}

impl StageHook {
    fn programs(&self) -> Vec<(&'static str, &'static str)> {
        let mut programs = vec![RX];
        if self.socket_stages {
            programs.extend(SOCKET);
        }
        if self.trace_drops {
            programs.extend(DROP);
        }
        programs
    }

    /// `--stage-window`, a window's end: no packet starts to be followed
    /// from now on; those already followed go on to their read.
    pub fn close_window(&mut self) -> Result<(), HookError> {
        self.set_closing(1)
    }

    /// Followed packets queued to a socket and not yet read, as the
    /// counters tell (an upper bound: a packet whose socket closed stays
    /// counted until the window ends). Those between the NIC and the socket
    /// get there within microseconds.
    pub fn in_flight(&self) -> Result<u64, HookError> {
        let cpus = self.read()?;
        let total = |r: Reached| cpus.iter().map(|c| c.reached[r as usize]).sum::<u64>();
        let done = total(Reached::Read) + total(Reached::SocketBusy) + self.window_closed;
        Ok(total(Reached::Queued).saturating_sub(done))
    }

    /// Detaches the programs (their counts stay) and forgets the followed
    /// packets still waiting in a socket: their read, after the window,
    /// would be timed across the gap. Returns how many there were.
    pub fn detach_window(&mut self) -> Result<u64, HookError> {
        let unlinked =
            super::unlink_btf_tracepoints(&mut self.ebpf, std::mem::take(&mut self.links));
        let map_error = super::map_error(MAP_PATH_SOCKETS);
        let map = super::map_mut(&mut self.ebpf, MAP_PATH_SOCKETS)?;
        let mut sockets = Array::<_, PathSocket>::try_from(map).map_err(&map_error)?;
        // Counted as each slot is cleared: a failure halfway loses no count.
        let mut waiting = 0;
        for slot in 0..PATH_SOCKET_SLOTS as u32 {
            if sockets.get(&slot, 0).map_err(&map_error)?.protocol != 0 {
                sockets
                    .set(slot, PathSocket::default(), 0)
                    .map_err(&map_error)?;
                waiting += 1;
                self.window_closed += 1;
            }
        }
        unlinked.map(|()| waiting)
    }

    /// Opens a window again: attaches the programs and lets packets be
    /// followed. A followed packet's slot left from the last window is
    /// forgotten at its next stage (older than PATH_STAGE_MAX_NS).
    pub fn reopen_window(&mut self) -> Result<(), HookError> {
        if !self.links.is_empty() {
            return Ok(());
        }
        self.set_closing(0)?;
        let programs = self.programs();
        self.links = super::link_btf_tracepoints(&mut self.ebpf, &programs)?;
        Ok(())
    }

    /// Followed packets forgotten in a socket at a window's end, since load.
    pub fn window_closed(&self) -> u64 {
        self.window_closed
    }

    fn set_closing(&mut self, value: u32) -> Result<(), HookError> {
        let map_error = super::map_error(MAP_PATH_CLOSING);
        let map = super::map_mut(&mut self.ebpf, MAP_PATH_CLOSING)?;
        let mut closing = Array::<_, u32>::try_from(map).map_err(&map_error)?;
        closing.set(0, value, 0).map_err(map_error)
    }

    /// `probe trace`: marked packets dropped, per CPU (empty without the
    /// drop program).
    pub fn read_drops(&self) -> Result<Vec<PathDrops>, HookError> {
        if !self.trace_drops {
            return Ok(Vec::new());
        }
        Ok(read_per_cpu::<PathDrops>(&self.ebpf, MAP_PATH_DROPS, 1)?.remove(0))
    }

    /// Cumulative counters, one per CPU.
    pub fn read(&self) -> Result<Vec<PathCpu>, HookError> {
        Ok(read_per_cpu::<PathCpu>(&self.ebpf, MAP_PATH_CPU, 1)?.remove(0))
    }

    /// The per-socket reads, `[slot][cpu]` (empty where the kernel has no
    /// socket stages).
    pub fn read_socket_waits(&self) -> Result<Vec<Vec<SocketWait>>, HookError> {
        if !self.socket_stages {
            return Ok(Vec::new());
        }
        read_per_cpu::<SocketWait>(
            &self.ebpf,
            MAP_PATH_SOCKET_WAITS,
            PATH_SOCKET_WAIT_SLOTS as u32,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::btf::fixture::kernel_like;

    #[test]
    fn what_the_kernel_lacks_is_named() {
        let none = kernel_like(&[], &[]);
        assert!(setup(&none)
            .unwrap_err()
            .to_string()
            .contains("net:netif_receive_skb"));
    }
}
