//! What every tc program of the probe shares: its verdict, and the number of
//! wire segments an skb stands for.

use aya_ebpf::programs::TcContext;

/// "Continue" (TC_ACT_UNSPEC): the next program in the TCX chain (a CNI's),
/// or the next cls_bpf filter, still runs; the packet's fate is unchanged.
pub const TC_ACT_UNSPEC: i32 = -1;

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
