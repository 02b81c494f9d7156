//! NET_RX softirq and NAPI probes (tp_btf on irq:softirq_raise/entry/exit and
//! napi:napi_poll). They run per softirq and per NAPI poll, not per packet.

use core::mem::size_of;

use crate::drops::Keyed;

/// One entry: [`SoftirqCpu`], this CPU's NET_RX timing.
pub const MAP_SOFTIRQ: &str = "SOFTIRQ";
/// One entry: [`NapiTable`].
pub const MAP_NAPI: &str = "NAPI";
pub const PROG_SOFTIRQ_RAISE: &str = "net_rx_raise";
pub const PROG_SOFTIRQ_ENTRY: &str = "net_rx_entry";
pub const PROG_SOFTIRQ_EXIT: &str = "net_rx_exit";
pub const PROG_NAPI_POLL: &str = "napi_poll";

/// NET_RX_SOFTIRQ's value, from the kernel's BTF.
pub const GLOBAL_NET_RX_VEC: &str = "NET_RX_VEC";
/// Time one NET_RX run in this many, per CPU (u32, at least 1).
pub const GLOBAL_SOFTIRQ_SAMPLE_EVERY: &str = "SOFTIRQ_SAMPLE_EVERY";
/// `raised_at` of a raise whose run is not timed (no clock reads 1 ns).
pub const RAISED_UNSAMPLED: u64 = 1;
pub const GLOBAL_NAPI_OFFSETS: &str = "NAPI_OFFSETS";

/// log2 buckets: bucket 0 holds 0, bucket k holds [2^(k-1), 2^k); the last
/// one everything from 2^30 ns (~1.07 s) up. A power of two (index mask).
pub const HIST_BUCKETS: usize = 32;
/// Work-per-poll buckets: 0, 1, 2-3, 4-7, ..., 64-127 (a weight-64 poll
/// that used its budget), ... A power of two (index mask).
pub const WORK_BUCKETS: usize = 16;
/// (netns, device) entries of the NAPI table; a power of two.
pub const NAPI_SLOTS: usize = 64;

/// The log2 bucket of `v`.
#[inline(always)]
pub const fn bucket(v: u64, buckets: usize) -> usize {
    let b = (64 - v.leading_zeros()) as usize;
    if b < buckets {
        b
    } else {
        buckets - 1
    }
}

/// One CPU's NET_RX softirq timing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SoftirqCpu {
    /// Scratch: ns of the first raise since the last entry (0: none pending;
    /// [`RAISED_UNSAMPLED`]: raised, and this run is not timed).
    pub raised_at: u64,
    /// Scratch: raises to let go by untimed before the next timed one.
    pub countdown: u64,
    /// Scratch: ns of the current entry (0: not running).
    pub entered_at: u64,
    /// Scratch: 1 while the current run is in a ksoftirqd thread.
    pub in_ksoftirqd: u64,
    /// Raise -> entry, ns.
    pub wait: [u64; HIST_BUCKETS],
    /// Entry -> exit, ns.
    pub run: [u64; HIST_BUCKETS],
    pub wait_max: u64,
    pub run_max: u64,
    pub wait_sum: u64,
    pub run_sum: u64,
    /// Every NET_RX run, timed or not.
    pub entries: u64,
    /// Timed entries in a ksoftirqd thread (the rest ran on irq exit or BH
    /// enable).
    pub ksoftirqd_entries: u64,
    /// Run time spent in ksoftirqd, ns.
    pub ksoftirqd_run_sum: u64,
}

/// `napi_struct.dev` and the net_device fields, from BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NapiOffsets {
    pub napi_dev: u32,
    pub dev_ifindex: u32,
    pub dev_nd_net: u32,
    pub net_inum: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NapiKey {
    /// 0 and 0 for a NAPI instance without a device (the per-CPU backlog).
    pub netns: u32,
    pub ifindex: u32,
}

/// NAPI polls of one device on one CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NapiSlot {
    pub key: NapiKey,
    /// 0: the entry is free.
    pub polls: u64,
    /// Packets processed (the `work` of each poll).
    pub packets: u64,
    /// Polls that used their whole budget (more work was left).
    pub full_budget: u64,
    pub work: [u64; WORK_BUCKETS],
}

impl Keyed for NapiSlot {
    type Key = NapiKey;
    fn key(&self) -> NapiKey {
        self.key
    }
    fn is_free(&self) -> bool {
        self.polls == 0
    }
    fn claim(&mut self, key: NapiKey) {
        self.key = key;
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NapiTable {
    pub slots: [NapiSlot; NAPI_SLOTS],
    /// Polls of devices that found no entry.
    pub unslotted: u64,
}

const _: () = assert!(size_of::<NapiTable>() <= 32 * 1024);
const _: () = assert!(
    NAPI_SLOTS.is_power_of_two()
        && HIST_BUCKETS.is_power_of_two()
        && WORK_BUCKETS.is_power_of_two()
);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] structs of integers: every bit pattern is valid.
    unsafe impl aya::Pod for super::SoftirqCpu {}
    unsafe impl aya::Pod for super::NapiOffsets {}
    unsafe impl aya::Pod for super::NapiTable {}
}

impl Default for SoftirqCpu {
    fn default() -> Self {
        // SAFETY: all-integer struct; zero is a valid value for every field.
        unsafe { core::mem::zeroed() }
    }
}

impl Default for NapiTable {
    fn default() -> Self {
        Self {
            slots: [NapiSlot::default(); NAPI_SLOTS],
            unslotted: 0,
        }
    }
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn log2_buckets() {
        assert_eq!(bucket(0, HIST_BUCKETS), 0);
        assert_eq!(bucket(1, HIST_BUCKETS), 1);
        assert_eq!(bucket(2, HIST_BUCKETS), 2);
        assert_eq!(bucket(3, HIST_BUCKETS), 2);
        assert_eq!(bucket(1023, HIST_BUCKETS), 10);
        assert_eq!(bucket(1024, HIST_BUCKETS), 11);
        assert_eq!(bucket(u64::MAX, HIST_BUCKETS), HIST_BUCKETS - 1);
        assert_eq!(bucket(64, WORK_BUCKETS), 7);
        assert_eq!(bucket(128, WORK_BUCKETS), 8);
        assert_eq!(bucket(1 << 20, WORK_BUCKETS), WORK_BUCKETS - 1);
    }
}

/// `--steering` (opt-in): the CPU that polled a packet -> the CPU where the
/// stack processed it (after RPS/RFS), per packet; and for each socket read,
/// the CPU that last queued data to the socket -> the reading thread's CPU.
pub const MAP_STEER_PACKETS: &str = "STEER_PACKETS";
pub const MAP_STEER_SOCKETS: &str = "STEER_SOCKETS";
pub const MAP_STEER: &str = "STEER";
pub const PROG_STEER_NAPI: &str = "steer_napi";
pub const PROG_STEER_STACK: &str = "steer_stack";
pub const PROG_STEER_READY: &str = "steer_ready";
pub const PROG_STEER_RECV: &str = "steer_recv";
pub const GLOBAL_STEER_OFFSETS: &str = "STEER_OFFSETS";
/// `[ifindex, netns inode]` of the watched NIC: packets start at its polls.
pub const GLOBAL_STEER_NIC: &str = "STEER_NIC";
/// CPUs tracked one by one; higher ones share the last index.
pub const STEER_CPUS: usize = 32;
/// Packets in flight / sockets tracked at once (direct-mapped tables).
pub const STEER_SLOTS: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerOffsets {
    pub skb_head: u32,
    /// `sk_buff.dev`, `net_device.ifindex`, `net_device.nd_net`.
    pub skb_dev: u32,
    pub dev_ifindex: u32,
    pub dev_nd_net: u32,
    /// `sock.__sk_common.skc_num` (local port, host order).
    pub sk_num: u32,
    /// `sock.sk_protocol` (u16 since Linux 5.6): only TCP and UDP count.
    pub sk_protocol: u32,
    /// `sock.__sk_common.skc_net` (a possible_net_t: `struct net *` at 0).
    pub sk_net: u32,
    pub net_inum: u32,
}

/// A packet in flight, named by its data buffer's address (skb->head).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerPacket {
    pub id: u64,
    pub napi_cpu: u32,
    /// u32::MAX until the stack has seen the packet.
    pub stack_cpu: u32,
}

/// A socket (netns, local port) and the CPU that last queued data to it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SteerSocket {
    pub netns: u32,
    pub port: u32,
    pub ready_cpu: u32,
    pub _pad: u32,
}

/// One CPU's counts.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteerMatrix {
    /// [napi_cpu * STEER_CPUS + stack_cpu]: packets.
    pub napi_to_stack: [u64; STEER_CPUS * STEER_CPUS],
    /// [ready_cpu * STEER_CPUS + reader_cpu]: socket reads that returned data.
    pub ready_to_reader: [u64; STEER_CPUS * STEER_CPUS],
}

const _: () = assert!(size_of::<SteerMatrix>() <= 32 * 1024);
const _: () = assert!(STEER_SLOTS.is_power_of_two() && STEER_CPUS.is_power_of_two());

#[inline(always)]
pub const fn steer_cpu(cpu: u32) -> usize {
    if (cpu as usize) < STEER_CPUS {
        cpu as usize
    } else {
        STEER_CPUS - 1
    }
}

#[cfg(feature = "user")]
mod steer_pod {
    // SAFETY: #[repr(C)] structs of integers: every bit pattern is valid.
    unsafe impl aya::Pod for super::SteerMatrix {}
    unsafe impl aya::Pod for super::SteerOffsets {}
}
