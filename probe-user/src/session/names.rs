//! Numbers the kernel reports turned into names: namespace inodes into
//! /run/netns names (or `host`), ifindexes into interface names.

use crate::{
    kernel::netns::{self, Netns},
    kernel::rtnl::RtnlSocket,
};
use probe_model::names::Names;

/// Names the kernel addresses drops were freed at that have no name yet.
pub(super) fn refresh_functions(names: &mut Names, seen: impl Iterator<Item = u64>) {
    let new: Vec<u64> = seen.filter(|a| !names.functions.contains_key(a)).collect();
    if !new.is_empty() {
        names
            .functions
            .extend(crate::kernel::kallsyms::resolve(&new));
    }
}

/// Names every namespace with a name now (a namespace gone keeps its name,
/// for the totals it has counted), and the devices that drops and NAPI polls
/// were seen in (netns inode, ifindex). Interface names are listed once per
/// namespace and again only when an unknown one appears.
pub(super) fn refresh_names(names: &mut Names, seen: impl Iterator<Item = (u32, u32)> + Clone) {
    names.netns.extend(netns::known_namespaces());
    let mut listed = std::collections::BTreeSet::new();
    for (inum, ifindex) in seen {
        if ifindex == 0 || names.ifaces.contains_key(&(inum, ifindex)) || !listed.insert(inum) {
            continue;
        }
        let Some(name) = names.netns.get(&inum) else {
            continue;
        };
        let Ok(ns) = Netns::host_or_named(name) else {
            continue;
        };
        if let Ok(Ok(links)) = ns.run(|| RtnlSocket::open().and_then(|mut s| s.links())) {
            for l in links {
                names.ifaces.insert((inum, l.ifindex), l.name);
            }
        }
    }
}
