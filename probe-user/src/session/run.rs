//! Running a session: the baseline, the interval loop with its controllers,
//! the summary, and the ready file.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use super::{
    attach,
    controllers::{Controller, NamespaceWatch, Step, WindowControl},
    governor::Governor,
    reattach::DeviceFollower,
    sample, seconds,
    stage_window::StageWindow,
    Session, SessionConfig,
};
use crate::hooks::{latency::LatencyHook, stage_latency::StageHook};
use crate::{error::ProbeError, kernel::caps, kernel::netns::Netns};
use probe_model::{
    ledger::VxlanCarry,
    model::{Report, ReportKind, Sample, Topology},
    settings::Snapshot,
};

/// What each report of a session covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Period {
    /// The interval since the previous report (`watch`, `record`).
    SinceLast,
    /// Everything since attach, every interval (`serve`: Prometheus counters
    /// are totals).
    SinceAttach,
}

/// An interval's report, its VXLAN balance carried over from the intervals
/// before it (ledger::VxlanCarry).
fn carried_interval(
    carry: &mut VxlanCarry,
    session: &Session,
    earlier: &Sample,
    later: &Sample,
) -> Report {
    let mut r = session.report(ReportKind::Interval, earlier, later);
    if let Some(loss) = r.ledger.vxlan_loss.as_mut() {
        carry.apply(loss);
    }
    r
}

/// Attaches, runs `during` (`probe trace` sends its probes there), samples,
/// detaches: `during`'s result and the summary of what the probes saw
/// meanwhile. `during` is handed a flag that SIGINT or SIGTERM sets: it
/// should end early when it is set (the links are then detached as usual).
pub fn around<T>(
    cfg: &SessionConfig,
    during: impl FnOnce(&AtomicBool) -> Result<T, ProbeError>,
) -> Result<(T, Report), ProbeError> {
    let stop = stop_on_signal()?;
    let mut session = open(cfg)?;
    let first = sample::sample(&mut session, &[])?;
    if let Some(path) = &cfg.ready_file {
        write_ready_file(path, &session)?;
    }
    let result = during(&stop);
    if let Some(path) = &cfg.ready_file {
        let _ = std::fs::remove_file(path);
    }
    let result = result?;
    let last = sample::sample(&mut session, &[])?;
    let summary = session.report(ReportKind::Summary, &first, &last);
    drop(session); // detaches every link
    Ok((result, summary))
}

/// A flag that SIGINT and SIGTERM set, registered before attaching: a signal
/// during attach ends the run cleanly.
fn stop_on_signal() -> Result<Arc<AtomicBool>, ProbeError> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .map_err(|e| ProbeError::Runtime(format!("cannot install signal handler: {e}")))?;
    }
    Ok(stop)
}

/// The session's namespace, its privileges checked, every probe attached.
fn open(cfg: &SessionConfig) -> Result<Session, ProbeError> {
    let netns = match &cfg.netns {
        Some(name) => Netns::named(name)?,
        None => Netns::current(),
    };
    caps::check(&cfg.requirements())?;
    attach::attach(cfg, netns)
}

/// Attaches, calls `on_attached` once every probe is attached, hands every
/// interval's report (covering `period`) and then the summary to `out` (which
/// returns false to stop early), detaches. Returns the settings snapshot taken
/// at attach time and the summary.
pub fn run(
    cfg: &SessionConfig,
    period: Period,
    on_attached: impl FnOnce(&Topology),
    mut out: impl FnMut(&Report) -> Result<bool, ProbeError>,
) -> Result<(Option<Snapshot>, Report), ProbeError> {
    let stop = stop_on_signal()?;
    let mut session = open(cfg)?;
    let mut controllers = controllers(cfg, &session, Instant::now());
    // Every total counts from this sample: the BPF maps and the kernel's
    // counters are read together here, after the last hook attached. (The
    // maps' counts before it, from each hook's own attach on, are left out:
    // the kernel counters have no reading at those instants to match them.)
    // A first reading is slower than later ones (first touches of the maps'
    // buffers): the NIC's map and the VXLAN devices' are read further apart,
    // and the packets that cross between the two reads would stand as a
    // shortfall in every total after it. One reading warms the path; the
    // baseline is the next, read as fast as every later one.
    sample::sample(&mut session, &controllers)?;
    // The run's clock starts with the baseline: the stage window's, the
    // intervals' and --duration's (a summary of `--duration 1` spans 1 s,
    // however long attaching took).
    let counting_from = Instant::now();
    for c in &mut controllers {
        c.start_at(counting_from);
    }
    let first = sample::sample(&mut session, &controllers)?;
    let baseline = first.clone();
    if period == Period::SinceAttach {
        // Totals start at zero with every hook listed, before the first interval.
        out(&session.report(ReportKind::Summary, &baseline, &first))?;
    }
    // Ready (the file, /readyz): attached, and counting from here.
    on_attached(&session.topology);
    if let Some(path) = &cfg.ready_file {
        write_ready_file(path, &session)?;
    }
    let mut previous = first;
    // Both were range-checked before attaching (cli::SecondsRange).
    let interval = seconds(cfg.interval);
    let deadline = cfg
        .duration
        .and_then(|d| counting_from.checked_add(seconds(d)));
    let mut next_tick = counting_from + interval;
    // A controller that ends the run (the namespace removed) says why.
    let mut ended = None;
    let mut carry = VxlanCarry::default();
    'run: loop {
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) || stop.load(Ordering::Relaxed) {
            break;
        }
        for c in &mut controllers {
            if now >= c.due(now) {
                if let Step::End(why) = c.run(&mut session, now) {
                    ended = Some(why);
                    break 'run;
                }
            }
        }
        let wake = controllers
            .iter()
            .map(|c| c.due(now))
            .chain(deadline)
            .fold(next_tick, Instant::min);
        if now < wake {
            std::thread::sleep((wake - now).min(Duration::from_millis(50)));
            continue;
        }
        if now >= next_tick {
            let current = sample::sample(&mut session, &controllers)?;
            let r = match period {
                Period::SinceLast => carried_interval(&mut carry, &session, &previous, &current),
                Period::SinceAttach => session.report(ReportKind::Summary, &baseline, &current),
            };
            let reader_gone = !out(&r)?;
            previous = current;
            next_tick += interval;
            if reader_gone {
                break;
            }
        }
    }
    let last = sample::sample(&mut session, &controllers)?;
    if period == Period::SinceLast && last.uptime_s - previous.uptime_s >= cfg.interval / 2.0 {
        out(&carried_interval(&mut carry, &session, &previous, &last))?;
    }
    let summary = session.report(ReportKind::Summary, &baseline, &last);
    out(&summary)?;
    if let Some(path) = &cfg.ready_file {
        let _ = std::fs::remove_file(path);
    }
    let settings = session.settings.take();
    drop(controllers);
    drop(session); // detaches every link
    match ended {
        Some(why) => Err(ProbeError::Runtime(why)),
        None => Ok((settings, summary)),
    }
}

/// The controllers `cfg` calls for on `session`, in the order they run.
fn controllers(cfg: &SessionConfig, session: &Session, now: Instant) -> Vec<Box<dyn Controller>> {
    let mut out: Vec<Box<dyn Controller>> = Vec::new();
    if let Some(max_runs) = session.hooks.get::<LatencyHook>().and_then(|h| h.max_runs) {
        out.push(Box::new(Governor::new(max_runs, now)));
    }
    if let Some((on, every)) = session.hooks.get::<StageHook>().and_then(|h| h.info.window) {
        out.push(Box::new(WindowControl {
            window: StageWindow::new(on, every, now),
            last_check: now,
        }));
    }
    if cfg.netns.is_some() {
        out.push(Box::new(NamespaceWatch { last: now }));
    }
    out.push(Box::new(DeviceFollower::new(now)));
    out
}

/// `--ready-file`: written once every probe is attached (atomically: a
/// temporary file renamed), removed on exit.
fn write_ready_file(path: &std::path::Path, a: &Session) -> Result<(), ProbeError> {
    let t = &a.topology;
    let body = serde_json::json!({
        "pid": std::process::id(),
        "attach_ms": a.attach_ms,
        "netns": t.netns,
        "hooks": t.hooks_line(),
        "unavailable": t.unavailable,
        "program_ids": a.program_ids(),
    });
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, body.to_string() + "\n")
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            ProbeError::Runtime(format!("cannot write --ready-file {}: {e}", path.display()))
        })
}
