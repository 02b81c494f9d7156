//! The drop probe (`skb:kfree_skb` via tp_btf): what it counts and how.
//!
//! It runs only when the kernel drops an skb, never for delivered packets.
//! Still no hash maps: each map has one per-CPU entry holding fixed tables.
//! Keyed tables are direct-mapped (slot = a hash of the key, a few probes);
//! the per-reason totals next to them are exact whatever happens to the keys.

use core::mem::size_of;

/// One entry: [`DropTable`].
pub const MAP_DROPS: &str = "DROPS";
/// One entry: [`FlowTable`].
pub const MAP_DROP_FLOWS: &str = "DROP_FLOWS";
pub const PROG_SKB_DROP: &str = "skb_drop";
/// The tp_btf attach point (the `skb:kfree_skb` tracepoint).
pub const DROP_TRACEPOINT: &str = "kfree_skb";

pub const GLOBAL_DROP_OFFSETS: &str = "DROP_OFFSETS";
pub const GLOBAL_SCOPE_NETNS: &str = "SCOPE_NETNS";
pub const GLOBAL_SCOPE_COUNT: &str = "SCOPE_COUNT";
pub const GLOBAL_NOT_DROPS: &str = "NOT_DROPS";
pub const GLOBAL_NIC_NETNS: &str = "NIC_NETNS";
pub const GLOBAL_REASON_NO_SOCKET: &str = "REASON_NO_SOCKET";
pub const GLOBAL_REASON_NOT_SPECIFIED: &str = "REASON_NOT_SPECIFIED";
/// Placeholder in NOT_DROPS for a value the running kernel does not have.
pub const NO_REASON: u32 = u32::MAX;

/// Core drop reasons (subsystem 0) below this get their own slot.
pub const CORE_REASON_SLOTS: u32 = 240;
/// Slots of [`DropTable::by_reason`]: core reasons, then one per subsystem
/// (reason >> 16, from Linux 6.4 the high 16 bits name a subsystem). Slot
/// CORE_REASON_SLOTS ("subsystem 0") holds core reasons past the table.
pub const REASON_SLOTS: usize = 256;
/// Keyed (netns, ifindex, reason) slots; a power of two.
pub const DROP_SLOTS: usize = 512;
/// Keyed flow slots; a power of two.
pub const FLOW_SLOTS: usize = 256;
/// Slots tried after the home slot before a key is given up on.
pub const PROBES: usize = 4;
/// Slots of [`DropTable::not_specified_at`]: the functions that free
/// packets without a reason are few on any kernel.
pub const LOCATION_SLOTS: usize = 64;
/// At most this many network namespaces in `--drop-netns`.
pub const MAX_SCOPE_NETNS: usize = 16;

/// sk_buff / net_device / net layout of the running kernel, from its BTF.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropOffsets {
    pub skb_dev: u32,
    pub skb_head: u32,
    pub skb_network_header: u32,
    pub dev_ifindex: u32,
    pub dev_nd_net: u32,
    /// `net.ns` + `ns_common.inum`.
    pub net_inum: u32,
    /// `sk_buff.end`: skb_shinfo(skb) = head + end.
    pub skb_end: u32,
    pub shinfo_gso_segs: u32,
    pub skb_sk: u32,
    /// `sock.__sk_common` + `sock_common.skc_net` (a possible_net_t: the net pointer).
    pub sk_net: u32,
    pub dev_rtnl_link_ops: u32,
    pub link_ops_kind: u32,
}

/// Where a drop happened: the netns inode number and ifindex of skb->dev
/// (0 and 0 when the skb had no device), and the raw drop reason.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DropKey {
    pub netns: u32,
    pub ifindex: u32,
    pub reason: u32,
    /// 1 when skb->dev is a VXLAN device: the packet was decapsulated.
    pub decap: u32,
}

/// A keyed counter in a direct-mapped table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Slot<K> {
    pub key: K,
    /// 0: the slot is free.
    pub count: u64,
}

pub type DropSlot = Slot<DropKey>;
pub type FlowSlot = Slot<FlowKey>;
/// Drops counted by the kernel address they were freed at.
pub type LocationSlot = Slot<u64>;

/// An entry of a direct-mapped, per-CPU table: a key, and values that are
/// all zero while the entry is free.
pub trait Keyed {
    type Key: Copy + PartialEq;
    fn key(&self) -> Self::Key;
    fn is_free(&self) -> bool;
    fn claim(&mut self, key: Self::Key);
}

impl<K: Copy + PartialEq> Keyed for Slot<K> {
    type Key = K;
    fn key(&self) -> K {
        self.key
    }
    fn is_free(&self) -> bool {
        self.count == 0
    }
    fn claim(&mut self, key: K) {
        self.key = key;
    }
}

/// The entry of `key` in `slots`: the one `home` points at, or one of the
/// next [`PROBES`]; a free entry is claimed. None when all were taken by
/// other keys. Entries are never freed: their values are cumulative.
#[inline(always)]
pub fn entry_in<S: Keyed, const N: usize>(
    slots: &mut [S; N],
    home: usize,
    key: S::Key,
) -> Option<&mut S> {
    let mut i = 0;
    while i <= PROBES {
        // N is a power of two: the mask bounds the index for the verifier.
        let index = (home + i) & (N - 1);
        if slots[index].is_free() {
            slots[index].claim(key);
            return Some(&mut slots[index]);
        }
        if slots[index].key() == key {
            return Some(&mut slots[index]);
        }
        i += 1;
    }
    None
}

/// Counts one event for `key` in `slots` ([`entry_in`]). False when no entry
/// was free for it.
#[inline(always)]
pub fn count_in<K: Copy + PartialEq, const N: usize>(
    slots: &mut [Slot<K>; N],
    home: usize,
    key: K,
) -> bool {
    match entry_in(slots, home, key) {
        Some(slot) => {
            slot.count += 1;
            true
        }
        None => false,
    }
}

/// One CPU's drop counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropTable {
    /// Exact dropped skbs per reason slot ([`reason_slot`]), in scope only.
    pub by_reason: [u64; REASON_SLOTS],
    /// The same in segments: max(gso_segs, 1) per dropped skb.
    pub segments: [u64; REASON_SLOTS],
    /// Segments of outer VXLAN packets (UDP to a VXLAN port) dropped in the
    /// NIC's namespace before decapsulation, per reason slot, whatever the
    /// scope: what explains VXLAN packets seen at the NIC but not on the device.
    pub vxlan_outer: [u64; REASON_SLOTS],
    /// Of `by_reason` / `segments`: drops while skb->dev was a VXLAN device,
    /// i.e. of packets already decapsulated (routing, netfilter FORWARD).
    pub decap_skbs: [u64; REASON_SLOTS],
    pub decap_segments: [u64; REASON_SLOTS],
    /// Drops per (netns, ifindex, reason). A key whose home slot and the next
    /// [`PROBES`] are taken by others is counted in `by_reason` only.
    pub slots: [DropSlot; DROP_SLOTS],
    /// Drops in namespaces outside `--drop-netns` (not counted above).
    pub out_of_scope: u64,
    /// In-scope drops that lose no data, by [`Benign`] kind, in skbs and in
    /// segments; not counted in the tables above.
    pub benign_skbs: [u64; BENIGN_KINDS],
    pub benign_segments: [u64; BENIGN_KINDS],
    /// In-scope NOT_SPECIFIED drops (benign ones included) by the
    /// tracepoint's `location`: the address in the function that freed the
    /// packet (kfree_skb's caller), which /proc/kallsyms names. A location
    /// whose home slot and the next [`PROBES`] are taken is not counted here.
    pub not_specified_at: [LocationSlot; LOCATION_SLOTS],
}

/// Drops the probe recognises from the packet as losing no data. The kernel
/// names them with a generic reason; the packet's headers tell them apart.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Benign {
    /// An ICMP/ICMPv6 echo reply freed with NO_SOCKET by ping_rcv: the raw
    /// socket of a root `ping` got a clone first (raw_local_deliver).
    EchoReply = 0,
    /// A TCP segment freed with NOT_SPECIFIED: TCP ignored it (a TIME_WAIT
    /// socket took it, e.g. a late FIN or a duplicate, tcp_v4_rcv's
    /// do_time_wait path), which real TCP drops never are: they have reasons.
    TcpIgnored = 1,
    /// A TCP segment other than a SYN freed with NO_SOCKET: its connection
    /// is gone (closed or reset); the sender gets a RST. A SYN to no socket
    /// is a refused connection and stays NO_SOCKET.
    TcpStale = 2,
    /// A link-local control packet freed with NOT_SPECIFIED: IPv6 neighbour
    /// discovery and MLD (ICMPv6, or a hop-by-hop header, to a link-local
    /// multicast group; ICMPv6 router and neighbour messages anywhere), IGMP,
    /// IPv4 to 224.0.0.0/24. Every new interface sends them (MLD reports,
    /// DAD, router solicitations); a device with no listener for the group
    /// frees them. They carry no one's data.
    Control = 3,
}

pub const BENIGN_KINDS: usize = 4;

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// A dropped IPv4/IPv6 packet's addresses (IPv4 in the first 4 bytes). For a
/// VXLAN packet dropped before decapsulation, the inner addresses.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    pub netns: u32,
    pub reason: u32,
    pub family: u8,
    /// 1 when the addresses are the inner ones of a VXLAN packet.
    pub inner: u8,
    /// 1 when skb->dev is a VXLAN device: the packet was decapsulated.
    pub decap: u8,
    pub _pad: [u8; 5],
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// One CPU's flows with drops.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowTable {
    pub slots: [FlowSlot; FLOW_SLOTS],
    /// In-scope drops of IP packets whose flow found no slot.
    pub unslotted: u64,
}

// The per-CPU value size limit is 32 KiB (PCPU_MIN_UNIT_SIZE).
const _: () = assert!(
    size_of::<DropTable>()
        == 5 * 8 * REASON_SLOTS + 24 * DROP_SLOTS + 8 + 16 * BENIGN_KINDS + 16 * LOCATION_SLOTS
);
const _: () = assert!(size_of::<DropTable>() <= 32 * 1024);
const _: () = assert!(size_of::<FlowKey>() == 48);
const _: () = assert!(size_of::<FlowTable>() <= 32 * 1024);
const _: () = assert!(
    DROP_SLOTS.is_power_of_two()
        && FLOW_SLOTS.is_power_of_two()
        && LOCATION_SLOTS.is_power_of_two()
);

/// Slot of a raw drop reason in [`DropTable::by_reason`].
#[inline(always)]
pub const fn reason_slot(reason: u32) -> usize {
    let subsys = reason >> 16;
    if subsys == 0 && reason < CORE_REASON_SLOTS {
        reason as usize
    } else {
        let s = CORE_REASON_SLOTS as usize + subsys as usize;
        if s < REASON_SLOTS {
            s
        } else {
            REASON_SLOTS - 1
        }
    }
}

/// Multiplicative hash of up to three words (Knuth's constant).
#[inline(always)]
pub const fn mix(a: u32, b: u32, c: u32) -> u32 {
    let h = a.wrapping_mul(0x9e37_79b1) ^ b.wrapping_mul(0x85eb_ca6b) ^ c.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 15)
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: #[repr(C)] structs of integers and byte arrays with explicit
    // padding fields: every bit pattern is valid.
    unsafe impl aya::Pod for super::DropOffsets {}
    unsafe impl aya::Pod for super::DropTable {}
    unsafe impl aya::Pod for super::FlowTable {}
}

impl Default for DropTable {
    fn default() -> Self {
        Self {
            by_reason: [0; REASON_SLOTS],
            segments: [0; REASON_SLOTS],
            vxlan_outer: [0; REASON_SLOTS],
            decap_skbs: [0; REASON_SLOTS],
            decap_segments: [0; REASON_SLOTS],
            slots: [DropSlot::default(); DROP_SLOTS],
            out_of_scope: 0,
            benign_skbs: [0; BENIGN_KINDS],
            benign_segments: [0; BENIGN_KINDS],
            not_specified_at: [LocationSlot::default(); LOCATION_SLOTS],
        }
    }
}

impl Default for FlowTable {
    fn default() -> Self {
        Self {
            slots: [FlowSlot::default(); FLOW_SLOTS],
            unslotted: 0,
        }
    }
}

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    #[test]
    fn direct_mapped_counting() {
        let mut slots = [Slot::<u32>::default(); 8];
        assert!(count_in(&mut slots, 3, 7));
        assert!(count_in(&mut slots, 3, 7));
        assert_eq!(slots[3], Slot { key: 7, count: 2 });
        // Another key with the same home takes the next slot; wraps at the end.
        assert!(count_in(&mut slots, 3, 9));
        assert_eq!(slots[4], Slot { key: 9, count: 1 });
        assert!(count_in(&mut slots, 7, 1) && count_in(&mut slots, 7, 2));
        assert_eq!(slots[0], Slot { key: 2, count: 1 });
        // Home and the next PROBES slots taken by others: given up.
        let mut full = [Slot {
            key: 1u32,
            count: 1,
        }; 8];
        full[7] = Slot::default();
        assert!(!count_in(&mut full, 0, 5));
        assert!(
            count_in(&mut full, 3, 5),
            "slot 7 is within reach of home 3"
        );
        assert_eq!(full[7], Slot { key: 5, count: 1 });
    }

    #[test]
    fn reason_slots() {
        assert_eq!(reason_slot(3), 3);
        assert_eq!(
            reason_slot(CORE_REASON_SLOTS - 1),
            CORE_REASON_SLOTS as usize - 1
        );
        // Core reasons past the table share the slot of "subsystem 0".
        assert_eq!(reason_slot(CORE_REASON_SLOTS), CORE_REASON_SLOTS as usize);
        assert_eq!(reason_slot(2 << 16 | 4), CORE_REASON_SLOTS as usize + 2);
        assert_eq!(reason_slot(0xffff << 16), REASON_SLOTS - 1);
    }
}
