//! The VXLAN-device object: TCX ingress counters per inner class.
#![no_std]
#![no_main]

#[path = "../tc.rs"]
mod tc;
#[path = "../vxlan_tc.rs"]
mod vxlan_tc;

include!("../object.rs");
