//! Network-namespace switching for the calling thread.
//!
//! The loader stays in its own mount namespace (never `ip netns exec`, which
//! remounts /sys) and enters the target netns with setns(CLONE_NEWNET) only
//! around what is resolved per namespace: interface names, netlink sockets,
//! attaching. Link fds and netlink sockets keep working after switching back.

use std::{
    fs::File,
    io,
    path::{Path, PathBuf},
};

use nix::sched::CloneFlags;

use crate::error::ProbeError;

/// Directory where `ip netns add` bind-mounts named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// The node's own network namespace (containers may run the probe elsewhere).
const HOST_NETNS: &str = "/proc/1/ns/net";

/// Names of the namespaces a person can refer to, by inode number: every
/// entry of /run/netns (where CNI plugins and `ip netns` put pod namespaces)
/// and `host`. A name under /run/netns wins over `host` for the same namespace.
pub fn known_namespaces() -> std::collections::BTreeMap<u32, String> {
    let mut out = std::collections::BTreeMap::new();
    if let Ok(meta) = std::fs::metadata(HOST_NETNS) {
        out.insert(
            std::os::unix::fs::MetadataExt::ino(&meta) as u32,
            "host".to_string(),
        );
    }
    if let Ok(dir) = std::fs::read_dir(NETNS_RUN_DIR) {
        for entry in dir.flatten() {
            if let (Ok(meta), Some(name)) =
                (std::fs::metadata(entry.path()), entry.file_name().to_str())
            {
                out.insert(
                    std::os::unix::fs::MetadataExt::ino(&meta) as u32,
                    name.to_string(),
                );
            }
        }
    }
    out
}

/// A network namespace to work in: the current one, or a named one.
#[derive(Debug)]
pub struct Netns {
    name: Option<String>,
    file: Option<File>,
}

impl Netns {
    pub fn current() -> Self {
        Self {
            name: None,
            file: None,
        }
    }

    /// Opens `/run/netns/NAME` (the file `ip netns add NAME` creates).
    pub fn named(name: &str) -> Result<Self, ProbeError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(ProbeError::NetnsNotFound {
                name: name.into(),
                detail: "not a namespace name".into(),
            });
        }
        let path = Path::new(NETNS_RUN_DIR).join(name);
        let file = File::open(&path).map_err(|e| ProbeError::NetnsNotFound {
            name: name.into(),
            detail: format!("{}: {e}", path.display()),
        })?;
        Ok(Self {
            name: Some(name.into()),
            file: Some(file),
        })
    }

    /// The node's own namespace: that of PID 1, named `host`.
    pub fn host() -> Result<Self, ProbeError> {
        let file = File::open(HOST_NETNS).map_err(|e| ProbeError::NetnsNotFound {
            name: "host".into(),
            detail: format!("{HOST_NETNS}: {e}"),
        })?;
        Ok(Self {
            name: Some("host".into()),
            file: Some(file),
        })
    }

    /// `host` or a name under /run/netns.
    pub fn host_or_named(name: &str) -> Result<Self, ProbeError> {
        if name == "host" {
            Self::host()
        } else {
            Self::named(name)
        }
    }

    /// The namespace's inode number: what `ip netns identify`, `lsns` and the
    /// kernel's `net->ns.inum` call it.
    pub fn inum(&self) -> io::Result<u32> {
        let meta = match &self.file {
            Some(f) => f.metadata()?,
            None => std::fs::metadata(thread_netns_path())?,
        };
        Ok(std::os::unix::fs::MetadataExt::ino(&meta) as u32)
    }

    /// The same namespace, with a handle of its own (to enter it later, e.g.
    /// to detach a tc filter when a hook is dropped).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(Self {
            name: self.name.clone(),
            file: self.file.as_ref().map(File::try_clone).transpose()?,
        })
    }

    /// Whether the name this namespace was opened by still names it: false
    /// once `ip netns del` removed /run/netns/NAME (the namespace itself
    /// lives on while the probe holds it, but nothing is left in it to
    /// watch), or the name now names another namespace. True for the
    /// current namespace and `host`.
    pub fn still_named(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        let (Some(name), Some(file)) = (&self.name, &self.file) else {
            return true;
        };
        let Ok(ours) = file.metadata() else {
            return true;
        };
        if name == "host" {
            return true;
        }
        match std::fs::metadata(Path::new(NETNS_RUN_DIR).join(name)) {
            Ok(now) => (now.dev(), now.ino()) == (ours.dev(), ours.ino()),
            Err(_) => false,
        }
    }

    /// The namespace's file (None: the loader's own namespace).
    pub fn as_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.file.as_ref().map(|f| f.as_fd())
    }

    /// The name given with `--netns`, or None for the loader's own namespace.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How to show this namespace to a person.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| "current".into())
    }

    /// Runs `f` with the calling thread inside this namespace, then switches back.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, ProbeError> {
        let Some(target) = &self.file else {
            return Ok(f());
        };
        let _guard = NetnsGuard::enter(target).map_err(|e| ProbeError::NetnsEnter {
            name: self.label(),
            source: e,
        })?;
        Ok(f())
    }
}

/// Restores the thread's original namespace on drop (also on panic).
struct NetnsGuard {
    original: File,
}

impl NetnsGuard {
    fn enter(target: &File) -> io::Result<Self> {
        let original = File::open(thread_netns_path())?;
        setns(target)?;
        Ok(Self { original })
    }
}

impl Drop for NetnsGuard {
    fn drop(&mut self) {
        // Failing to return would leave this thread in the wrong namespace for
        // everything that follows: treat it as fatal.
        if let Err(e) = setns(&self.original) {
            crate::notice::line(format_args!(
                "cannot return to the original network namespace: {e}"
            ));
            std::process::abort();
        }
    }
}

fn thread_netns_path() -> PathBuf {
    // thread-self, not self: setns changes only the calling thread.
    PathBuf::from("/proc/thread-self/ns/net")
}

fn setns(file: &File) -> io::Result<()> {
    nix::sched::setns(file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enters_and_leaves_a_namespace() {
        // Re-enters the thread's own namespace: no namespace is created.
        let ns = Netns {
            name: Some("own".into()),
            file: Some(File::open(thread_netns_path()).unwrap()),
        };
        let before = Netns::current().inum().unwrap();
        match ns.run(|| Netns::current().inum().unwrap()) {
            Ok(inside) => assert_eq!(inside, before),
            // setns needs CAP_SYS_ADMIN.
            Err(ProbeError::NetnsEnter { source, .. })
                if source.raw_os_error() == Some(libc::EPERM) => {}
            Err(e) => panic!("{e}"),
        }
        assert_eq!(Netns::current().inum().unwrap(), before);
    }
}
