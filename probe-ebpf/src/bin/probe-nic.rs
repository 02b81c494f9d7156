//! The NIC object: XDP (or the TCX fallback) counters per RX queue, class and VNI.
#![no_std]
#![no_main]

#[path = "../nic.rs"]
mod nic;
#[path = "../vxlan_ports.rs"]
mod vxlan_ports;

include!("../object.rs");
