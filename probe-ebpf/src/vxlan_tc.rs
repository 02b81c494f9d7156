//! TCX on a VXLAN device (flannel.1): packets and bytes per direction and
//! inner class. The device carries decapsulated Ethernet frames, so the class
//! comes straight from skb->protocol (set by eth_type_trans in vxlan_rcv).

use aya_ebpf::{
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use probe_common::{DevCounters, InnerClass, DIRECTIONS, DIR_EGRESS, DIR_INGRESS};

/// "Continue": the next program in the TCX chain (the CNI's) still runs.
const TC_ACT_UNSPEC: i32 = -1;

#[map]
static VXLAN_DEV: PerCpuArray<DevCounters> = PerCpuArray::with_max_entries(DIRECTIONS, 0);

#[classifier]
pub fn vxlan_dev_ingress(ctx: TcContext) -> i32 {
    count(&ctx, DIR_INGRESS);
    TC_ACT_UNSPEC
}

#[classifier]
pub fn vxlan_dev_egress(ctx: TcContext) -> i32 {
    count(&ctx, DIR_EGRESS);
    TC_ACT_UNSPEC
}

#[inline(always)]
fn count(ctx: &TcContext, direction: u32) {
    // __sk_buff.protocol holds the big-endian EtherType in its low 16 bits.
    let ethertype = u16::from_be(ctx.skb.protocol() as u16);
    let class = InnerClass::from_ethertype(ethertype) as usize;
    if let Some(d) = VXLAN_DEV.get_ptr_mut(direction) {
        // SAFETY: this CPU's copy; tc ingress/egress run in softirq or with BH
        // disabled, never nested with themselves on one CPU.
        let d = unsafe { &mut *d };
        if class < InnerClass::COUNT {
            d.packets[class] += 1;
            d.bytes[class] += ctx.len() as u64;
        }
    }
}
