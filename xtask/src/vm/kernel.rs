//! The kernels the guests boot: Debian's image packages fetched with apt and
//! cached, their modules.dep, and an initramfs that reaches the host's root.

use std::{
    fs,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
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

pub const KERNELS: [GuestKernel; 3] = [
    // Debian 11 (bullseye): the oldest LTS kernel nodes still run (Amazon
    // Linux 2's is 5.10 too). No TCX, no drop reasons (5.17), BTF.
    GuestKernel {
        name: "5.10",
        package: r"^linux-image-5\.10\.0-[0-9]+-amd64-unsigned$",
        suite: Some("bullseye"),
    },
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

/// The kernel as an ELF image (cached), decompressed from its bzImage: the
/// payload starts at the first magic number of a compressor Debian uses that
/// decompresses to an ELF file (what the kernel's scripts/extract-vmlinux does).
/// Its `.BTF` section is the kernel's BTF.
pub fn vmlinux_elf(tree: &KernelTree, dir: &Path) -> Result<PathBuf> {
    let out = dir.join("vmlinux");
    if out.exists() {
        return Ok(out);
    }
    let image = fs::read(&tree.vmlinuz).with_context(|| tree.vmlinuz.display().to_string())?;
    let formats: [(&[u8], &str); 3] = [
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0], "xz"),
        (&[0x1f, 0x8b, 0x08], "gzip"),
    ];
    for (magic, tool) in formats {
        let Some(at) = image.windows(magic.len()).position(|w| w == magic) else {
            continue;
        };
        let mut child = Command::new(tool)
            .args(["-dc", "-q"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("{tool} (xz-utils, zstd, gzip)"))?;
        let mut stdin = child.stdin.take().unwrap();
        let payload = image[at..].to_vec();
        // The payload is followed by the bzImage's tail: the decompressor
        // complains about it after writing the whole image, so its status
        // is not the test; the ELF magic is.
        let writer = std::thread::spawn(move || stdin.write_all(&payload));
        let decompressed = child.wait_with_output()?.stdout;
        let _ = writer.join();
        if decompressed.starts_with(b"\x7fELF") {
            fs::write(&out, decompressed)?;
            return Ok(out);
        }
    }
    bail!(
        "{}: no zstd, xz or gzip payload that decompresses to an ELF image",
        tree.vmlinuz.display()
    )
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
    fn newest_package_first() {
        assert!(
            version_key("linux-image-6.1.0-53-amd64") > version_key("linux-image-6.1.0-9-amd64")
        );
    }
}
