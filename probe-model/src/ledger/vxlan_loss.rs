//! The VXLAN balance: outer segments at the NIC against inner segments out
//! of the VXLAN devices, and the carry that keeps packets in flight at an
//! interval's edge from reading as loss.

use std::collections::BTreeMap;

use serde::Serialize;

/// VXLAN packets that reached the NIC but did not come out of a VXLAN
/// device, in segments on both sides.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VxlanLoss {
    /// Outer VXLAN segments seen by the NIC hook (every port and VNI).
    pub outer_segments: u64,
    /// Segments seen entering the VXLAN devices.
    pub inner_segments: u64,
    /// outer - inner, or 0 when more came out than went in (packets in
    /// flight at the period's edges).
    pub lost: u64,
    /// Outer VXLAN packets the kernel dropped in the NIC's namespace, at any
    /// stage (IP, UDP, VXLAN), plus drops with a `vxlan`-stage reason.
    pub explained: u64,
    /// `explained` by reason.
    pub explained_by: BTreeMap<String, u64>,
    /// lost - explained, or 0.
    pub unexplained: u64,
    /// Interval reports only (null in a summary): unexplained segments short
    /// at the interval's end that are not loss yet, carried to the next
    /// interval ([`VxlanCarry`]).
    pub pending: Option<u64>,
}

/// The VXLAN balance carried from one interval to the next. A packet in
/// flight between the NIC hook and a VXLAN device at a sampling instant is
/// counted at the NIC in one interval and at the device in the next: alone,
/// the first interval would show it lost, and the second's surplus would be
/// clamped away. The carry keeps the signed balance not reported yet, and an
/// interval reports a shortfall only once it persists: what was short at its
/// start and is still short at its end. A real loss is reported once, in
/// full, one interval after it happened; packets in flight are not, unless
/// the same shortfall stands at two instants in a row.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VxlanCarry {
    lost: i64,
    unexplained: i64,
}

impl VxlanCarry {
    /// Rewrites an interval's `lost` and `unexplained` (its own counts
    /// `outer_segments`, `inner_segments`, `explained` stay) with the carried
    /// balance, and sets `pending`.
    pub fn apply(&mut self, loss: &mut VxlanLoss) {
        let balance = loss.outer_segments as i64 - loss.inner_segments as i64;
        loss.lost = Self::step(&mut self.lost, balance);
        loss.unexplained = Self::step(&mut self.unexplained, balance - loss.explained as i64);
        loss.pending = Some(self.unexplained.max(0) as u64);
    }

    /// The part of `pending` that `balance` leaves standing (reported, and
    /// taken out of the carry); the rest is carried on.
    fn step(pending: &mut i64, balance: i64) -> u64 {
        let now = pending.saturating_add(balance);
        let persisted = (*pending).min(now).max(0);
        *pending = now - persisted;
        persisted as u64
    }
}

impl VxlanLoss {
    /// The balance of one period: `outer` segments in at the NIC, `inner`
    /// out of the VXLAN devices, the drops that explain the difference.
    pub fn new(outer: u64, inner: u64, explained_by: BTreeMap<String, u64>) -> VxlanLoss {
        let lost = outer.saturating_sub(inner);
        let explained: u64 = explained_by.values().sum();
        VxlanLoss {
            outer_segments: outer,
            inner_segments: inner,
            lost,
            explained,
            explained_by,
            unexplained: lost.saturating_sub(explained),
            pending: None,
        }
    }
}
