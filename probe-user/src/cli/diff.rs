//! `probe diff A B`: compare two recordings.

use std::{
    io::Read,
    path::{Path, PathBuf},
};

use clap::Args;
use serde_json::Value;

use crate::error::ProbeError;
use probe_model::{
    diff,
    recording::{Recording, FORMAT, VERSION},
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

/// Larger than any recording (a summary is a few MB on a large node): a
/// bigger file, or /dev/zero, is refused instead of filling memory.
pub const MAX_RECORDING_BYTES: u64 = 256 << 20;

fn load(path: &Path) -> Result<Recording, ProbeError> {
    let unreadable =
        |e: std::io::Error| ProbeError::Usage(format!("cannot read {}: {e}", path.display()));
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_RECORDING_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_RECORDING_BYTES {
        return Err(ProbeError::Usage(format!(
            "{} is not a probe recording: larger than {} MiB",
            path.display(),
            MAX_RECORDING_BYTES >> 20
        )));
    }
    parse(&bytes, &path.display().to_string())
}

/// A recording from the bytes of a file named `name` (for messages). Any
/// input gives a recording or a usage error (exit status 2), never a panic.
pub fn parse(bytes: &[u8], name: &str) -> Result<Recording, ProbeError> {
    let r: Recording = serde_json::from_slice(bytes)
        .map_err(|e| ProbeError::Usage(format!("{name} is not a probe recording: {e}")))?;
    if r.format != FORMAT || r.version != VERSION {
        return Err(ProbeError::Usage(format!(
            "{name}: format {:?} version {}, this probe reads {FORMAT} version {VERSION}",
            r.format, r.version
        )));
    }
    r.compared().map_err(|e| {
        ProbeError::Usage(format!("{name}: its summary is not a probe report: {e}"))
    })?;
    Ok(r)
}

/// What `probe diff` prints for recordings `a` and `b`.
pub fn output(a: &Recording, b: &Recording, json: bool) -> Result<String, ProbeError> {
    let d = diff::diff(a, b);
    // B's advice: the rules its evidence supports after the change.
    let advice = b.compared().map(|c| c.advice).unwrap_or_default();
    if json {
        let mut v = serde_json::to_value(&d).map_err(|e| ProbeError::Runtime(e.to_string()))?;
        if let Some(o) = v.as_object_mut() {
            let advice: Vec<Value> = advice
                .iter()
                .map(|a| serde_json::json!({"rule": a.rule, "text": a.text}))
                .collect();
            o.insert("advice".into(), Value::Array(advice));
        }
        Ok(format!("{v}\n"))
    } else {
        let mut o = diff::human(&d);
        for a in &advice {
            o += &format!("ADVICE {}: {}\n", a.rule, a.text);
        }
        Ok(o)
    }
}

pub fn run(args: DiffArgs) -> Result<(), ProbeError> {
    let (a, b) = (load(&args.a)?, load(&args.b)?);
    print!("{}", output(&a, &b, args.json)?);
    Ok(())
}

#[cfg(test)]
mod tests;
