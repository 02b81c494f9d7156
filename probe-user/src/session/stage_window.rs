//! `--stage-window ON/EVERY` (the default: 1 s in every 10): what
//! `--stage-latency` costs is one program run per packet per device it
//! crosses, followed or not (BENCHMARKS.md: the sampling rate barely moves
//! it). So the probes are attached ON seconds in every EVERY, and cost
//! that fraction. A window closes in two steps: no new packet is followed,
//! then, once those already followed have been read (at most DRAIN_MAX
//! later), the programs detach. What still waits in a socket then is
//! counted, not timed (`window_closed`).

use std::time::{Duration, Instant};

/// The longest a closing window waits for its followed packets' reads.
pub const DRAIN_MAX: Duration = Duration::from_secs(1);
/// A closing window waits at least this long: packets followed from the
/// NIC reach their socket (microseconds), and the counters say so.
pub const DRAIN_MIN: Duration = Duration::from_millis(20);
/// How often a closing window asks whether its packets were read.
const DRAIN_POLL: Duration = Duration::from_millis(10);

/// What to do with the probes at a check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Stay,
    /// Follow no new packet.
    Close,
    /// Detach the probes.
    Detach,
    /// Attach them and follow packets again.
    Reopen,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Open,
    /// Closing since then.
    Draining(Instant),
    Closed,
}

#[derive(Debug)]
pub struct StageWindow {
    on: Duration,
    every: Duration,
    state: State,
    /// When the current (or last) window opened.
    opened: Instant,
    /// When the next one opens: windows keep the cadence of the first.
    next_open: Instant,
    /// Attached time of the windows before the current one.
    attached_before: Duration,
}

impl StageWindow {
    /// Windows of `on` in every `every` (`on` < `every`), the first opening
    /// at `now` (the probes were just attached).
    pub fn new(on: Duration, every: Duration, now: Instant) -> StageWindow {
        StageWindow {
            on,
            every,
            state: State::Open,
            opened: now,
            next_open: now + every,
            attached_before: Duration::ZERO,
        }
    }

    /// Starts the windows' clock again at `now`, where the run's totals
    /// start (the baseline reading, some time after attach: under emulation
    /// more than a window's length): the first window lasts `on` from there,
    /// and the cadence counts from there.
    pub fn start_at(&mut self, now: Instant) {
        if self.state == State::Open {
            self.opened = now;
        }
        self.next_open = now + self.every;
    }

    /// Seconds the probes were attached, from the start to `now`.
    pub fn attached_s(&self, now: Instant) -> f64 {
        let current = match self.state {
            State::Closed => Duration::ZERO,
            _ => now.saturating_duration_since(self.opened),
        };
        (self.attached_before + current).as_secs_f64()
    }

    /// When the next check is due: the window's end or opening; while it
    /// drains, every DRAIN_POLL.
    pub fn next_check(&self, now: Instant) -> Instant {
        match self.state {
            State::Open => self.opened + self.on,
            State::Draining(_) => now + DRAIN_POLL,
            State::Closed => self.next_open,
        }
    }

    /// The programs did not attach at [`Step::Reopen`]: the window stays
    /// closed, counts no attached time, and is tried again at the next one.
    pub fn reopen_failed(&mut self) {
        if self.state == State::Open {
            self.state = State::Closed;
        }
    }

    /// One check at `now`; `in_flight` tells how many followed packets wait
    /// for their read (asked only while a window drains).
    pub fn check(&mut self, now: Instant, in_flight: impl FnOnce() -> u64) -> Step {
        match self.state {
            State::Open if now >= self.opened + self.on => {
                self.state = State::Draining(now);
                Step::Close
            }
            State::Draining(since) => {
                let waited = now.saturating_duration_since(since);
                if waited < DRAIN_MIN || (waited < DRAIN_MAX && in_flight() > 0) {
                    return Step::Stay;
                }
                self.attached_before += now.saturating_duration_since(self.opened);
                self.state = State::Closed;
                Step::Detach
            }
            State::Closed if now >= self.next_open => {
                // One missed (a stalled process) is skipped, not made up.
                while self.next_open <= now {
                    self.next_open += self.every;
                }
                self.opened = now;
                self.state = State::Open;
                Step::Reopen
            }
            _ => Step::Stay,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_window_closes_drains_detaches_and_reopens_on_its_cadence() {
        let t0 = Instant::now();
        let mut w = StageWindow::new(ms(1000), ms(5000), t0);
        assert_eq!(w.check(t0 + ms(999), || panic!("not draining")), Step::Stay);
        assert_eq!(w.next_check(t0 + ms(999)), t0 + ms(1000));
        assert_eq!(w.check(t0 + ms(1000), || 0), Step::Close);
        assert_eq!(w.next_check(t0 + ms(1000)), t0 + ms(1010));
        // Waits at least DRAIN_MIN, then while reads are outstanding.
        assert_eq!(w.check(t0 + ms(1010), || 0), Step::Stay);
        assert_eq!(w.check(t0 + ms(1050), || 2), Step::Stay);
        assert_eq!(w.check(t0 + ms(1100), || 0), Step::Detach);
        assert!((w.attached_s(t0 + ms(3000)) - 1.1).abs() < 1e-9);
        assert_eq!(w.next_check(t0 + ms(3000)), t0 + ms(5000));
        assert_eq!(w.check(t0 + ms(4999), || 0), Step::Stay);
        assert_eq!(w.check(t0 + ms(5000), || 0), Step::Reopen);
        assert!((w.attached_s(t0 + ms(5500)) - 1.6).abs() < 1e-9);
        assert_eq!(w.check(t0 + ms(6000), || 0), Step::Close);
    }

    /// The run's totals start at the baseline reading, 1.2 s after attach
    /// here (a slow, emulated start): the first window lasts 1 s from there,
    /// and the next opens 5 s after it.
    #[test]
    fn the_first_window_starts_with_the_totals() {
        let t0 = Instant::now();
        let mut w = StageWindow::new(ms(1000), ms(5000), t0);
        let base = t0 + ms(1200);
        w.start_at(base);
        assert!(w.attached_s(base).abs() < 1e-9);
        assert_eq!(w.check(base + ms(999), || 0), Step::Stay);
        assert_eq!(w.check(base + ms(1000), || 0), Step::Close);
        assert_eq!(w.check(base + ms(1100), || 0), Step::Detach);
        assert!((w.attached_s(base + ms(2000)) - 1.1).abs() < 1e-9);
        assert_eq!(w.next_check(base + ms(2000)), base + ms(5000));
    }

    #[test]
    fn a_reader_that_never_reads_holds_the_window_no_longer_than_drain_max() {
        let t0 = Instant::now();
        let mut w = StageWindow::new(ms(1000), ms(5000), t0);
        assert_eq!(w.check(t0 + ms(1000), || 0), Step::Close);
        assert_eq!(w.check(t0 + ms(1999), || 1), Step::Stay);
        assert_eq!(w.check(t0 + ms(2000), || 1), Step::Detach);
        assert!((w.attached_s(t0 + ms(4000)) - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_window_that_failed_to_reopen_counts_no_time_and_tries_again_at_the_next() {
        let t0 = Instant::now();
        let mut w = StageWindow::new(ms(1000), ms(5000), t0);
        w.check(t0 + ms(1000), || 0);
        w.check(t0 + ms(1100), || 0);
        assert_eq!(w.check(t0 + ms(5000), || 0), Step::Reopen);
        w.reopen_failed();
        assert!((w.attached_s(t0 + ms(5500)) - 1.1).abs() < 1e-9);
        assert_eq!(
            w.check(t0 + ms(6000), || panic!("nothing to drain")),
            Step::Stay
        );
        assert_eq!(w.next_check(t0 + ms(6000)), t0 + ms(10_000));
        assert_eq!(w.check(t0 + ms(10_000), || 0), Step::Reopen);
    }

    #[test]
    fn a_missed_window_is_skipped() {
        let t0 = Instant::now();
        let mut w = StageWindow::new(ms(1000), ms(5000), t0);
        w.check(t0 + ms(1000), || 0);
        w.check(t0 + ms(1100), || 0);
        // The process did not check for 12 s: one window opens, now.
        assert_eq!(w.check(t0 + ms(13_000), || 0), Step::Reopen);
        assert_eq!(w.check(t0 + ms(13_999), || 0), Step::Stay);
        assert_eq!(w.check(t0 + ms(14_000), || 0), Step::Close);
    }
}
