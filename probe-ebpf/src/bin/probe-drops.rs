//! The drop object: tp_btf/kfree_skb by reason, device, netns and flow.
#![no_std]
#![no_main]

#[path = "../kernel.rs"]
mod kernel;
#[path = "../scope.rs"]
mod scope;
#[path = "../skb_drop.rs"]
mod skb_drop;
#[path = "../vxlan_ports.rs"]
mod vxlan_ports;

include!("../object.rs");
