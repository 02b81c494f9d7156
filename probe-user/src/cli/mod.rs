//! The `probe` command line: one file per subcommand.

pub mod cleanup;
pub mod diff;
pub mod reasons;
pub mod record;
pub mod serve;
pub mod trace;
pub mod tune;
pub mod watch;

#[cfg(test)]
mod tests;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::error::ProbeError;

#[derive(Debug, Parser)]
#[command(
    name = "probe",
    version,
    about = "Find where a Kubernetes node's receive path loses or delays packets",
    long_about = "Find where a Kubernetes node's receive path loses or delays packets.\n\n\
        probe attaches eBPF counters at tc ingress (TCX) of the node's NIC (or XDP, on\n\
        request) and of the VXLAN overlay device (flannel.1), decapsulates VXLAN to see the\n\
        pod traffic inside, and reports per interval what each stage saw, next to the\n\
        kernel's own counters. What it attaches is a bpf_link, gone when probe exits, even\n\
        after SIGKILL; on kernels without TCX (< 6.6) it uses tc filters, which it removes on\n\
        exit, and `probe cleanup` (or the next start) after a SIGKILL.\n\
        `probe tune` shows the settings (NAPI budget, backlog, buffers, RPS, rings, MTU) to\n\
        judge them against; `probe record` and `probe diff` compare before and after a change;\n\
        `probe serve` exports the same counters to Prometheus; `probe trace` sends marked\n\
        packets to a pod and shows where each one stopped, and why; `probe reasons` lists the\n\
        kernel's drop reasons and the stage of each. Another owner's XDP or TCX program (a\n\
        CNI's) is never replaced.\n\n\
        Needs CAP_BPF (or CAP_SYS_ADMIN), CAP_NET_ADMIN and CAP_PERFMON (tracing probes);\n\
        CAP_SYS_ADMIN with --netns or --drop-netns."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

impl Command {
    /// The capabilities this command checks for at start (none for the
    /// commands that only read files and sysfs).
    pub fn requirements(&self) -> Vec<crate::kernel::caps::Requirement> {
        match self {
            Command::Watch(w) => w.requirements(),
            Command::Serve(s) => s.watch.requirements(),
            Command::Record(r) => r.watch.requirements(),
            Command::Trace(t) => {
                crate::kernel::caps::watch_requirements(t.netns.is_some() || t.from_netns.is_some())
            }
            Command::Tune(_) | Command::Diff(_) | Command::Reasons(_) => Vec::new(),
            Command::Cleanup(c) => crate::kernel::caps::cleanup_requirements(c.netns.is_some()),
        }
    }

    /// Checks what clap's types do not: the ranges of the numeric flags and
    /// the flags a subcommand requires. Each `run` calls its part of this
    /// before it opens, listens on or attaches anything; a refusal is a usage
    /// error (exit status 2).
    pub fn validate(&self) -> Result<(), ProbeError> {
        match self {
            Command::Watch(w) => watch::validate(w),
            Command::Serve(s) => s.validate(),
            Command::Record(r) => r.validate(),
            Command::Trace(t) => trace::validate(t),
            // Paths and names only: nothing numeric to check.
            Command::Tune(_) | Command::Diff(_) | Command::Cleanup(_) | Command::Reasons(_) => {
                Ok(())
            }
        }
    }
}

/// Prints `value` as one JSON line with `--json`, else as `human` renders it.
pub(crate) fn print_json_or<T: serde::Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> Result<(), ProbeError> {
    if json {
        let line = serde_json::to_string(value).map_err(|e| ProbeError::Runtime(e.to_string()))?;
        println!("{line}");
    } else {
        print!("{}", human(value));
    }
    Ok(())
}

/// The accepted values of a flag that takes seconds (a float, so that 0.5
/// works). `from_secs_f64` panics on values out of `Duration`'s range and
/// `Instant + Duration` on sums out of `Instant`'s: every value accepted here
/// converts and adds without either.
#[derive(Clone, Copy, Debug)]
pub struct SecondsRange {
    pub flag: &'static str,
    pub min: f64,
    /// Whether `min` itself is accepted.
    pub min_inclusive: bool,
    pub max: f64,
    /// The range as the error message states it (and the flag's `--help`).
    pub expected: &'static str,
}

/// `--interval`: 0.1 s to 1 day.
pub const INTERVAL: SecondsRange = SecondsRange {
    flag: "--interval",
    min: 0.1,
    min_inclusive: true,
    max: 86_400.0,
    expected: "a number of seconds from 0.1 to 86400 (1 day)",
};

/// `--duration`: more than 0 s, at most 365 days.
pub const DURATION: SecondsRange = SecondsRange {
    flag: "--duration",
    min: 0.0,
    min_inclusive: false,
    max: 31_536_000.0,
    expected: "a number of seconds above 0 and at most 31536000 (365 days)",
};

impl SecondsRange {
    /// False for NaN, infinities and everything outside the range.
    pub fn contains(&self, seconds: f64) -> bool {
        let above = if self.min_inclusive {
            seconds >= self.min
        } else {
            seconds > self.min
        };
        above && seconds <= self.max
    }

    /// The value as a `Duration`, or a usage error naming the flag, the
    /// value given and the accepted range.
    pub fn check(&self, seconds: f64) -> Result<Duration, ProbeError> {
        let refused = || {
            let problem = if seconds.is_nan() {
                "is not a number"
            } else {
                "is out of range"
            };
            ProbeError::Usage(format!(
                "{} {} {problem}: give {}",
                self.flag,
                shown(seconds),
                self.expected
            ))
        };
        if !self.contains(seconds) {
            return Err(refused());
        }
        Duration::try_from_secs_f64(seconds).map_err(|_| refused())
    }
}

/// A float as a user would have typed it: `2`, `0.5`, `-0`, `1e20`, `inf`.
fn shown(x: f64) -> String {
    if x.is_finite() && x != 0.0 && !(1e-4..1e15).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Watch(watch::WatchArgs),
    Tune(tune::TuneArgs),
    Record(record::RecordArgs),
    Serve(serve::ServeArgs),
    Diff(diff::DiffArgs),
    Cleanup(cleanup::CleanupArgs),
    Trace(trace::TraceArgs),
    Reasons(reasons::ReasonsArgs),
}
