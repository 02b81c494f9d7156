//! `--self`: what the probe itself costs, from its programs' BPF stats and
//! its process's CPU time and RSS.

use serde::Serialize;

/// Cumulative counters of one of our programs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProgramStat {
    pub program: String,
    /// The interface it is attached to, or `*` for the drop probe.
    pub iface: String,
    pub runs: u64,
    pub run_ns: u64,
}

/// Cumulative counters of the probe process and its programs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SelfSample {
    /// utime + stime of the whole process, in seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub programs: Vec<ProgramStat>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProgramCost {
    pub program: String,
    pub iface: String,
    pub runs: u64,
    /// Mean kernel time per run over the period; null without runs.
    pub ns_per_run: Option<f64>,
}

/// What the probe cost over one report period.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SelfCost {
    /// CPU time of the probe process / wall time, in percent of one core.
    pub cpu_percent: f64,
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    pub programs: Vec<ProgramCost>,
}

impl SelfCost {
    pub fn between(earlier: &SelfSample, later: &SelfSample, elapsed_s: f64) -> SelfCost {
        let programs = later
            .programs
            .iter()
            .map(|p| {
                let before = earlier
                    .programs
                    .iter()
                    .find(|e| e.program == p.program && e.iface == p.iface);
                let runs = p.runs.saturating_sub(before.map_or(0, |b| b.runs));
                let ns = p.run_ns.saturating_sub(before.map_or(0, |b| b.run_ns));
                ProgramCost {
                    program: p.program.clone(),
                    iface: p.iface.clone(),
                    runs,
                    ns_per_run: (runs > 0).then(|| ns as f64 / runs as f64),
                }
            })
            .collect();
        let cpu = (later.cpu_s - earlier.cpu_s).max(0.0);
        SelfCost {
            cpu_percent: if elapsed_s > 0.0 {
                cpu * 100.0 / elapsed_s
            } else {
                0.0
            },
            rss_kib: later.rss_kib,
            peak_rss_kib: later.peak_rss_kib,
            programs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cost_over_a_period() {
        let stat = |runs, run_ns| ProgramStat {
            program: "nic_xdp".into(),
            iface: "eth0".into(),
            runs,
            run_ns,
        };
        let a = SelfSample {
            cpu_s: 1.0,
            programs: vec![stat(100, 5_000)],
            ..Default::default()
        };
        let b = SelfSample {
            cpu_s: 1.02,
            rss_kib: 8000,
            peak_rss_kib: 9000,
            programs: vec![stat(1100, 35_000)],
        };
        let c = SelfCost::between(&a, &b, 2.0);
        assert!((c.cpu_percent - 1.0).abs() < 1e-9);
        assert_eq!(c.programs[0].runs, 1000);
        assert_eq!(c.programs[0].ns_per_run, Some(30.0));
        assert_eq!((c.rss_kib, c.peak_rss_kib), (8000, 9000));
        assert_eq!(SelfCost::between(&b, &b, 1.0).programs[0].ns_per_run, None);
    }
}
