//! What the probe reads from the kernel besides its own programs' maps, and
//! how: BTF, capabilities, ethtool, /proc, namespaces, rtnetlink, settings,
//! its own cost, kernel symbols. The values go into probe-model's types.

pub mod btf;
pub mod caps;
pub mod ethtool;
pub mod kallsyms;
pub mod netns;
pub mod procfs;
pub mod rtnl;
pub mod selfcost;
pub mod tune;
