//! `probe trace`'s accounting: of the marked packets sent, how many were
//! followed to an end (read, answered, refused, dropped where the kernel
//! names drops) and how many the probe lost track of.

use serde::Serialize;

use crate::stage_latency::StageLatency;

/// What became of a trace's marked packets, in skbs (a marked packet is one
/// datagram or one SYN: GRO does not merge them).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TraceAccount {
    /// Seen dropped, at any stage.
    pub dropped: u64,
    /// Followed to an end: read (or queued behind another marked packet),
    /// answered, refused, or dropped.
    pub followed_to_end: u64,
    /// Sent and not followed to an end (still queued, merged, or where the
    /// probe does not look). Null where this node cannot tell: the sending
    /// half of a two-node trace, `--listen` (nothing sent here), or UDP on
    /// a kernel without the socket stages.
    pub missing: Option<u64>,
}

/// The accounting of `path` for `sent` marked packets. `answers`: a SYN
/// trace's SYN-ACKs and RSTs as the sender received them (None for UDP).
/// `receiving`: this node follows the packets it sent (not a two-node
/// trace's sending half).
pub fn account(
    path: &StageLatency,
    sent: Option<u64>,
    answers: Option<(u64, u64)>,
    receiving: bool,
) -> TraceAccount {
    let dropped: u64 = path.drops.iter().map(|d| d.skbs).sum();
    let followed_to_end = match answers {
        // A refused SYN reached the pod's TCP (its RST says so) and is also
        // dropped there as NO_SOCKET, where the kernel names drops: each is
        // accounted for by its RST or its drop, whichever was seen (an RST
        // can be lost on the way back).
        Some((answered, refused)) => {
            let no_socket: u64 = path
                .drops
                .iter()
                .filter(|d| d.stage == "pod" && d.reason == "NO_SOCKET")
                .map(|d| d.skbs)
                .sum();
            answered + refused.max(no_socket) + dropped.saturating_sub(no_socket)
        }
        None => path.read + path.socket_busy + dropped,
    };
    // A SYN's answers need none of the socket stages a kernel may lack.
    let followed = answers.is_some() || path.unavailable.is_none();
    TraceAccount {
        dropped,
        followed_to_end,
        missing: sent
            .filter(|_| receiving && followed)
            .map(|sent| sent.saturating_sub(followed_to_end)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage_latency::{stage_latency, TraceDrop};

    fn path(read: u64, drops: &[(&'static str, &str, u64)]) -> StageLatency {
        let mut p = stage_latency(&[], None, 1, None);
        p.read = read;
        p.drops = drops
            .iter()
            .map(|(stage, reason, skbs)| TraceDrop {
                stage,
                reason: reason.to_string(),
                skbs: *skbs,
            })
            .collect();
        p
    }

    #[test]
    fn udp_packets_end_read_or_dropped() {
        let p = path(990, &[("pod", "SOCKET_RCVBUFF", 4)]);
        let a = account(&p, Some(1000), None, true);
        assert_eq!((a.dropped, a.followed_to_end, a.missing), (4, 994, Some(6)));
        // The sending half cannot tell.
        assert_eq!(account(&p, Some(1000), None, false).missing, None);
    }

    /// A refused SYN is one packet whether its RST, its NO_SOCKET drop or
    /// both were seen.
    #[test]
    fn a_refused_syn_counts_once() {
        let p = path(0, &[("pod", "NO_SOCKET", 300)]);
        assert_eq!(
            account(&p, Some(1000), Some((700, 300)), true).missing,
            Some(0)
        );
        // 20 RSTs lost on the way back: the drops account for them.
        assert_eq!(
            account(&p, Some(1000), Some((700, 280)), true).missing,
            Some(0)
        );
        // A drop elsewhere adds to them.
        let p = path(0, &[("pod", "NO_SOCKET", 300), ("nic", "OTHERHOST", 5)]);
        let a = account(&p, Some(1000), Some((690, 300)), true);
        assert_eq!(
            (a.dropped, a.followed_to_end, a.missing),
            (305, 995, Some(5))
        );
    }
}
