//! A device's own counters (rtnetlink stats64).

/// The receive-side fields of `struct rtnl_link_stats64` the probe uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub rx_over_errors: u64,
    pub rx_fifo_errors: u64,
    pub rx_missed_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

crate::delta::counters!(LinkStats {
    rx_packets,
    rx_bytes,
    rx_errors,
    rx_dropped,
    rx_over_errors,
    rx_fifo_errors,
    rx_missed_errors,
    tx_packets,
    tx_bytes,
    tx_dropped,
});

impl LinkStats {
    /// Field-wise `self + other`: the counters of a device's earlier
    /// incarnations carried into its successor's.
    pub fn plus(&self, other: &LinkStats) -> LinkStats {
        LinkStats {
            rx_packets: self.rx_packets.saturating_add(other.rx_packets),
            rx_bytes: self.rx_bytes.saturating_add(other.rx_bytes),
            rx_errors: self.rx_errors.saturating_add(other.rx_errors),
            rx_dropped: self.rx_dropped.saturating_add(other.rx_dropped),
            rx_over_errors: self.rx_over_errors.saturating_add(other.rx_over_errors),
            rx_fifo_errors: self.rx_fifo_errors.saturating_add(other.rx_fifo_errors),
            rx_missed_errors: self.rx_missed_errors.saturating_add(other.rx_missed_errors),
            tx_packets: self.tx_packets.saturating_add(other.tx_packets),
            tx_bytes: self.tx_bytes.saturating_add(other.tx_bytes),
            tx_dropped: self.tx_dropped.saturating_add(other.tx_dropped),
        }
    }

    /// Receive drops the device itself accounts: dropped by the stack/driver,
    /// missed by the NIC, FIFO and ring overruns.
    pub fn rx_drops(&self) -> u64 {
        [
            self.rx_missed_errors,
            self.rx_fifo_errors,
            self.rx_over_errors,
        ]
        .iter()
        .fold(self.rx_dropped, |sum, n| sum.saturating_add(*n))
    }
}
