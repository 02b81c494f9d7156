//! The HTTP side of `probe serve`: /metrics, /healthz and /readyz, served by
//! hyper on a current-thread tokio runtime in a thread of its own, so the
//! sampling loop keeps the main thread and no thread pool is started. With a
//! TLS configuration (`--web-config`), every connection is TLS first (and,
//! if the configuration says so, presents a client certificate the CAs
//! vouch for); the three paths answer the same either way.
//!
//! Public for the scrape-load benchmark (`probe-bench serve`), which serves a
//! synthetic [`State`] with this same server.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header::CONTENT_TYPE, server::conn::http1, service::service_fn, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{net::TcpListener, sync::oneshot};
use tokio_rustls::TlsAcceptor;

use crate::{error::ProbeError, output::metrics::Shared};

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the HTTP thread answers from.
pub struct State {
    pub metrics: Shared,
    pub ready: AtomicBool,
    /// ms since `started` of the sampling loop's last report.
    heartbeat_ms: AtomicU64,
    started: Instant,
    /// Longest silence of the sampling loop that still counts as healthy.
    stall_after: Duration,
}

impl State {
    pub fn new(stall_after: Duration) -> Self {
        State {
            metrics: Shared::default(),
            ready: AtomicBool::new(false),
            heartbeat_ms: AtomicU64::new(0),
            started: Instant::now(),
            stall_after,
        }
    }

    /// The sampling loop is alive now.
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
    }
}

/// The running server. Shut down, its thread joined, by `shutdown` or on drop.
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0: one the kernel picks) and serves `state` on it:
    /// over TLS with `tls`, plain HTTP without.
    pub fn start(
        addr: SocketAddr,
        state: Arc<State>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Result<Server, ProbeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| ProbeError::Runtime(format!("cannot start the HTTP runtime: {e}")))?;
        let cannot_listen = |e| ProbeError::Runtime(format!("cannot listen on {addr}: {e}"));
        let std_listener = std::net::TcpListener::bind(addr).map_err(cannot_listen)?;
        let addr = std_listener.local_addr().map_err(cannot_listen)?;
        std_listener.set_nonblocking(true).map_err(cannot_listen)?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(std_listener).map_err(cannot_listen)?
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(accept(listener, state, tls.map(TlsAcceptor::from)));
                    let _ = stopped.await;
                });
                // Dropping the runtime drops the listener and every connection.
            })
            .map_err(|e| ProbeError::Runtime(format!("cannot start the HTTP thread: {e}")))?;
        Ok(Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, closes the connections and joins the thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Serves each accepted connection in a task of its own (the TLS handshake
/// too, so a slow client holds up nobody else).
async fn accept(listener: TcpListener, state: Arc<State>, tls: Option<TlsAcceptor>) {
    let mut http = http1::Builder::new();
    // The timer enables hyper's header read timeout (30 s) on slow clients.
    http.timer(TokioTimer::new());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // E.g. EMFILE: wait for a descriptor instead of spinning.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (state, http, tls) = (Arc::clone(&state), http.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve(&http, stream, state).await,
                Some(tls) => {
                    // A failed handshake (no certificate, one no CA vouches
                    // for, plain HTTP, too slow) closes the connection:
                    // nothing is answered.
                    if let Ok(Ok(stream)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await
                    {
                        serve(&http, stream, state).await;
                    }
                }
            }
        });
    }
}

/// Answers the requests of one connection until it closes.
async fn serve<S>(http: &http1::Builder, stream: S, state: Arc<State>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn = http.serve_connection(
        TokioIo::new(stream),
        service_fn(move |request| {
            let (status, content_type, body) = answer(&state, request.uri().path());
            let response = Response::builder()
                .status(status)
                .header(CONTENT_TYPE, content_type)
                .body(Full::new(body));
            async move { Ok::<_, Infallible>(response.expect("a valid response")) }
        }),
    );
    let _ = conn.await;
}

/// (status, content type, body) for a request of `path`, whatever the method.
fn answer(state: &State, path: &str) -> (StatusCode, &'static str, Bytes) {
    const TEXT: &str = "text/plain; charset=utf-8";
    match path {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics.render().into(),
        ),
        "/readyz" if state.ready.load(Ordering::Relaxed) => {
            (StatusCode::OK, TEXT, Bytes::from_static(b"ready\n"))
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            Bytes::from_static(b"not ready: probes are not attached\n"),
        ),
        "/healthz" => {
            let last = Duration::from_millis(state.heartbeat_ms.load(Ordering::Relaxed));
            let silent = state.started.elapsed().saturating_sub(last);
            if silent <= state.stall_after {
                (StatusCode::OK, TEXT, Bytes::from_static(b"ok\n"))
            } else {
                let body = format!("stalled: no sample for {:.1} s\n", silent.as_secs_f64());
                (StatusCode::SERVICE_UNAVAILABLE, TEXT, body.into())
            }
        }
        _ => (
            StatusCode::NOT_FOUND,
            TEXT,
            Bytes::from_static(b"not found; this server has /metrics, /healthz and /readyz\n"),
        ),
    }
}

#[cfg(test)]
mod tests;
