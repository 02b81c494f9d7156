//! `--stage-latency` (opt-in): one received packet in N, timed stage by
//! stage (probe_common::stage_latency has the stages).
//!
//! net:netif_receive_skb runs once per device a packet is received on
//! (__netif_receive_skb_core), so one program sees the NIC, the VXLAN device
//! (after vxlan_rcv and its GRO cell) and the pod's end of the veth (after
//! veth_xmit and the backlog), each with skb->dev set. The packet is followed
//! by skb->head: decapsulation pulls headers and the veth forwards the same
//! skb, so the buffer does not change on the way.
//!
//! A followed packet that GRO merges into another, that is dropped, or whose
//! slot another packet takes, simply stops being followed: it is counted at
//! the stages it reached and timed for none it did not. Drivers recycle
//! buffers (page_pool), so every packet at the NIC clears a slot still
//! holding its buffer.
//!
//! The socket: sk_data_ready has no skb, so the packet that just reached the
//! pod on this CPU is matched with the tail of the socket's queue. Reads have
//! no skb either (UDP copies linear skbs without a tracepoint), so the read
//! that returns the packet is found by its place in the queue: for UDP the
//! datagrams queued up to it (one read takes one datagram), for TCP its end
//! sequence number against copied_seq.
//!
//! `probe trace` loads the same programs with a signature: then the NIC
//! follows exactly the packets that carry it (no sampling), and path_drop
//! (skb:kfree_skb) says where a marked packet was dropped, and why.

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::{btf_tracepoint, map},
    maps::{Array, PerCpuArray},
    programs::BtfTracePointContext,
};
use probe_common::{
    drops::{mix, reason_slot, NO_REASON, REASON_SLOTS},
    latency::{bucket, HIST_BUCKETS},
    stage_latency::{
        packet_slot, NsHistogram, PathCpu, PathDevices, PathDrops, PathOffsets, PathPacket,
        PathSocket, Reached, SocketWait, Transition, MSG_PEEK, PATH_QUEUE_WINDOW_NS,
        PATH_SOCKET_SLOTS, PATH_SOCKET_WAIT_SLOTS, PATH_STAGE_MAX_NS, PATH_VXLAN_DEVICES,
        STAGE_DECAP, STAGE_NIC, TRACE_DROP_STAGES, TRACE_MAGIC_OFFSETS,
    },
};

use crate::kernel::{field, netns_inum};

const IPPROTO_TCP: u16 = 6;
const IPPROTO_UDP: u16 = 17;
/// A socket's followed packet that no read took within this time (the
/// socket was closed, or its reader stopped) frees the slot for another.
const SOCKET_STALE_NS: u64 = 10_000_000_000;

#[unsafe(no_mangle)]
static PATH_OFFSETS: PathOffsets = PathOffsets {
    skb_head: 0,
    skb_dev: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    net_inum: 0,
    sk_receive_queue: 0,
    queue_prev: 0,
    queue_qlen: 0,
    sk_num: 0,
    sk_protocol: 0,
    sk_net: 0,
    udp_reader_queue: 0,
    tcp_rcv_nxt: 0,
    tcp_copied_seq: 0,
    skb_data: 0,
    skb_len: 0,
    skb_data_len: 0,
    _pad: 0,
};
#[unsafe(no_mangle)]
static PATH_DEVICES: PathDevices = PathDevices {
    nic_ifindex: 0,
    node_netns: 0,
    vxlan_ifindex: [0; PATH_VXLAN_DEVICES],
};
#[unsafe(no_mangle)]
static PATH_SAMPLE_EVERY: u32 = 64;
/// `probe trace`'s signature; 0: sample one packet in PATH_SAMPLE_EVERY.
#[unsafe(no_mangle)]
static PATH_TRACE_MAGIC: u64 = 0;
/// kfree_skb reasons that are not drops (SKB_NOT_DROPPED_YET, SKB_CONSUMED).
#[unsafe(no_mangle)]
static PATH_NOT_DROPS: [u32; 2] = [NO_REASON, NO_REASON];

#[map]
static PATH_PACKETS: Array<PathPacket> =
    Array::with_max_entries(probe_common::stage_latency::PATH_SLOTS as u32, 0);
#[map]
static PATH_SOCKETS: Array<PathSocket> = Array::with_max_entries(PATH_SOCKET_SLOTS as u32, 0);
#[map]
static PATH_CPU: PerCpuArray<PathCpu> = PerCpuArray::with_max_entries(1, 0);
#[map]
static PATH_DROPS: PerCpuArray<PathDrops> = PerCpuArray::with_max_entries(1, 0);
/// MAP_PATH_CLOSING: read at the NIC only when a sample is due.
#[map]
static PATH_CLOSING: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static PATH_SOCKET_WAITS: PerCpuArray<SocketWait> =
    PerCpuArray::with_max_entries(PATH_SOCKET_WAIT_SLOTS as u32, 0);

#[inline(always)]
fn offsets() -> PathOffsets {
    unsafe { core::ptr::read_volatile(&PATH_OFFSETS) }
}

#[inline(always)]
fn now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// This CPU's counters, as a raw pointer: never a `&mut` to the whole
/// struct, for the programs that use it nest on a CPU. path_read (and
/// path_queued, for TCP's backlog at release_sock) run in process context,
/// where a softirq can run path_rx, path_queued and path_drop midway; a
/// `&mut` held across that would let the compiler assume the fields did not
/// change (the pending packet does). Each access goes through the pointer,
/// and the fields split between contexts (the reader's Read, queued->read
/// and nic->read by path_read only), so an interrupted read loses no
/// increment.
#[inline(always)]
fn this_cpu() -> Option<*mut PathCpu> {
    PATH_CPU.get_ptr_mut(0)
}

/// A kernel value at `base + offset`, read with the fault-safe helper
/// (memory the verifier cannot type: the socket's queue, tcp_sock/udp_sock
/// fields past struct sock).
#[inline(always)]
fn read<T>(base: u64, offset: u32) -> Option<T> {
    unsafe { bpf_probe_read_kernel((base + offset as u64) as *const T) }.ok()
}

#[inline(always)]
fn observe(c: *mut PathCpu, t: Transition, from: u64, to: u64) {
    let i = t as usize;
    if i < Transition::COUNT {
        // SAFETY: this CPU's copy (this_cpu); a histogram one context writes.
        add(unsafe { &mut (*c).transitions[i] }, from, to);
    }
}

/// Adds `to - from` ns to `h` (nothing if the clock went backwards).
#[inline(always)]
fn add(h: &mut NsHistogram, from: u64, to: u64) {
    if to < from {
        return;
    }
    let v = to - from;
    h.buckets[bucket(v, HIST_BUCKETS) & (HIST_BUCKETS - 1)] += 1;
    h.sum += v;
    if v > h.max {
        h.max = v;
    }
}

#[inline(always)]
fn count(c: *mut PathCpu, r: Reached) {
    let i = r as usize;
    if i < Reached::COUNT {
        // SAFETY: this CPU's copy (this_cpu).
        unsafe { (*c).reached[i] += 1 };
    }
}

#[inline(always)]
fn is_vxlan(d: &PathDevices, ifindex: u32) -> bool {
    let mut i = 0;
    while i < PATH_VXLAN_DEVICES {
        if d.vxlan_ifindex[i] != 0 && d.vxlan_ifindex[i] == ifindex {
            return true;
        }
        i += 1;
    }
    false
}

/// net:netif_receive_skb: the NIC (start or clear), the VXLAN device, a pod.
#[btf_tracepoint(function = "netif_receive_skb")]
pub fn path_rx(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    if skb.is_null() {
        return 0;
    }
    let o = offsets();
    let d = unsafe { core::ptr::read_volatile(&PATH_DEVICES) };
    let dev: *const u8 = unsafe { field(skb, o.skb_dev) };
    if dev.is_null() {
        return 0;
    }
    let ifindex: u32 = unsafe { field(dev, o.dev_ifindex) };
    let netns = unsafe { netns_inum(field(dev, o.dev_nd_net), o.net_inum) };
    // `unsigned char *head` loads as untrusted memory (no arithmetic):
    // copied out as a number with the helper instead.
    let Some(head) = read::<u64>(skb as u64, o.skb_head) else {
        return 0;
    };
    let Some(p) = PATH_PACKETS.get_ptr_mut(packet_slot(head)) else {
        return 0;
    };
    // SAFETY: a slot of a shared array. One packet is handled by one CPU at
    // a time, stage after stage, so plain stores do; two CPUs starting
    // packets of the same slot at once can tear it, which loses one.
    let p = unsafe { &mut *p };
    let at_nic_now = netns == d.node_netns && ifindex == d.nic_ifindex;
    // Most runs: a packet nobody follows, on a device past the NIC.
    if !at_nic_now && p.head != head {
        return 0;
    }
    let Some(c) = this_cpu() else {
        return 0;
    };
    if at_nic_now {
        let magic = unsafe { core::ptr::read_volatile(&PATH_TRACE_MAGIC) };
        if magic == 0 {
            at_nic(c, p, head);
        } else if carries(skb, &o, magic) {
            start(c, p, head);
        } else if p.head == head {
            p.head = 0;
        }
        return 0;
    }
    if netns == d.node_netns {
        if p.stage == STAGE_NIC && is_vxlan(&d, ifindex) {
            let t = now();
            if !recent(p, t) {
                return 0;
            }
            observe(c, Transition::NicToDecap, p.at_stage, t);
            count(c, Reached::Decap);
            p.stage = STAGE_DECAP;
            p.at_stage = t;
        }
        return 0;
    }
    // Another namespace: a pod (the packet came through the node).
    let t = now();
    if !recent(p, t) {
        return 0;
    }
    let from = if p.stage == STAGE_DECAP {
        Transition::DecapToPod
    } else {
        Transition::NicToPod
    };
    observe(c, from, p.at_stage, t);
    count(c, Reached::Pod);
    // SAFETY: this CPU's copy (this_cpu).
    unsafe {
        (*c).pending_head = head;
        (*c).pending_at_nic = p.at_nic;
        (*c).pending_at_pod = t;
    }
    p.head = 0;
    0
}

/// Whether the packet in `p` reached its stage less than
/// PATH_STAGE_MAX_NS before `t`; if not, it is forgotten.
#[inline(always)]
fn recent(p: &mut PathPacket, t: u64) -> bool {
    if t >= p.at_stage && t - p.at_stage < PATH_STAGE_MAX_NS {
        return true;
    }
    p.head = 0;
    false
}

#[inline(always)]
fn at_nic(c: *mut PathCpu, p: &mut PathPacket, head: u64) {
    // SAFETY (every `*c` below): this CPU's copy (this_cpu); the countdown is
    // the NIC's, in softirq only.
    if unsafe { (*c).countdown } == 0 {
        if PATH_CLOSING.get(0).is_some_and(|closing| *closing != 0) {
            // The window closes: the countdown stays due until it opens.
            if p.head == head {
                p.head = 0;
            }
            return;
        }
        let every = unsafe { core::ptr::read_volatile(&PATH_SAMPLE_EVERY) };
        unsafe { (*c).countdown = every.saturating_sub(1) as u64 };
        start(c, p, head);
    } else {
        unsafe { (*c).countdown -= 1 };
        if p.head == head {
            // The buffer of a followed packet is back at the NIC: that
            // packet's way ended somewhere we do not see.
            p.head = 0;
        }
    }
}

/// Follows the packet with buffer `head` from the NIC on.
#[inline(always)]
fn start(c: *mut PathCpu, p: &mut PathPacket, head: u64) {
    let t = now();
    *p = PathPacket {
        head,
        stage: STAGE_NIC,
        _pad: 0,
        at_nic: t,
        at_stage: t,
    };
    count(c, Reached::Sampled);
}

/// Whether the packet carries `probe trace`'s signature at one of the
/// places a marked packet has it (TRACE_MAGIC_OFFSETS from skb->data).
#[inline(always)]
fn carries(skb: *const u8, o: &PathOffsets, magic: u64) -> bool {
    let Some(data) = read::<u64>(skb as u64, o.skb_data) else {
        return false;
    };
    // The linear bytes: past them the buffer may hold an earlier packet's
    // (a short RST in a buffer a marked SYN used).
    let len: u32 = unsafe { field(skb, o.skb_len) };
    let data_len: u32 = unsafe { field(skb, o.skb_data_len) };
    let linear = len.saturating_sub(data_len);
    let mut i = 0;
    while i < TRACE_MAGIC_OFFSETS.len() {
        let at = TRACE_MAGIC_OFFSETS[i];
        if at + 8 <= linear && read::<u64>(data, at) == Some(magic) {
            return true;
        }
        i += 1;
    }
    false
}

/// skb:kfree_skb (`probe trace` only, Linux >= 5.17): a marked packet's
/// drop, at the stage it had reached: a followed one by its buffer (the
/// NIC's or the VXLAN device's slot, or the pod's pending packet), one the
/// NIC never saw by its signature (the sender's node dropped it).
#[btf_tracepoint(function = "kfree_skb")]
pub fn path_drop(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let reason: u32 = ctx.arg(2);
    let not_drops = unsafe { core::ptr::read_volatile(&PATH_NOT_DROPS) };
    if skb.is_null() || reason == not_drops[0] || reason == not_drops[1] {
        return 0;
    }
    let o = offsets();
    let magic = unsafe { core::ptr::read_volatile(&PATH_TRACE_MAGIC) };
    let Some(head) = read::<u64>(skb as u64, o.skb_head) else {
        return 0;
    };
    let Some(c) = this_cpu() else {
        return 0;
    };
    let stage = match PATH_PACKETS.get_ptr_mut(packet_slot(head)) {
        // SAFETY: a slot of the shared array; see path_rx.
        Some(p) if unsafe { (*p).head } == head => {
            let p = unsafe { &mut *p };
            p.head = 0;
            p.stage as usize
        }
        // SAFETY: this CPU's copy (this_cpu).
        _ if unsafe { (*c).pending_head } == head => {
            unsafe { (*c).pending_head = 0 };
            3
        }
        _ if magic != 0 && carries(skb, &o, magic) => 0,
        _ => return 0,
    };
    if let Some(d) = PATH_DROPS.get_ptr_mut(0) {
        // SAFETY: this CPU's copy; kfree_skb's program does not nest with
        // itself on a CPU.
        let d = unsafe { &mut *d };
        let slot = reason_slot(reason) & (REASON_SLOTS - 1);
        d.by_stage[stage & (TRACE_DROP_STAGES - 1)][slot] += 1;
    }
    0
}

/// skb:consume_skb (`probe trace` only, with path_drop): a followed packet
/// freed as done, not dropped: a TCP SYN the listener answered (it is not
/// queued to a socket), or one consumed on the way. It is no longer
/// followed, so that a later packet in the same buffer (the sender's RST)
/// is not taken for it.
#[btf_tracepoint(function = "consume_skb")]
pub fn path_consume(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    if skb.is_null() {
        return 0;
    }
    let Some(head) = read::<u64>(skb as u64, offsets().skb_head) else {
        return 0;
    };
    if let Some(c) = this_cpu() {
        // SAFETY: this CPU's copy (this_cpu).
        unsafe {
            if (*c).pending_head == head {
                (*c).pending_head = 0;
            }
        }
    }
    if let Some(p) = PATH_PACKETS.get_ptr_mut(packet_slot(head)) {
        // SAFETY: a slot of the shared array; see path_rx.
        let p = unsafe { &mut *p };
        if p.head == head {
            p.head = 0;
        }
    }
    0
}

/// The socket's (netns, port, protocol) and its slot, for TCP and UDP.
#[inline(always)]
fn socket(sk: *const u8, o: &PathOffsets) -> Option<(u32, u16, u16, &'static mut PathSocket)> {
    if sk.is_null() {
        return None;
    }
    let protocol = unsafe { field::<u16>(sk, o.sk_protocol) };
    if protocol != IPPROTO_TCP && protocol != IPPROTO_UDP {
        return None;
    }
    let port = unsafe { field::<u16>(sk, o.sk_num) };
    let netns = unsafe { netns_inum(field(sk, o.sk_net), o.net_inum) };
    let slot = mix(netns, port as u32, protocol as u32) & (PATH_SOCKET_SLOTS as u32 - 1);
    // SAFETY: a slot of a shared array: the stack CPU fills a free slot, the
    // reader's CPU frees it.
    PATH_SOCKETS
        .get_ptr_mut(slot)
        .map(|s| (netns, port, protocol, unsafe { &mut *s }))
}

/// sock:sk_data_ready: data queued to a socket (Linux >= 6.5).
#[btf_tracepoint(function = "sk_data_ready")]
pub fn path_queued(ctx: BtfTracePointContext) -> i32 {
    let Some(c) = this_cpu() else {
        return 0;
    };
    // The pending packet, read once: TCP queues from process context too
    // (the socket's backlog, at release_sock), where a softirq can run the
    // pod stage on this CPU and replace the pending packet midway.
    // SAFETY (every `*c` below): this CPU's copy (this_cpu).
    let (head, at_pod, at_nic) =
        unsafe { ((*c).pending_head, (*c).pending_at_pod, (*c).pending_at_nic) };
    if head == 0 {
        return 0;
    }
    let t = now();
    if t < at_pod || t - at_pod > PATH_QUEUE_WINDOW_NS {
        unsafe { (*c).pending_head = 0 };
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    let o = offsets();
    let queue = sk as u64 + o.sk_receive_queue as u64;
    let Some(tail) = read::<u64>(queue, o.queue_prev) else {
        return 0;
    };
    // An empty queue's prev points at the queue itself.
    if tail == queue || read::<u64>(tail, o.skb_head) != Some(head) {
        return 0;
    }
    // Only TCP and UDP sockets are followed to the read. A raw or ping
    // socket, or a packet tap's copy, is not counted as this packet's queue:
    // counted, it would wait for a read never followed (and hold each
    // --stage-window drain to its maximum); the packet stays pending for a
    // TCP or UDP socket that may queue it next.
    let Some((netns, port, protocol, s)) = socket(sk, &o) else {
        return 0;
    };
    let until = if protocol == IPPROTO_UDP {
        // Datagrams ahead of it in the reader's queue, plus the receive
        // queue up to and including it.
        let queued = read::<u32>(queue, o.queue_qlen).unwrap_or(0);
        let reader = read::<u32>(sk as u64 + o.udp_reader_queue as u64, o.queue_qlen).unwrap_or(0);
        queued + reader
    } else {
        match read::<u32>(sk as u64, o.tcp_rcv_nxt) {
            Some(seq) => seq,
            None => return 0,
        }
    };
    if unsafe { (*c).pending_head } != head {
        return 0; // another packet became pending meanwhile: follow that one
    }
    unsafe { (*c).pending_head = 0 };
    observe(c, Transition::PodToQueued, at_pod, t);
    count(c, Reached::Queued);
    if s.protocol != 0 && t >= s.queued_at && t - s.queued_at < SOCKET_STALE_NS {
        count(c, Reached::SocketBusy);
        return 0;
    }
    *s = PathSocket {
        netns,
        port,
        protocol,
        until,
        _pad: 0,
        at_nic,
        queued_at: t,
    };
    0
}

/// sock:sock_recv_length: a read returned (Linux >= 6.5).
#[btf_tracepoint(function = "sock_recv_length")]
pub fn path_read(ctx: BtfTracePointContext) -> i32 {
    let ret: i32 = ctx.arg(1);
    let flags: i32 = ctx.arg(2);
    if ret <= 0 || flags & MSG_PEEK != 0 {
        return 0;
    }
    let sk: *const u8 = ctx.arg(0);
    let o = offsets();
    let Some((netns, port, protocol, s)) = socket(sk, &o) else {
        return 0;
    };
    if s.protocol != protocol || s.port != port || s.netns != netns {
        return 0;
    }
    let done = if protocol == IPPROTO_UDP {
        s.until = s.until.saturating_sub(1);
        s.until == 0
    } else {
        match read::<u32>(sk as u64, o.tcp_copied_seq) {
            // Sequence numbers wrap: compare the difference's sign.
            Some(copied) => copied.wrapping_sub(s.until) as i32 >= 0,
            None => false,
        }
    };
    if !done {
        return 0;
    }
    let Some(c) = this_cpu() else {
        return 0;
    };
    let t = now();
    observe(c, Transition::QueuedToRead, s.queued_at, t);
    observe(c, Transition::NicToRead, s.at_nic, t);
    count(c, Reached::Read);
    // The same times for this socket alone (its reader's CPU copy).
    let slot = mix(netns, port as u32, protocol as u32) & (PATH_SOCKET_WAIT_SLOTS as u32 - 1);
    if let Some(w) = PATH_SOCKET_WAITS.get_ptr_mut(slot) {
        // SAFETY: this CPU's copy, written by path_read only (process context).
        let w = unsafe { &mut *w };
        if w.protocol == 0 {
            (w.netns, w.port, w.protocol) = (netns, port, protocol);
        }
        if (w.netns, w.port, w.protocol) == (netns, port, protocol) {
            add(&mut w.queued_to_read, s.queued_at, t);
            add(&mut w.nic_to_read, s.at_nic, t);
        }
    }
    s.protocol = 0;
    0
}
