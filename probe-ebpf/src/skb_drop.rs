//! `skb:kfree_skb` (tp_btf): every skb the kernel drops, by reason, netns and
//! device, in skbs and in segments, and the addresses of dropped IP packets.
//! Runs for drops only.
//!
//! Rust has no CO-RE: the loader reads the struct offsets from the running
//! kernel's BTF and sets DROP_OFFSETS. Fields of BTF-typed structs are read
//! with direct loads (`kernel::field`); packet bytes and skb_shared_info,
//! which are not typed, with bpf_probe_read_kernel. Since Linux 5.17 the
//! tracepoint is (skb, location, reason[, rx_sk from 6.11]): the reason is
//! argument 2.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf,
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use aya_log_ebpf::warn;
use probe_common::{
    classify::{ETH_P_IPV4, ETH_P_IPV6},
    drops::{
        count_in, mix, reason_slot, Benign, DropKey, DropOffsets, DropTable, FlowKey, FlowTable,
        BENIGN_KINDS, CORE_REASON_SLOTS, FAMILY_V4, FAMILY_V6, NO_REASON, REASON_SLOTS,
    },
};

use crate::{
    kernel::{dev_ids, field, netns_inum},
    scope::in_scope,
    vxlan_ports::is_vxlan_port,
};

#[unsafe(no_mangle)]
static DROP_OFFSETS: DropOffsets = DropOffsets {
    skb_dev: 0,
    skb_head: 0,
    skb_network_header: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    net_inum: 0,
    skb_end: 0,
    shinfo_gso_segs: 0,
    skb_sk: 0,
    sk_net: 0,
    dev_rtnl_link_ops: 0,
    link_ops_kind: 0,
};
/// SKB_DROP_REASON_NO_SOCKET of the running kernel (from BTF); NO_REASON
/// if it has none. Set by the loader.
#[unsafe(no_mangle)]
static REASON_NO_SOCKET: u32 = NO_REASON;
/// SKB_DROP_REASON_NOT_SPECIFIED of the running kernel (from BTF).
#[unsafe(no_mangle)]
static REASON_NOT_SPECIFIED: u32 = NO_REASON;
/// The inode of the NIC's network namespace: outer VXLAN packets dropped
/// there are counted per reason in `DropTable::vxlan_outer`. Set by the loader.
#[unsafe(no_mangle)]
static NIC_NETNS: u32 = 0;
#[map]
static DROPS: PerCpuArray<DropTable> = PerCpuArray::with_max_entries(1, 0);
#[map]
static DROP_FLOWS: PerCpuArray<FlowTable> = PerCpuArray::with_max_entries(1, 0);

/// Values of `enum skb_drop_reason` that are not drops: SKB_NOT_DROPPED_YET
/// (Linux 5.19+) and SKB_CONSUMED (6.3+), from BTF; NO_REASON where absent.
/// Before 5.19 value 0 was NOT_SPECIFIED, a real drop: no fixed numbers here.
#[unsafe(no_mangle)]
static NOT_DROPS: [u32; 2] = [NO_REASON, NO_REASON];

const IPPROTO_UDP: u8 = 17;

#[btf_tracepoint(function = "kfree_skb")]
pub fn skb_drop(ctx: BtfTracePointContext) -> i32 {
    let skb: *const u8 = ctx.arg(0);
    let location: u64 = ctx.arg(1);
    let reason: u32 = ctx.arg(2);
    let not_drops = unsafe { core::ptr::read_volatile(&NOT_DROPS) };
    if reason != not_drops[0] && reason != not_drops[1] && !skb.is_null() {
        if reason < 1 << 16 && reason >= CORE_REASON_SLOTS {
            warn!(
                &ctx,
                "drop reason {} is past the {} core reasons the table holds: counted as an unnamed reason",
                reason,
                CORE_REASON_SLOTS
            );
        }
        // SAFETY: struct fields are read with fault-safe BTF-typed loads
        // (`field`), packet bytes and skb_shared_info with bpf_probe_read_kernel.
        unsafe { record(skb, reason, location) };
    }
    0
}

#[inline(always)]
unsafe fn record(skb: *const u8, reason: u32, location: u64) {
    let o = unsafe { core::ptr::read_volatile(&DROP_OFFSETS) };
    let dev: *const u8 = unsafe { field(skb, o.skb_dev) };
    let (mut netns, mut ifindex) = (0u32, 0u32);
    let mut decapsulated = false;
    if !dev.is_null() {
        let ids = unsafe { dev_ids(dev, o.dev_ifindex, o.dev_nd_net, o.net_inum) };
        (netns, ifindex) = (ids.netns, ids.ifindex);
        decapsulated = unsafe { is_vxlan_dev(dev, &o) };
    } else {
        // TCP frees queued skbs with no device (TCP_OFOMERGE, TCP_OLD_SEQUENCE,
        // QUEUE_PURGE, ...): their namespace is the socket's.
        let sk: *const u8 = unsafe { field(skb, o.skb_sk) };
        if !sk.is_null() {
            netns = unsafe { netns_inum(field(sk, o.sk_net), o.net_inum) };
        }
    }
    let Some(table) = DROPS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's copy. tp_btf programs do not nest on one CPU (the
    // kernel skips a run that would recurse), so plain increments are safe.
    let table = unsafe { &mut *table };
    let segments = unsafe { segments_of(skb, &o) };
    let mut flow = FlowKey {
        netns,
        reason,
        ..FlowKey::default()
    };
    let packet = unsafe { flow_of(skb, &o, &mut flow) };
    // Drops that lose no data, told apart by the packet (see `Benign`).
    let no_socket = reason == unsafe { core::ptr::read_volatile(&REASON_NO_SOCKET) };
    let not_specified = reason == unsafe { core::ptr::read_volatile(&REASON_NOT_SPECIFIED) };
    if not_specified && in_scope(netns) {
        // A reason says why; without one, where: the freeing function.
        let home = mix(location as u32, (location >> 32) as u32, 0) as usize;
        count_in(&mut table.not_specified_at, home, location);
    }
    let benign = if packet.echo_reply && no_socket {
        Some(Benign::EchoReply)
    } else if packet.tcp && not_specified {
        Some(Benign::TcpIgnored)
    } else if packet.tcp && !packet.tcp_syn && no_socket {
        Some(Benign::TcpStale)
    } else if packet.control && not_specified {
        Some(Benign::Control)
    } else {
        None
    };
    if let Some(kind) = benign {
        if in_scope(netns) {
            let k = kind as usize & (BENIGN_KINDS - 1);
            table.benign_skbs[k] += 1;
            table.benign_segments[k] += segments;
        } else {
            table.out_of_scope += 1;
        }
        return;
    }
    let (has_flow, vxlan_outer) = (packet.has_flow, packet.vxlan_outer);
    // The mask (a no-op: reason_slot is < REASON_SLOTS) is what lets the
    // verifier bound the index; LLVM folds the clamp inside reason_slot away.
    let slot = reason_slot(reason) & (REASON_SLOTS - 1);
    // Outer VXLAN packets lost on the NIC's side, whatever --drop-netns says:
    // they explain the difference between the NIC's and the device's counts.
    let nic_netns = unsafe { core::ptr::read_volatile(&NIC_NETNS) };
    if vxlan_outer && nic_netns != 0 && netns == nic_netns {
        table.vxlan_outer[slot] += segments;
    }
    if !in_scope(netns) {
        table.out_of_scope += 1;
        return;
    }
    table.by_reason[slot] += 1;
    table.segments[slot] += segments;
    if decapsulated {
        table.decap_skbs[slot] += 1;
        table.decap_segments[slot] += segments;
    }
    let key = DropKey {
        netns,
        ifindex,
        reason,
        decap: decapsulated as u32,
    };
    // A key that finds no slot still counts in by_reason above.
    count_in(&mut table.slots, mix(netns, ifindex, reason) as usize, key);
    if has_flow {
        flow.decap = decapsulated as u8;
        unsafe { record_flow(&flow) };
    }
}

/// Whether `dev` is a VXLAN device: its rtnl_link_ops kind is "vxlan".
/// vxlan_rcv sets skb->dev to the VXLAN device before handing the inner
/// packet up, and it stays so through routing and netfilter's FORWARD
/// chain (ip_output sets the output device): a drop there is of a
/// decapsulated packet.
#[inline(always)]
unsafe fn is_vxlan_dev(dev: *const u8, o: &DropOffsets) -> bool {
    let ops: *const u8 = unsafe { field(dev, o.dev_rtnl_link_ops) };
    if ops.is_null() {
        return false;
    }
    let kind: *const u8 = unsafe { field(ops, o.link_ops_kind) };
    let mut name = [0u8; 6];
    if kind.is_null() || unsafe { bpf_probe_read_kernel_buf(kind, &mut name) }.is_err() {
        return false;
    }
    name == *b"vxlan\0"
}

/// max(gso_segs, 1) of the skb: the wire segments lost with it (a GRO-merged
/// TCP skb stands for tens). skb_shinfo(skb) is at skb->head + skb->end
/// (`end` is an offset on 64-bit kernels: NET_SKBUFF_DATA_USES_OFFSET).
#[inline(always)]
unsafe fn segments_of(skb: *const u8, o: &DropOffsets) -> u64 {
    let head: *const u8 = unsafe { field(skb, o.skb_head) };
    let end: u32 = unsafe { field(skb, o.skb_end) };
    if head.is_null() {
        return 1;
    }
    let at = head.wrapping_add(end as usize + o.shinfo_gso_segs as usize);
    let mut segs = [0u8; 2];
    if unsafe { bpf_probe_read_kernel_buf(at, &mut segs) }.is_err() {
        return 1;
    }
    (u16::from_ne_bytes(segs) as u64).max(1)
}

#[inline(always)]
unsafe fn record_flow(key: &FlowKey) {
    let Some(table) = DROP_FLOWS.get_ptr_mut(0) else {
        return;
    };
    let table = unsafe { &mut *table };
    let w = |b: &[u8; 16], i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let home = mix(
        key.netns ^ key.reason,
        w(&key.src, 0) ^ w(&key.src, 12),
        w(&key.dst, 0) ^ w(&key.dst, 12),
    ) as usize;
    if count_in(&mut table.slots, home, *key) {
        return;
    }
    table.unslotted += 1;
}

/// Bytes read from the network header in one go: IPv4 (20) + UDP (8) +
/// VXLAN (8) + inner Ethernet (14) + an inner IPv6 header (40).
const HEADER_BYTES: usize = 90;

/// What the drop probe reads from a dropped packet's headers.
#[derive(Default)]
struct PacketInfo {
    /// IP addresses were found (the flow key is filled).
    has_flow: bool,
    /// An outer VXLAN packet: IPv4 without options, UDP to a VXLAN port,
    /// dropped before decapsulation reset the network header.
    vxlan_outer: bool,
    /// An ICMP or ICMPv6 echo reply.
    echo_reply: bool,
    /// A TCP segment (of the first fragment), and whether it has SYN set.
    tcp: bool,
    tcp_syn: bool,
    /// Link-local control (see `Benign::Control`).
    control: bool,
}

const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const TCP_FLAG_SYN: u8 = 0x02;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_ECHOREPLY: u8 = 0;
const ICMPV6_ECHO_REPLY: u8 = 129;
const IPPROTO_IGMP: u8 = 2;
const IPPROTO_HOPOPTS: u8 = 0;
/// ICMPv6 router solicitation .. redirect (RFC 4861: 133-137).
const ICMPV6_NDISC: core::ops::RangeInclusive<u8> = 133..=137;

/// Fills `key` with the addresses of the IP packet at skb->network_header;
/// for a VXLAN packet (IPv4 without options, UDP to a VXLAN port) with the
/// inner packet's.
#[inline(always)]
unsafe fn flow_of(skb: *const u8, o: &DropOffsets, key: &mut FlowKey) -> PacketInfo {
    let mut info = PacketInfo::default();
    let head: *const u8 = unsafe { field(skb, o.skb_head) };
    let nh: u16 = unsafe { field(skb, o.skb_network_header) };
    if head.is_null() || nh == 0xffff {
        return info; // network header never set
    }
    // Packet bytes are not a BTF-typed struct: one helper read into a stack
    // buffer. It fails (no flow for this drop) only if fewer than
    // HEADER_BYTES remain in the head buffer.
    let mut h = [0u8; HEADER_BYTES];
    if unsafe { bpf_probe_read_kernel_buf(head.wrapping_add(nh as usize), &mut h) }.is_err() {
        return info;
    }
    // Not a later fragment (offset bits 0), so bytes 20.. are the L4 header.
    let first_fragment = (h[6] & 0x1f) | h[7] == 0;
    let (v4, v6) = (h[0] >> 4 == 4 && first_fragment, h[0] >> 4 == 6);
    // IPv4 options move the L4 header: IHL * 4, masked so the verifier can
    // bound the index (at most 60 + 13 < HEADER_BYTES).
    let l4 = ((h[0] & 0x0f) as usize * 4) & 0x3c;
    info.echo_reply =
        (h[0] == 0x45 && h[9] == IPPROTO_ICMP && first_fragment && h[20] == ICMP_ECHOREPLY)
            || (v6 && h[6] == IPPROTO_ICMPV6 && h[40] == ICMPV6_ECHO_REPLY);
    // IPv6: next header at 6, destination at 24; ff02::/16 is link-local
    // multicast (MLD reports carry a hop-by-hop router alert first).
    let v6_link_multicast = v6 && h[24] == 0xff && h[25] & 0x0f == 0x02;
    info.control = (v6_link_multicast && (h[6] == IPPROTO_ICMPV6 || h[6] == IPPROTO_HOPOPTS))
        || (v6 && h[6] == IPPROTO_ICMPV6 && ICMPV6_NDISC.contains(&h[40]))
        || (h[0] >> 4 == 4 && (h[9] == IPPROTO_IGMP || (h[16] == 224 && h[17] == 0 && h[18] == 0)));
    if v4 && h[9] == IPPROTO_TCP && l4 >= 20 {
        info.tcp = true;
        info.tcp_syn = h[l4 + 13] & TCP_FLAG_SYN != 0;
    } else if v6 && h[6] == IPPROTO_TCP {
        info.tcp = true;
        info.tcp_syn = h[40 + 13] & TCP_FLAG_SYN != 0;
    }
    // UDP 8 + VXLAN 8, then the inner Ethernet header (14).
    const INNER_ETH: usize = 20 + 16;
    let dport = u16::from_be_bytes([h[22], h[23]]);
    if h[0] == 0x45 && h[9] == IPPROTO_UDP && first_fragment && is_vxlan_port(dport) {
        info.vxlan_outer = true;
        let inner_type = u16::from_be_bytes([h[INNER_ETH + 12], h[INNER_ETH + 13]]);
        if (inner_type == ETH_P_IPV4 || inner_type == ETH_P_IPV6)
            && addresses(&h, INNER_ETH + 14, key)
        {
            key.inner = 1;
            info.has_flow = true;
            return info;
        }
    }
    info.has_flow = addresses(&h, 0, key);
    info
}

/// Copies the addresses of the IPv4 or IPv6 header at `at` in `h` into `key`.
#[inline(always)]
fn addresses(h: &[u8; HEADER_BYTES], at: usize, key: &mut FlowKey) -> bool {
    match h[at] >> 4 {
        4 if at + 20 <= HEADER_BYTES => {
            key.family = FAMILY_V4;
            key.src[..4].copy_from_slice(&h[at + 12..at + 16]);
            key.dst[..4].copy_from_slice(&h[at + 16..at + 20]);
            true
        }
        6 if at + 40 <= HEADER_BYTES => {
            key.family = FAMILY_V6;
            key.src.copy_from_slice(&h[at + 8..at + 24]);
            key.dst.copy_from_slice(&h[at + 24..at + 40]);
            true
        }
        _ => false,
    }
}
