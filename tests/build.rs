//! Builds the test-only BPF programs (tests-ebpf) for the BPF target with the
//! nightly toolchain and bpf-linker, the way probe-user's build script builds
//! the probe's: each binary of tests-ebpf lands in OUT_DIR under its own name
//! (`fixtures`), embedded as `probe_tests::objects`. PROBE_EBPF_TOOLCHAIN
//! overrides the toolchain (`cargo xtask` sets it when it falls back to
//! stable + RUSTC_BOOTSTRAP).

fn main() -> anyhow::Result<()> {
    println!("cargo:rerun-if-env-changed=PROBE_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("PROBE_EBPF_TOOLCHAIN").ok();
    let toolchain = match toolchain.as_deref() {
        Some(name) if !name.is_empty() => aya_build::Toolchain::Custom(name),
        _ => aya_build::Toolchain::Nightly,
    };
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests-ebpf");
    let package = aya_build::Package {
        name: "tests-ebpf",
        root_dir,
        ..Default::default()
    };
    aya_build::build_ebpf([package], toolchain)
}
