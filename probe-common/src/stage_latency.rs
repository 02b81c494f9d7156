//! `--stage-latency` (opt-in): the time a sampled packet takes from one
//! receive stage to the next. One packet in N is chosen where the node's NIC
//! hands it to the stack, then followed by its data buffer (skb->head, which
//! stays the same through VXLAN decapsulation and the veth into the pod):
//!
//! NIC -> VXLAN device -> pod's device -> queued to a socket -> read.
//!
//! The first three are net:netif_receive_skb on each device; "queued" is
//! sock:sk_data_ready and "read" sock:sock_recv_length (Linux >= 6.5), tied
//! to the packet by its place in the socket's queue (see the kernel side).

use core::mem::size_of;

use crate::latency::HIST_BUCKETS;

pub const MAP_PATH_PACKETS: &str = "PATH_PACKETS";
pub const MAP_PATH_SOCKETS: &str = "PATH_SOCKETS";
pub const MAP_PATH_CPU: &str = "PATH_CPU";
pub const PROG_PATH_RX: &str = "path_rx";
pub const PROG_PATH_QUEUED: &str = "path_queued";
pub const PROG_PATH_READ: &str = "path_read";
/// `probe trace` only: skb:kfree_skb, where a marked packet was dropped.
pub const PROG_PATH_DROP: &str = "path_drop";
/// `probe trace` only: skb:consume_skb, where a marked packet's way ends
/// without a drop or a socket queue (a SYN the listener answered).
pub const PROG_PATH_CONSUME: &str = "path_consume";
pub const MAP_PATH_DROPS: &str = "PATH_DROPS";
/// Per socket: the followed packets it read and their queued->read times.
pub const MAP_PATH_SOCKET_WAITS: &str = "PATH_SOCKET_WAITS";
/// `--stage-window`: one u32, 1 while a window closes (no packet starts to
/// be followed; those already followed finish their way), else 0.
pub const MAP_PATH_CLOSING: &str = "PATH_CLOSING";
/// `probe trace`: the 8 signature bytes at the start of the UDP payload of
/// the marked packets (u64, native order); 0: sampling mode.
pub const GLOBAL_PATH_TRACE_MAGIC: &str = "PATH_TRACE_MAGIC";
/// kfree_skb reasons that are not drops (u32 x 2), as the drop probe's.
pub const GLOBAL_PATH_NOT_DROPS: &str = "PATH_NOT_DROPS";
pub const GLOBAL_PATH_OFFSETS: &str = "PATH_OFFSETS";
pub const GLOBAL_PATH_DEVICES: &str = "PATH_DEVICES";
/// Follow one packet in this many per CPU (u32, at least 1).
pub const GLOBAL_PATH_SAMPLE_EVERY: &str = "PATH_SAMPLE_EVERY";

/// Packets followed at once (a direct-mapped table: a later packet whose
/// buffer maps to a busy slot replaces the one there, which is then lost,
/// never mistimed).
pub const PATH_SLOTS: usize = 4096;
/// Sockets with a sampled packet waiting in their queue, at once.
pub const PATH_SOCKET_SLOTS: usize = 1024;
/// Sockets whose followed reads are kept apart (per CPU, direct-mapped by
/// (netns, port, protocol); the first socket in a slot keeps it for the
/// session, the reads of a later one in the same slot count in the totals
/// only).
pub const PATH_SOCKET_WAIT_SLOTS: usize = 128;
/// VXLAN devices recognised as the decapsulation stage.
pub const PATH_VXLAN_DEVICES: usize = 4;
/// A packet that reached the pod is tied to the next sk_data_ready on the
/// same CPU only within this time (the stack queues it in the same softirq,
/// a few µs later). Beyond it (the socket was busy and the stack put the
/// packet on the socket's backlog, or it was dropped) it is not followed.
pub const PATH_QUEUE_WINDOW_NS: u64 = 1_000_000;
/// A followed packet not seen at its next stage within this time is
/// forgotten: its buffer, freed where no tracepoint sees it (a GRO merge),
/// may be another packet's by then. No receive stage takes this long.
pub const PATH_STAGE_MAX_NS: u64 = 1_000_000_000;
/// Where a marked packet was dropped (`PathDrops::by_stage`): before the
/// NIC saw it (the sender's node), after the NIC, after decapsulation, in
/// the pod (before its socket).
pub const TRACE_DROP_STAGES: usize = 4;
pub const TRACE_STAGE_NAMES: [&str; TRACE_DROP_STAGES] = ["sender", "nic", "decap", "pod"];
/// Where the signature sits, from skb->data: the payload of a plain
/// IPv4/UDP packet (data at its IP header, or at its Ethernet header), and
/// of one in VXLAN over IPv4 (data at the outer IP header); then the same
/// for a TCP SYN (`--proto tcp-syn`: a 20-byte TCP header, no options). No
/// IP options: `probe trace` sends none.
pub const TRACE_MAGIC_OFFSETS: [u32; 6] = [
    20 + 8,
    14 + 20 + 8,
    20 + 8 + 8 + 14 + 20 + 8,
    20 + 20,
    14 + 20 + 20,
    20 + 8 + 8 + 14 + 20 + 20,
];

/// sock_recv_length's `flags` bit for a read that leaves the data queued.
pub const MSG_PEEK: i32 = 2;

/// Stages a followed packet has reached (`PathPacket::stage`).
pub const STAGE_NIC: u32 = 1;
pub const STAGE_DECAP: u32 = 2;

/// Transitions, the index of their histograms.
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// NIC -> the VXLAN device (decapsulated).
    NicToDecap = 0,
    /// VXLAN device -> the pod's device.
    DecapToPod = 1,
    /// NIC -> the pod's device without a VXLAN device (host-gw routing).
    NicToPod = 2,
    /// The pod's device -> queued to its socket: the pod's IP/TCP/UDP stack.
    PodToQueued = 3,
    /// Queued -> read by the application: the wait in the socket queue.
    QueuedToRead = 4,
    /// NIC -> read: the whole receive path.
    NicToRead = 5,
}

impl Transition {
    pub const COUNT: usize = 6;
    pub const ALL: [Transition; Transition::COUNT] = [
        Transition::NicToDecap,
        Transition::DecapToPod,
        Transition::NicToPod,
        Transition::PodToQueued,
        Transition::QueuedToRead,
        Transition::NicToRead,
    ];
    /// (from, to) stage names as the reports print them.
    pub const fn stages(self) -> (&'static str, &'static str) {
        match self {
            Transition::NicToDecap => ("nic", "decap"),
            Transition::DecapToPod => ("decap", "pod"),
            Transition::NicToPod => ("nic", "pod"),
            Transition::PodToQueued => ("pod", "queued"),
            Transition::QueuedToRead => ("queued", "read"),
            Transition::NicToRead => ("nic", "read"),
        }
    }
}

/// Counted stages of the followed packets (`PathCpu::reached`).
#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reached {
    /// Chosen at the NIC.
    Sampled = 0,
    Decap = 1,
    Pod = 2,
    /// Queued to a TCP or UDP socket.
    Queued = 3,
    /// Read by the application.
    Read = 4,
    /// Reached a socket that already had a followed packet waiting: not
    /// followed further (one per socket at a time).
    SocketBusy = 5,
}

impl Reached {
    pub const COUNT: usize = 6;
}

/// Kernel struct offsets, from the running kernel's BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathOffsets {
    pub skb_head: u32,
    pub skb_dev: u32,
    pub dev_ifindex: u32,
    pub dev_nd_net: u32,
    pub net_inum: u32,
    /// `sock.sk_receive_queue` (a sk_buff_head: next, prev, qlen).
    pub sk_receive_queue: u32,
    /// `sk_buff_head.prev` (the tail) and `.qlen`.
    pub queue_prev: u32,
    pub queue_qlen: u32,
    pub sk_num: u32,
    pub sk_protocol: u32,
    pub sk_net: u32,
    /// `udp_sock.reader_queue` (the datagrams a reader moved out of
    /// sk_receive_queue, Linux 4.16).
    pub udp_reader_queue: u32,
    /// `tcp_sock.rcv_nxt` and `.copied_seq`.
    pub tcp_rcv_nxt: u32,
    pub tcp_copied_seq: u32,
    /// `sk_buff.data`, for the signature of `probe trace`, and `.len` and
    /// `.data_len`: the signature must lie in the linear part (len -
    /// data_len bytes from data), not in stale bytes past the packet's end.
    pub skb_data: u32,
    pub skb_len: u32,
    pub skb_data_len: u32,
    pub _pad: u32,
}

/// `probe trace`: marked packets dropped, by stage and reason slot
/// (`drops::reason_slot`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathDrops {
    pub by_stage: [[u64; crate::drops::REASON_SLOTS]; TRACE_DROP_STAGES],
}

/// The devices that mark the stages: the NIC `[ifindex, netns inode]`, and
/// the VXLAN devices' ifindexes in the same namespace (0: none).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathDevices {
    pub nic_ifindex: u32,
    pub node_netns: u32,
    pub vxlan_ifindex: [u32; PATH_VXLAN_DEVICES],
}

/// A followed packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathPacket {
    /// skb->head; 0: free.
    pub head: u64,
    /// [`STAGE_NIC`] or [`STAGE_DECAP`].
    pub stage: u32,
    pub _pad: u32,
    pub at_nic: u64,
    /// When it reached `stage`.
    pub at_stage: u64,
}

/// A socket with a followed packet in its queue.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathSocket {
    pub netns: u32,
    pub port: u16,
    /// IPPROTO_TCP or IPPROTO_UDP; 0: free.
    pub protocol: u16,
    /// UDP: datagrams still to be read up to and including the packet's.
    /// TCP: the sequence number after the packet's data (read when
    /// copied_seq reaches it).
    pub until: u32,
    pub _pad: u32,
    pub at_nic: u64,
    pub queued_at: u64,
}

/// One socket's followed packets that were read: the wait in its queue
/// (queued -> read) and the whole path (nic -> read), per CPU (the reader's).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketWait {
    pub netns: u32,
    pub port: u16,
    /// IPPROTO_TCP or IPPROTO_UDP; 0: a free slot.
    pub protocol: u16,
    pub queued_to_read: NsHistogram,
    pub nic_to_read: NsHistogram,
}

/// A log2 histogram of ns, with its sum and maximum.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NsHistogram {
    pub buckets: [u64; HIST_BUCKETS],
    pub sum: u64,
    pub max: u64,
}

/// One CPU's counts and histograms, plus its scratch state.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathCpu {
    /// Scratch: packets to let go by before the next sampled one.
    pub countdown: u64,
    /// Scratch: the followed packet that just reached a pod on this CPU
    /// (head 0: none), waiting for its sk_data_ready.
    pub pending_head: u64,
    pub pending_at_nic: u64,
    pub pending_at_pod: u64,
    /// Followed packets per [`Reached`].
    pub reached: [u64; Reached::COUNT],
    pub transitions: [NsHistogram; Transition::COUNT],
}

const _: () = assert!(size_of::<PathCpu>() <= 32 * 1024);
const _: () = assert!(size_of::<PathDrops>() <= 32 * 1024);
const _: () = assert!(PATH_SOCKET_WAIT_SLOTS.is_power_of_two());
const _: () = assert!(PATH_SLOTS.is_power_of_two() && PATH_SOCKET_SLOTS.is_power_of_two());

/// The packet table slot of a buffer address: its low bits are alignment
/// (slab objects, page_pool fragments), so mix in higher ones.
#[inline(always)]
pub const fn packet_slot(head: u64) -> u32 {
    ((head >> 6) ^ (head >> 17) ^ (head >> 29)) as u32 & (PATH_SLOTS as u32 - 1)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] structs of integers with explicit padding fields:
    // every bit pattern is valid.
    unsafe impl aya::Pod for super::PathOffsets {}
    unsafe impl aya::Pod for super::PathDevices {}
    unsafe impl aya::Pod for super::PathCpu {}
    unsafe impl aya::Pod for super::PathDrops {}
    unsafe impl aya::Pod for super::SocketWait {}
    unsafe impl aya::Pod for super::PathSocket {}
}

impl Default for SocketWait {
    fn default() -> Self {
        // SAFETY: all-integer struct; zero is a valid value for every field.
        unsafe { core::mem::zeroed() }
    }
}

impl Default for PathDrops {
    fn default() -> Self {
        // SAFETY: all-integer struct; zero is a valid value for every field.
        unsafe { core::mem::zeroed() }
    }
}

impl Default for PathCpu {
    fn default() -> Self {
        // SAFETY: all-integer struct; zero is a valid value for every field.
        unsafe { core::mem::zeroed() }
    }
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn neighbouring_buffers_take_different_slots() {
        // 2 KiB page_pool fragments and 512-byte slab heads of one page.
        let page = 0xffff_8880_1234_5000u64;
        let slots: std::collections::BTreeSet<u32> =
            (0..8).map(|i| packet_slot(page + i * 512)).collect();
        assert_eq!(slots.len(), 8);
        assert!(slots.iter().all(|s| (*s as usize) < PATH_SLOTS));
    }
}
