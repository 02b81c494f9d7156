//! Reports written to stdout on a thread of their own: the sampling loop
//! never waits on the reader. A slow pipe (`probe watch | less`, a reader
//! that pauses) would otherwise stop the loop inside a write, and with it
//! the latency governor and the stage window, which must keep their
//! schedule while the probes are attached. What the reader has not taken
//! yet is held, up to PENDING_MAX bytes; beyond that interval reports are
//! dropped (said once on stderr, and counted at the end), never the summary.

use std::{
    io::Write,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        mpsc, Arc, Mutex,
    },
    thread::JoinHandle,
};

use crate::{error::ProbeError, output::render};
use probe_model::model::{Report, ReportKind};

/// Output waiting for the reader, at most: minutes of reports at 1 s.
const PENDING_MAX: usize = 16 << 20;

/// One report as it is printed: a JSON line, or the terminal's text.
pub fn format(json: bool, report: &Report) -> Result<String, ProbeError> {
    Ok(if json {
        serde_json::to_string(report).map_err(|e| ProbeError::Runtime(e.to_string()))? + "\n"
    } else {
        render::human(report) + "\n"
    })
}

/// The writer thread and what the sampling loop knows of it.
pub struct Output {
    json: bool,
    queue: Option<mpsc::Sender<String>>,
    writer: Option<JoinHandle<()>>,
    pending: Arc<AtomicUsize>,
    /// The reader has gone (a broken pipe): the run ends, like SIGINT.
    gone: Arc<AtomicBool>,
    failed: Arc<Mutex<Option<String>>>,
    dropped: u64,
}

impl Output {
    pub fn stdout(json: bool) -> Output {
        let (queue, reports) = mpsc::channel::<String>();
        let pending = Arc::new(AtomicUsize::new(0));
        let gone = Arc::new(AtomicBool::new(false));
        let failed = Arc::new(Mutex::new(None));
        let writer = {
            let (pending, gone, failed) = (pending.clone(), gone.clone(), failed.clone());
            std::thread::spawn(move || {
                for text in reports {
                    if !gone.load(Ordering::Relaxed) {
                        let mut out = std::io::stdout().lock();
                        match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
                            Ok(()) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                                gone.store(true, Ordering::Relaxed)
                            }
                            Err(e) => {
                                *failed.lock().unwrap() = Some(format!("writing output: {e}"));
                                gone.store(true, Ordering::Relaxed);
                            }
                        }
                    }
                    pending.fetch_sub(text.len(), Ordering::Relaxed);
                }
            })
        };
        Output {
            json,
            queue: Some(queue),
            writer: Some(writer),
            pending,
            gone,
            failed,
            dropped: 0,
        }
    }

    /// Hands `report` to the writer. Ok(false) once the reader has gone.
    pub fn emit(&mut self, report: &Report) -> Result<bool, ProbeError> {
        if let Some(e) = self.failed.lock().unwrap().take() {
            return Err(ProbeError::Runtime(e));
        }
        if self.gone.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let text = format(self.json, report)?;
        let full = self.pending.load(Ordering::Relaxed) + text.len() > PENDING_MAX;
        if full && report.kind == ReportKind::Interval {
            if self.dropped == 0 {
                crate::notice::line(format_args!(
                    "output stalled: the reader has not taken {} MiB of reports; interval reports are dropped until it catches up (the summary is kept)",
                    PENDING_MAX >> 20
                ));
            }
            self.dropped += 1;
            return Ok(true);
        }
        self.pending.fetch_add(text.len(), Ordering::Relaxed);
        if let Some(queue) = &self.queue {
            // The writer only ends once the queue is closed (finish).
            let _ = queue.send(text);
        }
        Ok(true)
    }

    /// Waits until everything handed over is written (or the reader went).
    pub fn finish(mut self) -> Result<(), ProbeError> {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        if self.dropped > 0 {
            crate::notice::line(format_args!(
                "{} interval reports were dropped while the output stalled",
                self.dropped
            ));
        }
        match self.failed.lock().unwrap().take() {
            Some(e) => Err(ProbeError::Runtime(e)),
            None => Ok(()),
        }
    }
}
