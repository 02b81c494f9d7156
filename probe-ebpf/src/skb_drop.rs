//! `skb:kfree_skb` (tp_btf): every skb the kernel drops, by reason, netns and
//! device, and the addresses of dropped IP packets. Runs for drops only.
//!
//! Rust has no CO-RE: the loader reads the struct offsets from the running
//! kernel's BTF and sets DROP_OFFSETS; kernel memory is read with
//! bpf_probe_read_kernel. Since Linux 5.17 the tracepoint is
//! (skb, location, reason[, rx_sk from 6.12]): the reason is argument 2.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel_buf,
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use probe_common::{
    classify::{ETH_P_IPV4, ETH_P_IPV6},
    drops::{
        count_in, mix, reason_slot, DropKey, DropOffsets, DropTable, FlowKey, FlowTable, FAMILY_V4,
        FAMILY_V6, NO_REASON, REASON_SLOTS,
    },
};

use crate::{scope::in_scope, vxlan_ports::is_vxlan_port};

#[unsafe(no_mangle)]
static DROP_OFFSETS: DropOffsets = DropOffsets {
    skb_dev: 0,
    skb_head: 0,
    skb_network_header: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    net_inum: 0,
};
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
    let reason: u32 = ctx.arg(2);
    let not_drops = unsafe { core::ptr::read_volatile(&NOT_DROPS) };
    if reason != not_drops[0] && reason != not_drops[1] && !skb.is_null() {
        // SAFETY: every kernel read goes through bpf_probe_read_kernel.
        unsafe { record(skb, reason) };
    }
    0
}

/// A field of a kernel struct reached from a tp_btf argument. The verifier
/// knows the pointer's BTF type and the offset (a constant from the frozen
/// .rodata), checks the access against the struct layout, and emits a
/// fault-safe load (PROBE_MEM): a NULL or stale pointer reads as 0. Much
/// cheaper than a bpf_probe_read_kernel call per field.
#[inline(always)]
unsafe fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize) as *const T) }
}

#[inline(always)]
unsafe fn record(skb: *const u8, reason: u32) {
    let o = unsafe { core::ptr::read_volatile(&DROP_OFFSETS) };
    let dev: *const u8 = unsafe { field(skb, o.skb_dev) };
    let (mut netns, mut ifindex) = (0u32, 0u32);
    if !dev.is_null() {
        ifindex = unsafe { field(dev, o.dev_ifindex) };
        let net: *const u8 = unsafe { field(dev, o.dev_nd_net) };
        if !net.is_null() {
            netns = unsafe { field(net, o.net_inum) };
        }
    }
    let Some(table) = DROPS.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: this CPU's copy. tp_btf programs do not nest on one CPU (the
    // kernel skips a run that would recurse), so plain increments are safe.
    let table = unsafe { &mut *table };
    if !in_scope(netns) {
        table.out_of_scope += 1;
        return;
    }
    // The mask (a no-op: reason_slot is < REASON_SLOTS) is what lets the
    // verifier bound the index; LLVM folds the clamp inside reason_slot away.
    table.by_reason[reason_slot(reason) & (REASON_SLOTS - 1)] += 1;
    let key = DropKey {
        netns,
        ifindex,
        reason,
        _pad: 0,
    };
    // A key that finds no slot still counts in by_reason above.
    count_in(&mut table.slots, mix(netns, ifindex, reason) as usize, key);
    let mut flow = FlowKey {
        netns,
        reason,
        ..FlowKey::default()
    };
    if unsafe { flow_of(skb, &o, &mut flow) } {
        unsafe { record_flow(&flow) };
    }
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

/// Fills `key` with the addresses of the IP packet at skb->network_header;
/// for a VXLAN packet (IPv4 without options, UDP to a VXLAN port) with the
/// inner packet's. False when there is no IP header to read.
#[inline(always)]
unsafe fn flow_of(skb: *const u8, o: &DropOffsets, key: &mut FlowKey) -> bool {
    let head: *const u8 = unsafe { field(skb, o.skb_head) };
    let nh: u16 = unsafe { field(skb, o.skb_network_header) };
    if head.is_null() || nh == 0xffff {
        return false; // network header never set
    }
    // Packet bytes are not a BTF-typed struct: one helper read into a stack
    // buffer. It fails (no flow for this drop) only if fewer than
    // HEADER_BYTES remain in the head buffer.
    let mut h = [0u8; HEADER_BYTES];
    if unsafe { bpf_probe_read_kernel_buf(head.wrapping_add(nh as usize), &mut h) }.is_err() {
        return false;
    }
    // UDP 8 + VXLAN 8, then the inner Ethernet header (14).
    const INNER_ETH: usize = 20 + 16;
    let dport = u16::from_be_bytes([h[22], h[23]]);
    if h[0] == 0x45 && h[9] == IPPROTO_UDP && is_vxlan_port(dport) {
        let inner_type = u16::from_be_bytes([h[INNER_ETH + 12], h[INNER_ETH + 13]]);
        if (inner_type == ETH_P_IPV4 || inner_type == ETH_P_IPV6)
            && addresses(&h, INNER_ETH + 14, key)
        {
            key.inner = 1;
            return true;
        }
    }
    addresses(&h, 0, key)
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
