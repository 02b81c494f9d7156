//! The `probe` command line: one file per subcommand.

pub mod diff;
pub mod record;
pub mod serve;
pub mod tune;
pub mod watch;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "probe",
    version,
    about = "Find where a Kubernetes node's receive path loses or delays packets",
    long_about = "Find where a Kubernetes node's receive path loses or delays packets.\n\n\
        probe attaches eBPF counters at XDP on the node's NIC and at TCX on the VXLAN\n\
        overlay device (flannel.1), decapsulates VXLAN to see the pod traffic inside,\n\
        and reports per interval what each stage saw, next to the kernel's own counters.\n\
        Everything it attaches is a bpf_link: it is gone when probe exits, even after SIGKILL.\n\
        `probe tune` shows the settings (NAPI budget, backlog, buffers, RPS, rings, MTU) to\n\
        judge them against; `probe record` and `probe diff` compare before and after a change;\n\
        `probe serve` exports the same counters to Prometheus. Another owner's XDP or TCX\n\
        program (a CNI's) is never replaced.\n\n\
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
    pub fn requirements(&self) -> Vec<crate::caps::Requirement> {
        match self {
            Command::Watch(w) => w.requirements(),
            Command::Serve(s) => s.watch.requirements(),
            Command::Record(r) => r.watch.requirements(),
            Command::Tune(_) | Command::Diff(_) => Vec::new(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Watch(watch::WatchArgs),
    Tune(tune::TuneArgs),
    Record(record::RecordArgs),
    Serve(serve::ServeArgs),
    Diff(diff::DiffArgs),
}
