//! The raw cumulative counters, as read: each hook's maps (summed or kept
//! per CPU), a device's stats64, /proc's softnet_stat and protocol counters,
//! the probe's own cost. Each has its `Delta` (delta.rs).

pub mod drops;
pub mod latency;
pub mod link;
pub mod nic;
pub mod procfs;
pub mod selfcost;
pub mod steering;
pub mod vxlan;
