//! Empty on purpose: this crate's products are the BPF objects built from
//! `src/bin/*.rs` (one per hook) by probe-user's build script. The library
//! target only lets probe-user name this crate as a build-dependency so cargo
//! rebuilds on change.
#![no_std]
