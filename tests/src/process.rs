//! A `probe` process in the background. Two threads drain its stdout and
//! stderr as it writes them (a full pipe would hold the probe back, and
//! reading one stream to its end before the other can deadlock), so a test
//! can wait on a line as it comes, and every wait has a timeout: a probe
//! that ignores its signal fails the test instead of hanging the suite.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{assert_no_negatives, probe_bin, time_scale, Lab};

/// How long a probe may take to attach, and to exit after its signal (its
/// summary included), at native speed; `time_scale` stretches both.
const ATTACH_WITHIN: Duration = Duration::from_secs(20);
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// The lines a stream has delivered so far, and whether it has ended.
#[derive(Default)]
struct Lines {
    lines: Vec<String>,
    ended: bool,
}

/// One drained stream: its lines, and the thread that reads them.
struct Drain {
    shared: Arc<(Mutex<Lines>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Drain {
    fn start(stream: impl Read + Send + 'static) -> Drain {
        let shared = Arc::new((Mutex::new(Lines::default()), Condvar::new()));
        let theirs = shared.clone();
        let thread = std::thread::spawn(move || {
            let (lock, changed) = &*theirs;
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                lock.lock().unwrap().lines.push(line);
                changed.notify_all();
            }
            lock.lock().unwrap().ended = true;
            changed.notify_all();
        });
        Drain {
            shared,
            thread: Some(thread),
        }
    }

    /// The first line from `from` on that `pred` accepts, waiting up to
    /// `timeout` for it; None if the stream ends or the time is up first.
    fn wait(&self, from: usize, pred: &dyn Fn(&str) -> bool, timeout: Duration) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.shared;
        let mut seen = lock.lock().unwrap();
        let mut next = from;
        loop {
            if let Some(i) = seen.lines[next.min(seen.lines.len())..]
                .iter()
                .position(|l| pred(l))
            {
                return Some(next + i);
            }
            next = seen.lines.len();
            let left = deadline.saturating_duration_since(Instant::now());
            if seen.ended || left.is_zero() {
                return None;
            }
            seen = changed.wait_timeout(seen, left).unwrap().0;
        }
    }

    /// Waits up to `timeout` until the lines so far satisfy `pred`: whether
    /// they did before the stream ended or the time was up.
    fn wait_all(&self, pred: &dyn Fn(&[String]) -> bool, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (lock, changed) = &*self.shared;
        let mut seen = lock.lock().unwrap();
        loop {
            if pred(&seen.lines) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if seen.ended || left.is_zero() {
                return false;
            }
            seen = changed.wait_timeout(seen, left).unwrap().0;
        }
    }

    fn lines(&self) -> Vec<String> {
        self.shared.0.lock().unwrap().lines.clone()
    }

    fn line(&self, i: usize) -> String {
        self.shared.0.lock().unwrap().lines[i].clone()
    }

    /// Every line, once the stream has ended (the process has exited).
    fn finish(mut self) -> Vec<String> {
        if let Some(t) = self.thread.take() {
            t.join().expect("the drain thread");
        }
        std::mem::take(&mut self.shared.0.lock().unwrap().lines)
    }
}

/// A running `probe` (watch, serve or record) that has attached.
pub struct Watch {
    child: Child,
    ready: PathBuf,
    /// The ready file's JSON: pid, attach_ms, hooks, unavailable, program_ids.
    pub ready_info: serde_json::Value,
    stdout: Option<Drain>,
    stderr: Option<Drain>,
}

impl Watch {
    /// Starts `probe watch --json --ready-file ... ARGS` and waits until attached.
    pub fn start(args: &[&str]) -> Watch {
        Self::start_with(Command::new(probe_bin()), args)
    }

    pub fn start_with(cmd: Command, args: &[&str]) -> Watch {
        Self::spawn(cmd, &["watch", "--json"], args)
    }

    /// Starts `probe SUBCOMMAND... --ready-file ... ARGS` (watch, serve or
    /// record) and waits until attached.
    pub fn spawn(mut cmd: Command, subcommand: &[&str], args: &[&str]) -> Watch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let ready =
            std::env::temp_dir().join(format!("probe-test-{}-{n}.ready", std::process::id()));
        let _ = std::fs::remove_file(&ready);
        let mut child = cmd
            .args(subcommand)
            .arg("--ready-file")
            .arg(&ready)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn probe");
        let stdout = Drain::start(child.stdout.take().unwrap());
        let stderr = Drain::start(child.stderr.take().unwrap());
        let mut w = Watch {
            child,
            ready,
            ready_info: serde_json::Value::Null,
            stdout: Some(stdout),
            stderr: Some(stderr),
        };
        // The probe writes its ready file once attached; no stream says so.
        let start = Instant::now();
        let within = ATTACH_WITHIN * time_scale();
        while !w.ready.exists() {
            if let Some(status) = w.child.try_wait().unwrap() {
                let err = w.stderr.take().unwrap().finish().join("\n");
                panic!("probe exited before attaching ({status}): {err}");
            }
            assert!(
                start.elapsed() < within,
                "probe did not attach within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&w.ready).expect("read the ready file");
        w.ready_info = serde_json::from_str(&text).expect("the ready file is JSON");
        w
    }

    /// `probe watch` on node 2 of `lab` every `interval` seconds, with drops
    /// counted in the lab's namespaces only (other tests and the host drop
    /// packets too), and `extra` flags.
    pub fn on_lab(lab: &Lab, interval: &str, extra: &[&str]) -> Watch {
        let namespaces = lab.namespaces();
        let mut args = vec![
            "--netns",
            lab.node(2).netns.as_str(),
            "--interval",
            interval,
        ];
        for ns in &namespaces {
            args.extend(["--drop-netns", ns.as_str()]);
        }
        args.extend(extra);
        Watch::start(&args)
    }

    /// Kernel ids of every program this probe loaded (from its ready file).
    pub fn program_ids(&self) -> Vec<u32> {
        self.ready_info["program_ids"]
            .as_array()
            .expect("program_ids in the ready file")
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: a process we started and have not reaped yet.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// The first JSON line on stdout that `pred` accepts, as it comes;
    /// None if the probe exits or `timeout` passes first.
    pub fn wait_report(
        &self,
        pred: impl Fn(&serde_json::Value) -> bool,
        timeout: Duration,
    ) -> Option<serde_json::Value> {
        let out = self.stdout.as_ref().unwrap();
        let parsed = |l: &str| serde_json::from_str(l).expect("every stdout line is JSON");
        let i = out.wait(0, &|l| pred(&parsed(l)), timeout)?;
        Some(parsed(&out.line(i)))
    }

    /// The JSON lines the probe has written so far.
    pub fn lines_so_far(&self) -> Vec<serde_json::Value> {
        let out = self.stdout.as_ref().unwrap();
        out.lines()
            .iter()
            .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
            .collect()
    }

    /// Waits until the JSON lines written so far satisfy `pred` (enough
    /// interval reports, their counts adding up to a total, ...), for up to
    /// `timeout` x `time_scale`, and returns them. Fails the test, naming
    /// `what`, if the probe exits or the time is up first.
    pub fn wait_lines(
        &self,
        what: &str,
        pred: impl Fn(&[serde_json::Value]) -> bool,
        timeout: Duration,
    ) -> Vec<serde_json::Value> {
        let out = self.stdout.as_ref().unwrap();
        let parse = |lines: &[String]| -> Vec<serde_json::Value> {
            lines
                .iter()
                .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
                .collect()
        };
        let within = timeout * time_scale();
        if !out.wait_all(&|lines| pred(&parse(lines)), within) {
            panic!(
                "timed out after {within:?} (or the probe exited) waiting for {what}; lines so far: {:?}",
                parse(&out.lines())
            );
        }
        parse(&out.lines())
    }

    /// The first stderr line that contains `text`, as it comes; None if the
    /// probe exits or `timeout` passes first.
    pub fn wait_stderr(&self, text: &str, timeout: Duration) -> Option<String> {
        let err = self.stderr.as_ref().unwrap();
        let i = err.wait(0, &|l| l.contains(text), timeout)?;
        Some(err.line(i))
    }

    /// Waits until `n` stderr lines contain `text`, for up to `timeout` x
    /// `time_scale`: whether they came before the probe exited or the time
    /// was up.
    pub fn wait_stderr_count(&self, text: &str, n: usize, timeout: Duration) -> bool {
        let err = self.stderr.as_ref().unwrap();
        err.wait_all(
            &|lines| lines.iter().filter(|l| l.contains(text)).count() >= n,
            timeout * time_scale(),
        )
    }

    /// Waits up to `timeout` for the probe to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the exit (killing a probe that outlives `EXIT_WITHIN`, and
    /// failing the test), then returns (exit code, stdout lines, stderr text).
    fn finish(mut self) -> (Option<i32>, Vec<String>, String) {
        let within = EXIT_WITHIN * time_scale();
        let Some(status) = self.wait_exit(within) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let err = self.stderr.take().unwrap().finish().join("\n");
            panic!("probe still ran {within:?} after its signal; killed. stderr:\n{err}");
        };
        let out = self.stdout.take().unwrap().finish();
        let err = self.stderr.take().unwrap().finish();
        (status.code(), out, text(&err))
    }

    /// Sends `sig`, waits for exit, returns (exit code, JSON lines, stderr).
    pub fn stop(self, sig: i32) -> (Option<i32>, Vec<serde_json::Value>, String) {
        self.signal(sig);
        self.exited()
    }

    /// For a probe that has exited (or is about to) by itself: (exit code,
    /// JSON lines, stderr).
    pub fn exited(self) -> (Option<i32>, Vec<serde_json::Value>, String) {
        let (code, out, err) = self.finish();
        let lines: Vec<serde_json::Value> = out
            .iter()
            .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
            .collect();
        for line in &lines {
            assert_no_negatives(line);
        }
        (code, lines, err)
    }

    /// Sends `sig`, waits for exit, returns (exit code, stdout, stderr).
    pub fn stop_text(self, sig: i32) -> (Option<i32>, String, String) {
        self.signal(sig);
        let (code, out, err) = self.finish();
        (code, text(&out), err)
    }
}

/// Lines as the stream carried them, each ended by its newline.
fn text(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A killed probe cannot remove its ready file.
        let _ = std::fs::remove_file(&self.ready);
    }
}
