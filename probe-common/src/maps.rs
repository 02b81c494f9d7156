//! Map and program names, and the `#[repr(C)]` values stored in the maps.
//!
//! Every value is a fixed-size block of u64 counters in a per-CPU array: the
//! kernel side only increments, user space sums the per-CPU copies.

use core::mem::size_of;

use crate::classify::{InnerClass, NicClass};

/// XDP on the NIC: one [`QueueCounters`] per RX queue, plus one overflow slot.
pub const MAP_NIC_QUEUES: &str = "NIC_QUEUES";
/// TCX on a VXLAN device: one [`DevCounters`] per direction ([`DIR_INGRESS`], [`DIR_EGRESS`]).
pub const MAP_VXLAN_DEV: &str = "VXLAN_DEV";

pub const PROG_NIC_XDP: &str = "nic_xdp";
/// The NIC's counters from TCX ingress, when another owner holds its XDP hook.
pub const PROG_NIC_TC: &str = "nic_tc";
pub const PROG_VXLAN_INGRESS: &str = "vxlan_dev_ingress";
pub const PROG_VXLAN_EGRESS: &str = "vxlan_dev_egress";
/// Programs that do nothing, used only by the benchmark as a baseline.
pub const PROG_EMPTY_XDP: &str = "bench_empty_xdp";
pub const PROG_EMPTY_TC: &str = "bench_empty_tc";
/// Test stand-ins for another owner's (a CNI's) programs: they count every
/// packet into [`MAP_FIXTURE_COUNT`] slot [`FIXTURE_SLOT_XDP`] / [`FIXTURE_SLOT_TC`].
pub const PROG_FIXTURE_COUNT_XDP: &str = "fixture_count_xdp";
pub const PROG_FIXTURE_COUNT_TC: &str = "fixture_count_tc";
pub const MAP_FIXTURE_COUNT: &str = "FIXTURE_COUNT";
pub const FIXTURE_SLOT_XDP: u32 = 0;
pub const FIXTURE_SLOT_TC: u32 = 1;

/// Globals the loader overrides (`EbpfLoader::override_global`).
pub const GLOBAL_VXLAN_PORTS: &str = "VXLAN_PORTS";
pub const GLOBAL_VNIS: &str = "WATCHED_VNIS";
pub const GLOBAL_VNI_COUNT: &str = "WATCHED_VNI_COUNT";
pub const GLOBAL_QUEUE_SLOTS: &str = "QUEUE_SLOTS";

/// At most this many UDP destination ports are treated as VXLAN.
pub const MAX_VXLAN_PORTS: usize = 4;
/// Default VXLAN ports: flannel's 8472 and the IANA port 4789.
pub const DEFAULT_VXLAN_PORTS: [u16; MAX_VXLAN_PORTS] = [8472, 4789, 0, 0];
/// At most this many VNIs get their own counters; the rest share one slot.
pub const MAX_VNIS: usize = 8;
/// Index of the shared slot for VNIs outside the watched set (and for VXLAN
/// packets too short to carry a VNI).
pub const VNI_OTHER_SLOT: u32 = MAX_VNIS as u32;
/// VNI slots in each [`QueueCounters`].
pub const VNI_SLOTS: u32 = MAX_VNIS as u32 + 1;
/// Queue slots used when the loader does not size the map from the device.
pub const DEFAULT_QUEUE_SLOTS: u32 = 64;

pub const DIR_INGRESS: u32 = 0;
pub const DIR_EGRESS: u32 = 1;
pub const DIRECTIONS: u32 = 2;

/// Packets and bytes per [`NicClass`] seen by XDP on one RX queue (one CPU's copy).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NicCounters {
    pub packets: [u64; NicClass::COUNT],
    pub bytes: [u64; NicClass::COUNT],
}
const _: () = assert!(size_of::<NicCounters>() == 64);

/// VXLAN packets of one VNI slot seen by XDP on the NIC (one CPU's copy).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VniCounters {
    pub outer_bytes: u64,
    /// Outer packets by the class of the frame they carry. Their sum is the
    /// packet count: no separate counter to increment per packet.
    pub inner: [u64; InnerClass::COUNT],
}
const _: () = assert!(size_of::<VniCounters>() == 40);

impl VniCounters {
    pub fn outer_packets(&self) -> u64 {
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
const _: () = assert!(size_of::<QueueCounters>() == 64 + 40 * VNI_SLOTS as usize);

/// Packets and bytes per [`InnerClass`] seen by tc on a VXLAN device, one direction.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevCounters {
    pub packets: [u64; InnerClass::COUNT],
    pub bytes: [u64; InnerClass::COUNT],
}
const _: () = assert!(size_of::<DevCounters>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain #[repr(C)] structs of u64 arrays: no padding, every bit pattern valid.
    unsafe impl aya::Pod for super::NicCounters {}
    unsafe impl aya::Pod for super::VniCounters {}
    unsafe impl aya::Pod for super::QueueCounters {}
    unsafe impl aya::Pod for super::DevCounters {}
}
