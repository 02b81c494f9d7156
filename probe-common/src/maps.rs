//! Map and program names, and the `#[repr(C)]` values stored in the maps.
//!
//! Every value is a fixed-size block of u64 counters in a per-CPU array: the
//! kernel side only increments, user space sums the per-CPU copies.

use core::mem::size_of;

use crate::classify::{InnerClass, NicClass};

/// XDP on the NIC: one [`QueueCounters`] per RX queue, plus one overflow slot.
pub const MAP_NIC_QUEUES: &str = "NIC_QUEUES";
/// TCX ingress on a VXLAN device: one [`DevCounters`].
pub const MAP_VXLAN_DEV: &str = "VXLAN_DEV";

pub const PROG_NIC_XDP: &str = "nic_xdp";
/// The NIC's counters from TCX ingress, when another owner holds its XDP hook.
pub const PROG_NIC_TC: &str = "nic_tc";
pub const PROG_VXLAN_INGRESS: &str = "vxlan_dev_ingress";

/// Globals the loader overrides (`EbpfLoader::override_global`).
pub const GLOBAL_VXLAN_PORTS: &str = "VXLAN_PORTS";
pub const GLOBAL_VNIS: &str = "WATCHED_VNIS";
pub const GLOBAL_VNI_PORTS: &str = "WATCHED_VNI_PORTS";
pub const GLOBAL_VNI_COUNT: &str = "WATCHED_VNI_COUNT";
pub const GLOBAL_QUEUE_SLOTS: &str = "QUEUE_SLOTS";

/// At most this many UDP destination ports are treated as VXLAN.
pub const MAX_VXLAN_PORTS: usize = 4;
/// Default VXLAN ports: flannel's 8472 and the IANA port 4789.
pub const DEFAULT_VXLAN_PORTS: [u16; MAX_VXLAN_PORTS] = [8472, 4789, 0, 0];
/// At most this many (UDP port, VNI) pairs get their own counters; the rest
/// share one slot.
pub const MAX_VNIS: usize = 8;
/// Index of the shared slot for (port, VNI) pairs outside the watched set (and
/// for VXLAN packets too short to carry a VNI).
pub const VNI_OTHER_SLOT: u32 = MAX_VNIS as u32;
/// VNI slots in each [`QueueCounters`].
pub const VNI_SLOTS: u32 = MAX_VNIS as u32 + 1;
/// Queue slots used when the loader does not size the map from the device.
pub const DEFAULT_QUEUE_SLOTS: u32 = 64;

/// Two units, because the kernel batches TCP: an skb built by GRO (or sent
/// by a GSO/TSO socket) carries `skb_shinfo(skb)->gso_segs` wire segments.
/// Every skb-level hook counts both `skbs` and `segments` (max(gso_segs, 1)
/// per skb); XDP sees wire frames, one segment each, so there the two agree.
///
/// Packets and bytes per [`NicClass`] seen on one RX queue (one CPU's copy).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    pub skbs: [u64; NicClass::COUNT],
    pub segments: [u64; NicClass::COUNT],
    pub bytes: [u64; NicClass::COUNT],
}
const _: () = assert!(size_of::<NicCounters>() == 96);

/// VXLAN packets of one (port, VNI) slot seen on the NIC (one CPU's copy).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VniCounters {
    pub outer_bytes: u64,
    pub outer_skbs: u64,
    /// Outer segments by the class of the frame they carry. Their sum is the
    /// segment count: no separate counter to increment per packet.
    pub inner: [u64; InnerClass::COUNT],
}
const _: () = assert!(size_of::<VniCounters>() == 48);

impl VniCounters {
    pub fn outer_segments(&self) -> u64 {
        self.inner.iter().sum()
    }
}

/// Everything XDP counts for one RX queue (one CPU's copy). The VNI counters
/// live in the queue's entry so that a VXLAN packet costs one map lookup, not
/// two; user space sums them over the queues.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    pub classes: NicCounters,
    pub vnis: [VniCounters; VNI_SLOTS as usize],
}
const _: () = assert!(size_of::<QueueCounters>() == 96 + 48 * VNI_SLOTS as usize);

/// skbs, segments and bytes per [`InnerClass`] seen by TCX ingress on a VXLAN
/// device (decapsulated frames, after the device's GRO cells merged them).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub skbs: [u64; InnerClass::COUNT],
    pub segments: [u64; InnerClass::COUNT],
    pub bytes: [u64; InnerClass::COUNT],
}
const _: () = assert!(size_of::<DevCounters>() == 96);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of u64 arrays: no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::NicCounters {}
    unsafe impl aya::Pod for super::VniCounters {}
    unsafe impl aya::Pod for super::QueueCounters {}
    unsafe impl aya::Pod for super::DevCounters {}
}
