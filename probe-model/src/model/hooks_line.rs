//! `Topology::hooks_line`: the attached hooks in one line.

use super::Topology;

impl Topology {
    /// Every attached hook, one phrase each: the `attached` event's and the
    /// ready file's.
    pub fn hooks_line(&self) -> String {
        let t = self;
        let mut parts = Vec::new();
        if let Some(n) = &t.nic {
            parts.push(format!("{} on {}", n.hook, n.iface));
        }
        for d in &t.vxlan_devs {
            parts.push(format!("{} on {}", d.hook, d.iface));
        }
        if t.latency {
            parts.push(match t.latency_max_runs {
                Some(n) => format!(
                    "tp_btf/softirq_raise+entry+exit, tp_btf/napi_poll (paused above {n} NET_RX runs/s on a CPU)"
                ),
                None => "tp_btf/softirq_raise+entry+exit, tp_btf/napi_poll".to_string(),
            });
        }
        if t.steering {
            parts.push(
                "tp_btf/napi_gro_receive_entry+netif_receive_skb+sk_data_ready+sock_recv_length"
                    .to_string(),
            );
        }
        if let Some(s) = &t.stage_latency {
            let socket = if s.socket_stages {
                "+sk_data_ready+sock_recv_length"
            } else {
                ""
            };
            parts.push(if s.trace {
                let drops = if s.drops_unavailable.is_none() {
                    "+kfree_skb+consume_skb"
                } else {
                    ""
                };
                format!("tp_btf/netif_receive_skb{socket}{drops} (the marked packets)")
            } else {
                let window = match s.window {
                    Some((on, every)) => format!(
                        ", attached {} s in every {} s",
                        on.as_secs_f64(),
                        every.as_secs_f64()
                    ),
                    None => String::new(),
                };
                format!(
                    "tp_btf/netif_receive_skb{socket} (1 packet in {}{window})",
                    s.sample_every
                )
            });
        }
        if t.reasons.is_some() {
            parts.push(if t.drop_scope.is_empty() {
                "tp_btf/kfree_skb (drops in every netns)".to_string()
            } else {
                format!("tp_btf/kfree_skb (drops in {})", t.drop_scope.join(", "))
            });
        }
        parts.join(", ")
    }
}
