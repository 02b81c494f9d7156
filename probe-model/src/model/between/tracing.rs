//! The tracing hooks' sections between two samples.

use crate::{latency as lat, model::*};

impl Report {
    /// The tracing hooks' sections: softirq and NAPI latency, steering,
    /// stage latency (and a trace's drops and socket waits).
    pub(super) fn add_tracing(&mut self, topo: &Topology, earlier: &Sample, later: &Sample) {
        if let Some(now) = &later.latency {
            let before = earlier.latency.as_ref();
            self.softirq = lat::softirq_rows(&now.softirq, before.map(|b| b.softirq.as_slice()));
            self.napi = lat::napi_rows(&now.napi, before.map(|b| &b.napi), |k| {
                (
                    later.names.iface(k.netns, k.ifindex),
                    later.names.netns(k.netns),
                )
            });
        }
        if let (Some(now), Some(before)) = (later.latency_paused_s, earlier.latency_paused_s) {
            self.latency_paused_s = Some((now - before).max(0.0));
        }
        if let Some(now) = &later.steering {
            self.steering = Some(crate::steering::steering(now, earlier.steering.as_ref()));
        }
        if let (Some(now), Some(info)) = (&later.stage_latency, &topo.stage_latency) {
            let unavailable = match (&info.socket_unavailable, &info.drops_unavailable) {
                (Some(s), Some(d)) => Some(format!("{s}; {d}")),
                (s, d) => s.clone().or(d.clone()),
            };
            let mut p = crate::stage_latency::stage_latency(
                now,
                earlier.stage_latency.as_deref(),
                info.sample_every,
                unavailable,
            );
            p.drops = crate::stage_latency::trace_drops(
                &later.trace_drops,
                Some(&earlier.trace_drops),
                |slot| match &topo.reasons {
                    Some(names) => names.slot_name(slot),
                    None => format!("reason slot {slot}"),
                },
            );
            p.sockets = crate::stage_latency::socket_rows(
                &later.socket_waits,
                &earlier.socket_waits,
                |netns| later.names.netns(netns),
            );
            if let (Some(now), Some(before)) = (later.stage_window, earlier.stage_window) {
                p.window = info
                    .window
                    .map(|(on, every)| format!("{}/{}", on.as_secs_f64(), every.as_secs_f64()));
                p.attached_s = Some((now.0 - before.0).max(0.0));
                p.window_closed = now.1.saturating_sub(before.1);
            }
            self.stage_latency = Some(p);
        }
    }
}
