//! Baselines for `cargo xtask bench`: the cost of a program that does nothing,
//! subtracted from the real programs' BPF_PROG_TEST_RUN time. Never attached.

use aya_ebpf::{
    bindings::xdp_action,
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};

#[xdp]
pub fn bench_empty_xdp(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[classifier]
pub fn bench_empty_tc(_ctx: TcContext) -> i32 {
    -1
}
