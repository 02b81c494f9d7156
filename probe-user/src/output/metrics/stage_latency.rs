//! `--stage-latency`: the followed packets per stage, each transition's
//! time, and the top sockets' queue waits.

use super::{label, Family, Labels};
use probe_model::stage_latency::StageLatency;

pub(super) fn encode(f: &mut Family<'_, '_>, p: &StageLatency) -> std::fmt::Result {
    let reached = [
        ("sampled", p.sampled),
        ("decap", p.decap),
        ("pod", p.pod),
        ("queued", p.queued),
        ("read", p.read),
        ("socket_busy", p.socket_busy),
        ("window_closed", p.window_closed),
    ];
    f.counter(
        "stage_latency_packets",
        "--stage-latency: followed skbs chosen at the NIC (sampled, one in --stage-sample), then how many reached each stage (socket_busy: queued behind another followed packet of the socket; window_closed: still queued when a --stage-window closed)",
        &reached
            .iter()
            .map(|(stage, n)| (label(&[("stage", stage)]), *n))
            .collect::<Vec<_>>(),
    )?;
    if let Some(attached) = p.attached_s {
        f.counter(
            "stage_latency_attached_seconds",
            "--stage-window: seconds the stage latency probes were attached (they follow packets only then); whole seconds",
            &[(Vec::new(), attached as u64)],
        )?;
    }
    let rows: Vec<(Labels, &probe_model::latency::Histogram, f64)> = p
        .transitions
        .iter()
        .map(|t| (label(&[("from", t.from), ("to", t.to)]), &t.ns, 1e9))
        .collect();
    f.histogram(
        "stage_latency_seconds",
        "--stage-latency: time of a followed packet from one receive stage to the next (nic, decap, pod, queued, read; nic->read: the whole path)",
        probe_common::latency::HIST_BUCKETS,
        &rows,
    )?;
    // The sockets of `sockets[]`: at most TOP_SOCKETS, the most read
    // since attach (serve's reports are cumulative), so the same
    // few services from scrape to scrape.
    let sockets: Vec<(Labels, &probe_model::latency::Histogram, f64)> = p
        .sockets
        .iter()
        .map(|s| {
            let labels = label(&[
                ("netns", s.netns.as_deref().unwrap_or("?")),
                ("protocol", s.protocol),
                ("port", &s.port.to_string()),
            ]);
            (labels, &s.queued_to_read, 1e9)
        })
        .collect();
    f.histogram(
        "stage_latency_socket_wait_seconds",
        "--stage-latency: the wait of followed packets in their socket's queue (queued->read), for the sockets that read the most since attach (at most 10; a socket is a namespace, a protocol and a local port: a pod's service)",
        probe_common::latency::HIST_BUCKETS,
        &sockets,
    )?;
    Ok(())
}
