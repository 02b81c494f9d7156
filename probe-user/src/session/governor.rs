//! `--latency auto` (the default): what the NET_RX softirq and NAPI probes
//! cost follows how often NET_RX runs, not how many packets arrive: they run
//! three times per softirq run and once per NAPI poll. A NIC that batches
//! (NAPI, interrupt coalescing) keeps that rate low under load; a path that
//! runs a softirq per packet does not (BENCHMARKS.md: about 0.6 µs per run
//! in the lab, its polls included). The governor reads the kernel's own count
//! of NET_RX runs per CPU (/proc/softirqs) once a second, pauses the probes
//! (detaches them; their counts stay) while the busiest CPU runs NET_RX more
//! than `max_runs` times a second, and resumes them once it has stayed below
//! 3/4 of that for RESUME_AFTER readings in a row.

use std::time::{Duration, Instant};

/// How often the NET_RX run rate is read.
pub const EVERY: Duration = Duration::from_secs(1);
/// Quiet readings in a row before paused probes resume.
pub const RESUME_AFTER: u32 = 5;

/// What the governor decided at a reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Stay,
    /// Detach the probes: the busiest CPU ran NET_RX this many times a second.
    Pause(u64),
    /// Attach them again.
    Resume,
}

#[derive(Debug)]
pub struct Governor {
    max_runs: u64,
    last: Option<(Instant, Vec<u64>)>,
    quiet: u32,
    paused_since: Option<Instant>,
    paused_before: Duration,
    pub last_check: Instant,
}

impl Governor {
    pub fn new(max_runs: u64, now: Instant) -> Governor {
        Governor {
            max_runs,
            last: None,
            quiet: 0,
            paused_since: None,
            paused_before: Duration::ZERO,
            last_check: now,
        }
    }

    #[cfg(test)]
    fn paused(&self) -> bool {
        self.paused_since.is_some()
    }

    /// Seconds the probes were paused, from the start to `now`.
    pub fn paused_s(&self, now: Instant) -> f64 {
        let current = self
            .paused_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since));
        (self.paused_before + current).as_secs_f64()
    }

    /// The probes were detached at `at` (after [`Step::Pause`]): the pause
    /// counts from there, since they ran until then.
    pub fn detached_at(&mut self, at: Instant) {
        if self.paused_since.is_some() {
            self.paused_since = Some(at);
        }
    }

    /// The probes did not attach again at [`Step::Resume`] (`now`): they
    /// stay paused, and are tried again after RESUME_AFTER quiet readings.
    pub fn resume_failed(&mut self, now: Instant) {
        if self.paused_since.is_none() {
            self.paused_since = Some(now);
            self.quiet = 0;
        }
    }

    /// One reading of the NET_RX runs per CPU (cumulative), taken at `now`.
    pub fn observe(&mut self, now: Instant, runs: &[u64]) -> Step {
        self.last_check = now;
        let Some((then, before)) = self.last.replace((now, runs.to_vec())) else {
            return Step::Stay;
        };
        let dt = now.saturating_duration_since(then).as_secs_f64();
        if dt <= 0.0 || before.len() != runs.len() {
            return Step::Stay;
        }
        let busiest = runs
            .iter()
            .zip(&before)
            .map(|(n, b)| n.saturating_sub(*b))
            .max()
            .unwrap_or(0);
        let rate = (busiest as f64 / dt) as u64;
        match self.paused_since {
            None if rate > self.max_runs => {
                self.paused_since = Some(now);
                self.quiet = 0;
                Step::Pause(rate)
            }
            None => Step::Stay,
            Some(since) => {
                if rate * 4 < self.max_runs * 3 {
                    self.quiet += 1;
                } else {
                    self.quiet = 0;
                }
                if self.quiet < RESUME_AFTER {
                    return Step::Stay;
                }
                self.paused_before += now.saturating_duration_since(since);
                self.paused_since = None;
                Step::Resume
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_above_the_rate_and_resumes_after_quiet_readings() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut g = Governor::new(10_000, t0);
        // The first reading only starts the count.
        assert_eq!(g.observe(at(0), &[0, 0]), Step::Stay);
        // 9,000 runs/s on the busiest CPU: below.
        assert_eq!(g.observe(at(1), &[9_000, 100]), Step::Stay);
        // 12,000 on CPU 1: paused, however quiet CPU 0 is.
        assert_eq!(g.observe(at(2), &[9_000, 12_100]), Step::Pause(12_000));
        assert!(g.paused());
        // Below 3/4 of the bound for RESUME_AFTER readings, one interrupted.
        let mut runs = 12_100;
        for s in 3..5 {
            runs += 7_000;
            assert_eq!(g.observe(at(s), &[9_000, runs]), Step::Stay);
        }
        runs += 8_000; // above 3/4: starts over
        assert_eq!(g.observe(at(5), &[9_000, runs]), Step::Stay);
        for s in 6..6 + RESUME_AFTER as u64 - 1 {
            runs += 100;
            assert_eq!(g.observe(at(s), &[9_000, runs]), Step::Stay, "at {s} s");
        }
        assert_eq!(
            g.observe(at(5 + RESUME_AFTER as u64), &[9_000, runs]),
            Step::Resume
        );
        assert!(!g.paused());
        // Paused from 2 s to 10 s.
        assert_eq!(g.paused_s(at(20)), 8.0);
    }

    #[test]
    fn a_resume_that_failed_stays_paused_and_is_tried_again_after_quiet_readings() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut g = Governor::new(10_000, t0);
        g.observe(at(0), &[0]);
        assert_eq!(g.observe(at(1), &[20_000]), Step::Pause(20_000));
        for s in 2..2 + RESUME_AFTER as u64 - 1 {
            assert_eq!(g.observe(at(s), &[20_000]), Step::Stay);
        }
        let resume_at = 1 + RESUME_AFTER as u64;
        assert_eq!(g.observe(at(resume_at), &[20_000]), Step::Resume);
        g.resume_failed(at(resume_at));
        assert!(g.paused());
        for s in resume_at + 1..resume_at + RESUME_AFTER as u64 {
            assert_eq!(g.observe(at(s), &[20_000]), Step::Stay, "at {s} s");
        }
        let again = resume_at + RESUME_AFTER as u64;
        assert_eq!(g.observe(at(again), &[20_000]), Step::Resume);
        // Paused from 1 s to the second resume, without a gap.
        assert_eq!(g.paused_s(at(again + 5)), (again - 1) as f64);
    }

    #[test]
    fn a_cpu_that_comes_or_goes_is_no_rate() {
        let t0 = Instant::now();
        let mut g = Governor::new(10, t0);
        g.observe(t0, &[0, 0]);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(g.observe(later, &[1_000_000]), Step::Stay);
        assert_eq!(g.paused_s(later), 0.0);
    }
}
