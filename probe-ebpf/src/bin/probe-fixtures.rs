//! Benchmark baselines and test stand-ins for other owners' programs; not used by probe.
#![no_std]
#![no_main]

#[path = "../fixtures.rs"]
mod fixtures;

include!("../object.rs");
