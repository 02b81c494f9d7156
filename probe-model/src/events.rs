//! What happened to the watching itself during a run: a hook that could not
//! attach, probes paused by `--latency auto`, a device that went and came
//! back. The session records each one with its time (a report carries those
//! of its period, `events[]`) and hands it to the caller, which says it on
//! stderr (`Display` is that line, without the `probe: ` prefix).

use std::fmt;

use serde::Serialize;

use crate::stage::HookKind;

/// One event, as reports carry it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// Every probe that could attach is attached.
    Attached {
        ms: f64,
        netns: String,
        /// The hooks, one phrase each (`Topology::hooks_line`).
        hooks: String,
    },
    /// A stage's hook could not attach (the others run). The whole reason;
    /// a report's `unavailable[]` carries its first line.
    Unavailable {
        stage: HookKind,
        iface: String,
        reason: String,
    },
    /// `--nic-hook xdp` found another owner's XDP program on the NIC.
    ForeignXdp {
        iface: String,
        prog_id: u32,
    },
    /// `--self` without the kernel's BPF run-time statistics.
    SelfStatsUnavailable {
        error: String,
    },
    /// A legacy tc filter left by a probe that was killed, removed at attach.
    StaleFilterRemoved {
        filter: String,
    },
    /// `--debug-bpf` without the kernel log ring.
    BpfLogUnavailable {
        error: String,
    },
    /// `--latency auto`: the busiest CPU ran NET_RX this often.
    LatencyPaused {
        runs_per_s: u64,
    },
    LatencyResumed,
    LatencyFailed {
        error: String,
    },
    StageWindowFailed {
        error: String,
    },
    /// A watched device disappeared (its hooks went with it).
    DeviceGone {
        iface: String,
        ifindex: u32,
    },
    /// Its successor could not be hooked yet (retried every second).
    DeviceNotReady {
        iface: String,
        error: String,
    },
    /// Its counts could not be carried over to the successor's hooks yet.
    CarryOverFailed {
        iface: String,
        error: String,
    },
    DeviceBack {
        iface: String,
        ifindex: u32,
        /// Seconds between finding it gone and hooking its successor.
        after_s: f64,
    },
}

/// An event and when it happened: seconds since the run's clock started
/// (0 for those of attaching).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimedEvent {
    pub at_s: f64,
    #[serde(flatten)]
    pub event: Event,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Attached { ms, netns, hooks } => {
                write!(f, "attached in {ms:.0} ms (netns {netns}): {hooks}")
            }
            Event::Unavailable {
                stage,
                iface,
                reason,
            } => write!(f, "stage {stage} on {iface} unavailable: {reason}"),
            Event::ForeignXdp { iface, prog_id } => write!(
                f,
                "{iface} already has an XDP program (id {prog_id}) that is not ours; \
                 leaving it alone and counting the NIC stage at TCX ingress instead"
            ),
            Event::SelfStatsUnavailable { error } => write!(
                f,
                "--self: cannot enable BPF run-time statistics ({error}); reporting CPU and memory only"
            ),
            Event::StaleFilterRemoved { filter } => write!(f, "{filter}"),
            Event::BpfLogUnavailable { error } => {
                write!(f, "--debug-bpf: cannot read the kernel log ring: {error}")
            }
            Event::LatencyPaused { runs_per_s } => write!(
                f,
                "--latency auto: softirq/NAPI probes paused: NET_RX ran {runs_per_s} times/s \
                 on a CPU (above --latency-max-runs); they resume when it stays below 3/4 of that"
            ),
            Event::LatencyResumed => write!(f, "--latency auto: softirq/NAPI probes resumed"),
            Event::LatencyFailed { error } => write!(f, "--latency auto: {error}"),
            Event::StageWindowFailed { error } => write!(f, "--stage-window: {error}"),
            Event::DeviceGone { iface, ifindex } => write!(
                f,
                "{iface} (ifindex {ifindex}) is gone; its hooks went with it. \
                 Waiting for it to come back"
            ),
            Event::DeviceNotReady { iface, error } => {
                write!(f, "cannot attach to the new {iface} yet: {error}")
            }
            Event::CarryOverFailed { iface, error } => write!(
                f,
                "cannot carry {iface}'s counts over to its new hooks yet: {error}"
            ),
            Event::DeviceBack {
                iface,
                ifindex,
                after_s,
            } => write!(
                f,
                "{iface} is back (ifindex {ifindex}); re-attached {after_s:.2} s after it was found gone"
            ),
        }
    }
}

/// What the run recorded of itself: its events and device gaps. Grows while
/// the run goes on; a report takes what falls in its period.
#[derive(Clone, Debug, Default)]
pub struct History {
    pub events: Vec<TimedEvent>,
    pub gaps: Vec<Gap>,
}

impl History {
    /// The events a report from `from_s` to `to_s` carries: for a summary
    /// every one up to `to_s` (attaching's included), for an interval those
    /// after its start.
    pub fn events_in(&self, summary: bool, from_s: f64, to_s: f64) -> Vec<TimedEvent> {
        self.events
            .iter()
            .filter(|e| e.at_s <= to_s && (summary || e.at_s > from_s))
            .cloned()
            .collect()
    }
}

/// A watched device disappeared (its hooks with it) and, once a device of the
/// same name came back (a flanneld restart recreates flannel.1), the probe
/// attached to it. Counters carry on from where the old hooks stopped; what
/// the device received between the two is not counted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Gap {
    pub stage: HookKind,
    pub iface: String,
    /// Seconds since attach when the probe found the device gone or
    /// replaced (it looks every 200 ms).
    pub lost_s: f64,
    /// Seconds since attach when the hooks were attached to the new device;
    /// null while it is still missing.
    pub reattached_s: Option<f64>,
    pub old_ifindex: u32,
    pub new_ifindex: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_s: f64) -> TimedEvent {
        TimedEvent {
            at_s,
            event: Event::LatencyResumed,
        }
    }

    /// Attaching's events (at 0) are in the summary and in no interval; an
    /// event on an interval's edge belongs to the interval that ends there.
    #[test]
    fn each_event_is_in_one_interval_and_the_summary() {
        let h = History {
            events: vec![at(0.0), at(1.0), at(1.5), at(3.0)],
            gaps: Vec::new(),
        };
        let times = |v: Vec<TimedEvent>| v.iter().map(|e| e.at_s).collect::<Vec<_>>();
        assert_eq!(times(h.events_in(false, 0.1, 1.0)), [1.0]);
        assert_eq!(times(h.events_in(false, 1.0, 2.0)), [1.5]);
        assert_eq!(times(h.events_in(false, 2.0, 2.5)), Vec::<f64>::new());
        assert_eq!(times(h.events_in(true, 0.1, 2.5)), [0.0, 1.0, 1.5]);
    }

    #[test]
    fn json_names_the_event_and_its_fields() {
        let e = TimedEvent {
            at_s: 2.5,
            event: Event::DeviceGone {
                iface: "flannel.1".into(),
                ifindex: 7,
            },
        };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"at_s":2.5,"event":"device_gone","iface":"flannel.1","ifindex":7}"#
        );
        assert_eq!(
            e.event.to_string(),
            "flannel.1 (ifindex 7) is gone; its hooks went with it. Waiting for it to come back"
        );
    }
}
