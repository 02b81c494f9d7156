//! Attaching a classifier at a device's ingress: TCX where the kernel has it
//! (Linux >= 6.6), else a cls_bpf filter on the clsact qdisc (legacy tc, the
//! way CNIs attach on older kernels).
//!
//! The legacy filter follows the rules a shared hook needs:
//! - clsact is created only when absent, and never deleted: deleting it
//!   would delete every other owner's filters (an empty clsact changes nothing);
//! - the probe's filters sit at priority [`LEGACY_PRIORITY`] (1: the first to
//!   run) with a kernel-assigned handle, and run in direct-action mode
//!   returning TC_ACT_UNSPEC, so cls_bpf goes on to the next filter and no
//!   verdict changes; other owners' filters are never touched. cls_bpf puts a
//!   new filter at the head of its priority's list (cls_bpf_change), so the
//!   probe's runs before a CNI's at priority 1 too (a lab test checks the order);
//! - a tc filter is not a bpf_link and survives SIGKILL: the probe deletes
//!   its own filter when the hook is dropped (inside the device's netns), and
//!   on every start, and with `probe cleanup`, removes filters an earlier
//!   probe left: cls_bpf filters at that priority running one of the probe's
//!   programs (by name) that no process holds open any more.

use aya::{
    programs::{
        tc::{self, NlOptions, SchedClassifierLink, TcAttachOptions},
        LinkOrder, SchedClassifier, TcAttachType,
    },
    Ebpf,
};
use probe_common::{PROG_NIC_TC, PROG_VXLAN_INGRESS};

use super::{program, HookError};
use crate::{
    kernel::netns::Netns,
    kernel::rtnl::{BpfFilter, Link, RtnlSocket},
};

/// Priority of the probe's legacy tc filters: 1 runs first.
pub const LEGACY_PRIORITY: u16 = 1;

/// The probe's classifier programs, as `tc filter show` names them.
pub const TC_PROGRAMS: [&str; 2] = [PROG_NIC_TC, PROG_VXLAN_INGRESS];

/// How classifiers are attached (`--tc-mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum TcMode {
    /// TCX, and legacy tc where the kernel has no TCX
    #[default]
    Auto,
    /// TCX only (Linux >= 6.6)
    Tcx,
    /// A cls_bpf filter on the clsact qdisc, even where TCX exists
    Legacy,
}

/// A classifier attached at ingress; dropping it detaches it.
pub enum Attachment {
    /// A TCX link, owned by the program (closed with the object).
    Tcx,
    Legacy(LegacyFilter),
}

impl Attachment {
    /// `hooks[].hook` / `stages[].hook`: the mechanism.
    pub fn name(&self) -> &'static str {
        match self {
            Attachment::Tcx => "tcx/ingress",
            Attachment::Legacy(_) => "tc/ingress",
        }
    }

    /// The filters an earlier probe left on the device, removed before this
    /// one was added (`tc filter show` descriptions), taken once.
    pub fn take_removed(&mut self) -> Vec<String> {
        match self {
            Attachment::Tcx => Vec::new(),
            Attachment::Legacy(filter) => std::mem::take(&mut filter.removed),
        }
    }
}

/// The probe's cls_bpf filter; deleted from inside its namespace on drop
/// (aya deletes through a netlink socket of the calling thread's namespace).
pub struct LegacyFilter {
    link: Option<SchedClassifierLink>,
    netns: Netns,
    removed: Vec<String>,
}

impl Drop for LegacyFilter {
    fn drop(&mut self) {
        if let Some(link) = self.link.take() {
            let detached = self.netns.run(|| aya::programs::links::Link::detach(link));
            if let Ok(Err(e)) = detached {
                // At detach there is no report left to carry it.
                crate::notice::line(format_args!("cannot delete the probe's tc filter: {e}"));
            }
        }
    }
}

/// Verifies program `name` of `ebpf` and attaches it at `link`'s ingress in `netns`.
pub fn attach_ingress(
    netns: &Netns,
    ebpf: &mut Ebpf,
    name: &str,
    link: &Link,
    mode: TcMode,
) -> Result<Attachment, HookError> {
    let prog: &mut SchedClassifier = program(ebpf, name)?;
    prog.load().map_err(|source| HookError::Verifier {
        name: name.into(),
        source,
    })?;
    let tcx_error = match mode {
        TcMode::Legacy => None,
        TcMode::Tcx | TcMode::Auto => match attach_tcx(netns, prog, link) {
            Ok(()) => return Ok(Attachment::Tcx),
            Err(e) if mode == TcMode::Tcx => return Err(e),
            Err(e) => Some(e),
        },
    };
    attach_legacy(netns, prog, link).map_err(|legacy| match tcx_error {
        Some(tcx) => HookError::Config(format!("{tcx}; and legacy tc: {legacy}")),
        None => legacy,
    })
}

/// TCX, ahead of every program already there (LinkOrder::first): it only
/// counts and returns "continue", so the CNI's programs after it still get
/// every packet, and it sees the packets those programs redirect or drop. A
/// TCX link needs no qdisc: nobody's clsact qdisc or tc filter is touched.
fn attach_tcx(netns: &Netns, prog: &mut SchedClassifier, link: &Link) -> Result<(), HookError> {
    netns
        .run(|| {
            prog.attach_with_options(
                &link.name,
                TcAttachType::Ingress,
                TcAttachOptions::TcxOrder(LinkOrder::first()),
            )
        })
        .map_err(|e| HookError::Netns(e.to_string()))?
        .map_err(|source| HookError::Attach {
            what: format!(
                "TCX attach to {} failed (TCX needs Linux >= 6.6; --tc-mode auto falls back to tc)",
                link.name
            ),
            source,
        })?;
    Ok(())
}

fn attach_legacy(
    netns: &Netns,
    prog: &mut SchedClassifier,
    link: &Link,
) -> Result<Attachment, HookError> {
    // The filter's own handle on its namespace, taken before it exists: a
    // filter whose handle failed afterwards would be dropped here, outside
    // its namespace, where its detach cannot find it.
    let own_netns = netns
        .try_clone()
        .map_err(|e| HookError::Netns(format!("netns {}: {e}", netns.label())))?;
    let (filter, removed) = netns
        .run(
            || -> Result<(SchedClassifierLink, Vec<String>), HookError> {
                let mut rtnl = RtnlSocket::open()
                    .map_err(|e| HookError::Netns(format!("cannot open rtnetlink: {e}")))?;
                let removed = remove_stale_filters(&mut rtnl, link)?;
                match tc::qdisc_add_clsact(&link.name) {
                    Ok(()) => {}
                    Err(tc::TcError::NetlinkError(e)) if e.raw_os_error() == Some(libc::EEXIST) => {
                    }
                    Err(e) => {
                        return Err(HookError::Config(format!(
                            "cannot add a clsact qdisc to {}: {e}",
                            link.name
                        )))
                    }
                }
                let options = NlOptions {
                    priority: LEGACY_PRIORITY,
                    ..Default::default()
                };
                let id = prog
                    .attach_with_options(
                        &link.name,
                        TcAttachType::Ingress,
                        TcAttachOptions::Netlink(options),
                    )
                    .map_err(|source| HookError::Attach {
                        what: format!(
                            "tc filter (clsact ingress, priority {LEGACY_PRIORITY}) on {} failed",
                            link.name
                        ),
                        source,
                    })?;
                let filter = prog.take_link(id).map_err(|source| HookError::Program {
                    name: link.name.clone(),
                    source,
                })?;
                Ok((filter, removed))
            },
        )
        .map_err(|e| HookError::Netns(e.to_string()))??;
    Ok(Attachment::Legacy(LegacyFilter {
        link: Some(filter),
        netns: own_netns,
        removed,
    }))
}

/// Whether `filter` is one an earlier probe left behind: the probe's
/// priority, one of its programs, and a program no process holds open.
pub fn is_stale(filter: &BpfFilter, held_open: &std::collections::BTreeSet<u32>) -> bool {
    filter.priority == LEGACY_PRIORITY
        && filter
            .name
            .as_deref()
            .is_some_and(|n| TC_PROGRAMS.contains(&n))
        && filter.prog_id.is_some_and(|id| !held_open.contains(&id))
}

/// Deletes the filters earlier probes left on `link`'s ingress (in the
/// socket's namespace); returns what it did, one line each. Where this
/// process cannot see every process (a container without hostPID), a live
/// probe's filter cannot be told from a leftover: nothing is deleted and the
/// line says so.
pub fn remove_stale_filters(rtnl: &mut RtnlSocket, link: &Link) -> Result<Vec<String>, HookError> {
    let filters = rtnl.ingress_bpf_filters(link.ifindex).map_err(|e| {
        HookError::Netns(format!("cannot list the tc filters of {}: {e}", link.name))
    })?;
    let ours: Vec<&BpfFilter> = filters
        .iter()
        .filter(|f| f.priority == LEGACY_PRIORITY)
        .filter(|f| f.name.as_deref().is_some_and(|n| TC_PROGRAMS.contains(&n)))
        .collect();
    if ours.is_empty() {
        return Ok(Vec::new());
    }
    let cannot_tell = |why: String| {
        Ok(vec![format!(
            "{} has {} tc filter(s) of a probe at priority {LEGACY_PRIORITY}, left as they are: \
             {why}, so a running probe's cannot be told from a leftover; `probe cleanup` \
             in the host's PID namespace removes leftovers",
            link.name,
            ours.len()
        )])
    };
    if !crate::kernel::procfs::sees_every_process() {
        return cannot_tell("this process does not see the host's PID namespace".into());
    }
    let held_open = match crate::kernel::procfs::bpf_programs_held_open() {
        Ok(ids) => ids,
        Err(e) => return cannot_tell(e),
    };
    let mut done = Vec::new();
    for f in ours.into_iter().filter(|f| is_stale(f, &held_open)) {
        rtnl.delete_ingress_filter(link.ifindex, f).map_err(|e| {
            HookError::Netns(format!(
                "cannot delete a leftover tc filter on {}: {e}",
                link.name
            ))
        })?;
        done.push(format!(
            "removed a leftover tc filter of an earlier probe from {}: {} (program id {}, priority {}, handle {:#x})",
            link.name,
            f.name.as_deref().unwrap_or("?"),
            f.prog_id.unwrap_or(0),
            f.priority,
            f.handle
        ));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(priority: u16, name: &str, id: u32) -> BpfFilter {
        BpfFilter {
            priority,
            protocol_be: 0x0300,
            handle: 1,
            name: Some(name.into()),
            prog_id: Some(id),
        }
    }

    #[test]
    fn only_the_probes_unheld_filters_are_stale() {
        let held: std::collections::BTreeSet<u32> = [7].into();
        assert!(is_stale(&filter(1, PROG_NIC_TC, 5), &held));
        assert!(is_stale(&filter(1, PROG_VXLAN_INGRESS, 5), &held));
        // A running probe's (held open), another priority, another program.
        assert!(!is_stale(&filter(1, PROG_NIC_TC, 7), &held));
        assert!(!is_stale(&filter(2, PROG_NIC_TC, 5), &held));
        assert!(!is_stale(&filter(1, "cil_from_netdev", 5), &held));
    }
}
