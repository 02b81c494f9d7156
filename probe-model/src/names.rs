//! Names for what the kernel reports as numbers: network namespaces by
//! inode, devices by (namespace, ifindex), kernel functions by an address
//! inside them. Filled by the session
//! (probe-user's session/names.rs), read by the ledger and the NAPI rows.

use std::collections::BTreeMap;

/// Names for what the drop probe reports as numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Names {
    /// Network namespace inode number -> name (`host`, or under /run/netns).
    pub netns: BTreeMap<u32, String>,
    /// (netns inode, ifindex) -> interface name.
    pub ifaces: BTreeMap<(u32, u32), String>,
    /// Kernel address -> the function it is in (/proc/kallsyms); `0x...`
    /// where kallsyms does not tell (addresses hidden by kptr_restrict).
    pub functions: BTreeMap<u64, String>,
}

impl Names {
    pub fn netns(&self, inum: u32) -> Option<String> {
        match inum {
            0 => None,
            _ => Some(
                self.netns
                    .get(&inum)
                    .cloned()
                    .unwrap_or_else(|| format!("net:[{inum}]")),
            ),
        }
    }

    pub fn iface(&self, netns: u32, ifindex: u32) -> Option<String> {
        match ifindex {
            0 => None,
            _ => Some(
                self.ifaces
                    .get(&(netns, ifindex))
                    .cloned()
                    .unwrap_or_else(|| format!("if{ifindex}")),
            ),
        }
    }
}

/// The function of `function+0xoffset` (or the address, unnamed).
pub fn function_of(named: &str) -> &str {
    named.split_once('+').map_or(named, |(f, _)| f)
}
