//! A real Prometheus scraping `probe serve` on the lab's nodes, for tests and
//! for `cargo xtask lab up --with-prometheus`.
//!
//! [`Prometheus::start`] writes a configuration (one scrape job, `rxprobe`, as
//! the rules in `deploy/prometheus/rules.yaml` expect, with a static target per
//! node on loopback), starts Debian's `prometheus` binary as a child with its
//! storage in a fresh temporary directory, and waits for `/-/ready`.
//! [`Prometheus::query`] evaluates PromQL through the HTTP API. Dropping the
//! handle kills that child (by its PID, nothing else) and removes the
//! directory, unless [`Prometheus::detach`] handed both over.
//!
//! Each target carries the labels a DaemonSet's relabelling would give it:
//! `instance` and `node` are the node's name (the rules aggregate `by
//! (instance)`: one series per node).
//!
//! The HTTP client is minimal on purpose: one HTTP/1.0 GET per connection on
//! 127.0.0.1 (no keep-alive, no chunked bodies), JSON through serde_json.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

/// Where Debian's `prometheus` package puts the server.
pub const DEFAULT_BIN: &str = "/usr/bin/prometheus";
/// Overrides [`DEFAULT_BIN`] (a Prometheus built elsewhere).
pub const BIN_ENV: &str = "PROMETHEUS_BIN";
/// The scrape job's name: the rules' `up{job="rxprobe"}` alert uses it.
pub const JOB: &str = "rxprobe";

/// The rules shipped in deploy/ (recording rules and alerts).
pub fn repo_rules() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/prometheus/rules.yaml"
    ))
}

/// The `prometheus` binary: `$PROMETHEUS_BIN`, else /usr/bin/prometheus, else
/// the first one on PATH; an error that says how to install it otherwise.
pub fn binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(BIN_ENV) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{BIN_ENV}={}: no such file", path.display()))
        };
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|dir| dir.join("prometheus"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::iter::once(PathBuf::from(DEFAULT_BIN))
        .chain(on_path)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "prometheus not found ({DEFAULT_BIN}, PATH): `cargo xtask setup` installs \
                 Debian's prometheus package (or `apt-get install prometheus`; {BIN_ENV} \
                 names another binary)"
            )
        })
}

/// One node's `probe serve`.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node's name: the target's `instance` and `node` labels.
    pub node: String,
    /// Where its /metrics is (`--listen`).
    pub addr: SocketAddr,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<Target>,
    /// Rule files to load (absolute paths); [`repo_rules`] by default.
    pub rule_files: Vec<PathBuf>,
    /// Scrape and rule evaluation interval.
    pub interval: Duration,
    /// Port on 127.0.0.1 for the web UI and API; 0 picks a free one.
    pub port: u16,
}

impl Config {
    /// `targets` scraped every second, with the repository's rules, on a free port.
    pub fn new(targets: Vec<Target>) -> Config {
        Config {
            targets,
            rule_files: vec![repo_rules()],
            interval: Duration::from_secs(1),
            port: 0,
        }
    }

    /// The configuration file. JSON is YAML, so every string is quoted the
    /// way both parsers read it.
    pub fn render(&self) -> String {
        let every = format!("{}ms", self.interval.as_millis().max(1));
        let targets: Vec<Value> = self
            .targets
            .iter()
            .map(|t| {
                json!({
                    "targets": [t.addr.to_string()],
                    "labels": {"instance": t.node, "node": t.node},
                })
            })
            .collect();
        let config = json!({
            "global": {
                "scrape_interval": every,
                "scrape_timeout": every,
                "evaluation_interval": every,
            },
            "rule_files": self.rule_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "scrape_configs": [{
                "job_name": JOB,
                "metrics_path": "/metrics",
                "static_configs": targets,
            }],
        });
        serde_json::to_string_pretty(&config).expect("a JSON value serialises")
    }
}

/// One sample of an instant query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series' labels (`__name__` included where the result keeps it).
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or "" (as PromQL treats a missing label).
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// A running Prometheus. Dropping it kills the process and removes its directory.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    targets: Vec<Target>,
}

/// A free TCP port on loopback (bound, read, released).
pub fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on 127.0.0.1: {e}"))
}

fn temp_dir() -> Result<PathBuf, String> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("probe-prometheus-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    Ok(dir)
}

impl Prometheus {
    /// Writes the configuration, starts Prometheus and waits (up to 30 s)
    /// until it answers /-/ready.
    pub fn start(config: &Config) -> Result<Prometheus, String> {
        let bin = binary()?;
        let port = match config.port {
            0 => free_port()?,
            p => p,
        };
        let dir = temp_dir()?;
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config.render())
            .map_err(|e| format!("writing {}: {e}", file.display()))?;
        let log = std::fs::File::create(dir.join("prometheus.log"))
            .map_err(|e| format!("creating the log file in {}: {e}", dir.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        // Its own process group: a Ctrl-C meant for the caller's foreground
        // job does not reach a Prometheus that `lab up` leaves running.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(format!("starting {}: {e}", bin.display()));
            }
        };
        let mut p = Prometheus {
            child: Some(child),
            dir,
            port,
            targets: config.targets.clone(),
        };
        p.wait_ready(Duration::from_secs(30))?;
        Ok(p)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if let Some(child) = &mut self.child {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "prometheus exited ({status}) before it was ready:\n{}",
                        self.log()
                    ));
                }
            }
            if matches!(self.get("/-/ready"), Ok((200, _))) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "prometheus not ready on {} within {timeout:?}:\n{}",
                    self.url(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// http://127.0.0.1:PORT
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory: configuration, log and TSDB.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id (None once detached).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What Prometheus logged so far (its stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Leaves Prometheus running after this handle is gone: returns its PID
    /// and directory, which the caller now owns (`cargo xtask lab down`
    /// stops the PID and removes the directory).
    // Not waited for on purpose: it outlives this process (whose exit hands
    // it to init, which reaps it).
    #[allow(clippy::zombie_processes)]
    pub fn detach(mut self) -> (u32, PathBuf) {
        let child = self.child.take().expect("not detached yet");
        (child.id(), std::mem::take(&mut self.dir))
    }

    /// GET `path_and_query` on the server: (status, body).
    pub fn get(&self, path_and_query: &str) -> Result<(u16, String), String> {
        http_get(self.port, path_and_query)
    }

    /// GET an API path and return its `data`; an API error (`status:
    /// "error"`) is an error naming its type and message.
    pub fn api(&self, path_and_query: &str) -> Result<Value, String> {
        let (code, body) = self.get(path_and_query)?;
        let v: Value = serde_json::from_str(&body)
            .map_err(|e| format!("GET {path_and_query}: HTTP {code}, not JSON ({e}): {body}"))?;
        if v["status"] != "success" {
            return Err(format!(
                "GET {path_and_query}: HTTP {code}, {}: {}",
                v["errorType"].as_str().unwrap_or("error"),
                v["error"].as_str().unwrap_or(&body)
            ));
        }
        Ok(v["data"].clone())
    }

    /// Evaluates `expr` now (an instant query). A vector result gives one
    /// sample per series; a scalar one sample without labels. A parse or
    /// evaluation error is an error.
    pub fn query(&self, expr: &str) -> Result<Vec<Sample>, String> {
        let data = self
            .api(&format!("/api/v1/query?query={}", encode(expr)))
            .map_err(|e| format!("query {expr:?}: {e}"))?;
        let value = |pair: &Value| -> Result<f64, String> {
            pair[1]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("query {expr:?}: not a [time, \"value\"] pair: {pair}"))
        };
        match data["resultType"].as_str() {
            Some("vector") => data["result"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    let labels = r["metric"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                    Ok(Sample {
                        labels,
                        value: value(&r["value"])?,
                    })
                })
                .collect(),
            Some("scalar") => Ok(vec![Sample {
                labels: BTreeMap::new(),
                value: value(&data["result"])?,
            }]),
            other => Err(format!(
                "query {expr:?}: result type {other:?}; give an instant vector or scalar"
            )),
        }
    }

    /// The one sample `expr` returns; an error for none or several.
    pub fn query_one(&self, expr: &str) -> Result<f64, String> {
        match self.query(expr)?.as_slice() {
            [s] => Ok(s.value),
            other => Err(format!(
                "query {expr:?}: {} series, expected one: {other:?}",
                other.len()
            )),
        }
    }

    /// Scrapes stored so far per target (`instance`), from the `up` series.
    pub fn scrapes(&self) -> Result<BTreeMap<String, u64>, String> {
        Ok(self
            .query(&format!(r#"count_over_time(up{{job="{JOB}"}}[1h])"#))?
            .into_iter()
            .map(|s| (s.label("instance").to_string(), s.value as u64))
            .collect())
    }

    /// Waits until every target has been scraped `n` more times than when
    /// called (so the last of them started after the call), and the last
    /// scrape of each succeeded (`up` 1). Gives up after `timeout`.
    pub fn wait_for_scrapes(&self, n: u64, timeout: Duration) -> Result<(), String> {
        let start = Instant::now();
        let before = self.scrapes()?;
        loop {
            let now = self.scrapes()?;
            let done = self.targets.iter().all(|t| {
                now.get(&t.node).copied().unwrap_or(0)
                    >= before.get(&t.node).copied().unwrap_or(0) + n
            });
            if done {
                break;
            }
            if start.elapsed() > timeout {
                return Err(format!(
                    "not {n} more scrapes of every target within {timeout:?}: before {before:?}, now {now:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let down: Vec<String> = self
            .query(&format!(r#"up{{job="{JOB}"}} != 1"#))?
            .iter()
            .map(|s| s.label("instance").to_string())
            .collect();
        if !down.is_empty() {
            let targets = self.api("/api/v1/targets").unwrap_or_default();
            return Err(format!(
                "targets down: {down:?}; /api/v1/targets: {targets}"
            ));
        }
        Ok(())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Percent-encodes a query parameter (everything but RFC 3986's unreserved
/// characters).
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// GET http://127.0.0.1:PORT/PATH: (status, body). HTTP/1.0, so the server
/// closes the connection after a body that is not chunked.
pub fn http_get(port: u16, path_and_query: &str) -> Result<(u16, String), String> {
    let fail = |e: std::io::Error| format!("GET 127.0.0.1:{port}{path_and_query}: {e}");
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(fail)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(fail)?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n\r\n"
    )
    .map_err(fail)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(fail)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path_and_query}: not an HTTP response: {text}"))?;
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {path_and_query}: no status in {head:?}"))?;
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_promql_for_a_query_string() {
        assert_eq!(
            encode(r#"sum by (le) (rate(x{a=~"b|c"}[1m]))"#),
            "sum%20by%20%28le%29%20%28rate%28x%7Ba%3D~%22b%7Cc%22%7D%5B1m%5D%29%29"
        );
    }

    #[test]
    fn the_config_names_the_job_labels_and_rules() {
        let mut c = Config::new(vec![Target {
            node: "plab-n1".into(),
            addr: "127.0.0.1:9435".parse().unwrap(),
        }]);
        c.interval = Duration::from_millis(500);
        let v: Value = serde_json::from_str(&c.render()).unwrap();
        assert_eq!(v["global"]["scrape_interval"], "500ms");
        assert_eq!(v["global"]["evaluation_interval"], "500ms");
        let job = &v["scrape_configs"][0];
        assert_eq!(job["job_name"], "rxprobe");
        assert_eq!(job["static_configs"][0]["targets"][0], "127.0.0.1:9435");
        assert_eq!(job["static_configs"][0]["labels"]["instance"], "plab-n1");
        assert_eq!(job["static_configs"][0]["labels"]["node"], "plab-n1");
        assert!(v["rule_files"][0]
            .as_str()
            .unwrap()
            .ends_with("deploy/prometheus/rules.yaml"));
    }
}
