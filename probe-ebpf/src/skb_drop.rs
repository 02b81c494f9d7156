//! `skb:kfree_skb` (tp_btf): every skb the kernel drops, by reason, netns and
//! device, and the addresses of dropped IP packets. Runs for drops only.
//!
//! Rust has no CO-RE: the loader reads the struct offsets from the running
//! kernel's BTF and sets DROP_OFFSETS; kernel memory is read with
//! bpf_probe_read_kernel. Since Linux 5.17 the tracepoint is
//! (skb, location, reason[, rx_sk from 6.12]): the reason is argument 2.

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, map},
    maps::PerCpuArray,
    programs::BtfTracePointContext,
};
use probe_common::{
    classify::{ETH_P_IPV4, ETH_P_IPV6},
    drops::{
        count_in, mix, reason_slot, DropKey, DropOffsets, DropTable, FlowKey, FlowTable, FAMILY_V4,
        FAMILY_V6, MAX_SCOPE_NETNS, NO_REASON, REASON_SLOTS,
    },
};

use crate::nic_xdp::is_vxlan_port;

#[unsafe(no_mangle)]
static DROP_OFFSETS: DropOffsets = DropOffsets {
    skb_dev: 0,
    skb_head: 0,
    skb_network_header: 0,
    dev_ifindex: 0,
    dev_nd_net: 0,
    net_inum: 0,
};
/// Namespaces (inode numbers) whose drops are counted; SCOPE_COUNT 0 = all.
#[unsafe(no_mangle)]
static SCOPE_NETNS: [u32; MAX_SCOPE_NETNS] = [0; MAX_SCOPE_NETNS];
#[unsafe(no_mangle)]
static SCOPE_COUNT: u32 = 0;

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

#[inline(always)]
unsafe fn read<T>(base: *const u8, offset: usize) -> Option<T> {
    unsafe { bpf_probe_read_kernel(base.wrapping_add(offset) as *const T).ok() }
}

#[inline(always)]
fn in_scope(netns: u32) -> bool {
    let count = unsafe { core::ptr::read_volatile(&SCOPE_COUNT) } as usize;
    if count == 0 {
        return true;
    }
    let mut i = 0;
    while i < MAX_SCOPE_NETNS && i < count {
        if unsafe { core::ptr::read_volatile(&SCOPE_NETNS[i]) } == netns {
            return true;
        }
        i += 1;
    }
    false
}

#[inline(always)]
unsafe fn record(skb: *const u8, reason: u32) {
    let o = unsafe { core::ptr::read_volatile(&DROP_OFFSETS) };
    let dev: *const u8 = unsafe { read(skb, o.skb_dev as usize) }.unwrap_or(core::ptr::null());
    let (mut netns, mut ifindex) = (0u32, 0u32);
    if !dev.is_null() {
        ifindex = unsafe { read(dev, o.dev_ifindex as usize) }.unwrap_or(0);
        let net: *const u8 =
            unsafe { read(dev, o.dev_nd_net as usize) }.unwrap_or(core::ptr::null());
        if !net.is_null() {
            netns = unsafe { read(net, o.net_inum as usize) }.unwrap_or(0);
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
    if let Some(flow) = unsafe { flow_of(skb, &o) } {
        unsafe {
            record_flow(FlowKey {
                netns,
                reason,
                ..flow
            })
        };
    }
}

#[inline(always)]
unsafe fn record_flow(key: FlowKey) {
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
    if count_in(&mut table.slots, home, key) {
        return;
    }
    table.unslotted += 1;
}

/// Addresses of the IP packet at skb->network_header; for a VXLAN packet
/// (UDP to a VXLAN port) the inner packet's.
#[inline(always)]
unsafe fn flow_of(skb: *const u8, o: &DropOffsets) -> Option<FlowKey> {
    let head: *const u8 = unsafe { read(skb, o.skb_head as usize) }?;
    let nh: u16 = unsafe { read(skb, o.skb_network_header as usize) }?;
    if head.is_null() || nh == 0xffff {
        return None; // network header never set
    }
    let ip = head.wrapping_add(nh as usize);
    let mut key = unsafe { addresses(ip) }?;
    // An IPv4 packet without options to a VXLAN port: look inside.
    let first: u8 = unsafe { read(ip, 0) }?;
    if first == 0x45 {
        let proto: u8 = unsafe { read(ip, 9) }?;
        let dport: [u8; 2] = unsafe { read(ip, 20 + 2) }?;
        if proto == IPPROTO_UDP && is_vxlan_port(u16::from_be_bytes(dport)) {
            // UDP 8 + VXLAN 8, then the inner Ethernet header (14).
            let ethertype: [u8; 2] = unsafe { read(ip, 20 + 16 + 12) }?;
            let inner_type = u16::from_be_bytes(ethertype);
            if inner_type == ETH_P_IPV4 || inner_type == ETH_P_IPV6 {
                if let Some(inner) = unsafe { addresses(ip.wrapping_add(20 + 16 + 14)) } {
                    key = FlowKey { inner: 1, ..inner };
                }
            }
        }
    }
    Some(key)
}

#[inline(always)]
unsafe fn addresses(ip: *const u8) -> Option<FlowKey> {
    let first: u8 = unsafe { read(ip, 0) }?;
    let mut key = FlowKey::default();
    match first >> 4 {
        4 => {
            let a: [u8; 8] = unsafe { read(ip, 12) }?;
            key.family = FAMILY_V4;
            key.src[..4].copy_from_slice(&a[..4]);
            key.dst[..4].copy_from_slice(&a[4..]);
        }
        6 => {
            let a: [u8; 32] = unsafe { read(ip, 8) }?;
            key.family = FAMILY_V6;
            key.src.copy_from_slice(&a[..16]);
            key.dst.copy_from_slice(&a[16..]);
        }
        _ => return None,
    }
    Some(key)
}
