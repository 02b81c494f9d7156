//! Prometheus exposition of the model: `probe serve` publishes the report since
//! attach (the same `Report` the terminal and JSON print), so every counter
//! here is a total since the probe attached and only ever grows.
//!
//! Label sets are bounded by the node, never by traffic: stage, reason (the
//! kernel's drop reasons, ~100), interface, VNI, CPU. No per-flow labels.

use std::sync::{Arc, Mutex};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge, MetricType},
    registry::Registry,
};

use probe_model::{latency::Histogram, model::Report};

/// Every metric name starts with this and an underscore.
pub const PREFIX: &str = "rxprobe";

/// What /metrics shows: the latest report since attach (None before the
/// first). Shared between the sampling loop (writer) and the HTTP thread; a
/// scrape holds the lock only to take its own handle on the report, so a
/// slow scrape never holds the sampling loop back.
#[derive(Clone, Debug, Default)]
pub struct Shared(pub Arc<Mutex<Option<Arc<Report>>>>);

impl Shared {
    /// Makes `report` the one /metrics shows.
    pub fn set(&self, report: Report) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(report));
    }

    /// A registry whose only collector reads this shared state on each scrape.
    pub fn registry(&self) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(self.clone()));
        registry
    }

    /// OpenMetrics text of everything (what GET /metrics returns).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())
            .expect("writing to a String cannot fail");
        out
    }
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: a name, help, type and its labelled values.
struct Family<'e, 'w> {
    encoder: &'e mut DescriptorEncoder<'w>,
}

impl<'w> Family<'_, 'w> {
    /// One family of `metric_type`: a sample per row, made by `make`.
    fn family<V: Copy, M: EncodeMetric>(
        &mut self,
        name: &str,
        help: &str,
        metric_type: MetricType,
        rows: &[(Labels, V)],
        make: impl Fn(V) -> M,
    ) -> std::fmt::Result {
        if rows.is_empty() {
            return Ok(());
        }
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, metric_type)?;
        if let [(labels, value)] = rows {
            if labels.is_empty() {
                return make(*value).encode(metric);
            }
        }
        for (labels, value) in rows {
            make(*value).encode(metric.encode_family(labels)?)?;
        }
        Ok(())
    }

    fn counter(&mut self, name: &str, help: &str, rows: &[(Labels, u64)]) -> std::fmt::Result {
        self.family(name, help, MetricType::Counter, rows, ConstCounter::new)
    }

    fn gauge(&mut self, name: &str, help: &str, rows: &[(Labels, i64)]) -> std::fmt::Result {
        self.family(name, help, MetricType::Gauge, rows, ConstGauge::new)
    }

    /// `rows`: (labels, histogram, divisor): each bucket's upper bound and the
    /// sum are divided by `divisor` (1e9 turns ns into seconds).
    fn histogram(
        &mut self,
        name: &str,
        help: &str,
        buckets: usize,
        rows: &[(Labels, &Histogram, f64)],
    ) -> std::fmt::Result {
        if rows.is_empty() {
            return Ok(());
        }
        let mut metric = self
            .encoder
            .encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (labels, h, divisor) in rows {
            let bounds = le_buckets(h, buckets, *divisor);
            metric.encode_family(labels)?.encode_histogram::<Labels>(
                h.sum as f64 / divisor,
                h.count,
                &bounds,
                None,
            )?;
        }
        Ok(())
    }
}

/// Classic Prometheus buckets for a log2 histogram: every bucket, empty or
/// not, so the series set is stable. Bucket k holds integer values up to
/// 2^k - 1 (`bucket_le`); `+Inf` closes the list.
pub fn le_buckets(h: &Histogram, buckets: usize, divisor: f64) -> Vec<(f64, u64)> {
    let mut out: Vec<(f64, u64)> = (0..buckets)
        .map(|k| {
            let le = probe_model::latency::bucket_le(k);
            let n = h
                .buckets
                .iter()
                .filter(|b| b.le == le)
                .map(|b| b.count)
                .sum();
            (le as f64 / divisor, n)
        })
        .collect();
    let counted: u64 = out.iter().map(|(_, n)| n).sum();
    out.push((f64::INFINITY, h.count - counted.min(h.count)));
    out
}

fn label(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

impl Collector for Shared {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let latest = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut f = Family {
            encoder: &mut encoder,
        };
        let Some(r) = latest.as_deref() else {
            return Ok(());
        };
        let reattached = r.gaps.iter().filter(|g| g.reattached_s.is_some()).count();
        f.counter(
            "reattachments",
            "Times a watched device disappeared (e.g. flanneld recreated flannel.1) and the probe attached to its successor",
            &[(Vec::new(), reattached as u64)],
        )?;
        f.gauge(
            "uptime_seconds",
            "Seconds since the probes were attached (the period every counter covers)",
            &[(Vec::new(), r.elapsed_s as i64)],
        )?;
        let hooks: Vec<(Labels, i64)> = r
            .stages
            .iter()
            .map(|s| {
                let missing = r
                    .gaps
                    .iter()
                    .any(|g| g.iface == s.iface && g.reattached_s.is_none());
                (
                    label(&[
                        ("stage", s.stage.as_str()),
                        ("iface", &s.iface),
                        ("hook", &s.hook),
                    ]),
                    i64::from(!missing),
                )
            })
            .chain(r.unavailable.iter().map(|u| {
                (
                    label(&[
                        ("stage", u.stage.as_str()),
                        ("iface", &u.iface),
                        ("hook", "unavailable"),
                    ]),
                    0,
                )
            }))
            .collect();
        f.gauge(
            "hook_attached",
            "1 for each attached hook; 0 for a stage that could not be attached (the reason is in the log and in JSON `unavailable`) or whose device is gone",
            &hooks,
        )?;
        let stage = |value: fn(&probe_model::model::StageRow) -> u64| -> Vec<(Labels, u64)> {
            r.stages
                .iter()
                .map(|s| {
                    (
                        label(&[("stage", s.stage.as_str()), ("iface", &s.iface)]),
                        value(s),
                    )
                })
                .collect()
        };
        f.counter(
            "stage_skbs",
            "skbs seen by the probe's hook at this stage (nic: the NIC hook; vxlan: decapsulated packets out of the VXLAN device)",
            &stage(|s| s.skbs),
        )?;
        f.counter(
            "stage_segments",
            "Segments seen by the probe's hook at this stage: max(gso_segs, 1) per skb, i.e. wire packets (segments / skbs is the GRO ratio)",
            &stage(|s| s.segments),
        )?;
        f.counter(
            "stage_bytes",
            "Bytes seen by the probe's hook at this stage",
            &stage(|s| s.bytes),
        )?;
        let ledger_in: Vec<(Labels, u64)> = r
            .ledger
            .ledger
            .iter()
            .filter_map(|row| Some((label(&[("stage", row.stage.as_str())]), row.segments_in?)))
            .collect();
        f.counter(
            "ledger_segments_in",
            "Segments that entered this stage of the receive path, where a hook or a kernel counter shows it",
            &ledger_in,
        )?;
        let ledger_drops: Vec<(Labels, u64)> = r
            .ledger
            .ledger
            .iter()
            .map(|row| (label(&[("stage", row.stage.as_str())]), row.drops))
            .collect();
        f.counter(
            "ledger_drop_segments",
            "Segments this stage lost: its kernel drop reasons, plus the NIC's hardware drops at `nic`",
            &ledger_drops,
        )?;
        // Receive stages, then the transmit side and benign drops as stages
        // "tx" and "benign".
        let reasons = || {
            r.ledger
                .ledger
                .iter()
                .map(|row| (row.stage.as_str(), &row.reasons))
                .chain([
                    ("tx", &r.ledger.tx_drops.reasons),
                    ("benign", &r.ledger.benign_drops.reasons),
                ])
                .flat_map(|(stage, reasons)| {
                    reasons
                        .iter()
                        .map(move |(reason, c)| (label(&[("stage", stage), ("reason", reason)]), c))
                })
        };
        f.counter(
            "drop_segments",
            "Segments dropped (skb:kfree_skb, max(gso_segs, 1) per skb) by stage and the kernel's drop reason",
            &reasons().map(|(l, c)| (l, c.segments)).collect::<Vec<_>>(),
        )?;
        f.counter(
            "drop_skbs",
            "skbs dropped (skb:kfree_skb) by stage and the kernel's drop reason",
            &reasons().map(|(l, c)| (l, c.skbs)).collect::<Vec<_>>(),
        )?;
        let kernel: Vec<(Labels, u64)> = r
            .ledger
            .ledger
            .iter()
            .flat_map(|row| {
                row.kernel.iter().map(|(name, n)| {
                    (
                        label(&[("stage", row.stage.as_str()), ("counter", name)]),
                        *n,
                    )
                })
            })
            .collect();
        f.counter(
            "kernel_counter",
            "The kernel's own counters next to each stage (stats64, ethtool -S, softnet_stat, /proc/net/snmp), to check the drops against",
            &kernel,
        )?;
        f.counter(
            "drops_out_of_scope",
            "Drops in namespaces outside --drop-netns (not in the ledger)",
            &[(Vec::new(), r.ledger.drops_out_of_scope)],
        )?;
        // (interface, count) of each (port, VNI) row: the NIC's outer or the device's inner.
        type Side = fn(&probe_model::model::VxlanRow) -> (Option<&str>, Option<u64>);
        let vxlan = |side: Side| -> Vec<(Labels, u64)> {
            r.vxlan
                .iter()
                .filter_map(|v| {
                    let (iface, count) = side(v);
                    let port = v.port.map_or("other".to_string(), |p| p.to_string());
                    let labels = label(&[
                        ("iface", iface.unwrap_or("")),
                        ("port", &port),
                        ("vni", &vni(v.vni)),
                    ]);
                    Some((labels, count?))
                })
                .collect()
        };
        f.counter(
            "vxlan_outer_segments",
            "VXLAN segments that reached the NIC hook, by UDP port and VNI (port and vni \"other\": every pair no watched device owns)",
            &vxlan(|v| (v.nic.as_deref(), v.outer_segments)),
        )?;
        f.counter(
            "vxlan_inner_segments",
            "Decapsulated segments out of the VXLAN device (TCX ingress), by UDP port and VNI",
            &vxlan(|v| (v.iface.as_deref(), v.inner_segments)),
        )?;
        f.counter(
            "vxlan_unexplained_segments",
            "VXLAN segments that reached the NIC, did not come out of a VXLAN device, and no drop reason explains",
            &r.ledger
                .vxlan_loss
                .iter()
                .map(|l| (Vec::new(), l.unexplained))
                .collect::<Vec<_>>(),
        )?;
        if let Some(p) = &r.stage_latency {
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
        }
        cpu::encode(&mut f, r)
    }
}

/// What the number of series depends on: the node, never its traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NodeShape {
    /// Online CPUs.
    pub cpus: usize,
    /// Watched VXLAN devices.
    pub vxlan_devs: usize,
    /// RX queues of the NIC (queue rows are JSON only: no series).
    pub nic_queues: usize,
    /// The NIC driver's per-queue receive drop counters (`ethtool -S`; about one per RX queue).
    pub nic_queue_counters: usize,
    /// NAPI instances ((netns, device) pairs that poll, the per-CPU backlog
    /// included); the probe's table keeps at most `NAPI_SLOTS` of them per CPU.
    pub napi_instances: usize,
}

/// The most series (sample lines) /metrics can have on a node of `shape`
/// with `--latency` and `--stage-latency` (the largest output), whatever its traffic: flows are
/// never labels (a socket of `sockets[]` is a pod's service, at most TOP_SOCKETS of them).
/// Family by family, with S = 1 + vxlan_devs hooked stages:
///
/// ```text
///   5                                   reattachments, uptime, drops_out_of_scope, vxlan_unexplained,
///                                       latency_paused_seconds (--latency auto)
/// + S + (S + 4)                         hook_attached: attached stages, and unavailable hooks
///                                       (each stage, the drop, softirq, steering and stage
///                                       latency probes)
/// + 3 S                                 stage_{skbs,segments,bytes}
/// + 2 R                                 ledger_{segments_in,drop_segments}, R = receive stages
/// + 2 (2 REASON_SLOTS + BENIGN_KINDS + 3)   drop_{segments,skbs}: one name per reason slot (an IP
///                                       reason in two stages: before and after decapsulation),
///                                       the benign kinds, the NIC's 3 hardware counters
/// + 7 + nic_queue_counters              kernel_counter: NIC (3 hardware, rx_dropped, per queue),
///                                       backlog (3 softnet sums)
/// + 2 (MAX_VNIS + vxlan_devs + 1)       vxlan_{outer,inner}_segments: (port, VNI) rows and "other"
/// + cpus (4 + 2 + 2 (HIST_BUCKETS + 3)) softnet (4), softirq runs (2), two histograms (buckets,
///                                       +Inf, _sum, _count)
/// + napi cpus (2 + WORK_BUCKETS + 3)    NAPI polls, full-budget polls, the work histogram
/// + Reached::COUNT + 2                  stage_latency_packets (--stage-latency; + window_closed),
///                                       stage_latency_attached_seconds (--stage-window)
///   + Transition::COUNT (HIST_BUCKETS + 3)   stage_latency_seconds
///   + TOP_SOCKETS (HIST_BUCKETS + 3)     stage_latency_socket_wait_seconds
/// ```
///
/// with napi = min(napi_instances, NAPI_SLOTS).
pub fn max_series(shape: &NodeShape) -> usize {
    use probe_common::{
        drops::{BENIGN_KINDS, REASON_SLOTS},
        latency::{HIST_BUCKETS, NAPI_SLOTS, WORK_BUCKETS},
        stage_latency::{Reached, Transition},
        MAX_VNIS,
    };
    let stages = 1 + shape.vxlan_devs;
    let receive = probe_model::stage::Stage::RECEIVE.len();
    let napi = shape.napi_instances.min(NAPI_SLOTS);
    5 + stages
        + (stages + 4)
        + 3 * stages
        + 2 * receive
        + 2 * (2 * REASON_SLOTS + BENIGN_KINDS + 3)
        + 7
        + shape.nic_queue_counters
        + 2 * (MAX_VNIS + shape.vxlan_devs + 1)
        + shape.cpus * (4 + 2 + 2 * (HIST_BUCKETS + 3))
        + napi * shape.cpus * (2 + WORK_BUCKETS + 3)
        + Reached::COUNT
        + 2
        + Transition::COUNT * (HIST_BUCKETS + 3)
        + probe_model::stage_latency::TOP_SOCKETS * (HIST_BUCKETS + 3)
}

/// Series (sample lines: neither comments nor `# EOF`) in OpenMetrics `text`.
pub fn series(text: &str) -> usize {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
}

fn vni(v: Option<u32>) -> String {
    v.map_or_else(|| "other".into(), |v| v.to_string())
}

mod cpu;
pub mod synthetic;

#[cfg(test)]
mod tests;
