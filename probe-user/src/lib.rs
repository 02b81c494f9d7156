//! The probe's user side: loads and attaches the kernel programs, reads their
//! per-CPU counters into one model, and renders it.
//!
//! kernel maps --(probes)--> Sample --(model)--> Report --(render / JSON)--> output
//! kernel facts (rtnl stats64, routes, capabilities) ------^

pub mod advice;
pub mod btf;
pub mod caps;
pub mod cli;
pub mod diff;
pub mod drops;
pub mod error;
pub mod ethtool;
pub mod latency;
pub mod ledger;
pub mod model;
pub mod netns;
pub mod probes;
pub mod procfs;
pub mod render;
pub mod route;
pub mod rtnl;
pub mod selfcost;
pub mod steering;
pub mod tune;

/// The compiled kernel programs (BPF ELF object).
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/probe-ebpf"));
