//! Where reports go: the terminal table, Prometheus metrics, and the writer
//! thread that keeps a slow reader of stdout from stalling the probe.

pub mod metrics;
pub mod render;
pub mod writer;
