//! The recording file `probe record` writes and `probe diff` reads: the
//! settings of a run and its summary report, self-describing and versioned.

use serde::{Deserialize, Serialize};

use crate::settings;

/// The file's `format` and `version`; `probe diff` refuses anything else.
pub const FORMAT: &str = "probe-record";
pub const VERSION: u32 = 1;

/// Sysctls of one namespace of the drop scope, and the receive buffers its
/// UDP sockets got (what an application asked for, capped by rmem_max).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetnsSettings {
    pub netns: String,
    pub sysctls: Vec<settings::Setting>,
    #[serde(default)]
    pub sockets: Vec<settings::Setting>,
}

/// The recording. The summary report is kept whole, as written: `diff` reads
/// the parts it compares through [`Compared`], which stays readable across
/// additions to the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recording {
    pub format: String,
    pub version: u32,
    pub kernel: String,
    pub hostname: String,
    pub settings: Option<settings::Snapshot>,
    pub netns_settings: Vec<NetnsSettings>,
    pub summary: serde_json::Value,
}

impl Recording {
    /// The parts of the summary `probe diff` compares, typed. Fails on a
    /// summary whose fields have the wrong shape (a usage error for diff).
    pub fn compared(&self) -> Result<Compared, serde_json::Error> {
        Compared::deserialize(&self.summary)
    }
}

/// What `probe diff` reads of a recorded summary report. Field names of
/// every version of the report are accepted: the first named the NIC stage
/// `xdp` and counted `packets`, ledger inputs were `packets_in`, and a
/// reason's drops were a bare number.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Compared {
    #[serde(default)]
    pub elapsed_s: f64,
    #[serde(default)]
    pub ledger: Vec<ComparedStage>,
    #[serde(default)]
    pub softirq: Vec<ComparedSoftirq>,
    #[serde(default)]
    pub softnet: Vec<ComparedSoftnet>,
    #[serde(default)]
    pub cpus: Vec<ComparedCpu>,
    #[serde(default)]
    pub advice: Vec<ComparedAdvice>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComparedStage {
    pub stage: String,
    #[serde(default, alias = "packets_in")]
    pub segments_in: Option<f64>,
    #[serde(default)]
    pub drops: f64,
    #[serde(default)]
    pub reasons: std::collections::BTreeMap<String, ComparedReason>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum ComparedReason {
    Counts {
        #[serde(default)]
        segments: f64,
    },
    /// Recordings before segments were counted.
    Bare(f64),
}

impl ComparedReason {
    pub fn segments(&self) -> f64 {
        match self {
            ComparedReason::Counts { segments } | ComparedReason::Bare(segments) => *segments,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComparedSoftirq {
    #[serde(default)]
    pub wait_ns: Percentiles,
    #[serde(default)]
    pub run_ns: Percentiles,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct Percentiles {
    pub p50: Option<f64>,
    pub p99: Option<f64>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComparedSoftnet {
    #[serde(default)]
    pub time_squeeze: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComparedCpu {
    pub stage: String,
    #[serde(default, alias = "packets")]
    pub segments: f64,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct ComparedAdvice {
    pub rule: String,
    pub text: String,
}
