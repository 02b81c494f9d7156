//! Kernel-side programs of the probe. They only count: per-CPU arrays, no hash
//! lookups, no atomics, no per-packet events, and they never change a packet's
//! fate (XDP_PASS, TC_ACT_UNSPEC).
#![no_std]
#![no_main]

mod bench;
mod nic_xdp;
mod skb_drop;
mod softirq;
mod steering;
mod vxlan_tc;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// GPL-compatible: later tracepoint programs use GPL-only helpers.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
