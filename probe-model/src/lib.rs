//! The probe's model: what the kernel counted, as plain values, and every
//! analysis of it. No kernel access (the crate has no aya, netlink or /proc
//! dependency): probe-user reads the kernel into these types.
//!
//! counters (per hook, device, /proc) -> model::Sample -> model::Report
//! (stages, ledger, latency, steering, stage latency, advice) -> output

pub mod advice;
pub mod counters;
pub mod delta;
pub mod diff;
pub mod events;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod latency;
pub mod ledger;
pub mod model;
pub mod names;
pub mod reasons;
pub mod recording;
pub mod report;
pub mod settings;
pub mod stage;
pub mod stage_latency;
pub mod steering;
pub mod trace;
