//! Driver statistics (`ethtool -S`) through the SIOCETHTOOL ioctl: the
//! per-queue drop counters some drivers keep for their RX rings. Names are
//! driver-specific; [`queue_drop_stats`] keeps the per-queue receive drop ones.

use std::{ffi::c_void, io, os::fd::AsRawFd};

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GSTRINGS: u32 = 0x1b;
const ETHTOOL_GSTATS: u32 = 0x1d;
const ETHTOOL_GSSET_INFO: u32 = 0x37;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut c_void,
    _pad: [u8; 16],
}

/// SIOCETHTOOL on `iface` with `data` pointing at the command's struct (its
/// first u32 is the command), in `sock`'s network namespace.
pub fn ioctl(sock: &std::net::UdpSocket, iface: &str, data: *mut c_void) -> io::Result<()> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    let bytes = iface.as_bytes();
    if bytes.len() >= libc::IFNAMSIZ {
        return Err(io::Error::other("interface name too long"));
    }
    req.name[..bytes.len()].copy_from_slice(bytes);
    // SAFETY: SIOCETHTOOL with an ifreq whose data points at a buffer sized
    // for the command (checked by the callers).
    if unsafe { libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every statistic of `iface` by name, in the calling thread's netns.
/// Err(Unsupported) when the driver has none.
pub fn stats(iface: &str) -> io::Result<Vec<(String, u64)>> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // struct ethtool_sset_info { cmd, reserved, u64 sset_mask, u32 data[] }
    let mut info = [0u32; 6];
    info[0] = ETHTOOL_GSSET_INFO;
    info[2] = 1 << ETH_SS_STATS;
    ioctl(&sock, iface, info.as_mut_ptr().cast())?;
    let count = if info[2] & (1 << ETH_SS_STATS) != 0 {
        info[4] as usize
    } else {
        0
    };
    if count == 0 {
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    // struct ethtool_gstrings { cmd, string_set, len, u8 data[] }
    let mut strings = vec![0u8; 12 + count * ETH_GSTRING_LEN];
    strings[..4].copy_from_slice(&ETHTOOL_GSTRINGS.to_ne_bytes());
    strings[4..8].copy_from_slice(&ETH_SS_STATS.to_ne_bytes());
    strings[8..12].copy_from_slice(&(count as u32).to_ne_bytes());
    ioctl(&sock, iface, strings.as_mut_ptr().cast())?;
    // struct ethtool_stats { cmd, n_stats, u64 data[] }
    let mut values = vec![0u64; 1 + count];
    values[0] = ETHTOOL_GSTATS as u64 | (count as u64) << 32;
    ioctl(&sock, iface, values.as_mut_ptr().cast())?;
    Ok(strings[12..]
        .chunks(ETH_GSTRING_LEN)
        .zip(&values[1..])
        .map(|(name, v)| {
            let end = name.iter().position(|&c| c == 0).unwrap_or(name.len());
            (String::from_utf8_lossy(&name[..end]).into_owned(), *v)
        })
        .collect())
}

/// Words of a drop-like event in a statistic's name.
const DROP_WORDS: [&str; 7] = [
    "drop",
    "miss",
    "no_buf",
    "nobuf",
    "alloc_fail",
    "fifo",
    "overrun",
];

/// Device totals that are also fields of the link's stats64 (rtnetlink): the
/// ledger shows those already, from the kernel.
const STATS64_NAMES: [&str; 5] = [
    "rx_dropped",
    "rx_missed_errors",
    "rx_fifo_errors",
    "rx_over_errors",
    "rx_errors",
];

/// Leading digits of `s` as a queue number, and the rest after one `_` or
/// `.` separator.
fn queue_and_rest(s: &str) -> Option<(u32, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let queue = s[..digits].parse().ok()?;
    let rest = s[digits..].strip_prefix(['_', '.'])?;
    Some((queue, rest))
}

/// A receive statistic's queue (None: a device total) and its event with any
/// `rx_` prefix removed, for the names drivers use:
/// `rx_queue_0_drops` (veth, ixgbe; virtio_net on Linux 6.1), `rx0_drops`
/// (virtio_net on 6.12, which renamed them; mlx5), `rx-0.rx_dropped`,
/// `rx_0_drops`, `rxq0_drops` / `rxq_0_drops`, and totals like `rx_drops`.
fn receive_stat(name: &str) -> Option<(Option<u32>, &str)> {
    // Longest prefix first: `rx_queue_` before `rx_`, `rxq` before `rx`.
    for prefix in ["rx_queue_", "rx_", "rx-", "rxq_", "rxq", "rx"] {
        if let Some((queue, event)) = name.strip_prefix(prefix).and_then(queue_and_rest) {
            return Some((Some(queue), event.strip_prefix("rx_").unwrap_or(event)));
        }
    }
    let event = name.strip_prefix("rx_")?;
    (!event.bytes().any(|b| b.is_ascii_digit())).then_some((None, event))
}

/// A drop-like event (a loss in the ring or the driver), not XDP's own
/// verdict counters (`*_xdp_drops`: XDP_DROP is a decision, not a loss).
fn is_drop_event(event: &str) -> bool {
    DROP_WORDS.iter().any(|w| event.contains(w)) && !event.contains("xdp")
}

/// Per-RX-queue drop counters among a driver's statistics, matched by
/// pattern across drivers and driver versions (see [`receive_stat`]). A device
/// total (`rx_drops`) is kept only when the driver reports no per-queue
/// counter of the same event (virtio_net 6.12 reports both `rx_drops` and
/// `rx0_drops`: the total would count each drop twice next to its parts).
/// Totals that stats64 has too (`rx_dropped`, `rx_missed_errors`, ...) are
/// left out. Names keep the driver's spelling; order is the driver's.
pub fn queue_drop_stats(stats: &[(String, u64)]) -> Vec<(String, u64)> {
    let lower: Vec<String> = stats.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    let parsed: Vec<Option<(Option<u32>, &str)>> = lower
        .iter()
        .map(|n| receive_stat(n).filter(|(_, event)| is_drop_event(event)))
        .collect();
    let per_queue = |event: &str| {
        parsed
            .iter()
            .flatten()
            .any(|(q, e)| q.is_some() && *e == event)
    };
    stats
        .iter()
        .zip(&lower)
        .zip(&parsed)
        .filter(|((_, name), p)| match p {
            Some((Some(_), _)) => true,
            Some((None, event)) => !STATS64_NAMES.contains(&name.as_str()) && !per_queue(event),
            None => false,
        })
        .map(|((stat, _), _)| stat.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    fn picked(list: &[(&str, u64)]) -> Vec<String> {
        queue_drop_stats(&stats(list))
            .into_iter()
            .map(|s| s.0)
            .collect()
    }

    #[test]
    fn picks_per_queue_receive_drops() {
        let names = picked(&[
            ("peer_ifindex", 5),
            ("rx_queue_0_xdp_packets", 10),
            ("rx_queue_0_drops", 3),
            ("rx_queue_0_xdp_drops", 1),
            ("rx-1.rx_dropped", 2),
            ("rx_queue_2_alloc_failed", 4),
            ("tx_queue_0_drops", 9),
            ("rx_missed_errors", 7),
        ]);
        assert_eq!(
            names,
            [
                "rx_queue_0_drops",
                "rx-1.rx_dropped",
                "rx_queue_2_alloc_failed"
            ]
        );
    }

    /// virtio_net on Linux 6.1: `rx_queue_N_*`, no total.
    #[test]
    fn virtio_net_6_1_names() {
        let names = picked(&[
            ("rx_queue_0_packets", 100),
            ("rx_queue_0_drops", 2),
            ("rx_queue_0_xdp_drops", 0),
            ("rx_queue_0_kicks", 9),
            ("rx_queue_1_drops", 1),
            ("tx_queue_0_packets", 50),
        ]);
        assert_eq!(names, ["rx_queue_0_drops", "rx_queue_1_drops"]);
    }

    /// virtio_net on Linux 6.12: `rxN_*` and a total `rx_drops`, which is
    /// left out next to its per-queue parts.
    #[test]
    fn virtio_net_6_12_names_without_double_counting() {
        let list = [
            ("rx_drops", 3),
            ("rx0_packets", 100),
            ("rx0_drops", 2),
            ("rx0_xdp_drops", 5),
            ("rx1_drops", 1),
            ("tx0_packets", 50),
        ];
        assert_eq!(picked(&list), ["rx0_drops", "rx1_drops"]);
        let sum: u64 = queue_drop_stats(&stats(&list)).iter().map(|s| s.1).sum();
        assert_eq!(sum, 3, "the total counted once, through its parts");
    }

    /// A driver with only the total: the total is kept.
    #[test]
    fn total_when_no_queue_has_the_event() {
        assert_eq!(picked(&[("rx_drops", 3), ("rx0_packets", 9)]), ["rx_drops"]);
        // A per-queue counter of another event does not hide the total.
        assert_eq!(
            picked(&[("rx_drops", 3), ("rx0_alloc_fail", 1)]),
            ["rx_drops", "rx0_alloc_fail"]
        );
        // Totals stats64 already has are not repeated.
        assert!(picked(&[("rx_dropped", 1), ("rx_fifo_errors", 2)]).is_empty());
    }

    #[test]
    fn other_queue_spellings() {
        let names = picked(&[
            ("rx-3.drops", 1),
            ("rx-4_drops", 1),
            ("rx_5_drops", 1),
            ("rxq6_no_buf", 1),
            ("rxq_7_drops", 1),
            ("RX8_DROPS", 1),
            ("rx9drops", 1),
            ("rx_xdp_drops", 1),
            ("rx10_xdp_drops", 1),
        ]);
        assert_eq!(
            names,
            [
                "rx-3.drops",
                "rx-4_drops",
                "rx_5_drops",
                "rxq6_no_buf",
                "rxq_7_drops",
                "RX8_DROPS"
            ]
        );
        // `rx-N.rx_dropped` and a total `rx_drops`: different events.
        assert_eq!(receive_stat("rx-1.rx_dropped"), Some((Some(1), "dropped")));
        assert_eq!(receive_stat("rx0_drops"), Some((Some(0), "drops")));
        assert_eq!(receive_stat("rx_drops"), Some((None, "drops")));
        assert_eq!(receive_stat("tx0_drops"), None);
    }
}
