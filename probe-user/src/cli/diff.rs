//! `probe diff A B`: compare two recordings.

use std::path::PathBuf;

use clap::Args;

use crate::{
    cli::record::{Recording, FORMAT, VERSION},
    diff,
    error::ProbeError,
};

#[derive(Debug, Args)]
#[command(
    about = "Compare two recordings: drops, latency, time_squeeze, CPU spread, settings",
    long_about = "Compare two `probe record` files, typically before and after a tuning change:\n\
        drop rates per stage and reason, NET_RX softirq wait/run percentiles, time_squeeze\n\
        rate, how concentrated receive work is on one CPU, and the settings that changed.\n\
        Each metric is judged better / worse / unchanged against a stated noise threshold.\n\
        The advice of B (rules that fire on its evidence) follows.\n\n\
        Example:\n  probe diff before.json after.json"
)]
pub struct DiffArgs {
    /// The earlier recording
    pub a: PathBuf,
    /// The later recording
    pub b: PathBuf,
    /// One JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

fn load(path: &PathBuf) -> Result<Recording, ProbeError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ProbeError::Usage(format!("cannot read {}: {e}", path.display())))?;
    let r: Recording = serde_json::from_str(&text).map_err(|e| {
        ProbeError::Usage(format!("{} is not a probe recording: {e}", path.display()))
    })?;
    if r.format != FORMAT || r.version != VERSION {
        return Err(ProbeError::Usage(format!(
            "{}: format {} version {}, this probe reads {FORMAT} version {VERSION}",
            path.display(),
            r.format,
            r.version
        )));
    }
    Ok(r)
}

pub fn run(args: DiffArgs) -> Result<(), ProbeError> {
    let (a, b) = (load(&args.a)?, load(&args.b)?);
    let d = diff::diff(&a, &b);
    let advice = b.summary["advice"].clone();
    if args.json {
        let mut v = serde_json::to_value(&d).map_err(|e| ProbeError::Runtime(e.to_string()))?;
        v["advice"] = advice;
        println!("{v}");
    } else {
        print!("{}", diff::human(&d));
        for a in advice.as_array().into_iter().flatten() {
            println!(
                "ADVICE {}: {}",
                a["rule"].as_str().unwrap_or("?"),
                a["text"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
