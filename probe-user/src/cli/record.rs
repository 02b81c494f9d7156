//! `probe record`: one run of `watch` saved as a self-describing file.

use std::path::PathBuf;

use clap::Args;

use crate::{
    cli::watch::WatchArgs, error::ProbeError, kernel::netns::Netns, kernel::tune, session::Period,
};
use probe_model::recording::{NetnsSettings, Recording, FORMAT, VERSION};

#[derive(Debug, Args)]
#[command(
    about = "Record settings, ledger, histograms and per-CPU views to a file (for probe diff)",
    long_about = "Run the probes for --duration seconds and write one JSON file: the settings\n\
        (as `probe tune` shows them, plus the sysctls of every --drop-netns namespace), and\n\
        the summary report (ledger, drops, flows, softirq and NAPI histograms, per-CPU and\n\
        per-queue counts, softnet_stat, advice). Take one before and one after a change,\n\
        then compare them with `probe diff BEFORE AFTER`.\n\n\
        Examples:\n  probe record --out before.json --duration 60\n  \
        probe record --out after.json --duration 60 --drop-netns host"
)]
pub struct RecordArgs {
    /// Where to write the recording
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    #[command(flatten)]
    pub watch: WatchArgs,
}

impl RecordArgs {
    /// The flags' values, checked before --out is touched or anything is
    /// attached (usage errors, exit status 2).
    pub fn validate(&self) -> Result<(), ProbeError> {
        if self.watch.duration.is_none() {
            return Err(ProbeError::Usage(format!(
                "probe record needs --duration ({})",
                crate::cli::DURATION.expected
            )));
        }
        crate::cli::watch::validate(&self.watch)
    }
}

pub fn run(mut args: RecordArgs) -> Result<(), ProbeError> {
    // Before --out is created: a refused run leaves an existing file alone.
    args.validate()?;
    // Checked before the run, not after it: a bad path should not cost a
    // recording. Opened without truncating: an earlier recording at that
    // path stays as it is until this one is written, and a failed run
    // removes only a file it created.
    let existed = args.out.exists();
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&args.out)
        .map_err(|e| {
            ProbeError::Usage(format!("cannot write --out {}: {e}", args.out.display()))
        })?;
    let remove_if_created = || {
        if !existed {
            let _ = std::fs::remove_file(&args.out);
        }
    };
    args.watch.json = true;
    let config = match args.watch.config() {
        Ok(config) => config,
        Err(e) => {
            remove_if_created();
            return Err(e);
        }
    };
    let (settings, summary) =
        match crate::session::run(&config, Period::SinceLast, |_| {}, |_| Ok(true)) {
            Ok(done) => done,
            Err(e) => {
                remove_if_created();
                return Err(e);
            }
        };
    let netns_settings = args
        .watch
        .drop_netns
        .iter()
        .filter_map(|name| {
            let ns = Netns::host_or_named(name).ok()?;
            Some(NetnsSettings {
                netns: name.clone(),
                sysctls: tune::sysctls(&ns),
                sockets: ns.run(tune::udp_socket_buffers).unwrap_or_default(),
            })
        })
        .collect();
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let recording = Recording {
        format: FORMAT.into(),
        version: VERSION,
        kernel: read("/proc/sys/kernel/osrelease"),
        hostname: read("/proc/sys/kernel/hostname"),
        settings,
        netns_settings,
        summary: serde_json::to_value(&summary).map_err(|e| ProbeError::Runtime(e.to_string()))?,
    };
    let text =
        serde_json::to_string_pretty(&recording).map_err(|e| ProbeError::Runtime(e.to_string()))?;
    std::fs::write(&args.out, text + "\n")
        .map_err(|e| ProbeError::Runtime(format!("cannot write {}: {e}", args.out.display())))?;
    crate::notice::line(format_args!(
        "recorded {:.1} s to {}",
        summary.elapsed_s,
        args.out.display()
    ));
    Ok(())
}
