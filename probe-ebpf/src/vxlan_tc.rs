//! TCX ingress on a VXLAN device (flannel.1): skbs, segments and bytes per
//! inner class. The device carries decapsulated Ethernet frames, so the class
//! comes straight from skb->protocol (set by eth_type_trans in vxlan_rcv).
//!
//! Ingress runs after the device's GRO cells (gro_cells_receive in
//! vxlan_rcv), which merge a bulk TCP flow's segments into one skb: the
//! segment count is what compares with the outer packets at the NIC. There
//! is no egress program: the device's own tx_packets/tx_dropped say what it
//! sent, and a per-packet program there would only re-count them.

use aya_ebpf::{
    macros::{classifier, map},
    maps::PerCpuArray,
    programs::TcContext,
};
use probe_common::{DevCounters, InnerClass};

use crate::kernel::{gso_segs, TC_ACT_UNSPEC};

#[map]
static VXLAN_DEV: PerCpuArray<DevCounters> = PerCpuArray::with_max_entries(1, 0);

#[classifier]
pub fn vxlan_dev_ingress(ctx: TcContext) -> i32 {
    // __sk_buff.protocol holds the big-endian EtherType in its low 16 bits.
    let ethertype = u16::from_be(ctx.skb.protocol() as u16);
    let class = InnerClass::from_ethertype(ethertype) as usize;
    if let Some(d) = VXLAN_DEV.get_ptr_mut(0) {
        // SAFETY: this CPU's copy; tc ingress runs in softirq or with BH
        // disabled, never nested with itself on one CPU.
        let d = unsafe { &mut *d };
        if class < InnerClass::COUNT {
            d.skbs[class] += 1;
            d.segments[class] += gso_segs(&ctx);
            d.bytes[class] += ctx.len() as u64;
        }
    }
    TC_ACT_UNSPEC
}
