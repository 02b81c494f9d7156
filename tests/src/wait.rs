//! Waiting on events instead of sleeping: a condition that becomes true, or
//! a counter that stops moving. Every wait polls every few milliseconds,
//! has a timeout stretched by [`time_scale`], and fails the test with what
//! it waited for and the last value it saw.

use std::{
    fmt::Debug,
    time::{Duration, Instant},
};

/// How often a wait reads its condition again.
const POLL: Duration = Duration::from_millis(5);

/// How much slower than native this machine runs the tests: 1, or what
/// `PROBE_TEST_TIME_SCALE` says (`cargo xtask vm` sets it for its emulated
/// guests, where everything, the probe's re-attach loop included, runs 10-50x
/// slower). Tests that assert a time bound multiply it by this.
pub fn time_scale() -> u32 {
    std::env::var("PROBE_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// `d` at this machine's speed: `d` x [`time_scale`].
pub fn scaled(d: Duration) -> Duration {
    d * time_scale()
}

/// Polls `cond` for up to `timeout` (not scaled: the caller's time bound
/// is the assertion): whether it became true.
pub fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if cond() {
            return true;
        }
        if start.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(POLL);
    }
}

/// Reads `read` until `done` accepts its value, for up to `timeout` x
/// [`time_scale`]; returns that value. On timeout the test fails, naming
/// `what` and the last value read.
pub fn wait_for<T: Debug>(
    what: &str,
    timeout: Duration,
    mut read: impl FnMut() -> T,
    mut done: impl FnMut(&T) -> bool,
) -> T {
    let within = scaled(timeout);
    let start = Instant::now();
    loop {
        let value = read();
        if done(&value) {
            return value;
        }
        if start.elapsed() > within {
            panic!("timed out after {within:?} waiting for {what}; last value: {value:?}");
        }
        std::thread::sleep(POLL);
    }
}

/// Waits until `cond` is true, for up to `timeout` x [`time_scale`]; on
/// timeout the test fails, naming `what`.
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    wait_for(what, timeout, &mut cond, |&ok| ok);
}

/// Waits until `read` returns the same value for `quiet_for` (no more
/// packets in flight, for a packet counter), for up to `timeout`; both x
/// [`time_scale`]. Returns the settled value. On timeout the test fails,
/// naming `what` and the last value read.
pub fn wait_settled<T: PartialEq + Debug>(
    what: &str,
    mut read: impl FnMut() -> T,
    quiet_for: Duration,
    timeout: Duration,
) -> T {
    let (quiet_for, within) = (scaled(quiet_for), scaled(timeout));
    let start = Instant::now();
    let mut last = read();
    let mut since = Instant::now();
    loop {
        std::thread::sleep(POLL);
        let now = read();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= quiet_for {
            return last;
        }
        if start.elapsed() > within {
            panic!("{what} still changing after {within:?}; last value: {last:?}");
        }
    }
}
