//! `probe diff`: two recordings side by side. Each metric is normalised per
//! second where it is a count, and judged better / worse / unchanged against
//! a stated noise threshold; the settings that changed are listed.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::recording::{Compared, ComparedSoftirq, Percentiles, Recording};

/// A count rate changes only if it moves by more than this share...
pub const RATE_NOISE: f64 = 0.10;
/// ...and by more than this many per second (small counts are noise).
pub const RATE_FLOOR: f64 = 1.0;
/// Latency percentiles are log2 buckets: only a change of at least one
/// bucket (2x) is a change.
pub const LATENCY_FACTOR: f64 = 2.0;
/// CPU spread (largest share of the NIC's packets on one CPU): percentage points.
pub const SPREAD_NOISE: f64 = 10.0;
/// A loss ratio changes only if it moves by more than this share of itself...
pub const RATIO_NOISE: f64 = 0.10;
/// ...and by more than this many percentage points.
pub const RATIO_FLOOR: f64 = 0.01;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Better,
    Worse,
    Unchanged,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub a: Option<f64>,
    pub b: Option<f64>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SettingChange {
    pub name: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diff {
    pub metrics: Vec<Metric>,
    pub settings_changed: Vec<SettingChange>,
    /// How the verdicts are decided.
    pub noise: String,
}

/// Lower is better for every metric compared here (drops, waits, squeeze,
/// concentration on one CPU).
fn judge(a: Option<f64>, b: Option<f64>, significant: impl Fn(f64, f64) -> bool) -> Verdict {
    match (a, b) {
        (Some(a), Some(b)) if significant(a, b) => {
            if b < a {
                Verdict::Better
            } else {
                Verdict::Worse
            }
        }
        _ => Verdict::Unchanged,
    }
}

fn rate_change(a: f64, b: f64) -> bool {
    let d = (b - a).abs();
    d > RATE_FLOOR && d > RATE_NOISE * a.max(b)
}

fn ratio_change(a: f64, b: f64) -> bool {
    let d = (b - a).abs();
    d > RATIO_FLOOR && d > RATIO_NOISE * a.max(b)
}

fn latency_change(a: f64, b: f64) -> bool {
    let (lo, hi) = (a.min(b), a.max(b));
    hi >= lo.max(1.0) * LATENCY_FACTOR
}

fn elapsed(r: &Compared) -> f64 {
    r.elapsed_s.max(1e-9)
}

/// Per-second drop rates (segments) by stage and by "stage/REASON".
fn drop_rates(r: &Compared) -> BTreeMap<String, f64> {
    let t = elapsed(r);
    let mut out = BTreeMap::new();
    for row in &r.ledger {
        out.insert(format!("drops {}", row.stage), row.drops / t);
        for (reason, n) in &row.reasons {
            out.insert(format!("drops {}/{reason}", row.stage), n.segments() / t);
        }
    }
    out
}

/// Loss ratio (percent) per stage: its drops over its input, or over the
/// nearest upstream stage's input. A rate alone misleads when the traffic
/// changed between the recordings (all of 200 lost is not better than all
/// of 2,000).
fn loss_ratios(r: &Compared) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut input: Option<f64> = None;
    for row in &r.ledger {
        if row.segments_in.is_some() {
            input = row.segments_in;
        }
        if let Some(n) = input.filter(|n| *n > 0.0 && *n >= row.drops) {
            out.insert(format!("loss ratio {}", row.stage), row.drops * 100.0 / n);
        }
    }
    out
}

fn flatten_settings(r: &Recording) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(s) = &r.settings {
        for x in &s.sysctls {
            out.insert(
                x.name.clone(),
                x.value.clone().unwrap_or_else(|| "?".into()),
            );
        }
        for d in &s.devices {
            for x in &d.settings {
                out.insert(
                    format!("{} {}", d.iface, x.name),
                    x.value.clone().unwrap_or_else(|| "?".into()),
                );
            }
        }
    }
    for n in &r.netns_settings {
        for x in n.sysctls.iter().chain(&n.sockets) {
            out.insert(
                format!("[{}] {}", n.netns, x.name),
                x.value.clone().unwrap_or_else(|| "?".into()),
            );
        }
    }
    out
}

/// Largest share (percent) of the NIC's segments handled by one CPU (stage
/// `xdp` in recordings made before the NIC hook moved to tc).
fn cpu_concentration(r: &Compared) -> Option<f64> {
    let per_cpu: Vec<f64> = r
        .cpus
        .iter()
        .filter(|c| c.stage == "nic" || c.stage == "xdp")
        .map(|c| c.segments)
        .collect();
    let total: f64 = per_cpu.iter().sum();
    (total > 0.0).then(|| per_cpu.iter().cloned().fold(0.0, f64::max) * 100.0 / total)
}

/// Compares `a` (before) with `b` (after). A summary that does not have the
/// shape of a report compares as empty (`probe diff` refuses such files first).
pub fn diff(a: &Recording, b: &Recording) -> Diff {
    let (ra, rb) = (
        a.compared().unwrap_or_default(),
        b.compared().unwrap_or_default(),
    );
    let (ra, rb) = (&ra, &rb);
    let mut metrics = Vec::new();
    let (da, db) = (drop_rates(ra), drop_rates(rb));
    let mut names: Vec<&String> = da.keys().chain(db.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (x, y) = (da.get(name).copied(), db.get(name).copied());
        // A reason seen in one recording only is 0 in the other.
        let (x, y) = (x.or(Some(0.0)), y.or(Some(0.0)));
        if x == Some(0.0) && y == Some(0.0) {
            continue;
        }
        metrics.push(Metric {
            name: name.clone(),
            unit: "/s",
            a: x,
            b: y,
            verdict: judge(x, y, rate_change),
        });
    }
    let (la, lb) = (loss_ratios(ra), loss_ratios(rb));
    let mut names: Vec<&String> = la.keys().chain(lb.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        let (x, y) = (la.get(name).copied(), lb.get(name).copied());
        if x.unwrap_or(0.0) == 0.0 && y.unwrap_or(0.0) == 0.0 {
            continue;
        }
        metrics.push(Metric {
            name: name.clone(),
            unit: "%",
            a: x,
            b: y,
            verdict: judge(x, y, ratio_change),
        });
    }
    type Pick = fn(&ComparedSoftirq) -> &Percentiles;
    let waits: [(Pick, &str); 2] = [
        (|s| &s.wait_ns, "softirq wait"),
        (|s| &s.run_ns, "softirq run"),
    ];
    for (hist, label) in waits {
        for p in ["p50", "p99"] {
            // The all-CPU row comes first.
            let get = |r: &Compared| {
                let h = hist(r.softirq.first()?);
                if p == "p50" {
                    h.p50
                } else {
                    h.p99
                }
            };
            let (x, y) = (get(ra), get(rb));
            metrics.push(Metric {
                name: format!("{label} {p}"),
                unit: "ns",
                a: x,
                b: y,
                verdict: judge(x, y, latency_change),
            });
        }
    }
    let squeeze = |r: &Compared| {
        let n: f64 = r.softnet.iter().map(|c| c.time_squeeze).sum();
        Some(n / elapsed(r))
    };
    let (x, y) = (squeeze(ra), squeeze(rb));
    metrics.push(Metric {
        name: "time_squeeze".into(),
        unit: "/s",
        a: x,
        b: y,
        verdict: judge(x, y, rate_change),
    });
    let (x, y) = (cpu_concentration(ra), cpu_concentration(rb));
    metrics.push(Metric {
        name: "NIC segments on the busiest CPU".into(),
        unit: "%",
        a: x,
        b: y,
        verdict: judge(x, y, |a, b| (a - b).abs() > SPREAD_NOISE),
    });

    let (sa, sb) = (flatten_settings(a), flatten_settings(b));
    let mut keys: Vec<&String> = sa.keys().chain(sb.keys()).collect();
    keys.sort();
    keys.dedup();
    let settings_changed = keys
        .into_iter()
        .filter(|k| sa.get(*k) != sb.get(*k))
        .map(|k| SettingChange {
            name: k.clone(),
            a: sa.get(k).cloned(),
            b: sb.get(k).cloned(),
        })
        .collect();
    Diff {
        metrics,
        settings_changed,
        noise: format!(
            "rates change when they move by more than {:.0}% and {RATE_FLOOR}/s; loss ratios by more than {:.0}% of themselves and {RATIO_FLOOR} points; latency percentiles (log2 buckets) when they move by {LATENCY_FACTOR}x or more; CPU concentration by more than {SPREAD_NOISE} points",
            RATE_NOISE * 100.0,
            RATIO_NOISE * 100.0
        ),
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| {
        if v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    })
}

pub fn human(d: &Diff) -> String {
    let mut o = format!("{:<44} {:>14} {:>14}  {}\n", "METRIC", "A", "B", "VERDICT");
    for m in &d.metrics {
        let verdict = match m.verdict {
            Verdict::Better => "better",
            Verdict::Worse => "WORSE",
            Verdict::Unchanged => "unchanged",
        };
        o += &format!(
            "{:<44} {:>14} {:>14}  {verdict}\n",
            format!("{} ({})", m.name, m.unit),
            num(m.a),
            num(m.b),
        );
    }
    if d.settings_changed.is_empty() {
        o += "SETTINGS: none changed\n";
    } else {
        o += "SETTINGS CHANGED\n";
        for c in &d.settings_changed {
            o += &format!(
                "  {}: {} -> {}\n",
                c.name,
                c.a.as_deref().unwrap_or("-"),
                c.b.as_deref().unwrap_or("-")
            );
        }
    }
    o += &format!("noise threshold: {}\n", d.noise);
    o
}

#[cfg(test)]
mod tests;
