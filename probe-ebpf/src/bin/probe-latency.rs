//! The latency object (--latency): NET_RX softirq timing and NAPI polls.
#![no_std]
#![no_main]

#[path = "../kernel.rs"]
mod kernel;
#[path = "../softirq.rs"]
mod softirq;

include!("../object.rs");
