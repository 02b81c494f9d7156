//! The NIC object: TCX ingress (default) or XDP counters per RX queue, class and VNI.
#![no_std]
#![no_main]

#[path = "../kernel.rs"]
mod kernel;
#[path = "../nic.rs"]
mod nic;
#[path = "../vxlan_ports.rs"]
mod vxlan_ports;

include!("../object.rs");
