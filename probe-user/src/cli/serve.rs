//! `probe serve`: the probes of `watch`, published for Prometheus.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use clap::Args;

use crate::{
    cli::watch::{self, WatchArgs},
    error::ProbeError,
    metrics::Shared,
    session::Period,
};

#[derive(Debug, Args)]
#[command(
    about = "Attach the probes and export them on /metrics for Prometheus",
    long_about = "Attach the probes (the same ones, with the same flags, as `probe watch`) and\n\
        serve the totals since attach in the Prometheus/OpenMetrics text format on\n\
        http://ADDR:PORT/metrics. Every metric starts with `rxprobe_`; names and labels are\n\
        listed in the README. /healthz answers 200 while the sampling loop runs (503 if it\n\
        has stalled); /readyz answers 200 once every probe is attached (503 before).\n\
        Nothing is printed per interval; the summary is printed on exit (--json for JSON).\n\n\
        Examples:\n  probe serve --listen 0.0.0.0:9435\n  \
        probe serve --listen 127.0.0.1:9435 --iface eth0 --vxlan-iface flannel.1 --latency"
)]
pub struct ServeArgs {
    /// Address and port to serve /metrics, /healthz and /readyz on (port 1 to 65535)
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:9435")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub watch: WatchArgs,
}

impl ServeArgs {
    /// The flags' values, checked before listening or attaching (usage
    /// errors, exit status 2).
    pub fn validate(&self) -> Result<(), ProbeError> {
        if self.listen.port() == 0 {
            // Port 0 binds wherever the kernel picks: nothing could scrape it.
            return Err(ProbeError::Usage(format!(
                "--listen {}: port 0 is not a port to scrape; give a port from 1 to 65535",
                self.listen
            )));
        }
        watch::validate(&self.watch)
    }
}

/// Longest silence of the sampling loop that /healthz still calls healthy:
/// three missed intervals, and never less than 5 s (attach and the first
/// sample can take a while on a busy node).
fn stall_after(interval_s: f64) -> Result<Duration, ProbeError> {
    let s = (interval_s * 3.0).max(5.0);
    Duration::try_from_secs_f64(s).map_err(|_| {
        ProbeError::Usage(format!(
            "--interval {interval_s}: give {}",
            crate::cli::INTERVAL.expected
        ))
    })
}

/// What the HTTP thread answers from.
struct State {
    metrics: Shared,
    ready: AtomicBool,
    /// ms since `started` of the sampling loop's last report.
    heartbeat_ms: AtomicU64,
    started: Instant,
    /// Longest silence of the sampling loop that still counts as healthy.
    stall_after: Duration,
}

pub fn run(args: ServeArgs) -> Result<(), ProbeError> {
    // Before listening: bad flags and a pod without the capabilities should
    // say so, not answer /healthz.
    args.validate()?;
    let stall_after = stall_after(args.watch.interval)?;
    crate::caps::check(&args.watch.requirements())?;
    let server = tiny_http::Server::http(args.listen)
        .map_err(|e| ProbeError::Runtime(format!("cannot listen on {}: {e}", args.listen)))?;
    let state = Arc::new(State {
        metrics: Shared::default(),
        ready: AtomicBool::new(false),
        heartbeat_ms: AtomicU64::new(0),
        started: Instant::now(),
        stall_after,
    });
    let http_state = Arc::clone(&state);
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (status, content_type, body) = answer(&http_state, request.url());
                let header =
                    tiny_http::Header::from_bytes(&b"Content-Type"[..], content_type.as_bytes())
                        .expect("a valid header");
                let _ = request.respond(
                    tiny_http::Response::from_string(body)
                        .with_status_code(status)
                        .with_header(header),
                );
            }
        })
        .map_err(|e| ProbeError::Runtime(format!("cannot start the HTTP thread: {e}")))?;
    if !args.watch.json {
        eprintln!("probe: serving http://{}/metrics", args.listen);
    }
    let beat = |state: &State| {
        state.heartbeat_ms.store(
            state.started.elapsed().as_millis() as u64,
            Ordering::Relaxed,
        )
    };
    let (_, summary) = crate::session::run(
        &args.watch.config()?,
        Period::SinceAttach,
        |_| {
            beat(&state);
            state.ready.store(true, Ordering::Relaxed);
        },
        |report| {
            *state.metrics.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(report.clone());
            beat(&state);
            Ok(true)
        },
    )?;
    state.ready.store(false, Ordering::Relaxed);
    watch::emit(args.watch.json, &summary).map(drop)
}

/// (status, content type, body) for a GET of `url`.
fn answer(state: &State, url: &str) -> (u16, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = url.split('?').next().unwrap_or(url);
    match path {
        "/metrics" => (
            200,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render(),
        ),
        "/readyz" if state.ready.load(Ordering::Relaxed) => (200, TEXT, "ready\n".into()),
        "/readyz" => (503, TEXT, "not ready: probes are not attached\n".into()),
        "/healthz" => {
            let last = Duration::from_millis(state.heartbeat_ms.load(Ordering::Relaxed));
            let silent = state.started.elapsed().saturating_sub(last);
            if silent <= state.stall_after {
                (200, TEXT, "ok\n".into())
            } else {
                (
                    503,
                    TEXT,
                    format!("stalled: no sample for {:.1} s\n", silent.as_secs_f64()),
                )
            }
        }
        _ => (
            404,
            TEXT,
            "not found; this server has /metrics, /healthz and /readyz\n".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ready: bool) -> State {
        State {
            metrics: Shared::default(),
            ready: AtomicBool::new(ready),
            heartbeat_ms: AtomicU64::new(0),
            started: Instant::now(),
            stall_after: Duration::from_millis(200),
        }
    }

    #[test]
    fn stall_after_is_three_intervals_but_at_least_5_s() {
        assert_eq!(stall_after(1.0).unwrap(), Duration::from_secs(5));
        assert_eq!(stall_after(86_400.0).unwrap(), Duration::from_secs(259_200));
        // Out of Duration's range: an error, not a panic.
        assert_eq!(stall_after(1e20).unwrap_err().exit_code(), 2);
        assert_eq!(stall_after(f64::INFINITY).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn readiness_follows_attach() {
        assert_eq!(answer(&state(false), "/readyz").0, 503);
        assert_eq!(answer(&state(true), "/readyz").0, 200);
    }

    #[test]
    fn health_fails_when_sampling_stalls() {
        let s = state(true);
        assert_eq!(answer(&s, "/healthz").0, 200);
        std::thread::sleep(Duration::from_millis(300));
        let (status, _, body) = answer(&s, "/healthz");
        assert_eq!(status, 503, "{body}");
        assert!(body.starts_with("stalled"), "{body}");
    }

    #[test]
    fn metrics_and_unknown_paths() {
        let s = state(true);
        let (status, ctype, body) = answer(&s, "/metrics?x=1");
        assert_eq!(status, 200);
        assert!(ctype.starts_with("application/openmetrics-text"));
        assert!(body.ends_with("# EOF\n"), "{body}");
        assert_eq!(answer(&s, "/").0, 404);
    }
}
