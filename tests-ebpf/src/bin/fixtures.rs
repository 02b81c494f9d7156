//! The fixtures object, for `cargo xtask bench` and the tests only:
//! - empty programs, the baseline subtracted from the real programs'
//!   BPF_PROG_TEST_RUN time;
//! - counting programs that stand in for another owner's (a CNI's) XDP and
//!   TCX programs in the coexistence tests.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_UNSPEC},
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use tests_ebpf::{FIXTURE_SLOT_TC, FIXTURE_SLOT_XDP};

#[xdp]
pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn bench_empty_tc(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}

/// Packets seen by the counting programs: one slot each.
#[map]
static FIXTURE_COUNT: PerCpuArray<u64> = PerCpuArray::with_max_entries(2, 0);

#[inline(always)]
fn bump(slot: u32) {
    if let Some(n) = FIXTURE_COUNT.get_ptr_mut(slot) {
        // SAFETY: this CPU's copy, in softirq context.
        unsafe { *n += 1 };
    }
}

#[xdp]
pub fn fixture_count_xdp(_ctx: XdpContext) -> u32 {
    bump(FIXTURE_SLOT_XDP);
    xdp_action::XDP_PASS
}

/// Returns TC_ACT_UNSPEC: the programs after it in the TCX chain (the probe's) still run.
#[classifier]
pub fn fixture_count_tc(_ctx: TcContext) -> i32 {
    bump(FIXTURE_SLOT_TC);
    TC_ACT_UNSPEC
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

// Same license section as the probe's objects (probe-ebpf/src/object.rs).
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
