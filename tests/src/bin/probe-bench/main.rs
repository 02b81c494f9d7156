//! `cargo xtask bench`: the cost of the probe, measured.
//! - BPF_PROG_TEST_RUN ns/packet over an empty program (testrun.rs).
//! - A lab flood with no probe / probe watch / bpftrace, the probe's CPU,
//!   RSS, attach and detach time, and per-program kernel time (flood.rs).
//! - The traffic users send (iperf3 UDP flood and TCP, 4 streams) with and
//!   without the probe, and each hook's kernel ns per run next to an empty
//!   program at the same hook (traffic.rs).
//! - A 10-minute soak of `probe serve` under traffic: RSS stays flat (soak.rs).
//! - Scrape load: 50 scrapers on `probe serve`'s HTTP server, serving a
//!   synthetic 64-CPU node, for 60 s: latency, size, series, RSS (serve.rs).
//!
//! `probe-bench [testrun|flood|traffic|soak [SECONDS]|serve [SECONDS]]` runs one part; no
//! argument runs all. `probe-bench traffic-parts`: the UDP flood with each of the probe's
//! hooks alone. `probe-bench latency`: what `--latency` costs under iperf3 TCP and UDP.
//! Every part but `serve` needs root and $PROBE_BIN (a release `probe`, set by
//! `cargo xtask bench`); `serve` runs in this process on 127.0.0.1 only.

mod backends;
mod flood;
mod serve;
mod soak;
mod testrun;
mod traffic;

fn main() {
    let part = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    // SAFETY: geteuid has no preconditions.
    if part != "serve" && unsafe { libc::geteuid() } != 0 {
        eprintln!("probe-bench: needs root (BPF_PROG_TEST_RUN, network namespaces)");
        std::process::exit(1);
    }
    let mut ok = true;
    if part == "all" || part == "testrun" {
        ok &= testrun::run();
    }
    let probe = || {
        std::env::var_os("PROBE_BIN")
            .map(std::path::PathBuf::from)
            .expect("PROBE_BIN: run through `cargo xtask bench`")
    };
    if part == "all" || part == "flood" {
        ok &= flood::Flood::new(probe()).run();
    }
    if part == "all" || part == "traffic" {
        ok &= traffic::Traffic::new(probe()).run();
    }
    // Diagnosis, not part of `all`: the UDP flood with each hook alone.
    if part == "latency" {
        ok &= traffic::Traffic::new(probe()).latency();
    }
    // The articles' comparison: flannel's vxlan backend against host-gw.
    if part == "backends" {
        ok &= backends::run(probe());
    }
    if part == "stage-latency" {
        ok &= traffic::Traffic::new(probe()).stage_latency();
    }
    if part == "traffic-parts" {
        ok &= traffic::Traffic::new(probe()).parts();
    }
    if part == "all" || part == "soak" {
        let seconds: u64 = std::env::args()
            .nth(2)
            .map_or(600, |s| s.parse().expect("soak SECONDS"));
        ok &= soak::run(probe(), std::time::Duration::from_secs(seconds));
    }
    if part == "all" || part == "serve" {
        let seconds: u64 = std::env::args()
            .nth(2)
            .filter(|_| part == "serve")
            .map_or(60, |s| s.parse().expect("serve SECONDS"));
        ok &= serve::run(std::time::Duration::from_secs(seconds));
    }
    println!(
        "\n{}",
        if ok {
            "every target met"
        } else {
            "TARGETS MISSED (see above; BENCHMARKS.md says by how much and why)"
        }
    );
}
