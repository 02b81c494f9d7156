//! The stage latency object (--stage-latency): sampled packets timed from the
//! NIC to the socket read.
#![no_std]
#![no_main]

#[path = "../kernel.rs"]
mod kernel;
#[path = "../stage_latency.rs"]
mod stage_latency;

include!("../object.rs");
