//! `--steering` (opt-in, per packet): where a packet was polled and where the
//! stack processed it (RPS/RFS move the latter), and for each socket read
//! where the data was queued and where the reader ran (RFS's goal: the same).
//!
//! Packets are followed by skb->head (the verifier forbids arithmetic on the
//! skb pointer, so the value is copied out with a helper). The reader cannot
//! be tied to a packet on Linux 6.x: UDP copies linear skbs without a
//! tracepoint and frees them on the allocating CPU, so reads are tied to the
//! socket instead: sock:sk_data_ready (stack CPU) -> sock:sock_recv_length
//! (reader CPU). Both tables are shared samples: the packets' is two-way (a
//! packet takes one of two slots), the sockets' direct-mapped (a later socket
//! with the same slot replaces the earlier).

use aya_ebpf::{
    helpers::{bpf_get_smp_processor_id, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{Array, PerCpuArray},
    programs::BtfTracePointContext,
};
use probe_common::{
    drops::mix,
    latency::{
        steer_cpu, SteerMatrix, SteerOffsets, SteerPacket, SteerSocket, STEER_CPUS, STEER_SLOTS,
    },
};

use crate::{
    kernel::{field, netns_inum},
    scope::in_scope,
};

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;

#[unsafe(no_mangle)]
static STEER_OFFSETS: SteerOffsets = SteerOffsets {
    skb_head: 0,
    skb_dev: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    sk_num: 0,
    sk_protocol: 0,
    sk_net: 0,
    net_inum: 0,
};

/// `[ifindex, netns inode]` of the watched NIC.
#[unsafe(no_mangle)]
static STEER_NIC: [u32; 2] = [0, 0];

#[map]
static STEER_PACKETS: Array<SteerPacket> = Array::with_max_entries(STEER_SLOTS as u32, 0);
#[map]
static STEER_SOCKETS: Array<SteerSocket> = Array::with_max_entries(STEER_SLOTS as u32, 0);
#[map]
static STEER: PerCpuArray<SteerMatrix> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn offsets() -> SteerOffsets {
    unsafe { core::ptr::read_volatile(&STEER_OFFSETS) }
}

#[inline(always)]
fn cpu() -> u32 {
    unsafe { bpf_get_smp_processor_id() }
}

/// A kernel value at `base + offset`, read with the fault-safe helper.
#[inline(always)]
fn read<T>(base: *const u8, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize) as *const T) }.ok()
}

/// Whether `skb` (the tp_btf argument) was received by the watched NIC:
/// skb->dev's ifindex and netns. Stops at the ifindex (not `dev_ids`): this
/// runs for every packet any device polls, most of them not the NIC's (the
/// VXLAN device's GRO cells poll each decapsulated packet again).
#[inline(always)]
fn from_nic(skb: *const u8) -> bool {
    let o = offsets();
    let nic = unsafe { core::ptr::read_volatile(&STEER_NIC) };
    let dev: *const u8 = unsafe { field(skb, o.skb_dev) };
    if dev.is_null() || unsafe { field::<u32>(dev, o.dev_ifindex) } != nic[0] {
        return false;
    }
    unsafe { netns_inum(field(dev, o.dev_nd_net), o.net_inum) == nic[1] }
}

/// The two slots a packet may take: Fibonacci hashing of skb->head (heads
/// are page- or cache-line-aligned, so the low bits carry nothing), and the
/// slot next to it. Two ways, so that two packets in flight at once (RPS: the
/// NIC's CPU polls the next packet while another CPU's backlog holds this
/// one) rarely share a slot.
#[inline(always)]
fn slots(id: u64) -> [u32; 2] {
    let bits = STEER_SLOTS.trailing_zeros();
    let first = (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as u32;
    [first, (first + 1) & (STEER_SLOTS as u32 - 1)]
}

#[inline(always)]
fn slot(i: u32) -> Option<&'static mut SteerPacket> {
    // SAFETY: a slot of a shared array. A packet's slot is written by the CPU
    // that polls it, then by the CPU whose stack takes it, in that order, so
    // plain stores do; a slot two packets contend for is a sample lost.
    STEER_PACKETS.get_ptr_mut(i).map(|p| unsafe { &mut *p })
}

/// skb->head of the tp_btf argument.
#[inline(always)]
fn packet_id(ctx: &BtfTracePointContext) -> Option<u64> {
    let skb: *const u8 = ctx.arg(0);
    if skb.is_null() {
        return None;
    }
    read(skb, offsets().skb_head)
}

/// net:napi_gro_receive_entry: on the CPU that polls the device. Only the
/// NIC's polls start a packet: a decapsulated packet is polled again (the
/// VXLAN device's GRO cell), and must not restart. Every NIC poll does
/// restart its slot: drivers recycle buffers (page_pool), so the head of
/// this packet was the head of an earlier one moments ago. The packet takes
/// the first of its slots that holds no other packet still on its way to
/// the stack (or the first, if both do: a GRO-merged or dropped packet never
/// gets there and keeps its slot until the next one takes it).
#[btf_tracepoint(function = "napi_gro_receive_entry")]
pub fn steer_napi(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    if skb.is_null() || !from_nic(skb) {
        return 0;
    }
    let Some(id) = packet_id(&ctx) else {
        return 0;
    };
    let [a, b] = slots(id);
    let free = |p: &SteerPacket| p.id == id || p.stack_cpu != u32::MAX;
    let target = match (slot(a), slot(b)) {
        (Some(p), _) if free(p) => Some(p),
        (Some(p), Some(q)) => Some(if free(q) { q } else { p }),
        (p, _) => p,
    };
    if let Some(p) = target {
        *p = SteerPacket {
            id,
            napi_cpu: cpu(),
            stack_cpu: u32::MAX,
        };
    }
    0
}

/// net:netif_receive_skb: where the stack runs, after RPS/RFS.
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn steer_stack(ctx: BtfTracePointContext) -> i32 {
    let Some(id) = packet_id(&ctx) else {
        return 0;
    };
    let [a, b] = slots(id);
    let waiting = |p: &&mut SteerPacket| p.id == id && p.stack_cpu == u32::MAX;
    let Some(p) = slot(a).filter(waiting).or_else(|| slot(b).filter(waiting)) else {
        return 0;
    };
    let stack = cpu();
    p.stack_cpu = stack;
    if let Some(m) = STEER.get_ptr_mut(0) {
        let i = steer_cpu(p.napi_cpu) * STEER_CPUS + steer_cpu(stack);
        // SAFETY: this CPU's copy, through the pointer: steer_recv (process
        // context) may be interrupted here by this softirq program, and
        // writes the other matrix only.
        unsafe { (*m).napi_to_stack[i & (STEER_CPUS * STEER_CPUS - 1)] += 1 };
    }
    0
}

/// The socket's (netns, local port) and its slot.
#[inline(always)]
fn socket(ctx: &BtfTracePointContext) -> Option<(u32, u32, &'static mut SteerSocket)> {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return None;
    }
    let o = offsets();
    // Netlink and other local sockets read on whatever CPU: only TCP and UDP.
    let protocol = unsafe { field::<u16>(sk, o.sk_protocol) };
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return None;
    }
    let port = unsafe { field::<u16>(sk, o.sk_num) } as u32;
    let netns = unsafe { netns_inum(field(sk, o.sk_net), o.net_inum) };
    if !in_scope(netns) {
        return None;
    }
    let slot = mix(netns, port, 0) & (STEER_SLOTS as u32 - 1);
    // SAFETY: a slot of a shared array; see the module comment.
    STEER_SOCKETS
        .get_ptr_mut(slot)
        .map(|s| (netns, port, unsafe { &mut *s }))
}

/// sock:sk_data_ready: data queued to a socket, on the stack's CPU.
#[btf_tracepoint(function = "sk_data_ready")]
pub fn steer_ready(ctx: BtfTracePointContext) -> i32 {
    if let Some((netns, port, s)) = socket(&ctx) {
        *s = SteerSocket {
            netns,
            port,
            ready_cpu: cpu(),
            _pad: 0,
        };
    }
    0
}

/// sock:sock_recv_length: a read on the reading thread's CPU.
#[btf_tracepoint(function = "sock_recv_length")]
pub fn steer_recv(ctx: BtfTracePointContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    if ret <= 0 {
        return 0;
    }
    if let Some((netns, port, s)) = socket(&ctx) {
        if s.netns == netns && s.port == port {
            if let Some(m) = STEER.get_ptr_mut(0) {
                let i = steer_cpu(s.ready_cpu) * STEER_CPUS + steer_cpu(cpu());
                // SAFETY: this CPU's copy, through the pointer (see steer_stack).
                unsafe { (*m).ready_to_reader[i & (STEER_CPUS * STEER_CPUS - 1)] += 1 };
            }
        }
    }
    0
}
