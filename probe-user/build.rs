//! Builds the kernel programs (probe-ebpf) for the BPF target with the nightly
//! toolchain and bpf-linker; each of its binaries (one BPF object per hook)
//! lands in OUT_DIR under its own name (probe-nic, probe-drops, ...).
//! `cargo xtask setup` installs both. PROBE_EBPF_TOOLCHAIN overrides the
//! toolchain (the setup step uses it to fall back to stable + RUSTC_BOOTSTRAP).

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PROBE_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("PROBE_EBPF_TOOLCHAIN").ok();
    let toolchain = match toolchain.as_deref() {
        Some(name) if !name.is_empty() => aya_build::Toolchain::Custom(name),
        _ => aya_build::Toolchain::Nightly,
    };
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../probe-ebpf");
    let package = aya_build::Package {
        name: "probe-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], toolchain)
}
