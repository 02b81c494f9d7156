//! `cargo xtask vm`: the privileged tests inside QEMU guests that boot the
//! kernels nodes run (Debian's 6.1 and 6.12 packages), with the host's root
//! filesystem shared read-only over 9p under a tmpfs overlay.
//!
//! Per kernel, cached under target/vm/KERNEL/: the .deb (apt-get download;
//! 6.12 from bookworm-backports through a private apt configuration, the
//! machine's sources stay as they are), its extracted tree with a modules.dep
//! (the packages ship none), and an initramfs: busybox, the modules that reach
//! the 9p root, and an init that switches into the overlay and runs the
//! second stage (written per run) that mounts proc/sys/tracefs/bpffs/cgroup2,
//! loads the lab's modules and runs the test binaries built on the host.
//!
//! `/dev/kvm` on these machines is a nested software hypervisor under which
//! Debian's kernels fail: KVM is used only where it works (`--accel kvm`),
//! TCG otherwise; everything runs 10-50x slower, so only tests without tight
//! timing run in guests.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

/// A kernel the guests boot.
pub struct GuestKernel {
    pub name: &'static str,
    /// `apt-cache search --names-only` pattern of the unsigned image package.
    package: &'static str,
    /// An extra suite (in a private apt configuration), if the package is not
    /// in the machine's sources.
    suite: Option<&'static str>,
}

pub const KERNELS: [GuestKernel; 2] = [
    GuestKernel {
        name: "6.1",
        package: r"^linux-image-6\.1\.0-[0-9]+-amd64-unsigned$",
        suite: None,
    },
    GuestKernel {
        name: "6.12",
        package: r"^linux-image-6\.12\.[0-9]+\+deb12-amd64-unsigned$",
        suite: Some("bookworm-backports"),
    },
];

/// Modules the initramfs loads to reach the 9p root (with their
/// dependencies, from modules.dep); built-in ones are skipped.
const BOOT_MODULES: [&str; 4] = ["virtio_pci", "9pnet_virtio", "9p", "overlay"];

/// Modules the lab and the probe's hooks need, loaded in the guest.
const LAB_MODULES: [&str; 8] = [
    "veth",
    "vxlan",
    "bridge",
    "sch_ingress",
    "cls_bpf",
    "virtio_net",
    "nf_conntrack",
    "sch_netem",
];

/// The kernel's files: image, modules tree, release string.
pub struct KernelTree {
    pub vmlinuz: PathBuf,
    pub root: PathBuf,
    pub release: String,
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?}: {status}");
    }
    Ok(())
}

fn stdout(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("{cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// apt options for a private configuration holding `suite` (lists and
/// cache under `dir`).
fn private_apt(dir: &Path, suite: &str) -> Result<Vec<String>> {
    fs::create_dir_all(dir.join("lists/partial"))?;
    fs::create_dir_all(dir.join("cache/archives/partial"))?;
    let sources = dir.join("sources.list");
    fs::write(
        &sources,
        format!("deb http://deb.debian.org/debian {suite} main\n"),
    )?;
    Ok(vec![
        format!("-oDir::Etc::SourceList={}", sources.display()),
        "-oDir::Etc::SourceParts=/dev/null".into(),
        format!("-oDir::State::Lists={}", dir.join("lists").display()),
        format!("-oDir::Cache={}", dir.join("cache").display()),
        "-oDebug::NoLocking=1".into(),
    ])
}

/// Downloads (once) and extracts `k`'s image package under `dir`.
pub fn fetch(k: &GuestKernel, dir: &Path) -> Result<KernelTree> {
    let root = dir.join("root");
    let done = dir.join("extracted");
    if !done.exists() {
        fs::create_dir_all(dir)?;
        let apt = match k.suite {
            Some(suite) => {
                let opts = private_apt(&dir.join("apt"), suite)?;
                run(Command::new("apt-get").args(&opts).args(["update", "-qq"]))?;
                opts
            }
            None => Vec::new(),
        };
        let found = stdout(Command::new("apt-cache").args(&apt).args([
            "search",
            "--names-only",
            k.package,
        ]))?;
        let package = found
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .max_by(|a, b| version_key(a).cmp(&version_key(b)))
            .with_context(|| format!("no package matches {}", k.package))?
            .to_string();
        eprintln!("xtask vm: {}: downloading {package}", k.name);
        run(Command::new("apt-get")
            .args(&apt)
            .args(["download", "-qq", &package])
            .current_dir(dir))?;
        let deb = fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .context("downloaded .deb")?;
        let _ = fs::remove_dir_all(&root);
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        fs::remove_file(&deb)?;
        let release = only_entry(&root.join("lib/modules"))?;
        // The packages ship no modules.dep.
        run(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
        fs::write(&done, &release)?;
    }
    let release = fs::read_to_string(&done)?.trim().to_string();
    Ok(KernelTree {
        vmlinuz: root.join(format!("boot/vmlinuz-{release}")),
        root,
        release,
    })
}

/// Sort key of a package name by the numbers in it (6.1.0-53 > 6.1.0-9).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn only_entry(dir: &Path) -> Result<String> {
    let mut names = fs::read_dir(dir)?.filter_map(|e| e.ok()?.file_name().into_string().ok());
    names
        .next()
        .with_context(|| format!("{} is empty", dir.display()))
}

/// `names` and their dependencies from modules.dep, dependencies first, as
/// paths relative to the modules directory; built-in modules are absent.
fn with_dependencies(modules_dep: &str, names: &[&str]) -> Vec<String> {
    let deps: Vec<(&str, Vec<&str>)> = modules_dep
        .lines()
        .filter_map(|l| {
            let (module, deps) = l.split_once(':')?;
            Some((module, deps.split_whitespace().collect()))
        })
        .collect();
    let file_of = |name: &str| {
        deps.iter().map(|(m, _)| *m).find(|m| {
            let base = m.rsplit('/').next().unwrap_or(m);
            let stem = base.split(".ko").next().unwrap_or(base);
            stem == name || stem.replace('-', "_") == name
        })
    };
    let mut order: Vec<String> = Vec::new();
    fn visit(m: &str, deps: &[(&str, Vec<&str>)], order: &mut Vec<String>) {
        if order.iter().any(|o| o == m) {
            return;
        }
        if let Some((_, ds)) = deps.iter().find(|(x, _)| *x == m) {
            for d in ds {
                visit(d, deps, order);
            }
        }
        order.push(m.to_string());
    }
    for name in names {
        if let Some(m) = file_of(name) {
            visit(m, &deps, &mut order);
        }
    }
    order
}

/// The initramfs for `tree` (cached): busybox, the boot modules
/// (decompressed: busybox's insmod reads plain ELF) and `/init`.
pub fn initramfs(tree: &KernelTree, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("initrd.cpio");
    if out.exists() {
        return Ok(out);
    }
    let stage = dir.join("initramfs");
    let _ = fs::remove_dir_all(&stage);
    for d in ["bin", "dev", "proc", "sys", "mnt", "modules", "newroot"] {
        fs::create_dir_all(stage.join(d))?;
    }
    fs::copy("/bin/busybox", stage.join("bin/busybox")).context("busybox-static")?;
    let moddir = tree.root.join("lib/modules").join(&tree.release);
    let dep = fs::read_to_string(moddir.join("modules.dep"))?;
    for (i, m) in with_dependencies(&dep, &BOOT_MODULES).iter().enumerate() {
        let src = moddir.join(m);
        let base = m.rsplit('/').next().unwrap_or(m);
        let dst = stage
            .join("modules")
            .join(format!("{i:02}-{}", base.split(".ko").next().unwrap()));
        let dst = dst.with_extension("ko");
        if m.ends_with(".xz") {
            let f = fs::File::create(&dst)?;
            run(Command::new("xz").arg("-dc").arg(&src).stdout(f))?;
        } else {
            fs::copy(&src, &dst)?;
        }
    }
    let init = stage.join("init");
    fs::write(&init, INIT)?;
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&init, fs::Permissions::from_mode(0o755))?;
    let list = stdout(Command::new("find").arg(".").current_dir(&stage))?;
    let mut cpio = Command::new("/bin/busybox")
        .args(["cpio", "-o", "-H", "newc"])
        .current_dir(&stage)
        .stdin(Stdio::piped())
        .stdout(fs::File::create(&out)?)
        .spawn()?;
    cpio.stdin.take().unwrap().write_all(list.as_bytes())?;
    if !cpio.wait()?.success() {
        let _ = fs::remove_file(&out);
        bail!("cpio failed");
    }
    Ok(out)
}

/// The initramfs' /init: load the boot modules, mount the host's root over
/// 9p read-only under a tmpfs overlay, switch into it, run stage 2 (the path
/// is on the kernel command line: `stage2=`).
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do insmod "$m" 2>/dev/null || echo "init: insmod $m failed"; done
stage2=$(sed -n 's/.*stage2=\([^ ]*\).*/\1/p' /proc/cmdline)
mkdir -p /mnt/host /mnt/rw
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=512000,ro hostroot /mnt/host || echo "init: 9p mount failed"
mount -t tmpfs -o size=2g tmpfs /mnt/rw
mkdir -p /mnt/rw/upper /mnt/rw/work
mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/mnt/rw/upper,workdir=/mnt/rw/work /newroot || echo "init: overlay failed"
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /bin/sh "$stage2"
"#;

/// Stage 2, run inside the overlay: mount what the tests need, load the
/// lab's modules, run `commands` (one shell line each, with a result
/// marker), power off.
fn stage2(tree: &KernelTree, env: &[(String, String)], commands: &[(String, String)]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s += "mount -t proc proc /proc\nmount -t sysfs sys /sys\n";
    s += "mount -t tmpfs tmpfs /run\nmount -t tmpfs tmpfs /tmp\nmkdir -p /run/netns /dev/pts\n";
    s += "mount -t devpts devpts /dev/pts\n";
    s += "mount -t tracefs tracefs /sys/kernel/tracing\nmount -t bpf bpf /sys/fs/bpf\n";
    s += "mount -t cgroup2 cgroup2 /sys/fs/cgroup\n";
    let moddir = tree.root.join("lib/modules").join(&tree.release);
    s += &format!(
        "mkdir -p /lib/modules/{r}\nmount --bind {m} /lib/modules/{r}\n",
        r = tree.release,
        m = moddir.display()
    );
    for m in LAB_MODULES {
        s += &format!("modprobe {m} 2>/dev/null\n");
    }
    s += "ip link set lo up\nulimit -l unlimited\n";
    s += &format!("cd {}\n", std::env::current_dir().unwrap().display());
    for (k, v) in env {
        s += &format!("export {k}='{v}'\n");
    }
    s += "echo \"@@VM kernel $(uname -r) cpus $(nproc)\"\n";
    for (name, line) in commands {
        s += &format!("{line}\necho \"@@VM-RESULT {name} rc=$?\"\n");
    }
    s += "echo @@VM-DONE\necho o > /proc/sysrq-trigger\n";
    s
}

/// One command's outcome in a guest.
pub struct Outcome {
    pub name: String,
    pub rc: Option<i32>,
}

/// One guest run: which kernel, with what, doing what.
pub struct Guest<'a> {
    pub kernel: &'a str,
    pub tree: &'a KernelTree,
    pub initrd: &'a Path,
    /// Where stage2.sh and console.log go.
    pub dir: &'a Path,
    pub cpus: u32,
    pub env: &'a [(String, String)],
    /// (name, shell line) each.
    pub commands: &'a [(String, String)],
    pub timeout: Duration,
    /// Two virtio_net NICs wired to each other (unix datagram sockets, no
    /// host networking), with the lab's underlay MAC addresses.
    pub nics: bool,
}

/// Boots the guest, runs its commands, returns each command's exit code
/// (None: the guest stopped before it finished).
pub fn boot(g: &Guest) -> Result<Vec<Outcome>> {
    let Guest {
        kernel,
        tree,
        initrd,
        dir,
        cpus,
        env,
        commands,
        timeout,
        nics,
    } = *g;
    let script = dir.join("stage2.sh");
    fs::write(&script, stage2(tree, env, commands))?;
    let log_path = dir.join("console.log");
    let mut log = fs::File::create(&log_path)?;
    let mut qemu = Command::new("qemu-system-x86_64");
    // One TCG thread for all vCPUs: with thread=multi, the kernel's own code
    // patching (text_poke_bp's int3, when a tracepoint's static key flips)
    // races between vCPU threads and 6.12 oopses in handle_softirqs.
    qemu.args(["-accel", "tcg,thread=single", "-cpu", "max", "-m", "3072"])
        .args(["-smp", &cpus.to_string()])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(&tree.vmlinuz)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(format!(
            "console=ttyS0 panic=-1 quiet loglevel=4 rdinit=/init stage2={}",
            script.display()
        ))
        .args([
            "-fsdev",
            "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device",
            "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if nics {
        let socket = |n: u8| dir.join(format!("nic{n}.sock")).display().to_string();
        for n in [1u8, 2] {
            let _ = fs::remove_file(socket(n));
        }
        for (n, peer) in [(1u8, 2u8), (2, 1)] {
            qemu.args([
                "-netdev",
                &format!(
                    "dgram,id=nic{n},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                    socket(n),
                    socket(peer)
                ),
                "-device",
                &format!("virtio-net-pci,netdev=nic{n},mac={}", probe_lab::mac_of(n)),
            ]);
        }
    }
    let started = Instant::now();
    let mut child = qemu.spawn().context("qemu-system-x86_64")?;
    let pid = child.id() as i32;
    // The guest's console, line by line; a watchdog ends a guest that hangs.
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(500));
            // SAFETY: signal 0 only checks that our child still exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                return false;
            }
        }
        // SAFETY: our own child, by PID.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        true
    });
    let mut outcomes: Vec<Outcome> = commands
        .iter()
        .map(|(name, _)| Outcome {
            name: name.clone(),
            rc: None,
        })
        .collect();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        writeln!(log, "{line}")?;
        if let Some(rest) = line.trim().strip_prefix("@@VM-RESULT ") {
            if let Some((name, rc)) = rest.rsplit_once(" rc=") {
                if let Some(o) = outcomes.iter_mut().find(|o| o.name == name) {
                    o.rc = rc.trim().parse().ok();
                }
            }
        }
        println!("[{kernel}] {line}");
    }
    child.wait()?;
    if watchdog.join().unwrap_or(false) {
        eprintln!(
            "xtask vm: {kernel}: stopped after {} s (timeout); console in {}",
            timeout.as_secs(),
            log_path.display()
        );
    }
    Ok(outcomes)
}

/// The test binaries (of probe-tests) run in guests: every hook and the tc
/// fallback, with exact counts. Left out: lab_traffic, lab_perturb and
/// lab_softirq (throughput and timing, meaningless under emulation).
const GUEST_TESTS: [&str; 7] = [
    "cli",
    "prog_test_run",
    "lab_fixture",
    "lab_watch",
    "lab_drops",
    "lab_coexist",
    "deploy",
];

/// Tests a kernel cannot run, and why (printed, never silent).
fn not_on(kernel: &str) -> Vec<(&'static str, &'static str)> {
    let no_tcx = "another owner's TCX program: TCX needs Linux >= 6.6";
    // The reader must drain its socket faster than the sender fills it: at
    // emulated speed it cannot, whatever the buffer size.
    let mut skip = vec![(
        "record_and_diff_a_buffer_change",
        "timing: an A/B buffer change, measured at native speed only",
    )];
    if kernel == "6.1" {
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
        bail!("--kernel takes 6.1, 6.12, host or all");
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
        let base = std::env::current_dir()?.join("target/vm");
        for k in selected {
            let dir = base.join(k.name);
            let tree = fetch(k, &dir)?;
            let initrd = initramfs(&tree, &dir)?;
            let skips = not_on(k.name);
            for (test, why) in &skips {
                println!("[{}] not run: {test} ({why})", k.name);
            }
            let mut commands: Vec<(String, String)> = GUEST_TESTS
                .iter()
                .filter_map(|name| {
                    let (_, exe) = exes.iter().find(|(n, _)| n == name)?;
                    let mut line = format!("{} --test-threads=1 --color=never", exe.display());
                    for (test, _) in &skips {
                        line += &format!(" --skip {test}");
                    }
                    if *name == "lab_watch" {
                        line += " --skip kernel_features"; // run on its own, below
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
            summary.push(pass.run(&dir, &commands, false, skips.len(), &mut features)?);
            // The same lab on a real driver: virtio_net NICs as the nodes' eth0.
            let virtio: Vec<(String, String)> = VIRTIO_TESTS
                .iter()
                .filter_map(|(name, tests)| {
                    let (_, exe) = exes.iter().find(|(n, _)| n == name)?;
                    let line = format!(
                        "{} --test-threads=1 --color=never --nocapture --exact {}",
                        exe.display(),
                        tests.join(" ")
                    );
                    Some((format!("{name} (virtio_net)"), line))
                })
                .collect();
            summary.push(pass.run(&dir.join("virtio"), &virtio, true, 0, &mut features)?);
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

/// The tests that run again with virtio_net NICs as the lab's underlay:
/// exact counts on a real driver (native XDP, a NAPI driver's GRO), the
/// NIC's settings (`probe tune`: IRQs, rings, channels), exit paths.
const VIRTIO_TESTS: [(&str, &[&str]); 2] = [
    (
        "lab_watch",
        &[
            "ten_thousand_pod_packets_across_nodes",
            "sigterm_and_sigkill_leave_nothing_behind",
            "tune_reads_the_nic",
            "kernel_features",
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
];

/// One kernel's guest runs share these.
struct Pass<'a> {
    kernel: &'a str,
    tree: &'a KernelTree,
    initrd: &'a Path,
    cpus: u32,
}

impl Pass<'_> {
    /// Boots a guest (with the two virtio NICs if `nics`) that runs
    /// `commands`; returns the summary line, and adds the KERNEL-FEATURES
    /// rows it printed to `features`.
    fn run(
        &self,
        dir: &Path,
        commands: &[(String, String)],
        nics: bool,
        not_run: usize,
        features: &mut Vec<String>,
    ) -> Result<String> {
        fs::create_dir_all(dir)?;
        let mut env = vec![
            (
                "PROBE_BIN".to_string(),
                std::env::current_dir()?
                    .join("target/debug/probe")
                    .display()
                    .to_string(),
            ),
            ("CI".into(), "true".into()),
            ("RUST_BACKTRACE".into(), "1".into()),
            ("HOME".into(), "/root".into()),
            (
                "PATH".into(),
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ),
        ];
        if nics {
            env.push((
                probe_lab::NICS_ENV.into(),
                format!("{},{}", probe_lab::mac_of(1), probe_lab::mac_of(2)),
            ));
        }
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
        for row in log.lines().filter_map(|l| l.split_once("KERNEL-FEATURES ")) {
            features.push(format!(
                "{}{}",
                row.1.trim(),
                if nics { " (virtio_net)" } else { "" }
            ));
        }
        Ok(format!(
            "{}{} ({}): {passed} passed, {failed} failed, {not_run} not run, in {:.0} s{}",
            self.kernel,
            if nics { " virtio_net" } else { "" },
            self.tree.release,
            started.elapsed().as_secs_f64(),
            if bad.is_empty() {
                String::new()
            } else {
                format!("; failing: {}", bad.join(", "))
            }
        ))
    }
}

/// Sums libtest's "test result: ... N passed; M failed" lines.
fn count_results(log: &str) -> (u64, u64) {
    let mut totals = (0, 0);
    for line in log.lines().filter(|l| l.contains("test result:")) {
        let number_before = |word: &str| {
            line.split(';')
                .find(|part| part.trim_end().ends_with(word))
                .and_then(|part| part.split_whitespace().rev().nth(1)?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        totals.0 += number_before("passed");
        totals.1 += number_before("failed");
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_come_after_their_dependencies() {
        let dep = "kernel/fs/9p/9p.ko.xz: kernel/fs/netfs/netfs.ko.xz kernel/net/9p/9pnet.ko.xz\n\
                   kernel/fs/netfs/netfs.ko.xz:\n\
                   kernel/net/9p/9pnet.ko.xz:\n\
                   kernel/net/9p/9pnet_virtio.ko.xz: kernel/net/9p/9pnet.ko.xz\n";
        assert_eq!(
            with_dependencies(dep, &["9pnet_virtio", "9p", "virtio_pci"]),
            [
                "kernel/net/9p/9pnet.ko.xz",
                "kernel/net/9p/9pnet_virtio.ko.xz",
                "kernel/fs/netfs/netfs.ko.xz",
                "kernel/fs/9p/9p.ko.xz",
            ]
        );
    }

    #[test]
    fn counts_libtest_results() {
        let log = "test result: ok. 5 passed; 0 failed; 0 ignored\n\
                   [x] test result: FAILED. 3 passed; 2 failed; 1 ignored\n";
        assert_eq!(count_results(log), (8, 2));
    }

    #[test]
    fn newest_package_first() {
        assert!(
            version_key("linux-image-6.1.0-53-amd64") > version_key("linux-image-6.1.0-9-amd64")
        );
    }
}
