//! What steers a session's hooks between samples, each on its own schedule:
//! the latency governor (`--latency auto`), the stage window
//! (`--stage-window`), the devices that come and go (reattach.rs), and the
//! watched namespace. The run loop calls each one when it is due; what a
//! controller does is said as an event.

use std::time::Instant;

use super::{governor, stage_window, Session};
use crate::hooks::{latency::LatencyHook, stage_latency::StageHook};
use probe_model::{events::Event, model::Sample};

/// What the run loop does after a controller ran.
pub(super) enum Step {
    Continue,
    /// End the run with its summary, then fail with this message.
    End(String),
}

pub(super) trait Controller {
    /// When it next wants to run (`now` or earlier: at once).
    fn due(&self, now: Instant) -> Instant;

    /// The run's clock starts (the baseline sample).
    fn start_at(&mut self, _at: Instant) {}

    fn run(&mut self, session: &mut Session, now: Instant) -> Step;

    /// What it adds to a sample taken at `now`.
    fn annotate(&self, _session: &Session, _now: Instant, _sample: &mut Sample) {}
}

/// `--latency auto`: one reading of the NET_RX run rate a second, and the
/// pause or resume it calls for.
impl Controller for governor::Governor {
    fn due(&self, _: Instant) -> Instant {
        self.last_check + governor::EVERY
    }

    fn run(&mut self, session: &mut Session, now: Instant) -> Step {
        let runs = match crate::kernel::procfs::read_net_rx_runs() {
            Ok(runs) => runs,
            Err(e) => {
                self.last_check = now;
                session.emit(Event::LatencyFailed {
                    error: e.to_string(),
                });
                return Step::Continue;
            }
        };
        let Some(hook) = session.hooks.get_mut::<LatencyHook>() else {
            return Step::Continue;
        };
        let (said, result) = match self.observe(now, &runs) {
            governor::Step::Stay => return Step::Continue,
            governor::Step::Pause(runs_per_s) => {
                let result = hook.pause();
                self.detached_at(Instant::now());
                (Some(Event::LatencyPaused { runs_per_s }), result)
            }
            governor::Step::Resume => {
                let result = hook.resume();
                if result.is_err() {
                    self.resume_failed(now);
                }
                (result.is_ok().then_some(Event::LatencyResumed), result)
            }
        };
        session.emit_all(
            said.into_iter()
                .chain(result.err().map(|e| Event::LatencyFailed {
                    error: e.to_string(),
                })),
        );
        Step::Continue
    }

    fn annotate(&self, _: &Session, now: Instant, sample: &mut Sample) {
        sample.latency_paused_s = Some(self.paused_s(now));
    }
}

/// `--stage-window`: one check of the window, and the step it calls for. A
/// failure is said; the next check tries again.
pub(super) struct WindowControl {
    pub(super) window: stage_window::StageWindow,
    /// A draining window is checked every DRAIN_POLL from its last check.
    pub(super) last_check: Instant,
}

impl Controller for WindowControl {
    fn due(&self, _: Instant) -> Instant {
        self.window.next_check(self.last_check)
    }

    fn start_at(&mut self, at: Instant) {
        self.window.start_at(at);
    }

    fn run(&mut self, session: &mut Session, now: Instant) -> Step {
        self.last_check = now;
        let Some(hook) = session.hooks.get_mut::<StageHook>() else {
            return Step::Continue;
        };
        let window = &mut self.window;
        let mut error = None;
        let step = window.check(now, || {
            hook.in_flight().unwrap_or_else(|e| {
                error = Some(e);
                0
            })
        });
        let result = match step {
            stage_window::Step::Stay => Ok(()),
            stage_window::Step::Close => hook.close_window(),
            stage_window::Step::Detach => hook.detach_window().map(|_| ()),
            stage_window::Step::Reopen => {
                hook.reopen_window().inspect_err(|_| window.reopen_failed())
            }
        };
        if let Some(e) = error.or(result.err()) {
            session.emit(Event::StageWindowFailed {
                error: e.to_string(),
            });
        }
        Step::Continue
    }

    fn annotate(&self, session: &Session, now: Instant, sample: &mut Sample) {
        if let Some(hook) = session.hooks.get::<StageHook>() {
            sample.stage_window = Some((self.window.attached_s(now), hook.window_closed()));
        }
    }
}

/// `--netns NAME` removed while watching (or its name given to another
/// namespace): the run ends with its totals. Looked up as often as devices.
pub(super) struct NamespaceWatch {
    pub(super) last: Instant,
}

/// How often the watched namespace is looked up (a stat of its name).
const NAMESPACE_CHECK: std::time::Duration = std::time::Duration::from_millis(200);

impl Controller for NamespaceWatch {
    fn due(&self, _: Instant) -> Instant {
        self.last + NAMESPACE_CHECK
    }

    fn run(&mut self, session: &mut Session, now: Instant) -> Step {
        self.last = now;
        if session.netns.still_named() {
            return Step::Continue;
        }
        Step::End(format!(
            "the namespace {} was removed while watching (ip netns del, or its name \
             given to another namespace): nothing is left there to watch. The summary \
             above covers the run until then",
            session.netns.label()
        ))
    }
}

impl Session {
    pub(super) fn emit_all(&mut self, events: impl IntoIterator<Item = Event>) {
        for e in events {
            self.emit(e);
        }
    }
}
