//! A whole report, as every output gets it: what happened between two
//! samples of a run (model::Report::between) and the advice its evidence
//! supports against the run's settings (advice.rs).

use crate::model::{Report, ReportKind, Run, Sample};

/// The report of `run` between `earlier` and `later`.
pub fn build(kind: ReportKind, run: &Run, earlier: &Sample, later: &Sample) -> Report {
    let mut r = Report::between(kind, run, earlier, later);
    if let Some(settings) = run.settings {
        r.advice = crate::advice::advise(&r, settings);
    }
    r
}
