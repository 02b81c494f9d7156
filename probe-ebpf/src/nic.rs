//! The node's NIC: skbs, segments and bytes per RX queue and class, and for
//! VXLAN per (UDP port, VNI) with the class of the inner frame. TCX ingress
//! (`nic_tc`) by default: it changes nothing in the driver. XDP (`nic_xdp`)
//! on request: it sees every wire frame before GRO, but attaching it makes
//! many drivers change how they receive (veth: NAPI mode and no TSO on the
//! peer; virtio_net: no guest offloads; mlx5/ice/ixgbe/ena: ring reset).

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
    EbpfContext,
};
use aya_log_ebpf::debug;
use probe_common::{
    classify::{classify, Frame, InnerClass, NicClass},
    QueueCounters, DEFAULT_QUEUE_SLOTS, MAX_VNIS, VNI_OTHER_SLOT,
};

use crate::{
    kernel::{gso_segs, TC_ACT_UNSPEC},
    vxlan_ports::is_vxlan_port,
};

// Set by the loader. `read_volatile` keeps the compiler from folding the defaults.
// Slot i counts VXLAN packets to UDP port WATCHED_VNI_PORTS[i] with VNI
// WATCHED_VNIS[i]: a VNI on a port no device listens on is another tunnel.
#[unsafe(no_mangle)]
static WATCHED_VNIS: [u32; MAX_VNIS] = [1, 0, 0, 0, 0, 0, 0, 0];
#[unsafe(no_mangle)]
static WATCHED_VNI_PORTS: [u16; MAX_VNIS] = [8472, 0, 0, 0, 0, 0, 0, 0];
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
    // A wire frame: one skb-to-be, one segment.
    count(&ctx, &frame, ctx.rx_queue_index(), 1, len);
    xdp_action::XDP_PASS
}

/// The default: the same counts from tc ingress (TCX, or a cls_bpf filter),
/// after the driver built the skb and GRO may have merged segments.
#[classifier]
pub fn nic_tc(ctx: TcContext) -> i32 {
    let frame = PacketFrame {
        data: ctx.data(),
        data_end: ctx.data_end(),
    };
    // SAFETY: a read of the context the verifier rewrites to the sk_buff field.
    let queue_mapping = unsafe { (*ctx.skb.skb).queue_mapping };
    // skb_record_rx_queue() stores queue + 1; 0 means the driver recorded
    // none, which XDP's rx_queue_index reports as queue 0 too.
    let queue = queue_mapping.saturating_sub(1);
    count(&ctx, &frame, queue, gso_segs(&ctx), ctx.len() as u64);
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
fn vni_slot(port: u16, vni: Option<u32>) -> u32 {
    let Some(vni) = vni else {
        return VNI_OTHER_SLOT;
    };
    let count = unsafe { core::ptr::read_volatile(&WATCHED_VNI_COUNT) } as usize;
    let mut i = 0;
    while i < MAX_VNIS && i < count {
        if unsafe { core::ptr::read_volatile(&WATCHED_VNIS[i]) } == vni
            && unsafe { core::ptr::read_volatile(&WATCHED_VNI_PORTS[i]) } == port
        {
            return i as u32;
        }
        i += 1;
    }
    VNI_OTHER_SLOT
}

/// Counts one skb (or XDP frame) of `segments` segments and `len` bytes,
/// classified by `frame`'s headers, on RX queue `queue`.
#[inline(always)]
fn count<C: EbpfContext>(ctx: &C, frame: &PacketFrame, queue: u32, segments: u64, len: u64) {
    let c = classify(frame, is_vxlan_port);
    let class = c.class as usize;

    let slots = unsafe { core::ptr::read_volatile(&QUEUE_SLOTS) };
    let slot = if queue < slots {
        queue
    } else {
        debug!(
            ctx,
            "RX queue {} beyond the {} queue slots: counted in the overflow slot", queue, slots
        );
        slots
    };
    let Some(q) = NIC_QUEUES.get_ptr_mut(slot) else {
        return;
    };
    // SAFETY: this CPU's copy; XDP and tc ingress run in softirq context
    // (or with BH disabled), never nested with themselves on one CPU, so
    // plain increments do not race.
    let q = unsafe { &mut *q };
    if class < NicClass::COUNT {
        q.classes.skbs[class] += 1;
        q.classes.segments[class] += segments;
        q.classes.bytes[class] += len;
    }
    if c.class == NicClass::Vxlan {
        let slot = vni_slot(c.port, c.vni) as usize;
        if slot == VNI_OTHER_SLOT as usize {
            debug!(
                ctx,
                "VXLAN to UDP port {} VNI {} matches no watched device: counted in the `other` row",
                c.port,
                c.vni.unwrap_or(u32::MAX)
            );
        }
        let inner = c.inner as usize;
        if slot < q.vnis.len() && inner < InnerClass::COUNT {
            let v = &mut q.vnis[slot];
            v.outer_bytes += len;
            v.outer_skbs += 1;
            v.inner[inner] += segments;
        }
    }
}
