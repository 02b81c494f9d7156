//! `cargo xtask setup`: installs what a fresh machine lacks, idempotently.
//!
//! - rust-src for the eBPF toolchain (nightly; `-Z build-std=core` needs it)
//! - bpf-linker 0.13.0 built against the toolchain's own libLLVM (no download)
//! - Debian packages the tests use (iproute2 for the lab, util-linux's setpriv,
//!   iptables, and the traffic tools iperf3, qperf, ping and ethtool)
//!
//! If the nightly toolchain is missing, the stable one builds the eBPF crate
//! with RUSTC_BOOTSTRAP=1 (the eBPF target needs build-std); [`apply_env`] passes
//! that choice to every cargo the other tasks start.

use std::{
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use anyhow::{bail, Context, Result};

const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_FEATURE: &str = "llvm-22";
/// Debian packages and a command each provides (to check without dpkg).
/// iptables: the ledger test that drops with a netfilter rule. iperf3 and
/// qperf, ping: the traffic users send (TCP with GRO/GSO, latency runs); ethtool:
/// the offload features the probe must leave as they are.
const APT_PACKAGES: &[(&str, &str)] = &[
    ("iproute2", "ip"),
    ("util-linux", "setpriv"),
    ("iptables", "iptables"),
    ("iperf3", "iperf3"),
    ("qperf", "qperf"),
    ("ethtool", "ethtool"),
    ("iputils-ping", "ping"),
    // promtool: the Prometheus rules' checks and unit tests; prometheus: the
    // lab's Prometheus (`lab up --with-prometheus`, lab_prometheus, the harness test).
    ("prometheus", "promtool"),
];

fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The toolchain that builds the eBPF crate: nightly if installed, else
/// stable. Asked once per xtask run (setup installs nothing that changes it).
fn ebpf_toolchain() -> &'static str {
    static CHOICE: OnceLock<&'static str> = OnceLock::new();
    CHOICE.get_or_init(|| {
        if output(Command::new("rustc").args(["+nightly", "--version"])).is_some() {
            "nightly"
        } else {
            "stable"
        }
    })
}

/// Environment for cargo invocations that build probe-user.
pub fn apply_env(cmd: &mut Command) {
    if ebpf_toolchain() == "stable" {
        cmd.env("PROBE_EBPF_TOOLCHAIN", "stable")
            .env("RUSTC_BOOTSTRAP", "1");
    }
}

fn sysroot(toolchain: &str) -> Result<PathBuf> {
    let s = output(Command::new("rustc").args([&format!("+{toolchain}"), "--print", "sysroot"]))
        .with_context(|| format!("no {toolchain} Rust toolchain (rustup toolchain list)"))?;
    Ok(PathBuf::from(s))
}

fn exec(cmd: &mut Command) -> Result<()> {
    eprintln!("setup: running {cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// What only `cargo xtask bench` needs: bpftrace, the comparison in the flood
/// benchmark (a large package, so not part of every set-up).
pub fn bench_packages() -> Result<()> {
    if on_path("bpftrace") {
        return Ok(());
    }
    if !crate::is_root() {
        bail!("bpftrace is missing: run `cargo xtask bench` as root (it uses apt-get)");
    }
    apt_install(&["bpftrace"])
}

/// `apt-get update` and `apt-get install` of `packages`.
fn apt_install(packages: &[&str]) -> Result<()> {
    exec(Command::new("apt-get").args(["update", "-qq"]))?;
    exec(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// What only `cargo xtask vm` and `reason-lists` need: QEMU, a static
/// busybox for the initramfs, depmod for the kernels' modules, the
/// decompressors of their images.
pub fn vm_packages() -> Result<()> {
    let missing: Vec<&str> = [
        ("qemu-system-x86", "qemu-system-x86_64"),
        ("busybox-static", "busybox"),
        ("kmod", "depmod"),
        ("xz-utils", "xz"),
        // Kernel images compressed with zstd (`cargo xtask reason-lists`).
        ("zstd", "zstd"),
    ]
    .iter()
    .filter(|(_, bin)| !on_path(bin))
    .map(|(pkg, _)| *pkg)
    .collect();
    if missing.is_empty() {
        return Ok(());
    }
    apt_install(&missing)
}

fn steps() -> Result<()> {
    let toolchain = ebpf_toolchain();
    let root = sysroot(toolchain)?;

    // 1. rust-src (build-std=core for bpfel-unknown-none).
    if !root.join("lib/rustlib/src/rust/library/core").exists() {
        exec(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            toolchain,
        ]))?;
    }

    // 2. bpf-linker against this toolchain's libLLVM. A bpf-linker whose
    //    libLLVM is gone (toolchain updated) fails to start: reinstall then.
    let installed = output(Command::new("bpf-linker").arg("--version"));
    if !installed
        .as_deref()
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION))
    {
        let lib = root.join("lib");
        let llvm = std::fs::read_dir(&lib)?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .find(|n| n.starts_with("libLLVM.so.") && n.contains("-rust-"))
            .with_context(|| format!("no libLLVM.so.*-rust-* in {}", lib.display()))?;
        let link = lib.join("libLLVM.so");
        if !link.exists() {
            std::os::unix::fs::symlink(&llvm, &link)
                .with_context(|| format!("symlink {}", link.display()))?;
        }
        let mut cmd = Command::new("cargo");
        cmd.args([
            &format!("+{toolchain}"),
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
        ])
        .args(["--no-default-features", "--features", BPF_LINKER_FEATURE])
        .env("LLVM_PREFIX", &root);
        exec(&mut cmd)?;
    }

    // 3. Debian packages.
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, bin)| !on_path(bin))
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !crate::is_root() {
            bail!("missing Debian packages {missing:?}: run `cargo xtask setup` as root (it uses apt-get)");
        }
        apt_install(&missing)?;
    }
    Ok(())
}

fn on_path(bin: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].iter().map(PathBuf::from))
        .any(|d| Path::new(&d).join(bin).exists())
}

pub fn run() -> Result<()> {
    steps().context("setup failed")
}
