//! Part 7: scrape load on `probe serve`'s HTTP server. The server code of
//! `probe serve` (its hyper server on a current-thread runtime), in this
//! process, serves a synthetic node of 64 CPUs with `--latency` output and
//! 1,000 distinct dropped flows (probe_user::output::metrics::synthetic); 50 scrapers,
//! each on its own keep-alive connection as Prometheus keeps them, GET
//! /metrics back to back for the whole run: a worst case, every scrape
//! queued behind the others'. Prints scrapes, latency percentiles, response
//! size, series against the bound, and the process's RSS. No privilege, no
//! namespace: 127.0.0.1 only.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use probe_user::{
    cli::serve::http::{Server, State},
    output::metrics::{max_series, series, synthetic, NodeShape},
};

const SCRAPERS: usize = 50;
const FLOWS: usize = 1000;
const SHAPE: NodeShape = NodeShape {
    cpus: 64,
    vxlan_devs: 1,
    nic_queues: 64,
    nic_queue_counters: 64,
    napi_instances: 4,
};

/// (VmRSS, VmHWM) of this process, KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One scrape on a kept-alive connection: the body's length. The body is
/// read through a small buffer and dropped (kept only when `keep`), so the
/// scrapers add little to the RSS measured.
fn scrape(reader: &mut BufReader<TcpStream>, keep: Option<&mut Vec<u8>>) -> std::io::Result<usize> {
    reader
        .get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("HTTP/1.1 200 ") {
        return Err(std::io::Error::other(format!("status {line:?}")));
    }
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            }
        }
    }
    let length = length.ok_or_else(|| std::io::Error::other("no content-length"))?;
    let mut body = reader.by_ref().take(length as u64);
    match keep {
        Some(out) => {
            out.clear();
            body.read_to_end(out)?;
        }
        None => {
            std::io::copy(&mut body, &mut std::io::sink())?;
        }
    }
    Ok(length)
}

/// One scraper: latencies of every scrape until `until`.
fn scraper(addr: SocketAddr, until: Instant) -> Vec<Duration> {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut latencies = Vec::new();
    while Instant::now() < until {
        let start = Instant::now();
        scrape(&mut reader, None).expect("scrape");
        latencies.push(start.elapsed());
    }
    latencies
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// Runs the load for `duration`; true if every scrape succeeded and the
/// series stayed within the bound.
pub fn run(duration: Duration) -> bool {
    println!(
        "\n== serve: {SCRAPERS} scrapers for {:.0} s on a synthetic node ({} CPUs, {FLOWS} flows, --latency) ==",
        duration.as_secs_f64(),
        SHAPE.cpus
    );
    let (rss0, hwm0) = rss_kib();
    let state = Arc::new(State::new(Duration::from_secs(3600)));
    state.metrics.set(synthetic::report(&SHAPE, FLOWS));
    state.ready.store(true, Ordering::Relaxed);
    state.beat();
    let server = Server::start("127.0.0.1:0".parse().unwrap(), Arc::clone(&state), None)
        .expect("start the server");
    let addr = server.addr();

    // One scrape alone: the response, its series, the render's cost.
    let mut body = Vec::new();
    let stream = TcpStream::connect(addr).unwrap();
    let mut reader = BufReader::new(stream);
    let start = Instant::now();
    let bytes = scrape(&mut reader, Some(&mut body)).expect("first scrape");
    let alone = start.elapsed();
    drop(reader);
    let text = String::from_utf8(body).expect("UTF-8");
    let (n, bound) = (series(&text), max_series(&SHAPE));
    drop(text);
    let (rss1, hwm1) = rss_kib();

    let until = Instant::now() + duration;
    let started = Instant::now();
    let threads: Vec<_> = (0..SCRAPERS)
        .map(|_| std::thread::spawn(move || scraper(addr, until)))
        .collect();
    let mut all: Vec<Duration> = Vec::new();
    let mut ok = true;
    for t in threads {
        match t.join() {
            Ok(l) => all.extend(l),
            Err(_) => ok = false,
        }
    }
    let elapsed = started.elapsed();
    let (rss2, hwm2) = rss_kib();
    server.shutdown();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p).ceil() as usize).clamp(1, all.len()) - 1];

    println!("one scrape alone:  {} ({bytes} B body)", ms(alone));
    println!(
        "scrapes:           {} in {:.1} s ({:.1} scrapes/s, {SCRAPERS} connections)",
        all.len(),
        elapsed.as_secs_f64(),
        all.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency:           p50 {}, p99 {}, max {}",
        ms(pct(0.50)),
        ms(pct(0.99)),
        ms(*all.last().unwrap())
    );
    println!("response:          {bytes} B, {n} series (bound for this node: {bound})");
    println!(
        "RSS (VmRSS/VmHWM): before {} / {}; serving, before load {} / {}; after load {} / {}",
        mib(rss0),
        mib(hwm0),
        mib(rss1),
        mib(hwm1),
        mib(rss2),
        mib(hwm2)
    );
    if n > bound {
        println!("MISSED: {n} series > bound {bound}");
        ok = false;
    }
    ok
}
