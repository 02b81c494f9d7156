//! The node's NIC: packets and bytes per RX queue and class, and for VXLAN
//! per VNI with the class of the inner frame. XDP (`nic_xdp`) normally; TCX
//! ingress (`nic_tc`) when another owner's program holds the NIC's XDP hook.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use probe_common::{
    classify::{classify, Frame, InnerClass, NicClass},
    QueueCounters, DEFAULT_QUEUE_SLOTS, MAX_VNIS, VNI_OTHER_SLOT,
};

use crate::vxlan_ports::is_vxlan_port;

// Set by the loader. `read_volatile` keeps the compiler from folding the defaults.
#[unsafe(no_mangle)]
static WATCHED_VNIS: [u32; MAX_VNIS] = [1, 0, 0, 0, 0, 0, 0, 0];
#[unsafe(no_mangle)]
static WATCHED_VNI_COUNT: u32 = 1;
/// Number of RX queue slots; the map has one more entry, the overflow slot.
#[unsafe(no_mangle)]
static QUEUE_SLOTS: u32 = DEFAULT_QUEUE_SLOTS;

// Resized by the loader to the device's RX queue count + 1.
#[map]
static NIC_QUEUES: PerCpuArray<QueueCounters> =
    PerCpuArray::with_max_entries(DEFAULT_QUEUE_SLOTS + 1, 0);

#[xdp]
pub fn nic_xdp(ctx: XdpContext) -> u32 {
    let frame = PacketFrame {
        data: ctx.data(),
        data_end: ctx.data_end(),
    };
    let len = (frame.data_end - frame.data) as u64;
    count(&frame, ctx.rx_queue_index(), 1, len);
    xdp_action::XDP_PASS
}

/// "Continue": the next TCX program (the CNI's) still runs.
const TC_ACT_UNSPEC: i32 = -1;

/// The fallback: the same counts from TCX ingress, after the driver built the
/// skb (and GRO may have merged packets: gso_segs counts them).
#[classifier]
pub fn nic_tc(ctx: TcContext) -> i32 {
    let frame = PacketFrame {
        data: ctx.data(),
        data_end: ctx.data_end(),
    };
    // SAFETY: reads of the context the verifier rewrites to sk_buff fields.
    let (queue_mapping, gso_segs) =
        unsafe { ((*ctx.skb.skb).queue_mapping, (*ctx.skb.skb).gso_segs) };
    // skb_record_rx_queue() stores queue + 1; 0 means the driver recorded
    // none, which XDP's rx_queue_index reports as queue 0 too.
    let queue = queue_mapping.saturating_sub(1);
    count(&frame, queue, gso_segs.max(1) as u64, ctx.len() as u64);
    TC_ACT_UNSPEC
}

/// Packet memory between `data` and `data_end` (XDP's, or the linear part
/// of an skb at tc); every read is bounds-checked.
struct PacketFrame {
    data: usize,
    data_end: usize,
}

impl PacketFrame {
    #[inline(always)]
    fn ptr_at<T>(&self, offset: usize) -> Option<*const T> {
        let start = self.data + offset;
        if start + core::mem::size_of::<T>() > self.data_end {
            return None;
        }
        Some(start as *const T)
    }
}

// Plain (not `read_unaligned`) loads: the BPF backend turns an unaligned read
// into byte loads and shifts, several ns per packet. The verifier accepts
// misaligned packet loads where the arch has efficient unaligned access
// (x86-64, arm64: the nodes this runs on), so one ldxh/ldxw does it.
impl Frame for PacketFrame {
    #[inline(always)]
    fn head<const N: usize>(&self) -> Option<&[u8; N]> {
        // SAFETY: ptr_at checked that all N bytes lie inside the packet.
        self.ptr_at::<[u8; N]>(0).map(|p| unsafe { &*p })
    }
    #[inline(always)]
    fn u8_at(&self, offset: usize) -> Option<u8> {
        // SAFETY: ptr_at checked that the bytes lie inside the packet.
        self.ptr_at::<u8>(offset).map(|p| unsafe { *p })
    }
    #[inline(always)]
    fn be16_at(&self, offset: usize) -> Option<u16> {
        self.ptr_at::<u16>(offset)
            .map(|p| u16::from_be(unsafe { *p }))
    }
    #[inline(always)]
    fn be32_at(&self, offset: usize) -> Option<u32> {
        self.ptr_at::<u32>(offset)
            .map(|p| u32::from_be(unsafe { *p }))
    }
}

#[inline(always)]
fn vni_slot(vni: Option<u32>) -> u32 {
    let Some(vni) = vni else {
        return VNI_OTHER_SLOT;
    };
    let count = unsafe { core::ptr::read_volatile(&WATCHED_VNI_COUNT) } as usize;
    let mut i = 0;
    while i < MAX_VNIS && i < count {
        if unsafe { core::ptr::read_volatile(&WATCHED_VNIS[i]) } == vni {
            return i as u32;
        }
        i += 1;
    }
    VNI_OTHER_SLOT
}

/// Counts `packets` packets of `len` bytes, classified by `frame`'s headers,
/// on RX queue `queue`.
#[inline(always)]
fn count(frame: &PacketFrame, queue: u32, packets: u64, len: u64) {
    let c = classify(frame, is_vxlan_port);
    let class = c.class as usize;

    let slots = unsafe { core::ptr::read_volatile(&QUEUE_SLOTS) };
    let slot = if queue < slots { queue } else { slots };
    let Some(q) = NIC_QUEUES.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: this CPU's copy; XDP and tc ingress run in softirq context
    // (or with BH disabled), never nested with themselves on one CPU, so
    // plain increments do not race.
    let q = unsafe { &mut *q };
    if class < NicClass::COUNT {
        q.classes.packets[class] += packets;
        q.classes.bytes[class] += len;
    }
    if c.class == NicClass::Vxlan {
        let slot = vni_slot(c.vni) as usize;
        let inner = c.inner as usize;
        if slot < q.vnis.len() && inner < InnerClass::COUNT {
            let v = &mut q.vnis[slot];
            v.outer_bytes += len;
            v.inner[inner] += packets;
        }
    }
}
