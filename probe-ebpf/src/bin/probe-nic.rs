//! The NIC object: TCX ingress (default) or XDP counters per RX queue, class and VNI.
#![no_std]
#![no_main]

#[path = "../nic.rs"]
mod nic;
#[path = "../tc.rs"]
mod tc;
#[path = "../vxlan_ports.rs"]
mod vxlan_ports;

include!("../object.rs");
