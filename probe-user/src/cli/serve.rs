//! `probe serve`: the probes of `watch`, published for Prometheus.

use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

use clap::Args;

use crate::{
    cli::watch::{self, WatchArgs},
    error::ProbeError,
    session::Period,
};

pub mod http;
#[cfg(test)]
pub(crate) mod pki;
pub mod web_config;

use http::{Server, State};
use web_config::WebConfig;

#[derive(Debug, Args)]
#[command(
    about = "Attach the probes and export them on /metrics for Prometheus",
    long_about = "Attach the probes (the same ones, with the same flags, as `probe watch`) and\n\
        serve the totals since attach in the Prometheus/OpenMetrics text format on\n\
        http://ADDR:PORT/metrics (https with --web-config). Every metric starts with\n\
        `rxprobe_`; names and labels are listed in the README. /healthz answers 200 while\n\
        the sampling loop runs (503 if it has stalled); /readyz answers 200 once every\n\
        probe is attached (503 before).\n\
        Nothing is printed per interval; the summary is printed on exit (--json for JSON).\n\n\
        The metrics describe the node's internals: by default only the node itself can\n\
        scrape them (127.0.0.1). To let Prometheus in, either keep 127.0.0.1 and put an\n\
        authenticating proxy in front (the shipped DaemonSet runs kube-rbac-proxy on the\n\
        node's IP, upstream http://127.0.0.1:9435/), or listen on the node's address with\n\
        --web-config: TLS, and client certificates, from a Prometheus exporter-toolkit\n\
        web-config file (the format of node-exporter's --web.config.file):\n\n\
        \x20 tls_server_config:\n\
        \x20   cert_file: server.crt       # relative paths: from the file's directory\n\
        \x20   key_file: server.key\n\
        \x20   client_auth_type: RequireAndVerifyClientCert   # or NoClientCert\n\
        \x20   client_ca_file: scrapers-ca.crt\n\n\
        Examples:\n  probe serve                                  # http://127.0.0.1:9435/metrics\n  \
        probe serve --listen 127.0.0.1:9435 --iface eth0 --vxlan-iface flannel.1 --latency\n  \
        probe serve --listen 0.0.0.0:9435 --web-config /etc/probe/web.yml   # HTTPS, client certs"
)]
pub struct ServeArgs {
    /// Address and port to serve /metrics, /healthz and /readyz on (port 1 to
    /// 65535). Anything but a loopback address exposes the node's internals to
    /// whoever can reach it: use --web-config or an authenticating proxy
    #[arg(long, value_name = "ADDR:PORT", default_value = "127.0.0.1:9435")]
    pub listen: SocketAddr,
    /// Serve HTTPS as this web-config file says (the Prometheus exporter-toolkit
    /// format; supported: tls_server_config with cert_file, key_file,
    /// client_auth_type NoClientCert or RequireAndVerifyClientCert, and
    /// client_ca_file)
    #[arg(long, value_name = "FILE")]
    pub web_config: Option<PathBuf>,
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
        watch::validate(&self.watch)?;
        self.tls().map(drop)
    }

    /// The TLS configuration of --web-config, read and checked (usage
    /// errors naming the file at fault); None without the flag.
    pub fn tls(&self) -> Result<Option<Arc<rustls::ServerConfig>>, ProbeError> {
        self.web_config
            .as_deref()
            .map(|path| WebConfig::read(path)?.server_config())
            .transpose()
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

pub fn run(args: ServeArgs) -> Result<(), ProbeError> {
    // Before listening: bad flags and a pod without the capabilities should
    // say so, not answer /healthz.
    args.validate()?;
    let stall_after = stall_after(args.watch.interval)?;
    crate::kernel::caps::check(&args.watch.requirements())?;
    let tls = args.tls()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let state = Arc::new(State::new(stall_after));
    let server = Server::start(args.listen, Arc::clone(&state), tls)?;
    if !args.watch.json {
        crate::notice::line(format_args!("serving {scheme}://{}/metrics", server.addr()));
    }
    let (_, summary) = crate::session::run(
        &args.watch.config()?,
        Period::SinceAttach,
        |_| {
            state.beat();
            state.ready.store(true, Ordering::Relaxed);
        },
        |report| {
            state.metrics.set(report.clone());
            state.beat();
            Ok(true)
        },
    )?;
    state.ready.store(false, Ordering::Relaxed);
    // Before the summary: nothing left listening, no thread left behind.
    server.shutdown();
    watch::emit(args.watch.json, &summary).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_after_is_three_intervals_but_at_least_5_s() {
        assert_eq!(stall_after(1.0).unwrap(), Duration::from_secs(5));
        assert_eq!(stall_after(86_400.0).unwrap(), Duration::from_secs(259_200));
        // Out of Duration's range: an error, not a panic.
        assert_eq!(stall_after(1e20).unwrap_err().exit_code(), 2);
        assert_eq!(stall_after(f64::INFINITY).unwrap_err().exit_code(), 2);
    }
}
