//! Kernel helpers shared by the programs: typed loads of kernel struct fields
//! (tp_btf programs), a device's ifindex and network namespace, and what every
//! tc program shares.
#![allow(dead_code, reason = "each object in src/bin uses a subset")]

use aya_ebpf::programs::TcContext;

/// A field of a kernel struct reached from a tp_btf argument, at an offset
/// the loader resolved from the running kernel's BTF (Rust/aya has no CO-RE
/// field relocation). The argument is BTF-typed (PTR_TO_BTF_ID), so the
/// verifier checks the load against the struct's layout (hence: an offset
/// it sees as a constant, from the frozen .rodata, and a load inside one
/// member, exactly the member for a pointer, which read_volatile ensures by
/// keeping LLVM from merging or widening loads) and turns it into a
/// PROBE_MEM load: a NULL or stale pointer reads 0 instead of faulting. One
/// instruction instead of a bpf_probe_read_kernel call. A pointer-to-struct
/// field is BTF-typed too, so fields chain; memory that is not a BTF-typed
/// struct (packet bytes, skb_shared_info) still needs bpf_probe_read_kernel.
#[inline(always)]
pub unsafe fn field<T: Copy>(base: *const u8, offset: u32) -> T {
    unsafe { core::ptr::read_volatile(base.wrapping_add(offset as usize) as *const T) }
}

/// The inode number of a network namespace, `net->ns.inum` (`net_inum` is
/// the offset of `net.ns` plus `ns_common.inum`): the number user space sees
/// as /proc/PID/ns/net's inode. 0 for a NULL `struct net *`.
#[inline(always)]
pub unsafe fn netns_inum(net: *const u8, net_inum: u32) -> u32 {
    if net.is_null() {
        0
    } else {
        unsafe { field(net, net_inum) }
    }
}

/// Where a `struct net_device` lives: its ifindex (unique only within its
/// namespace) and its namespace's inode number.
#[derive(Clone, Copy)]
pub struct DevIds {
    pub ifindex: u32,
    pub netns: u32,
}

/// `dev->ifindex` and `dev->nd_net` -> `net.ns.inum` of a device pointer that
/// was read with [`field`]; all 0 for a NULL device. `nd_net` is a
/// possible_net_t, whose only member (with CONFIG_NET_NS) is the
/// `struct net *`: its offset is the pointer's. Plain u32 offsets, so that
/// every program passes them from its own offsets struct.
#[inline(always)]
pub unsafe fn dev_ids(dev: *const u8, dev_ifindex: u32, dev_nd_net: u32, net_inum: u32) -> DevIds {
    if dev.is_null() {
        return DevIds {
            ifindex: 0,
            netns: 0,
        };
    }
    let ifindex = unsafe { field(dev, dev_ifindex) };
    let net: *const u8 = unsafe { field(dev, dev_nd_net) };
    DevIds {
        ifindex,
        netns: unsafe { netns_inum(net, net_inum) },
    }
}

/// "Continue" (TC_ACT_UNSPEC, -1): the next program in the TCX chain (a
/// CNI's), or the next cls_bpf filter, still runs; the packet's fate is
/// unchanged. Every tc program of the probe returns it.
pub const TC_ACT_UNSPEC: i32 = aya_ebpf::bindings::TC_ACT_UNSPEC;

/// max(gso_segs, 1): how many wire segments this skb carries. GRO (in the
/// driver's NAPI poll, or a VXLAN device's GRO cells) and GSO senders make
/// one skb out of many segments; `__sk_buff.gso_segs` (Linux 5.1) reads
/// skb_shinfo(skb)->gso_segs, which is 0 for an skb that was never merged.
#[inline(always)]
pub fn gso_segs(ctx: &TcContext) -> u64 {
    // SAFETY: a read of the context the verifier rewrites to the sk_buff field.
    let segs = unsafe { (*ctx.skb.skb).gso_segs };
    segs.max(1) as u64
}
