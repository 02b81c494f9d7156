//! The VXLAN-device object: TCX ingress counters per inner class.
#![no_std]
#![no_main]

#[path = "../kernel.rs"]
mod kernel;
#[path = "../vxlan_tc.rs"]
mod vxlan_tc;

include!("../object.rs");
