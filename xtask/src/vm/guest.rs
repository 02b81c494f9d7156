//! One guest: QEMU with the kernel, the initramfs, the host's root over 9p
//! and, on request, two virtio_net NICs wired to each other; stage 2 runs the
//! commands and the console is read for their results.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::kernel::KernelTree;

/// Modules the lab and the probe's hooks need, loaded in the guest.
const LAB_MODULES: [&str; 10] = [
    "veth",
    "vxlan",
    "bridge",
    "sch_ingress",
    "cls_bpf",
    "virtio_net",
    "nf_conntrack",
    "xt_conntrack",
    "sch_netem",
    "sch_tbf",
];

/// Stage 2, run inside the overlay: mount what the tests need, load the
/// lab's modules, run `commands` (one shell line each, with a result
/// marker), power off.
fn stage2(tree: &KernelTree, env: &[(String, String)], commands: &[(String, String)]) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s += "mount -t proc proc /proc\nmount -t sysfs sys /sys\n";
    // A fresh /run (no host namespaces under /run/netns). /tmp stays the
    // overlay's: the workspace may live there (a CI clone), and writes land
    // in the tmpfs upper layer anyway.
    s += "mount -t tmpfs tmpfs /run\nmkdir -p /run/netns /dev/pts\n";
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
    /// The lab's underlay: veth pairs inside the guest, or two virtio_net
    /// NICs with the lab's underlay MAC addresses.
    pub nics: Nics,
}

/// How the guest's two virtio_net NICs are wired to each other.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Nics {
    /// No NICs: the lab's veth pairs.
    None,
    /// One queue each, over unix datagram sockets (`-netdev dgram`): no
    /// host networking at all.
    Dgram,
    /// `queues` RX/TX queue pairs each: multi-queue taps (the only QEMU
    /// backend with several queues and no host daemon), bridged inside a
    /// network namespace created for this guest, where QEMU runs. Nothing of
    /// the machine's own networking is involved.
    Taps { queues: u32 },
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
    // Deleted (with its taps and bridge) when this function returns.
    let mut _tap_netns = None;
    match nics {
        Nics::None => {}
        Nics::Dgram => {
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
        Nics::Taps { queues } => {
            let ns = TapNetns::create()?;
            for n in [1u8, 2] {
                // vhost off: vhost-net would move the data path into the
                // host kernel's threads, pointless under TCG.
                qemu.args([
                    "-netdev",
                    &format!("tap,id=nic{n},ifname=tap{n},script=no,downscript=no,queues={queues},vhost=off"),
                    "-device",
                    // MSI-X vectors: one per queue each way, plus config.
                    &format!(
                        "virtio-net-pci,netdev=nic{n},mac={},mq=on,vectors={}",
                        probe_lab::mac_of(n),
                        2 * queues + 2
                    ),
                ]);
            }
            qemu = ns.wrap(qemu);
            _tap_netns = Some(ns);
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
    let mut stall_stopped = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap_or_default();
        writeln!(log, "{line}")?;
        // A transmit queue stalled this long does not come back: the guest's
        // remaining tests would only wait out their timeouts. Stopped here,
        // its unfinished commands count as failed and Pass::run boots it again.
        if !stall_stopped && stalled_ms(&line).is_some_and(|ms| ms >= STALL_GIVE_UP_MS) {
            stall_stopped = true;
            eprintln!(
                "xtask vm: {kernel}: transmit queue stalled for a minute; stopping this guest"
            );
            // SAFETY: our own child, by PID, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
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

/// How long a stalled transmit queue is waited for before the guest is stopped.
const STALL_GIVE_UP_MS: u64 = 60_000;

/// The stall's age in a kernel line "... NETDEV WATCHDOG: ... transmit queue 0
/// timed out 5224 ms".
fn stalled_ms(line: &str) -> Option<u64> {
    let rest = line.split(super::TX_STALL).nth(1)?;
    let ms = rest.split("timed out ").nth(1)?;
    ms.split_whitespace().next()?.parse().ok()
}

/// A network namespace of the runner's own, holding two multi-queue taps
/// bridged together; QEMU runs in it. Deleted on drop (the taps and the
/// bridge go with it).
struct TapNetns {
    name: String,
}

impl TapNetns {
    fn create() -> Result<TapNetns> {
        let ns = TapNetns {
            name: format!("pvm-taps-{}", std::process::id()),
        };
        let _ = ns.ip(&["netns", "del", &ns.name]);
        ns.ip(&["netns", "add", &ns.name])?;
        let n = ns.name.as_str();
        // No IPv6 on the bridge and taps: link-local addresses, DAD and
        // router solicitations would reach the guests' NICs, and the lab
        // must stay silent (every frame on it is one a test sent).
        for conf in ["all", "default"] {
            ns.ip(&[
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{conf}.disable_ipv6=1"),
            ])?;
        }
        ns.ip(&[
            "-n",
            n,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        for tap in ["tap1", "tap2"] {
            // Persistent multi-queue taps: QEMU attaches its queues to them.
            ns.ip(&[
                "-n",
                n,
                "tuntap",
                "add",
                "dev",
                tap,
                "mode",
                "tap",
                "multi_queue",
            ])?;
            ns.ip(&["-n", n, "link", "set", tap, "master", "br0", "up"])?;
        }
        ns.ip(&["-n", n, "link", "set", "br0", "up"])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let out = Command::new("ip").args(args).output().context("ip")?;
        if !out.status.success() {
            anyhow::bail!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// `cmd`, run inside the namespace (`ip netns exec` execs it: the PID
    /// is QEMU's own).
    fn wrap(&self, cmd: Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped.args(["netns", "exec", &self.name]);
        wrapped.arg(cmd.get_program()).args(cmd.get_args());
        wrapped
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        wrapped
    }
}

impl Drop for TapNetns {
    fn drop(&mut self) {
        let _ = self.ip(&["netns", "del", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_stalls_age_is_read_from_the_watchdog_line() {
        let line = "[6.1] [  135.029911] virtio_net virtio1 eth0: NETDEV WATCHDOG: CPU: 1: \
                    transmit queue 0 timed out 106540 ms";
        assert_eq!(super::stalled_ms(line), Some(106_540));
        assert_eq!(
            super::stalled_ms("virtio_net virtio1 eth0: TX timeout on queue: 0"),
            None
        );
    }
}
