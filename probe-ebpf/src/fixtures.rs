//! Programs for `cargo xtask bench` and the tests, never used by `probe`:
//! - empty programs, the baseline subtracted from the real programs'
//!   BPF_PROG_TEST_RUN time;
//! - counting programs that stand in for another owner's (a CNI's) XDP and
//!   TCX programs in the coexistence tests.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, map, xdp},
    maps::PerCpuArray,
    programs::{TcContext, XdpContext},
};
use probe_common::{FIXTURE_SLOT_TC, FIXTURE_SLOT_XDP};

#[xdp]
pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn bench_empty_tc(_ctx: TcContext) -> i32 {
    -1
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

#[classifier]
pub fn fixture_count_tc(_ctx: TcContext) -> i32 {
    bump(FIXTURE_SLOT_TC);
    -1
}
