//! The (UDP port, VNI) rows: outer segments at the NIC, inner ones out of
//! the VXLAN devices, and the balance's unexplained segments.

use super::{label, vni, Family, Labels};
use probe_model::model::Report;

pub(super) fn encode(f: &mut Family<'_, '_>, r: &Report) -> std::fmt::Result {
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
    Ok(())
}
