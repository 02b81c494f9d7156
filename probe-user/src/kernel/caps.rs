//! Effective-capability check, so a missing privilege is named up front
//! instead of surfacing as EPERM from the middle of a BPF call.

use ::caps::{CapSet, CapsHashSet};

use crate::error::ProbeError;

/// A capability with its name as a `&'static str` (`caps` only formats it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub name: &'static str,
    pub cap: ::caps::Capability,
}

pub const CAP_NET_ADMIN: Capability = Capability {
    name: "CAP_NET_ADMIN",
    cap: ::caps::Capability::CAP_NET_ADMIN,
};
pub const CAP_SYS_ADMIN: Capability = Capability {
    name: "CAP_SYS_ADMIN",
    cap: ::caps::Capability::CAP_SYS_ADMIN,
};
pub const CAP_PERFMON: Capability = Capability {
    name: "CAP_PERFMON",
    cap: ::caps::Capability::CAP_PERFMON,
};
pub const CAP_BPF: Capability = Capability {
    name: "CAP_BPF",
    cap: ::caps::Capability::CAP_BPF,
};

/// One requirement: any of `alternatives` satisfies it; `why` tells the user.
#[derive(Clone, Debug)]
pub struct Requirement {
    pub alternatives: Vec<Capability>,
    pub why: &'static str,
}

/// What `probe watch` (and `serve`, `record`) needs: loading XDP/tc programs
/// takes CAP_BPF (or, before Linux 5.8, CAP_SYS_ADMIN) plus CAP_NET_ADMIN;
/// entering another network namespace with setns (`--netns`, and
/// `--drop-netns` to read its /proc/net/snmp) takes CAP_SYS_ADMIN.
/// CAP_SYS_RESOURCE is not needed: since Linux 5.11 BPF memory is charged to
/// the memory cgroup, not RLIMIT_MEMLOCK.
pub fn watch_requirements(enters_netns: bool) -> Vec<Requirement> {
    let mut reqs = vec![
        Requirement {
            alternatives: vec![CAP_BPF, CAP_SYS_ADMIN],
            why: "load BPF programs and read their maps",
        },
        Requirement {
            alternatives: vec![CAP_NET_ADMIN],
            why: "attach XDP and tc programs to interfaces",
        },
        Requirement {
            alternatives: vec![CAP_PERFMON, CAP_SYS_ADMIN],
            why: "attach the drop probe (tp_btf/kfree_skb) and read sk_buff fields",
        },
    ];
    if enters_netns {
        reqs.push(setns(
            "enter the --netns / --drop-netns network namespaces (setns)",
        ));
    }
    reqs
}

/// setns(CLONE_NEWNET) into another namespace needs CAP_SYS_ADMIN.
fn setns(why: &'static str) -> Requirement {
    Requirement {
        alternatives: vec![CAP_SYS_ADMIN],
        why,
    }
}

/// What `probe cleanup` needs: delete tc filters, and setns. (Reading
/// another probe's fdinfo needs no capability when that probe has no more
/// capabilities than this one; where it cannot be read, nothing is removed.)
pub fn cleanup_requirements(enters_netns: bool) -> Vec<Requirement> {
    let mut reqs = vec![Requirement {
        alternatives: vec![CAP_NET_ADMIN],
        why: "delete tc filters",
    }];
    if enters_netns {
        reqs.push(setns("enter the --netns network namespace (setns)"));
    }
    reqs
}

/// The smallest set of capabilities that meets `reqs`: the first
/// alternative of each ("BPF", "NET_ADMIN", ...: the names Kubernetes'
/// securityContext.capabilities uses).
pub fn minimal_set(reqs: &[Requirement]) -> std::collections::BTreeSet<&'static str> {
    reqs.iter()
        .filter_map(|r| r.alternatives.first())
        .map(|c| c.name.trim_start_matches("CAP_"))
        .collect()
}

/// The requirements that the `effective` set does not meet.
pub fn missing(effective: &CapsHashSet, reqs: &[Requirement]) -> Vec<Requirement> {
    reqs.iter()
        .filter(|r| !r.alternatives.iter().any(|c| effective.contains(&c.cap)))
        .cloned()
        .collect()
}

/// Checks this thread's effective capabilities (capget) against `reqs`.
pub fn check(reqs: &[Requirement]) -> Result<(), ProbeError> {
    let effective = ::caps::read(None, CapSet::Effective)
        .map_err(|e| ProbeError::Runtime(format!("cannot read the effective capabilities: {e}")))?;
    let missing = missing(&effective, reqs);
    if missing.is_empty() {
        return Ok(());
    }
    Err(ProbeError::MissingCapabilities {
        missing: describe(&missing),
    })
}

/// "CAP_BPF (or CAP_SYS_ADMIN) to load BPF programs ...; CAP_NET_ADMIN to ..."
pub fn describe(missing: &[Requirement]) -> String {
    missing
        .iter()
        .map(|r| {
            let (first, rest) = r
                .alternatives
                .split_first()
                .expect("a requirement names a capability");
            let alts: Vec<_> = rest.iter().map(|c| c.name).collect();
            if alts.is_empty() {
                format!("{} to {}", first.name, r.why)
            } else {
                format!("{} (or {}) to {}", first.name, alts.join(", "), r.why)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[Capability]) -> CapsHashSet {
        caps.iter().map(|c| c.cap).collect()
    }

    #[test]
    fn names_match_the_crate() {
        for c in [CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF] {
            assert_eq!(c.name, c.cap.to_string());
        }
    }

    #[test]
    fn reads_what_proc_status_shows() {
        // The crate's capget agrees with the CapEff line the probe used to parse.
        let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("CapEff:")).unwrap();
        let cap_eff = u64::from_str_radix(line["CapEff:".len()..].trim(), 16).unwrap();
        let effective = ::caps::read(None, CapSet::Effective).unwrap();
        for c in ::caps::all() {
            assert_eq!(effective.contains(&c), cap_eff & c.bitmask() != 0, "{c}");
        }
    }

    #[test]
    fn root_meets_everything() {
        assert!(missing(&::caps::all(), &watch_requirements(true)).is_empty());
    }

    #[test]
    fn sys_admin_stands_in_for_bpf_but_not_for_net_admin() {
        let eff = set(&[CAP_SYS_ADMIN]);
        let m = missing(&eff, &watch_requirements(true));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].alternatives, vec![CAP_NET_ADMIN]);
    }

    #[test]
    fn names_each_missing_capability() {
        let eff = set(&[CAP_NET_ADMIN]);
        let text = describe(&missing(&eff, &watch_requirements(true)));
        assert!(
            text.contains("CAP_BPF (or CAP_SYS_ADMIN) to load BPF programs"),
            "{text}"
        );
        assert!(
            text.contains("CAP_SYS_ADMIN to enter the --netns"),
            "{text}"
        );
        assert!(!text.contains("CAP_NET_ADMIN"), "{text}");
    }

    #[test]
    fn netns_requirement_only_when_entering_one() {
        let eff = set(&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON]);
        assert!(missing(&eff, &watch_requirements(false)).is_empty());
        // Without CAP_PERFMON the drop probe cannot attach.
        let no_perfmon = set(&[CAP_BPF, CAP_NET_ADMIN]);
        let m = missing(&no_perfmon, &watch_requirements(false));
        assert_eq!(m.len(), 1);
        assert!(m[0].why.contains("drop probe"));
        assert_eq!(missing(&eff, &watch_requirements(true)).len(), 1);
    }
}
