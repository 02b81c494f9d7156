//! `--self`: what the probe itself costs. Kernel side: each program's run
//! count and run time from BPF stats (BPF_ENABLE_STATS, Linux 5.8+; on only
//! while the probe holds the returned fd, and it adds two clock reads to every
//! BPF program run on the node). User side: CPU time and RSS from /proc/self.

use aya::Ebpf;
use probe_model::counters::selfcost::ProgramStat;

/// Run count and time of `name` in `ebpf`, as the kernel reports them now.
pub fn program_stat(ebpf: &Ebpf, name: &str, iface: &str) -> Option<ProgramStat> {
    let info = ebpf.program(name)?.info().ok()?;
    Some(ProgramStat {
        program: name.to_string(),
        iface: iface.to_string(),
        runs: info.run_count(),
        run_ns: info.run_time().as_nanos() as u64,
    })
}

/// Parses utime + stime (fields 14 and 15, in clock ticks) of /proc/PID/stat.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may contain spaces: split after its ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14 -> index 11.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// VmRSS and VmHWM (peak) of /proc/PID/status, in KiB.
pub fn parse_status_rss(status: &str) -> (u64, u64) {
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("VmRSS:"), kib("VmHWM:"))
}

/// CPU time of every thread of `pid` from /proc/PID/task/*/schedstat (its
/// first field: ns on a CPU), which resolves what a lightly loaded process
/// uses; the clock ticks of /proc/PID/stat (10 ms) do not.
fn schedstat_cpu_s(pid: &str) -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let text = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 / 1e9)
}

/// CPU seconds and RSS of process `pid` ("self" for this one).
pub fn process_usage(pid: &str) -> (f64, u64, u64) {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let cpu = schedstat_cpu_s(pid).unwrap_or_else(|| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat_cpu_ticks(&s))
            .map_or(0.0, |t| t as f64 / ticks)
    });
    let (rss, peak) = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| parse_status_rss(&s))
        .unwrap_or((0, 0));
    (cpu, rss, peak)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        let stat =
            "1234 (probe (x)) S 1 1234 1234 0 -1 4194560 100 0 0 0 25 7 0 0 20 0 1 0 100 1000 200";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(32));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
        let status = "Name:\tprobe\nVmHWM:\t   9000 kB\nVmRSS:\t   8000 kB\n";
        assert_eq!(parse_status_rss(status), (8000, 9000));
        let (cpu, rss, peak) = process_usage("self");
        assert!(cpu >= 0.0 && rss > 0 && peak >= rss);
    }
}
