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
        stages::encode(&mut f, r)?;
        ledger::encode(&mut f, r)?;
        vxlan::encode(&mut f, r)?;
        if let Some(p) = &r.stage_latency {
            stage_latency::encode(&mut f, p)?;
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
mod ledger;
mod stage_latency;
mod stages;
pub mod synthetic;
mod vxlan;

#[cfg(test)]
mod tests;
