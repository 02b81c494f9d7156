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

/// Per-RX-queue drop counters among a driver's statistics: names that mention
/// a receive queue and a drop-like event, e.g. `rx_queue_0_drops` (veth),
/// `rx-3.rx_dropped`, `rx_queue_2_alloc_failed`. XDP's own verdict counters
/// (`*_xdp_drops`) are left out: they count XDP_DROP, a decision, not a loss.
pub fn queue_drop_stats(stats: &[(String, u64)]) -> Vec<(String, u64)> {
    stats
        .iter()
        .filter(|(name, _)| {
            let n = name.to_ascii_lowercase();
            let queue = (n.contains("rx_queue") || n.starts_with("rx-") || n.starts_with("rxq"))
                && n.chars().any(|c| c.is_ascii_digit());
            let drop = [
                "drop",
                "miss",
                "no_buf",
                "nobuf",
                "alloc_fail",
                "fifo",
                "overrun",
            ]
            .iter()
            .any(|w| n.contains(w));
            queue && drop && !n.contains("xdp")
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_per_queue_receive_drops() {
        let stats: Vec<(String, u64)> = [
            ("peer_ifindex", 5),
            ("rx_queue_0_xdp_packets", 10),
            ("rx_queue_0_drops", 3),
            ("rx_queue_0_xdp_drops", 1),
            ("rx-1.rx_dropped", 2),
            ("rx_queue_2_alloc_failed", 4),
            ("tx_queue_0_drops", 9),
            ("rx_missed_errors", 7),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
        let names: Vec<String> = queue_drop_stats(&stats).into_iter().map(|s| s.0).collect();
        assert_eq!(
            names,
            [
                "rx_queue_0_drops",
                "rx-1.rx_dropped",
                "rx_queue_2_alloc_failed"
            ]
        );
    }
}
