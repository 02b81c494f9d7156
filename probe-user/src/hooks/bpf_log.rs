//! Kernel-side diagnostics (`--debug-bpf`): the programs' aya-log statements.
//!
//! Off by default, and then free: the loader sets the objects' AYA_LOG_LEVEL
//! to 0 in .rodata, which aya freezes, so the verifier knows every
//! `if level_enabled(..)` branch is dead and removes the log code before the
//! program runs (a test compares the translated program sizes). The log ring
//! buffer then shrinks to one page. With `--debug-bpf` the records are read
//! once per interval and printed on stderr.

use std::io::Write as _;

use aya::{Ebpf, EbpfLoader};
use aya_log::EbpfLogger;

/// aya-log's symbols in every object that logs (aya-log-ebpf 0.2).
const LEVEL_GLOBAL: &str = "AYA_LOG_LEVEL";
const LOG_MAP: &str = "AYA_LOGS";
/// The smallest ring buffer the kernel takes: one page.
const LOG_MAP_OFF_BYTES: u32 = 4096;

/// aya-log-common's `Level` values: 0 turns every statement off.
static LEVEL_OFF: u8 = 0;
static LEVEL_DEBUG: u8 = 4;

/// Whether the kernel programs' diagnostics run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BpfLog {
    #[default]
    Off,
    Debug,
}

impl BpfLog {
    /// A loader with the log level (and, when off, the ring size) set. An
    /// object without log statements has neither symbol: nothing to set.
    pub fn loader<'a>(self) -> EbpfLoader<'a> {
        let mut loader = EbpfLoader::new();
        match self {
            BpfLog::Off => loader
                .override_global(LEVEL_GLOBAL, &LEVEL_OFF, false)
                .map_max_entries(LOG_MAP, LOG_MAP_OFF_BYTES),
            BpfLog::Debug => loader.override_global(LEVEL_GLOBAL, &LEVEL_DEBUG, false),
        };
        loader
    }

    /// Starts reading `ebpf`'s log records, when on and the object logs
    /// (Ok(None) otherwise).
    pub fn reader(self, ebpf: &mut Ebpf) -> Result<Option<BpfLogReader>, String> {
        if self == BpfLog::Off || ebpf.map(LOG_MAP).is_none() {
            return Ok(None);
        }
        EbpfLogger::init_with_logger(ebpf, &STDERR as &'static dyn log::Log)
            .map(|logger| Some(BpfLogReader(logger)))
            .map_err(|e| e.to_string())
    }
}

/// The log records of one object; [`BpfLogReader::flush`] prints them.
pub struct BpfLogReader(EbpfLogger<&'static dyn log::Log>);

impl BpfLogReader {
    pub fn flush(&mut self) {
        self.0.flush();
    }
}

/// Prints each record as `probe[bpf] LEVEL target: message` on stderr.
struct StderrLog;
static STDERR: StderrLog = StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let _ = writeln!(
            std::io::stderr().lock(),
            "probe[bpf] {} {}: {}",
            record.level(),
            record.target(),
            record.args()
        );
    }
    fn flush(&self) {}
}
