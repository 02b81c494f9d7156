//! Empty on purpose: this crate's product is the `probe-ebpf` BPF object built
//! from `main.rs` by probe-user's build script. The library target only lets
//! probe-user name this crate as a build-dependency so cargo rebuilds on change.
#![no_std]
