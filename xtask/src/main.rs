//! Developer tasks: `cargo xtask setup | lab | demo | test | vm | bench`.
//! Every task runs `setup` first (a few fast checks once installed).

mod demo;
mod lab;
mod setup;
mod testrun;
mod vm;

use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Set up, demo, test and benchmark the probe"
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what a fresh machine lacks (idempotent): rust-src, bpf-linker, Debian packages
    Setup,
    /// Build or remove the two-node flannel lab (network namespaces PREFIX-n1, PREFIX-n1p1, ...)
    Lab {
        #[arg(value_enum)]
        action: LabAction,
        #[arg(long, default_value = "plab")]
        prefix: String,
        /// With `up`: also run `probe serve` on each node (127.0.0.1:9435, :9436) and a
        /// Prometheus scraping them (127.0.0.1:9090, the rules of deploy/prometheus),
        /// detached; `down` stops them
        #[arg(long)]
        with_prometheus: bool,
        /// With `up`: how pod traffic crosses between the nodes: flannel's
        /// `vxlan` backend (flannel.1) or `host-gw` (routes via the underlay)
        #[arg(long, value_enum, default_value_t = BackendArg::Vxlan)]
        backend: BackendArg,
    },
    /// The main job: build the lab, send pod traffic across it, run `probe watch` on node 2
    Demo {
        /// Print JSON lines instead of tables
        #[arg(long)]
        json: bool,
    },
    /// The whole test suite (unit + privileged lab tests; run as root)
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// The privileged tests in QEMU guests booting Debian's 5.10, 6.1 and 6.12
    /// kernels (TCG; see xtask/src/vm.rs), and/or the whole suite on the host
    Vm {
        /// 5.10, 6.1, 6.12, host or all (repeatable)
        #[arg(long, default_value = "all")]
        kernel: Vec<String>,
        /// vCPUs per guest
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Extra arguments for every test binary (e.g. a test name filter)
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Write the drop reasons of Debian's 5.10, 6.1 and 6.12 kernels (from their packages'
    /// BTF) and of the running kernel to probe-model/src/reasons/kernels/: the lists the
    /// stage table is tested against
    ReasonLists,
    /// Benchmarks (BENCHMARKS.md): BPF_PROG_TEST_RUN ns/packet over an empty
    /// program, a lab flood with no probe / probe watch / bpftrace (pps, the
    /// probe's CPU and RSS, attach/detach time, kernel ns per program run), and
    /// iperf3 traffic with no probe / probe / empty tc programs, and 50
    /// scrapers on `probe serve`'s HTTP server (a synthetic 64-CPU node)
    Bench {
        /// Only one part: `testrun`, `flood`, `traffic`, `soak [SECONDS]` (default
        /// 600), `serve [SECONDS]` (scrape load, default 60), `latency` (what
        /// `--latency` costs under iperf3), `stage-latency` (what `--stage-latency`
        /// costs under iperf3), `backends` (flannel's vxlan against host-gw: qperf,
        /// iperf3, and per-stage latency of each); or `traffic-parts` (diagnosis: the
        /// UDP flood with each hook alone)
        #[arg(num_args = 0..=2)]
        part: Vec<String>,
        /// Run the part in a QEMU guest booting this kernel (5.10, 6.1, 6.12), its
        /// lab nodes on virtio_net NICs: a real driver fed by QEMU's own thread
        /// (TCG: read the figures as ratios; BENCHMARKS.md found no more batching
        /// there than in the veth lab); e.g. `bench latency --guest 6.12`
        #[arg(long, value_name = "KERNEL")]
        guest: Option<String>,
        /// vCPUs of the --guest
        #[arg(long, default_value_t = 2)]
        cpus: u32,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum BackendArg {
    Vxlan,
    HostGw,
}

impl From<BackendArg> for probe_lab::Backend {
    fn from(b: BackendArg) -> Self {
        match b {
            BackendArg::Vxlan => probe_lab::Backend::Vxlan,
            BackendArg::HostGw => probe_lab::Backend::HostGw,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LabAction {
    Up,
    Down,
}

/// Prefix of the namespaces the test suite creates (see tests/src/lib.rs).
pub const TEST_LAB_PREFIX: &str = "plt";

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.task {
        Task::Setup => setup::run(),
        Task::Lab {
            action,
            prefix,
            with_prometheus,
            backend,
        } => {
            require_root("the lab")?;
            setup::run()?;
            match action {
                LabAction::Up => lab::up(&prefix, with_prometheus, backend.into()),
                LabAction::Down => lab::down(&prefix),
            }
        }
        Task::Demo { json } => {
            require_root("the demo")?;
            setup::run()?;
            demo::run(json)
        }
        Task::Test { args } => {
            setup::run()?;
            test(&args)
        }
        Task::Vm { kernel, cpus, args } => {
            require_root("the guests")?;
            setup::run()?;
            vm::main(&kernel, cpus, &args)
        }
        Task::ReasonLists => {
            setup::run()?;
            setup::vm_packages()?;
            vm::reason_lists()
        }
        Task::Bench { part, guest, cpus } => {
            require_root("the benchmark")?;
            setup::run()?;
            setup::bench_packages()?;
            let status = cargo()
                .args(["build", "--release", "-p", "probe-user", "--bin", "probe"])
                .status()?;
            if !status.success() {
                bail!("building probe failed");
            }
            let probe = std::env::current_dir()?.join("target/release/probe");
            if let Some(kernel) = guest {
                let status = cargo()
                    .args([
                        "build",
                        "--release",
                        "-p",
                        "probe-tests",
                        "--bin",
                        "probe-bench",
                    ])
                    .status()?;
                if !status.success() {
                    bail!("building probe-bench failed");
                }
                return vm::bench(&kernel, cpus, &part);
            }
            let status = cargo()
                .args([
                    "run",
                    "--release",
                    "--quiet",
                    "-p",
                    "probe-tests",
                    "--bin",
                    "probe-bench",
                    "--",
                ])
                .args(part)
                .env("PROBE_BIN", &probe)
                .status()?;
            if !status.success() {
                bail!("benchmark failed: {status}");
            }
            Ok(())
        }
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn require_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!("{what} creates network namespaces and attaches BPF programs: run as root");
    }
    Ok(())
}

/// `cargo` with the environment set by `setup` (toolchain fallback).
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    setup::apply_env(&mut cmd);
    cmd
}

pub fn test(extra: &[String]) -> Result<()> {
    if !is_root() {
        eprintln!("xtask: WARNING: not root: the privileged lab and BPF tests will report that they cannot run");
    }
    // Labs of test processes that were killed before their guards ran.
    probe_lab::sweep_stale(TEST_LAB_PREFIX).ok();
    let status = cargo()
        .args(["build", "-p", "probe-user", "--bin", "probe"])
        .status()
        .context("cargo build")?;
    if !status.success() {
        bail!("building probe failed");
    }
    let probe = std::env::current_dir()?.join("target/debug/probe");
    // Every test binary runs, whatever an earlier one did (--no-fail-fast);
    // stdout and stderr share one pipe, so that each `test result:` line
    // follows the `Running` line of its binary.
    let (reader, writer) = std::io::pipe().context("pipe")?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--no-fail-fast"])
        .args(extra)
        .env("PROBE_BIN", &probe)
        .stdout(writer.try_clone()?)
        .stderr(writer);
    let mut child = cmd.spawn().context("cargo test")?;
    // The pipe's write ends live only in the child now: reading ends with it.
    drop(cmd);
    let mut run = testrun::Run::default();
    for line in std::io::BufRead::lines(std::io::BufReader::new(reader)) {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        run.line(&line);
    }
    let status = child.wait().context("cargo test")?;
    println!(
        "\n== cargo xtask test: each test binary ==\n{}",
        run.summary()
    );
    if !status.success() || !run.passed() {
        bail!("tests failed ({status})");
    }
    Ok(())
}
