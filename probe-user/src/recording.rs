//! The recording file `probe record` writes and `probe diff` reads: the
//! settings of a run and its summary report, self-describing and versioned.

use serde::{Deserialize, Serialize};

use crate::tune;

/// The file's `format` and `version`; `probe diff` refuses anything else.
pub const FORMAT: &str = "probe-record";
pub const VERSION: u32 = 1;

/// Sysctls of one namespace of the drop scope, and the receive buffers its
/// UDP sockets got (what an application asked for, capped by rmem_max).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetnsSettings {
    pub netns: String,
    pub sysctls: Vec<tune::Setting>,
    #[serde(default)]
    pub sockets: Vec<tune::Setting>,
}

/// The recording. Reports are kept as JSON values: `diff` reads the fields it
/// compares and stays readable across additions to the report.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Recording {
    pub format: String,
    pub version: u32,
    pub kernel: String,
    pub hostname: String,
    pub settings: Option<tune::Snapshot>,
    pub netns_settings: Vec<NetnsSettings>,
    pub summary: serde_json::Value,
}
