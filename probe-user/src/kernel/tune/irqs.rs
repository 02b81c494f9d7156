//! A NIC's MSI(-X) vectors, from sysfs. A PCI NIC lists them in
//! `/sys/class/net/IFACE/device/msi_irqs/`. virtio_net's `device` is the
//! virtio device (`virtioN`), whose parent is the virtio-pci function that
//! owns the vectors: `device/../msi_irqs/` (seen on Debian 6.1 and 6.12).

use std::path::{Path, PathBuf};

/// How far above `device` to look: the virtio case needs one level up.
/// Bounded so that a USB NIC (interface -> device -> hub -> controller) never
/// reaches the host controller's vectors.
const MAX_LEVELS: usize = 3;

/// Whether the sysfs device directory `dir` is a PCI function: its
/// `subsystem` link ends in `pci`.
fn is_pci(dir: &Path) -> bool {
    std::fs::read_link(dir.join("subsystem"))
        .is_ok_and(|target| target.file_name().is_some_and(|n| n == "pci"))
}

/// The `msi_irqs` directory of the network device at `net_dir` (a
/// `/sys/class/net/IFACE`): under `device`, else under its first ancestor that
/// has one, up to [`MAX_LEVELS`] levels. The walk stops at a PCI function
/// without MSI (INTx): the vectors of the bridge above it are not the NIC's.
/// `..` is joined, not taken lexically, so the kernel resolves it after the
/// `device` symlink, to the real parent.
pub fn msi_irqs_dir(net_dir: &Path) -> Option<PathBuf> {
    let mut dir = net_dir.join("device");
    for _ in 0..MAX_LEVELS {
        if !dir.is_dir() {
            return None;
        }
        let msi = dir.join("msi_irqs");
        if msi.is_dir() {
            return Some(msi);
        }
        if is_pci(&dir) {
            return None;
        }
        dir = dir.join("..");
    }
    None
}

/// The MSI(-X) IRQ numbers of the network device at `net_dir`, sorted; None
/// when it has none (a virtual device, not PCI, or INTx).
pub fn msi_irqs(net_dir: &Path) -> Option<Vec<u32>> {
    let d = std::fs::read_dir(msi_irqs_dir(net_dir)?).ok()?;
    let mut irqs: Vec<u32> = d
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    irqs.sort_unstable();
    Some(irqs)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A fake sysfs in a fresh temporary directory, removed on drop.
    struct FakeSys(PathBuf);

    impl FakeSys {
        fn new(tag: &str) -> FakeSys {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let dir = std::env::temp_dir()
                .join(format!("probe-msi-{tag}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            FakeSys(dir)
        }

        /// A device directory `rel` (under devices/) with a subsystem link.
        fn device(&self, rel: &str, subsystem: &str) -> PathBuf {
            let d = self.0.join("devices").join(rel);
            std::fs::create_dir_all(&d).unwrap();
            symlink(format!("../../bus/{subsystem}"), d.join("subsystem")).unwrap();
            d
        }

        fn msi(&self, dev: &Path, irqs: &[u32]) {
            std::fs::create_dir_all(dev.join("msi_irqs")).unwrap();
            for irq in irqs {
                std::fs::write(dev.join("msi_irqs").join(irq.to_string()), "msix\n").unwrap();
            }
        }

        /// `devices/<dev>/net/<iface>` with `device` -> `../..`, as the
        /// kernel lays out a netdev under its parent device.
        fn netdev(&self, dev: &Path, iface: &str) -> PathBuf {
            let n = dev.join("net").join(iface);
            std::fs::create_dir_all(&n).unwrap();
            symlink("../..", n.join("device")).unwrap();
            n
        }
    }

    impl Drop for FakeSys {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn pci_nic_lists_its_own_vectors() {
        let sys = FakeSys::new("pci");
        let nic = sys.device("pci0000:00/0000:00:04.0", "pci");
        sys.msi(&nic, &[31, 30, 100]);
        let net = sys.netdev(&nic, "eth1");
        assert_eq!(msi_irqs(&net), Some(vec![30, 31, 100]));
        assert!(msi_irqs_dir(&net).unwrap().starts_with(nic.join("net")));
    }

    #[test]
    fn virtio_nic_takes_the_vectors_of_its_pci_parent() {
        let sys = FakeSys::new("virtio");
        let pci = sys.device("pci0000:00/0000:00:03.0", "pci");
        sys.msi(&pci, &[24, 25, 26]);
        let virtio = sys.device("pci0000:00/0000:00:03.0/virtio0", "virtio");
        let net = sys.netdev(&virtio, "ens3");
        assert_eq!(msi_irqs(&net), Some(vec![24, 25, 26]));
    }

    #[test]
    fn no_msi_anywhere() {
        let sys = FakeSys::new("none");
        // A virtual device: no `device` link at all.
        let veth = sys.0.join("devices/virtual/net/veth0");
        std::fs::create_dir_all(&veth).unwrap();
        assert_eq!(msi_irqs(&veth), None);
        // A PCI NIC on INTx under a root port that has vectors of its own:
        // the walk stops at the NIC, the port's vectors are not its.
        let port = sys.device("pci0000:00/0000:00:1c.0", "pci");
        sys.msi(&port, &[120]);
        let nic = sys.device("pci0000:00/0000:00:1c.0/0000:02:00.0", "pci");
        let net = sys.netdev(&nic, "eth0");
        assert_eq!(msi_irqs(&net), None);
        // virtio on a PCI function without MSI: nothing either.
        sys.device("pci0000:00/0000:00:05.0", "pci");
        let virtio = sys.device("pci0000:00/0000:00:05.0/virtio1", "virtio");
        assert_eq!(msi_irqs(&sys.netdev(&virtio, "ens5")), None);
    }

    #[test]
    fn the_walk_is_bounded() {
        let sys = FakeSys::new("deep");
        let top = sys.device("usb", "usb");
        sys.msi(&top, &[7]);
        // device, device/.., device/../..: three levels, never a fourth.
        let far = sys.device("usb/1/2/3", "usb");
        assert_eq!(msi_irqs(&sys.netdev(&far, "usb0")), None);
        let near = sys.device("usb/1/2", "usb");
        assert_eq!(msi_irqs(&sys.netdev(&near, "usb1")), Some(vec![7]));
    }
}
