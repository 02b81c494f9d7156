//! `cargo xtask lab up|down [--prefix P] [--with-prometheus]`: the lab, kept
//! for your own experiments. With `--with-prometheus`, `probe serve` runs on
//! each node (127.0.0.1:9435 for node 1, :9436 for node 2) and a Prometheus
//! on 127.0.0.1:9090 scrapes both every second with the repository's rules,
//! all detached. Their PIDs (with each one's start time, so a reused PID is
//! never signalled) and Prometheus' directory go to
//! `target/lab-PREFIX/state.json`; `lab down` stops exactly those processes,
//! removes that directory, then the namespaces.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use probe_lab::{
    prometheus::{Config, Prometheus, Target},
    Lab,
};
use serde_json::{json, Value};

/// `probe serve` of node N listens on 127.0.0.1:(FIRST_PROBE_PORT + N - 1).
const FIRST_PROBE_PORT: u16 = 9435;
const PROMETHEUS_PORT: u16 = 9090;

/// The workspace's target directory ($CARGO_TARGET_DIR, else ./target).
fn target_dir() -> PathBuf {
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir), // an absolute path replaces the root
        None => root.join("target"),
    }
}

fn state_dir(prefix: &str) -> PathBuf {
    target_dir().join(format!("lab-{prefix}"))
}

pub fn up(prefix: &str, with_prometheus: bool, backend: probe_lab::Backend) -> Result<()> {
    // What an earlier `lab up` of this prefix left running goes first: the
    // namespaces are about to be rebuilt under it.
    stop_recorded(prefix)?;
    let probe = if with_prometheus {
        let status = crate::cargo()
            .args(["build", "--quiet", "-p", "probe-user", "--bin", "probe"])
            .status()?;
        if !status.success() {
            bail!("building probe failed");
        }
        Some(target_dir().join("debug/probe"))
    } else {
        None
    };
    let lab = Lab::up_with(prefix, backend).map_err(anyhow::Error::msg)?;
    println!(
        "lab up ({} backend): namespaces {}",
        backend.name(),
        lab.namespaces().join(" ")
    );
    let Some(probe) = probe else {
        println!("try: probe watch --netns {prefix}-n2");
        lab.keep();
        return Ok(());
    };
    // On failure, `lab` is dropped (namespaces deleted) and `started` killed.
    let mut started = Started(Vec::new());
    let dir = state_dir(prefix);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut targets = Vec::new();
    for node in &lab.nodes {
        let port = port_or_free(FIRST_PROBE_PORT + u16::from(node.index) - 1)?;
        let addr = format!("127.0.0.1:{port}");
        let child = start_probe(&probe, node, &addr, &dir)?;
        started
            .0
            .push((format!("probe serve ({})", node.netns), child));
        println!(
            "probe serve on {}: http://{addr}/metrics (log and summary: {})",
            node.netns,
            dir.join(format!("probe-{}.log", node.netns)).display()
        );
        targets.push(Target {
            node: node.netns.clone(),
            addr: addr.parse()?,
        });
    }
    let mut config = Config::new(targets);
    config.port = port_or_free(PROMETHEUS_PORT)?;
    let prometheus = Prometheus::start(&config).map_err(anyhow::Error::msg)?;
    prometheus
        .wait_for_scrapes(1, Duration::from_secs(15))
        .map_err(anyhow::Error::msg)?;
    let url = prometheus.url();
    let (pid, data) = prometheus.detach();
    let mut processes: Vec<Value> = started
        .0
        .drain(..)
        .map(|(what, child)| json!({"what": what, "pid": child.id(), "start": start_time(child.id())}))
        .collect();
    processes.push(json!({"what": "prometheus", "pid": pid, "start": start_time(pid)}));
    let state = json!({"prefix": prefix, "processes": processes, "dirs": [data]});
    if let Err(e) = std::fs::write(
        dir.join("state.json"),
        serde_json::to_string_pretty(&state)?,
    ) {
        // Without the record `lab down` could not stop them: stop them now.
        for p in &processes {
            if let Some(pid) = p["pid"].as_u64() {
                // SAFETY: processes this run started, by PID.
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        return Err(e).context("writing the lab's state.json (its processes were stopped)");
    }
    lab.keep();
    println!(
        "prometheus: {url} (job rxprobe, scrape and rules every 1 s, rules from deploy/prometheus/rules.yaml; data in {})",
        data.display()
    );
    println!("try: curl -s '{url}/api/v1/query?query=rxprobe:drop_segments:rate5m'");
    println!("grafana: import deploy/grafana/probe.json, with a Prometheus data source at {url}");
    println!("stop: cargo xtask lab down --prefix {prefix}");
    Ok(())
}

pub fn down(prefix: &str) -> Result<()> {
    stop_recorded(prefix)?;
    probe_lab::sweep(prefix).map_err(anyhow::Error::msg)?;
    println!("lab {prefix} down");
    Ok(())
}

/// Children started so far; killed if `up` fails before handing them over.
struct Started(Vec<(String, Child)>);

impl Drop for Started {
    fn drop(&mut self) {
        for (_, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `probe serve` on `node`, as the lab tests run it: in the host's namespace
/// with `--netns`, drops counted in the node's own namespaces (its pods
/// included), `--latency` for the softirq and NAPI rows. Waits until attached.
fn start_probe(probe: &Path, node: &probe_lab::Node, addr: &str, dir: &Path) -> Result<Child> {
    let ready = dir.join(format!("probe-{}.ready", node.netns));
    let _ = std::fs::remove_file(&ready);
    let log_path = dir.join(format!("probe-{}.log", node.netns));
    let log = std::fs::File::create(&log_path)?;
    let mut cmd = Command::new(probe);
    cmd.args(["serve", "--listen", addr, "--netns", &node.netns])
        .args(["--interval", "1", "--latency"])
        .arg("--ready-file")
        .arg(&ready);
    for ns in std::iter::once(&node.netns).chain(node.pods.iter().map(|p| &p.netns)) {
        cmd.args(["--drop-netns", ns]);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // Its own process group: a Ctrl-C in this terminal later does not stop it.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", probe.display()))?;
    crate::demo::wait_attached(
        &mut child,
        &ready,
        &format!("probe serve on {}", node.netns),
        || std::fs::read_to_string(&log_path).unwrap_or_default(),
    )?;
    Ok(child)
}

/// `preferred` if it is free on 127.0.0.1, else a free port (said on stderr).
fn port_or_free(preferred: u16) -> Result<u16> {
    if std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok() {
        return Ok(preferred);
    }
    let port = probe_lab::prometheus::free_port().map_err(anyhow::Error::msg)?;
    eprintln!("lab: 127.0.0.1:{preferred} is taken; using {port}");
    Ok(port)
}

/// Field 22 of /proc/PID/stat (start time in clock ticks since boot), which
/// tells a process from a later one that got the same PID; None if gone.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // After the command name's closing parenthesis: field 3 onwards.
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    fields.get(19)?.parse().ok()
}

/// Whether `pid` is gone or a zombie (exited, not reaped yet).
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .is_some_and(|at| stat[at + 2..].starts_with('Z')),
        Err(_) => true,
    }
}

/// Stops the processes `lab up --with-prometheus` recorded for `prefix`
/// (SIGTERM, SIGKILL after 10 s) and removes Prometheus' directory and the
/// state file; the probes' logs stay. Nothing recorded: nothing to do.
fn stop_recorded(prefix: &str) -> Result<()> {
    let file = state_dir(prefix).join("state.json");
    let Ok(text) = std::fs::read_to_string(&file) else {
        return Ok(());
    };
    let state: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    for p in state["processes"].as_array().into_iter().flatten() {
        let (Some(pid), what) = (p["pid"].as_u64(), p["what"].as_str().unwrap_or("?")) else {
            continue;
        };
        let pid = pid as u32;
        if p["start"].as_u64().is_none() || start_time(pid) != p["start"].as_u64() {
            println!(
                "{what} (pid {pid}) no longer runs (or the PID is another process now): left alone"
            );
            continue;
        }
        // SAFETY: kill(2) on a PID this task started (same start time).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        let start = Instant::now();
        while !exited(pid) && start.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !exited(pid) {
            // SAFETY: as above.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        println!("stopped {what} (pid {pid})");
    }
    for dir in state["dirs"].as_array().into_iter().flatten() {
        if let Some(dir) = dir.as_str().filter(|d| !d.is_empty()) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    std::fs::remove_file(&file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_is_known_by_its_start_time_until_it_exits() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert!(!exited(me));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(exited(pid) && start_time(pid).is_none());
    }

    #[test]
    fn down_stops_exactly_the_recorded_processes_and_removes_the_directory() {
        let prefix = format!("xtasktest{}", std::process::id());
        let dir = state_dir(&prefix);
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("prometheus-data");
        std::fs::create_dir_all(&data).unwrap();
        let mut recorded = Command::new("sleep").arg("60").spawn().unwrap();
        let mut other = Command::new("sleep").arg("60").spawn().unwrap();
        let pid = recorded.id();
        let state = json!({
            "prefix": prefix,
            "processes": [
                {"what": "recorded", "pid": pid, "start": start_time(pid)},
                // The other sleep's PID with a start time it does not have:
                // a PID reused since, never signalled.
                {"what": "reused", "pid": other.id(), "start": 1},
            ],
            "dirs": [data],
        });
        std::fs::write(dir.join("state.json"), state.to_string()).unwrap();
        stop_recorded(&prefix).unwrap();
        assert!(
            recorded.try_wait().unwrap().is_some(),
            "the recorded process runs"
        );
        assert!(
            other.try_wait().unwrap().is_none(),
            "an unrecorded process was stopped"
        );
        assert!(!data.exists() && !dir.join("state.json").exists());
        // Nothing recorded any more: nothing to do.
        stop_recorded(&prefix).unwrap();
        other.kill().unwrap();
        other.wait().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
