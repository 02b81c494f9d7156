//! `probe trace`'s text: the funnel, the drops by stage and reason, what
//! went missing, and the times.

use super::{Trace, TraceMode, TraceProto};
use probe_model::stage_latency::short;

/// The funnel, the drops by stage and reason, and the times.
pub fn human(t: &Trace) -> String {
    use std::fmt::Write;
    let p = &t.path;
    let mut o = String::new();
    let from = t
        .from_netns
        .as_ref()
        .map_or(String::new(), |n| format!(" from {n}"));
    let to = t.to.as_deref().unwrap_or("");
    let sent = t.sent.unwrap_or(0);
    let syn = t.proto == Some(TraceProto::TcpSyn);
    let what = if syn { "TCP SYNs" } else { "UDP packets" };
    let _ = match t.mode {
        TraceMode::Both => writeln!(
            o,
            "TRACE  {sent} marked {what} to {to}{from} (signature {}), followed on {}",
            t.signature, t.netns
        ),
        TraceMode::SendOnly => writeln!(
            o,
            "TRACE  {sent} marked {what} to {to}{from} (signature {}), sent from {}: \
             the receiving node follows them (--listen)",
            t.signature, t.netns
        ),
        TraceMode::Listen => writeln!(
            o,
            "TRACE  marked packets with signature {}, followed on {}",
            t.signature, t.netns
        ),
    };
    let mut rows = vec![];
    if let Some(sent) = t.sent {
        rows.push(("sent", sent));
    }
    // The sending half's node sees none of the receiving stages.
    if t.mode != TraceMode::SendOnly {
        rows.extend([
            ("at the NIC", p.sampled),
            ("decapsulated", p.decap),
            ("in the pod", p.pod),
        ]);
        // A SYN is not queued to a socket: its answer says what took it.
        if !syn {
            rows.extend([("queued to a socket", p.queued), ("read", p.read)]);
        }
    }
    if let (Some(answered), Some(refused)) = (t.answered, t.refused) {
        rows.extend([("answered (SYN-ACK)", answered), ("refused (RST)", refused)]);
    }
    for (name, n) in rows {
        let _ = writeln!(o, "  {name:<20} {n:>8}");
    }
    if p.socket_busy > 0 {
        let _ = writeln!(
            o,
            "  ({} queued while another marked packet still waited: not followed to their read)",
            p.socket_busy
        );
    }
    for d in &p.drops {
        let stage = match (d.stage, t.mode) {
            ("sender", TraceMode::SendOnly) => "on this node, before they left",
            ("sender", _) => "on the sending node (the NIC never saw them)",
            ("nic", _) => "after the NIC",
            ("decap", _) => "after decapsulation",
            _ => "in the pod, before its socket",
        };
        let _ = writeln!(o, "STOPPED {} {stage}: {}", d.skbs, d.reason);
    }
    if let Some(missing) = t.account().missing.filter(|n| *n > 0) {
        let _ = writeln!(
            o,
            "MISSING {missing} {} (still queued, merged, or where the probe does not look)",
            if syn {
                "not answered and not seen dropped"
            } else {
                "not read and not seen dropped"
            }
        );
    }
    for step in p.transitions.iter().filter(|step| step.ns.count > 0) {
        let _ = writeln!(o, "TIME   {}->{} {}", step.from, step.to, short(&step.ns));
    }
    if let Some(why) = &p.unavailable {
        let _ = writeln!(o, "UNAVAILABLE {why}");
    }
    o
}
