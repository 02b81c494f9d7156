//! The lab tests' common scenario in one call: a probe that is already
//! counting, the test's traffic, the lab left to go quiet, the probe stopped
//! with SIGINT (it must exit 0), and what it printed.

use serde_json::Value;

use crate::{counters::settle_lab, report, Lab, Watch};

/// What a probe printed over one scenario.
pub struct Run {
    /// Every JSON line of stdout (each checked for negative counts).
    pub lines: Vec<Value>,
    pub stderr: String,
}

impl Run {
    /// The summary line.
    pub fn summary(&self) -> &Value {
        report::summary(&self.lines)
    }

    /// The interval lines, in order.
    pub fn intervals(&self) -> Vec<&Value> {
        report::intervals(&self.lines)
    }
}

/// Runs `traffic` while `watch` (started by the caller, so attached) counts,
/// waits until no packet is in flight in `lab`, then stops the probe:
///
/// ```ignore
/// let s = observe(&lab, Watch::on_lab(&lab, "0.5", &[]), || send(...)).summary().clone();
/// ```
pub fn observe(lab: &Lab, watch: Watch, traffic: impl FnOnce()) -> Run {
    traffic();
    settle_lab(lab);
    let (code, lines, stderr) = watch.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "the probe's exit; stderr:\n{stderr}");
    Run { lines, stderr }
}
