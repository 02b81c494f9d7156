//! `cargo xtask vm`: the privileged tests inside QEMU guests that boot the
//! kernels nodes run (Debian's 5.10, 6.1 and 6.12 packages), with the host's root
//! filesystem shared read-only over 9p under a tmpfs overlay.
//!
//! - kernel.rs: per kernel, cached under target/vm/KERNEL/: the .deb (apt-get
//!   download; 5.10 from bullseye and 6.12 from bookworm-backports through a private apt
//!   configuration, the machine's sources stay as they are), its extracted
//!   tree with a modules.dep (the packages ship none), and an initramfs:
//!   busybox, the modules that reach the 9p root, and an init that switches
//!   into the overlay and runs stage 2;
//! - guest.rs: QEMU, stage 2 (mounts proc/sys/tracefs/bpffs/cgroup2, loads the
//!   lab's modules, runs the test binaries built on the host), the console;
//! - here: which tests run on which kernel, and the summary.
//!
//! `/dev/kvm` on these machines is a nested software hypervisor under which
//! Debian's kernels fail: guests run under TCG, 10-50x slower, so only tests
//! without tight timing run in them.

mod guest;
mod kernel;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

use guest::{boot, Guest, Nics};
use kernel::{fetch, initramfs, vmlinux_elf, GuestKernel, KernelTree, KERNELS};

/// The test binaries (of probe-tests) run in guests: every hook and the tc
/// fallback, with exact counts. Left out: lab_traffic, lab_perturb and
/// lab_softirq (throughput and timing, meaningless under emulation).
const GUEST_TESTS: [&str; 10] = [
    "cli",
    "kernel_btf",
    "prog_test_run",
    "lab_fixture",
    "lab_watch",
    "lab_drops",
    "lab_coexist",
    "lab_stage_latency",
    "lab_trace",
    "deploy",
];

/// Test binaries whose ignored tests need what only the guests' kernels have
/// (the netem qdisc): run with `--include-ignored` there.
/// (lab_drops: a test that sets the node-wide conntrack table size, which a
/// guest may and this machine must not.)
const IGNORED_ON_HOST: [&str; 2] = ["lab_stage_latency", "lab_drops"];

/// Tests a kernel cannot run, and why (printed, never silent).
fn not_on(kernel: &str) -> Vec<(&'static str, &'static str)> {
    let no_tcx = "another owner's TCX program: TCX needs Linux >= 6.6";
    // The reader must drain its socket faster than the sender fills it: at
    // emulated speed it cannot, whatever the buffer size.
    let mut skip = vec![
        (
            "record_and_diff_a_buffer_change",
            "timing: an A/B buffer change, measured at native speed only",
        ),
        (
            "a_slow_reader_moves_the_socket_wait_and_nothing_else",
            "timing: a 5 ms sleep against µs stages, measured at native speed only",
        ),
        (
            "a_stalled_reader_does_not_stall_the_probe",
            "timing: 0.1 s reports filling a pipe within a second, at native speed only \
             (the writer thread is user space, the same on every kernel)",
        ),
    ];
    if kernel == "5.10" || kernel == "6.1" {
        skip.extend([
            (
                "foreign_xdp_and_tcx_programs_survive_20_cycles_and_see_every_packet",
                no_tcx,
            ),
            ("xdp_is_used_when_asked_for_and_free", no_tcx),
        ]);
    }
    skip
}

/// Test binaries a kernel cannot run at all, and why (printed, never silent).
fn binaries_not_on(kernel: &str) -> Vec<(&'static str, &'static str)> {
    if kernel == "5.10" {
        // Every lab_drops test counts drops by kfree_skb's reason.
        vec![(
            "lab_drops",
            "the drop stage needs Linux >= 5.17 (kfree_skb's reason); kernel_features checks that it says so",
        )]
    } else {
        Vec::new()
    }
}

/// The tests of a test binary, by name (`--list`, ignored ones included).
fn list_tests(exe: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(exe)
        .args(["--list", "--format", "terse"])
        .output()?;
    if !out.status.success() {
        bail!("{} --list: {}", exe.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(String::from)
        .collect())
}

/// Every test this file names (to skip on a kernel, or to run in a virtio
/// pass) is a test of its binary, by `--list`: a renamed or removed test is
/// an error here, not a pass that ran nothing.
fn check_named_tests(lists: &[(String, Vec<String>)]) -> Result<()> {
    let has = |binary: &str, test: &str| {
        lists
            .iter()
            .any(|(b, tests)| b == binary && tests.iter().any(|t| t == test))
    };
    let mut unknown = Vec::new();
    for k in &KERNELS {
        for (test, _) in not_on(k.name) {
            // `--skip` goes to every binary of the pass: the test is in one.
            if !GUEST_TESTS.iter().any(|b| has(b, test)) {
                unknown.push(format!("{test} (skipped on {})", k.name));
            }
        }
        for (binary, _) in binaries_not_on(k.name) {
            if !lists.iter().any(|(b, _)| b == binary) {
                unknown.push(format!("binary {binary} (not run on {})", k.name));
            }
        }
    }
    for (binary, tests) in VIRTIO_TESTS {
        for test in tests {
            if !has(binary, test) {
                unknown.push(format!("{binary} {test} (the virtio_net pass)"));
            }
        }
    }
    if !has("lab_watch", "kernel_features") {
        unknown.push("lab_watch kernel_features (the kernel table's row)".into());
    }
    if !unknown.is_empty() {
        bail!(
            "xtask/src/vm/mod.rs names tests that are not in their binary's --list \
             (renamed or removed?): {}",
            unknown.join(", ")
        );
    }
    Ok(())
}

/// (target name, executable) of probe-tests' test binaries, built now.
fn test_executables() -> Result<Vec<(String, PathBuf)>> {
    let out = crate::cargo()
        .args([
            "test",
            "-p",
            "probe-tests",
            "--no-run",
            "--message-format=json",
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("building the tests failed");
    }
    let mut found = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let (Some(name), Some(exe)) = (v["target"]["name"].as_str(), v["executable"].as_str()) {
            if v["profile"]["test"] == true {
                found.push((name.to_string(), PathBuf::from(exe)));
            }
        }
    }
    Ok(found)
}

/// `cargo xtask vm`: the guest tests on each kernel of `kernels`; extra
/// `args` go to every test binary (a name filter, `--nocapture`).
pub fn main(kernels: &[String], cpus: u32, args: &[String]) -> Result<()> {
    let selected: Vec<&GuestKernel> = KERNELS
        .iter()
        .filter(|k| kernels.iter().any(|s| s == k.name || s == "all"))
        .collect();
    let run_host = kernels.iter().any(|s| s == "host" || s == "all");
    if selected.is_empty() && !run_host {
        bail!("--kernel takes 5.10, 6.1, 6.12, host or all");
    }
    let mut summary = Vec::new();
    let mut features = Vec::new();
    if run_host {
        let ok = crate::test(args).is_ok();
        summary.push(format!(
            "host: the whole suite {}",
            if ok { "passed" } else { "FAILED" }
        ));
    }
    if !selected.is_empty() {
        crate::setup::vm_packages()?;
        let status = crate::cargo()
            .args(["build", "-p", "probe-user", "--bin", "probe"])
            .status()?;
        if !status.success() {
            bail!("building probe failed");
        }
        let exes = test_executables()?;
        let wanted = GUEST_TESTS
            .iter()
            .chain(VIRTIO_TESTS.iter().map(|(n, _)| n))
            .chain(&["lab_queues"]);
        for name in wanted {
            if !exes.iter().any(|(n, _)| n == name) {
                bail!("no test binary {name} in probe-tests: the guest test lists are out of date");
            }
        }
        let lists = exes
            .iter()
            .map(|(name, exe)| Ok((name.clone(), list_tests(exe)?)))
            .collect::<Result<Vec<_>>>()?;
        check_named_tests(&lists)?;
        let base = std::env::current_dir()?.join("target/vm");
        for k in selected {
            let dir = base.join(k.name);
            let tree = fetch(k, &dir)?;
            let initrd = initramfs(&tree, &dir)?;
            let skips = not_on(k.name);
            for (test, why) in &skips {
                println!("[{}] not run: {test} ({why})", k.name);
            }
            let skipped_binaries = binaries_not_on(k.name);
            let mut not_run = skips.len();
            for (binary, why) in &skipped_binaries {
                let n = lists
                    .iter()
                    .find(|(n, _)| n == binary)
                    .map_or(0, |(_, tests)| tests.len());
                println!("[{}] not run: {binary}, all {n} tests ({why})", k.name);
                not_run += n;
            }
            let runs = |name: &str| !skipped_binaries.iter().any(|(b, _)| *b == name);
            let mut commands: Vec<(String, String)> = GUEST_TESTS
                .iter()
                .filter(|name| runs(name))
                .filter_map(|name| {
                    let (_, exe) = exes.iter().find(|(n, _)| n == name)?;
                    let mut line = format!("{} --test-threads=1 --color=never", exe.display());
                    for (test, _) in &skips {
                        line += &format!(" --skip {test}");
                    }
                    if *name == "lab_watch" {
                        line += " --skip kernel_features"; // run on its own, below
                    }
                    if IGNORED_ON_HOST.contains(name) {
                        line += " --include-ignored";
                    }
                    for a in args {
                        line += &format!(" '{a}'");
                    }
                    Some((name.to_string(), line))
                })
                .collect();
            // The kernel table's row, printed by the test itself.
            if let Some((_, exe)) = exes.iter().find(|(n, _)| n == "lab_watch") {
                commands.push((
                    "features".into(),
                    format!("{} --exact kernel_features --nocapture", exe.display()),
                ));
            }
            let pass = Pass {
                kernel: k.name,
                tree: &tree,
                initrd: &initrd,
                cpus,
            };
            summary.push(pass.run(&dir, &commands, Nics::None, not_run, &mut features)?);
            // The same lab on a real driver: virtio_net NICs as the nodes' eth0.
            let virtio: Vec<(String, String)> = VIRTIO_TESTS
                .iter()
                .filter(|(name, _)| runs(name))
                .filter_map(|(name, tests)| {
                    let (_, exe) = exes.iter().find(|(n, _)| n == name)?;
                    let line = format!(
                        "{} --test-threads=1 --color=never --nocapture --exact {}",
                        exe.display(),
                        tests.join(" ")
                    );
                    Some((format!("{name} {} (virtio_net)", tests.join(",")), line))
                })
                .collect();
            let virtio_not_run = VIRTIO_TESTS
                .iter()
                .filter(|(name, _)| !runs(name))
                .map(|(_, tests)| tests.len())
                .sum();
            summary.push(pass.run(
                &dir.join("virtio"),
                &virtio,
                Nics::Dgram,
                virtio_not_run,
                &mut features,
            )?);
            // And with two RX/TX queue pairs per NIC: per-queue counts, NAPI
            // per queue, RPS on a real driver (lab_queues' tests, ignored
            // where no multi-queue NIC is given).
            let multi_queue: Vec<(String, String)> = exes
                .iter()
                .filter(|(n, _)| n == "lab_queues")
                .map(|(name, exe)| {
                    let mut line = format!(
                        "{} --test-threads=1 --color=never --nocapture --include-ignored",
                        exe.display()
                    );
                    for a in args {
                        line += &format!(" '{a}'");
                    }
                    (format!("{name} (virtio_net, 2 queues)"), line)
                })
                .collect();
            summary.push(pass.run(
                &dir.join("virtio-mq"),
                &multi_queue,
                Nics::Taps { queues: 2 },
                0,
                &mut features,
            )?);
        }
    }
    println!("\n== xtask vm ==");
    for line in &summary {
        println!("{line}");
    }
    for row in &features {
        println!("kernel features: {row}");
    }
    if summary
        .iter()
        .any(|l| l.contains("FAILED") || l.contains("failing"))
    {
        bail!("tests failed in a guest or on the host");
    }
    Ok(())
}

/// The tests that run again with virtio_net NICs as the lab's underlay, in
/// this order: exact counts on a real driver (a NAPI driver's GRO), the NIC's
/// settings (`probe tune`: IRQs, rings, channels), drops; then native XDP on
/// virtio_net, last. Repeated XDP attach/detach on virtio_net (the exit-path
/// test's 10 XDP cycles) stalled a 6.1 guest's TX queue in one run of two
/// (NETDEV WATCHDOG, no packet through afterwards): that test stays on the
/// veth pass. The stall came back once in this pass's first test, with
/// no XDP attached in that guest: [`Pass::run`] runs such a guest once more.
const VIRTIO_TESTS: [(&str, &[&str]); 3] = [
    (
        "lab_watch",
        &[
            "ten_thousand_pod_packets_across_nodes",
            "tune_reads_the_nic",
        ],
    ),
    (
        "lab_drops",
        &[
            "socket_receive_buffer_overflow",
            "vxlan_unknown_vni_and_bad_flags",
            "no_listener",
        ],
    ),
    ("lab_watch", &["kernel_features"]),
];

/// `cargo xtask bench PART --guest KERNEL`: one benchmark part inside a guest
/// whose lab nodes have virtio_net NICs: a real driver, its device driven by
/// QEMU's own thread rather than by the sender (the native lab runs one
/// softirq per packet: its sender drives the whole path). Under TCG the guest
/// still took 1-2 packets per NET_RX run (BENCHMARKS.md). Figures are of
/// emulated CPUs, to be read as ratios.
pub fn bench(kernel: &str, cpus: u32, part: &[String]) -> Result<()> {
    let Some(k) = KERNELS.iter().find(|k| k.name == kernel) else {
        bail!("--guest takes 5.10, 6.1 or 6.12");
    };
    crate::setup::vm_packages()?;
    let dir = std::env::current_dir()?.join("target/vm").join(k.name);
    let tree = fetch(k, &dir)?;
    let initrd = initramfs(&tree, &dir)?;
    let dir = dir.join("bench");
    fs::create_dir_all(&dir)?;
    let mut env = guest_env("target/release/probe", Nics::Dgram)?;
    if let Ok(rounds) = std::env::var("PROBE_BENCH_ROUNDS") {
        env.push(("PROBE_BENCH_ROUNDS".into(), rounds));
    }
    let bench = std::env::current_dir()?.join("target/release/probe-bench");
    let command = format!("{} {}", bench.display(), part.join(" "));
    let outcomes = boot(&Guest {
        kernel: k.name,
        tree: &tree,
        initrd: &initrd,
        dir: &dir,
        cpus,
        env: &env,
        commands: &[("bench".into(), command)],
        timeout: Duration::from_secs(80 * 60),
        nics: Nics::Dgram,
    })?;
    match outcomes.first().and_then(|o| o.rc) {
        Some(0) => Ok(()),
        rc => bail!(
            "the benchmark in the {} guest ended with {rc:?}; console in {}",
            k.name,
            dir.join("console.log").display()
        ),
    }
}

/// Where the drop reason lists of the supported kernels are kept: the tests
/// of the stage table read them (probe-model/src/reasons/tests.rs).
pub const REASON_LISTS: &str = "probe-model/src/reasons/kernels";

/// `cargo xtask reason-lists`: writes each guest kernel's drop reasons, read
/// from its BTF by `probe reasons --list`, to REASON_LISTS/KERNEL.txt, and
/// the running kernel's to REASON_LISTS/MAJOR.MINOR.txt.
pub fn reason_lists() -> Result<()> {
    let status = crate::cargo()
        .args(["build", "-p", "probe-user", "--bin", "probe"])
        .status()?;
    if !status.success() {
        bail!("building probe failed");
    }
    let cwd = std::env::current_dir()?;
    let probe = cwd.join("target/debug/probe");
    let out_dir = cwd.join(REASON_LISTS);
    fs::create_dir_all(&out_dir)?;
    let list = |btf: Option<&Path>, name: &str, release: &str| -> Result<()> {
        let mut cmd = std::process::Command::new(&probe);
        cmd.args(["reasons", "--list"]);
        if let Some(btf) = btf {
            // Relative: the list names its source without this checkout's path.
            cmd.arg("--btf").arg(btf.strip_prefix(&cwd).unwrap_or(btf));
        }
        let out = cmd.output()?;
        if !out.status.success() {
            bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = format!(
            "# Linux {release}: `cargo xtask reason-lists`\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let path = out_dir.join(format!("{name}.txt"));
        fs::write(&path, text)?;
        println!("{}", path.display());
        Ok(())
    };
    for k in &KERNELS {
        let dir = cwd.join("target/vm").join(k.name);
        let tree = fetch(k, &dir)?;
        let elf = vmlinux_elf(&tree, &dir)?;
        list(Some(&elf), k.name, &tree.release)?;
    }
    let release = fs::read_to_string("/proc/sys/kernel/osrelease")?;
    let release = release.trim();
    let major_minor: Vec<&str> = release.split(['.', '-']).take(2).collect();
    list(None, &major_minor.join("."), release)
}

/// One kernel's guest runs share these.
struct Pass<'a> {
    kernel: &'a str,
    tree: &'a KernelTree,
    initrd: &'a Path,
    cpus: u32,
}

/// What the guest's kernel logs when an emulated NIC's transmit queue
/// stalls. Seen on 6.1's virtio_net under TCG (QEMU without vhost): after
/// it no packet goes through, and every later test of the guest fails.
pub(crate) const TX_STALL: &str = "NETDEV WATCHDOG";

/// Whether a guest's log shows its emulated NIC stalled: the kernel's
/// watchdog said so, or a test saw a node's NIC send only part of what it
/// was given, too soon for the watchdog (probe_lab::NIC_SENT_SHORT).
fn transmit_stalled(log: &str) -> bool {
    log.contains(TX_STALL) || log.contains(probe_lab::NIC_SENT_SHORT)
}

impl Pass<'_> {
    /// [`Pass::attempt`], once more if a test failed after the emulated NIC's
    /// transmit queue stalled ([`transmit_stalled`]): a fault of the
    /// emulation, not of the code under test. The re-run is printed, and its
    /// summary line says so.
    fn run(
        &self,
        dir: &Path,
        commands: &[(String, String)],
        nics: Nics,
        not_run: usize,
        features: &mut Vec<String>,
    ) -> Result<String> {
        // The rows of the run whose summary is kept.
        let mut rows = Vec::new();
        let (line, stalled) = self.attempt(dir, commands, nics, not_run, &mut rows)?;
        if !(stalled && line.contains("failing")) {
            features.extend(rows);
            return Ok(line);
        }
        println!(
            "[{}] the emulated NIC's transmit queue stalled ({TX_STALL}, or a NIC sent short) \
             and tests failed: \
             {line}; running this guest once more",
            self.kernel
        );
        let retry = dir.with_extension("retry");
        rows.clear();
        let (line, _) = self.attempt(&retry, commands, nics, not_run, &mut rows)?;
        features.extend(rows);
        Ok(format!("{line} (second run: the first stalled)"))
    }

    /// Boots a guest (with its NICs wired as `nics` says) that runs
    /// `commands`; returns the summary line and whether the guest logged a
    /// transmit stall, and adds the KERNEL-FEATURES rows it printed to
    /// `features`.
    fn attempt(
        &self,
        dir: &Path,
        commands: &[(String, String)],
        nics: Nics,
        not_run: usize,
        features: &mut Vec<String>,
    ) -> Result<(String, bool)> {
        fs::create_dir_all(dir)?;
        let env = guest_env("target/debug/probe", nics)?;
        let started = Instant::now();
        let outcomes = boot(&Guest {
            kernel: self.kernel,
            tree: self.tree,
            initrd: self.initrd,
            dir,
            cpus: self.cpus,
            env: &env,
            commands,
            timeout: Duration::from_secs(40 * 60),
            nics,
        })?;
        let log = fs::read_to_string(dir.join("console.log")).unwrap_or_default();
        let (passed, failed) = count_results(&log);
        let bad: Vec<String> = outcomes
            .iter()
            .filter(|o| o.rc != Some(0))
            .map(|o| match o.rc {
                Some(rc) => format!("{} (exit {rc})", o.name),
                None => format!("{} (did not finish)", o.name),
            })
            .collect();
        let nic_label = match nics {
            Nics::None => String::new(),
            Nics::Dgram => " virtio_net".to_string(),
            Nics::Taps { queues } => format!(" virtio_net {queues} queues"),
        };
        for row in log.lines().filter_map(|l| l.split_once("KERNEL-FEATURES ")) {
            features.push(format!(
                "{}{}",
                row.1.trim(),
                if nics == Nics::Dgram {
                    " (virtio_net)"
                } else {
                    ""
                }
            ));
        }
        let line = format!(
            "{}{nic_label} ({}): {passed} passed, {failed} failed, {not_run} not run, in {:.0} s{}",
            self.kernel,
            self.tree.release,
            started.elapsed().as_secs_f64(),
            if bad.is_empty() {
                String::new()
            } else {
                format!("; failing: {}", bad.join(", "))
            }
        );
        Ok((line, transmit_stalled(&log)))
    }
}

/// The environment of a guest's commands: the probe binary they run (a path
/// in the workspace), the time scale of emulation, and the lab's NICs.
fn guest_env(probe: &str, nics: Nics) -> Result<Vec<(String, String)>> {
    let mut env = vec![
        (
            "PROBE_BIN".to_string(),
            std::env::current_dir()?.join(probe).display().to_string(),
        ),
        ("CI".into(), "true".into()),
        // Tests that change node-wide settings run only where this is set.
        (probe_lab::GUEST_ENV.into(), "1".into()),
        // Time bounds in tests (probe_tests::time_scale): TCG runs the
        // guest 10-50x slower than native; a 2 s re-attach bound took
        // 2.26 s in a one-vCPU guest, and more on a loaded host.
        ("PROBE_TEST_TIME_SCALE".into(), "5".into()),
        ("RUST_BACKTRACE".into(), "1".into()),
        ("HOME".into(), "/root".into()),
        (
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ),
    ];
    if nics != Nics::None {
        env.push((
            probe_lab::NICS_ENV.into(),
            format!("{},{}", probe_lab::mac_of(1), probe_lab::mac_of(2)),
        ));
    }
    Ok(env)
}

/// Sums libtest's "test result: ... N passed; M failed" lines.
fn count_results(log: &str) -> (u64, u64) {
    log.lines()
        .filter_map(crate::testrun::Counts::of_line)
        .fold((0, 0), |(p, f), c| (p + c.passed, f + c.failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_libtest_results() {
        let log = "test result: ok. 5 passed; 0 failed; 0 ignored\n\
                   [x] test result: FAILED. 3 passed; 2 failed; 1 ignored\n";
        assert_eq!(count_results(log), (8, 2));
    }

    #[test]
    fn a_test_named_here_must_be_in_its_binary() {
        let mut lists: Vec<(String, Vec<String>)> = Vec::new();
        let mut add = |binary: &str, test: &str| match lists.iter_mut().find(|(b, _)| b == binary) {
            Some((_, tests)) => tests.push(test.into()),
            None => lists.push((binary.into(), vec![test.into()])),
        };
        for k in &KERNELS {
            for (test, _) in not_on(k.name) {
                add("lab_watch", test);
            }
            for (binary, _) in binaries_not_on(k.name) {
                add(binary, "any");
            }
        }
        for (binary, tests) in VIRTIO_TESTS {
            for test in tests {
                add(binary, test);
            }
        }
        assert!(check_named_tests(&lists).is_ok());
        // One renamed: an error that names it.
        let (_, tests) = lists.iter_mut().find(|(b, _)| b == "lab_drops").unwrap();
        tests.retain(|t| t != "no_listener");
        let err = check_named_tests(&lists).unwrap_err().to_string();
        assert!(
            err.contains("lab_drops no_listener (the virtio_net pass)"),
            "{err}"
        );
    }

    #[test]
    fn a_stall_is_the_watchdog_or_a_nic_that_sent_short() {
        assert!(transmit_stalled(
            "[6.1] virtio_net virtio1 eth0: NETDEV WATCHDOG: CPU: 1: transmit queue 0 timed out"
        ));
        assert!(transmit_stalled(&format!(
            "[5.10] panicked at tests/tests/lab_watch.rs:58:9:\n[5.10] {}: node 1's eth0 sent 714 of 10000",
            probe_lab::NIC_SENT_SHORT
        )));
        assert!(!transmit_stalled("[5.10] assertion `left == right` failed"));
    }
}
