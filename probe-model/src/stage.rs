//! The names of the receive path's stages and of the probe's hooks, typed:
//! a misspelt stage is a compile error, not a drop filed under `other`.
//! Serialised as the lowercase names the JSON schema documents.

use serde::Serialize;

/// A stage of the receive path in the order a VXLAN packet meets them, then
/// the two sections outside the receive ledger (`tx`, `benign`). The order
/// of the variants is path order (`Ord`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// The NIC's ring and driver (hardware drops, generic-XDP drops).
    Nic,
    /// The per-CPU backlog (netdev_max_backlog, RPS).
    Backlog,
    /// IP input of outer and host packets: routing, netfilter, fragments.
    Ip,
    /// UDP to the VXLAN port and decapsulation.
    Vxlan,
    /// The inner packet after decapsulation: routing, rp_filter, FORWARD.
    Forward,
    /// The bridge and the veth into the pod.
    Bridge,
    /// Socket lookup, filters, buffers, TCP/UDP state.
    Socket,
    /// Not tied to one stage.
    Other,
    /// Transmit side: not part of the receive ledger.
    Tx,
    /// Drops that lose no data: not part of the receive ledger.
    Benign,
}

impl Stage {
    /// The receive stages, in path order: the rows of the ledger.
    pub const RECEIVE: [Stage; 8] = [
        Stage::Nic,
        Stage::Backlog,
        Stage::Ip,
        Stage::Vxlan,
        Stage::Forward,
        Stage::Bridge,
        Stage::Socket,
        Stage::Other,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Stage::Nic => "nic",
            Stage::Backlog => "backlog",
            Stage::Ip => "ip",
            Stage::Vxlan => "vxlan",
            Stage::Forward => "forward",
            Stage::Bridge => "bridge",
            Stage::Socket => "socket",
            Stage::Other => "other",
            Stage::Tx => "tx",
            Stage::Benign => "benign",
        }
    }

    /// Whether the stage is a row of the receive ledger.
    pub fn is_receive(self) -> bool {
        self <= Stage::Other
    }
}

/// What a hook observes: the NIC, a VXLAN device, or one of the tracing
/// probes (`stages[]`, `cpus[]`, `gaps[]` and `unavailable[]` name them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    Nic,
    Vxlan,
    Drops,
    Softirq,
    Steering,
    #[serde(rename = "stage_latency")]
    StageLatency,
}

impl HookKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            HookKind::Nic => "nic",
            HookKind::Vxlan => "vxlan",
            HookKind::Drops => "drops",
            HookKind::Softirq => "softirq",
            HookKind::Steering => "steering",
            HookKind::StageLatency => "stage_latency",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl std::fmt::Display for HookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// Tests compare with the names the JSON carries.
#[cfg(test)]
impl PartialEq<&str> for Stage {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
impl PartialEq<&str> for HookKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_order() {
        let names: Vec<String> = Stage::RECEIVE
            .iter()
            .map(|s| {
                serde_json::to_value(s)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            ["nic", "backlog", "ip", "vxlan", "forward", "bridge", "socket", "other"]
        );
        assert!(Stage::RECEIVE.windows(2).all(|w| w[0] < w[1]));
        assert!(Stage::Other.is_receive() && !Stage::Tx.is_receive());
        assert_eq!(format!("{:<7}|", Stage::Ip), "ip     |");
        assert_eq!(serde_json::to_value(HookKind::Softirq).unwrap(), "softirq");
    }
}
