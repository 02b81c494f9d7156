//! Drops the kernel counts without an event: the packet is freed as
//! consumed (consume_skb), so no kfree_skb tracepoint fires and only the
//! kernel's counter shows the loss. They enter the ledger from the counter.
//!
//! One counter has such drops on every supported kernel: TcpExt ListenDrops.
//! tcp_conn_request() refuses a SYN (the accept queue full: ListenOverflows;
//! the SYN queue full without syncookies: TCPReqQFullDrop; a failed
//! allocation), calls tcp_listendrop() and returns, and
//! tcp_rcv_state_process() consumes the SYN. A handshake's last ACK refused
//! by tcp_check_req() is counted in ListenDrops too: from Linux 6.15
//! (e34100c2ecbb's series) it is freed with TCP_LISTEN_OVERFLOW, so those
//! are counted once, as that reason; before, it is freed with NOT_SPECIFIED
//! (shown apart, NOT_SPECIFIED_TCP) and counted here.
//!
//! The other drop counters of /proc/net/netstat count drops that do have an
//! event: TCPBacklogDrop (TCP_BACKLOG), PAWSEstab (TCP_RFC7323_PAWS),
//! TCPMinTTLDrop (TCP_MINTTL), TCPZeroWindowDrop (TCP_ZEROWINDOW),
//! TCPRcvQDrop (PROTO_MEM), PFMemallocDrop (PFMEMALLOC).

use super::{rows::sort_rows, DropRow, LedgerRow, ReasonCount};
use crate::{counters::procfs::Snmp, stage::Stage};

/// The counter, and the ledger's name for what it counts without an event.
pub const LISTEN_DROPS: &str = "ListenDrops";
/// The reason of the drops ListenDrops also counts that have an event.
const LISTEN_OVERFLOW: &str = "TCP_LISTEN_OVERFLOW";

/// Adds the ListenDrops that no TCP_LISTEN_OVERFLOW event counted to the
/// `socket` row (`snmp`: the period's counters per namespace read) and, per
/// namespace, to `drops`. One SYN or ACK a drop: segments equal skbs.
pub(super) fn add_listen_drops(
    socket: &mut LedgerRow,
    drops: &mut Vec<DropRow>,
    snmp: &[(String, Snmp)],
) {
    let counted: u64 = snmp.iter().map(|(_, s)| s.tcp_listen_drops).sum();
    if counted == 0 {
        return;
    }
    let overflows = |netns: Option<&str>| -> u64 {
        drops
            .iter()
            .filter(|r| {
                r.reason == LISTEN_OVERFLOW && (netns.is_none() || r.netns.as_deref() == netns)
            })
            .map(|r| r.skbs)
            .sum()
    };
    let rows: Vec<DropRow> = snmp
        .iter()
        .filter_map(|(netns, s)| {
            let skbs = s.tcp_listen_drops.saturating_sub(overflows(Some(netns)));
            (skbs > 0).then(|| DropRow {
                stage: Stage::Socket,
                reason: LISTEN_DROPS.into(),
                iface: None,
                netns: Some(netns.clone()),
                skbs,
            })
        })
        .collect();
    // Overflow events the drop table could not tie to a namespace are
    // taken off the total too: a drop is never counted twice.
    let per_netns: u64 = rows.iter().map(|r| r.skbs).sum();
    let eventless = per_netns.min(counted.saturating_sub(overflows(None)));
    drops.extend(rows);
    sort_rows(drops);
    socket.drops += eventless;
    socket.drop_skbs += eventless;
    socket.reasons.insert(
        LISTEN_DROPS.into(),
        ReasonCount {
            segments: eventless,
            skbs: eventless,
            counter: Some(LISTEN_DROPS),
            kernel: Some(counted),
        },
    );
}
