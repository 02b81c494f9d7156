//! `probe cleanup`: remove the tc filters a killed probe left behind.

use clap::Args;

use crate::{error::ProbeError, hooks::tc, kernel::netns::Netns, kernel::rtnl::RtnlSocket};

#[derive(Debug, Args)]
#[command(
    about = "Remove the tc filters a killed probe left on the devices of a namespace",
    long_about = "Remove the tc filters a killed probe left on the devices of a namespace.\n\n\
        On kernels without TCX (Linux < 6.6), or with --tc-mode legacy, the probe counts\n\
        through cls_bpf filters on the clsact qdisc, at priority 1. Unlike the bpf_links it\n\
        uses elsewhere, a tc filter outlives a probe killed with SIGKILL. Every probe start\n\
        removes such leftovers on the devices it attaches to; this does it for every device of\n\
        the namespace, on demand (the DaemonSet runs it as an init container). A filter is\n\
        removed only if it sits at priority 1, runs one of the probe's programs (nic_tc,\n\
        vxlan_dev_ingress) and no process holds that program open: a running probe's\n\
        filters, and every other owner's filter and qdisc, are left alone. Telling the two\n\
        apart needs the host's PID namespace (hostPID in a pod) and read access to the other\n\
        probes' /proc/PID/fdinfo (no capability needed for a probe with no more capabilities\n\
        than this one; else CAP_SYS_PTRACE); without them nothing is removed and the output\n\
        says why.\n\n\
        Examples:\n  probe cleanup\n  probe cleanup --netns node2"
)]
pub struct CleanupArgs {
    /// Network namespace (a name under /run/netns) [default: the current one]
    #[arg(long, value_name = "NAME")]
    pub netns: Option<String>,
}

pub fn run(args: CleanupArgs) -> Result<(), ProbeError> {
    crate::kernel::caps::check(&crate::kernel::caps::cleanup_requirements(
        args.netns.is_some(),
    ))?;
    let netns = match &args.netns {
        Some(name) => Netns::named(name)?,
        None => Netns::current(),
    };
    let lines = netns.run(|| -> Result<Vec<String>, ProbeError> {
        let mut rtnl = RtnlSocket::open()
            .map_err(|e| ProbeError::Runtime(format!("cannot open rtnetlink: {e}")))?;
        let links = rtnl
            .links()
            .map_err(|e| ProbeError::Runtime(format!("cannot list interfaces: {e}")))?;
        let mut lines = Vec::new();
        for link in &links {
            lines.extend(tc::remove_stale_filters(&mut rtnl, link)?);
        }
        Ok(lines)
    })??;
    if lines.is_empty() {
        println!(
            "no leftover tc filter of the probe in netns {}",
            netns.label()
        );
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
