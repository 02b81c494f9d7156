//! The VXLAN-device object: TCX ingress and egress counters per inner class.
#![no_std]
#![no_main]

#[path = "../vxlan_tc.rs"]
mod vxlan_tc;

include!("../object.rs");
