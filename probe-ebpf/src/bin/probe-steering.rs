//! The steering object (--steering): which CPUs poll, process and read packets.
#![no_std]
#![no_main]

#[path = "../kernel.rs"]
mod kernel;
#[path = "../scope.rs"]
mod scope;
#[path = "../steering.rs"]
mod steering;

include!("../object.rs");
