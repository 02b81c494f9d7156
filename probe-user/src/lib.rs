//! The probe's user side: loads and attaches the kernel programs, reads their
//! per-CPU counters and the kernel's own into probe-model's types, and
//! renders the reports probe-model computes.
//!
//! kernel maps --(hooks)--> Sample --(probe_model)--> Report --(render / JSON)--> output
//! kernel facts (rtnl stats64, routes, capabilities) ------^

pub mod cli;
pub mod error;
pub mod hooks;
pub mod kernel;
pub mod notice;
pub mod output;
pub mod session;

/// The compiled kernel programs: one BPF ELF object per hook (probe-ebpf/src/bin),
/// so a loaded instance creates only the maps its programs use.
pub mod objects {
    macro_rules! object {
        ($name:literal) => {
            aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/", $name))
        };
    }
    /// The NIC: TCX ingress (default) or XDP.
    pub static NIC: &[u8] = object!("probe-nic");
    /// TCX ingress on a VXLAN device.
    pub static VXLAN: &[u8] = object!("probe-vxlan");
    /// tp_btf/kfree_skb.
    pub static DROPS: &[u8] = object!("probe-drops");
    /// `--latency`: NET_RX softirq and NAPI.
    pub static LATENCY: &[u8] = object!("probe-latency");
    /// `--steering`.
    pub static STEERING: &[u8] = object!("probe-steering");
    /// `--stage-latency`.
    pub static STAGE_LATENCY: &[u8] = object!("probe-stage-latency");
}
