//! The hooks and their stages: attached or not, what each one saw, device
//! re-attachments and the run's length.

use super::{label, Family, Labels};
use probe_model::model::Report;

pub(super) fn encode(f: &mut Family<'_, '_>, r: &Report) -> std::fmt::Result {
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
    Ok(())
}
