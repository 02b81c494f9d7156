//! Reading /proc: the kernel counters the ledger reconciles against (parsed
//! in probe_model::counters::procfs), NET_RX runs, BPF programs held open.

use std::collections::BTreeSet;

use probe_model::counters::procfs::{parse_snmp, parse_softnet, Snmp, SoftnetCpu};

pub fn read_softnet() -> Result<Vec<SoftnetCpu>, String> {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .map(|t| parse_softnet(&t))
        .map_err(|e| format!("cannot read /proc/net/softnet_stat: {e}"))
}

/// The NET_RX line of /proc/softirqs: how many times NET_RX ran on each
/// online CPU (cumulative).
pub fn parse_net_rx_runs(text: &str) -> Vec<u64> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix("NET_RX:"))
        .map(|rest| {
            rest.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

pub fn read_net_rx_runs() -> Result<Vec<u64>, String> {
    std::fs::read_to_string("/proc/softirqs")
        .map(|t| parse_net_rx_runs(&t))
        .map_err(|e| format!("cannot read /proc/softirqs: {e}"))
}

/// The protocol counters of the calling thread's network namespace: run it
/// inside `Netns::run` (`/proc/net` follows the process's first thread, not
/// this one). /proc/net/snmp must be readable; snmp6 is absent without IPv6.
pub fn read_snmp() -> Result<Snmp, String> {
    let read = |name: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{name}"));
    let snmp = read("snmp").map_err(|e| format!("cannot read /proc/thread-self/net/snmp: {e}"))?;
    Ok(parse_snmp(
        &snmp,
        &read("snmp6").unwrap_or_default(),
        &read("netstat").unwrap_or_default(),
        &read("stat/nf_conntrack").unwrap_or_default(),
    ))
}

/// Ids of the BPF programs some process holds an fd to (`prog_id:` in
/// /proc/PID/fdinfo). A program attached only through a tc filter, whose
/// loader is gone, is not among them. Some processes' fdinfo may be closed
/// even to root (non-dumpable ones, an LSM's rule): only a probe can hold a
/// probe's program, so that is an error only for a process named `probe`.
pub fn bpf_programs_held_open() -> Result<BTreeSet<u32>, String> {
    let mut ids = BTreeSet::new();
    let procs = std::fs::read_dir("/proc").map_err(|e| format!("cannot read /proc: {e}"))?;
    for proc in procs.flatten() {
        if !proc
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let dir = proc.path().join("fdinfo");
        let fds = match std::fs::read_dir(&dir) {
            Ok(fds) => fds,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // exited
            Err(e) => {
                let comm = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
                if comm.trim_end() == "probe" {
                    return Err(format!("cannot read {}: {e}", dir.display()));
                }
                continue;
            }
        };
        for fd in fds.flatten() {
            // An fd closed meanwhile is not one that holds a program.
            if let Ok(info) = std::fs::read_to_string(fd.path()) {
                ids.extend(parse_fdinfo_prog_id(&info));
            }
        }
    }
    Ok(ids)
}

/// The `prog_id:` of one fdinfo text (BPF program fds only).
pub fn parse_fdinfo_prog_id(fdinfo: &str) -> Option<u32> {
    let line = fdinfo.lines().find(|l| l.starts_with("prog_id:"))?;
    line["prog_id:".len()..].trim().parse().ok()
}

/// Whether this process sees every process of the node: it runs in the
/// initial PID namespace (`NSpid:` in /proc/self/status has one entry; in a
/// container without hostPID it has two or more).
pub fn sees_every_process() -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .is_some_and(|l| l.split_whitespace().count() == 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_rx_runs_per_cpu() {
        let text = "                    CPU0       CPU1\n          HI:          1          0\n      NET_TX:         12          3\n      NET_RX:     456789       1234\n       BLOCK:          0          0\n";
        assert_eq!(parse_net_rx_runs(text), vec![456_789, 1_234]);
        assert_eq!(parse_net_rx_runs(""), Vec::<u64>::new());
        assert!(!read_net_rx_runs().unwrap().is_empty());
    }

    #[test]
    fn reads_this_machine() {
        assert!(!read_softnet().unwrap().is_empty());
        read_snmp().unwrap();
    }

    #[test]
    fn fdinfo_prog_id() {
        let prog = "pos:\t0\nflags:\t02000002\nmnt_id:\t16\nino:\t1057\nprog_type:\t3\nprog_jited:\t1\nprog_tag:\t8d6d1e1a4b8e4d5c\nmemlock:\t4096\nprog_id:\t812\n";
        assert_eq!(parse_fdinfo_prog_id(prog), Some(812));
        assert_eq!(parse_fdinfo_prog_id("pos:\t0\nflags:\t02\n"), None);
    }
}
