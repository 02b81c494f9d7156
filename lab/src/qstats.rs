//! The kernel's own per-RX-queue packet counters, for tests to check the
//! probe's per-queue counts against. Drivers report them in one of two places:
//! `ethtool -S` (virtio_net's `rx_queue_N_packets` up to 6.9) or, since the
//! netdev netlink family's `qstats-get` (Linux 6.10, where virtio_net moved
//! them), only there. Written against the UAPI numbers, independent of the
//! probe's own netlink code.

use std::{io, mem::size_of};

use crate::{in_netns, run};

const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;
// include/uapi/linux/netdev.h
const NETDEV_CMD_QSTATS_GET: u8 = 12;
const NETDEV_A_QSTATS_IFINDEX: u16 = 1;
const NETDEV_A_QSTATS_QUEUE_TYPE: u16 = 2;
const NETDEV_A_QSTATS_QUEUE_ID: u16 = 3;
const NETDEV_A_QSTATS_SCOPE: u16 = 4;
const NETDEV_A_QSTATS_RX_PACKETS: u16 = 8;
const NETDEV_QSTATS_SCOPE_QUEUE: u32 = 1;
const NETDEV_QUEUE_TYPE_RX: u32 = 0;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const HEADER: usize = 16 + 4; // nlmsghdr + genlmsghdr

/// RX packets per queue of `iface` in `netns`, index = queue id.
pub fn rx_queue_packets(netns: &str, iface: &str) -> Result<Vec<u64>, String> {
    let release =
        std::fs::read_to_string("/proc/sys/kernel/osrelease").map_err(|e| e.to_string())?;
    let mut version = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    if (major, minor) >= (6, 10) {
        let name = iface.to_string();
        return in_netns(netns, move || qstats(&name))
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("netdev qstats-get of {iface}: {e}"));
    }
    let stats = run("ip", &["netns", "exec", netns, "ethtool", "-S", iface])?;
    let mut per_queue = Vec::new();
    for q in 0.. {
        let names = [format!("rx_queue_{q}_packets"), format!("rx{q}_packets")];
        let value = stats.lines().find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            names
                .iter()
                .any(|n| n == k.trim())
                .then(|| v.trim().parse::<u64>().ok())?
        });
        match value {
            Some(v) => per_queue.push(v),
            None => break,
        }
    }
    if per_queue.is_empty() {
        return Err(format!(
            "no per-queue packet counters in ethtool -S {iface}:\n{stats}"
        ));
    }
    Ok(per_queue)
}

/// One netlink attribute: (type, payload).
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((kind, &b[4..len]));
        b = &b[((len + 3) & !3).min(b.len())..];
    }
    out
}

fn uint(b: &[u8]) -> u64 {
    match b.len() {
        4 => u32::from_ne_bytes(b.try_into().unwrap()) as u64,
        8 => u64::from_ne_bytes(b.try_into().unwrap()),
        _ => 0,
    }
}

struct Genl(libc::c_int);

impl Drop for Genl {
    fn drop(&mut self) {
        // SAFETY: our own descriptor.
        unsafe { libc::close(self.0) };
    }
}

impl Genl {
    fn open() -> io::Result<Genl> {
        // SAFETY: plain socket(2).
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_GENERIC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Genl(fd))
    }

    /// Sends one request and returns every reply message's payload (after
    /// the generic netlink header) until the answer is complete.
    fn request(
        &self,
        kind: u16,
        flags: u16,
        cmd: u8,
        attrs: &[(u16, Vec<u8>)],
    ) -> io::Result<Vec<Vec<u8>>> {
        let mut msg = vec![0u8; HEADER];
        for (t, data) in attrs {
            msg.extend(((4 + data.len()) as u16).to_ne_bytes());
            msg.extend(t.to_ne_bytes());
            msg.extend(data);
            msg.resize((msg.len() + 3) & !3, 0);
        }
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        msg[4..6].copy_from_slice(&kind.to_ne_bytes());
        msg[6..8].copy_from_slice(
            &(flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16).to_ne_bytes(),
        );
        msg[8..12].copy_from_slice(&1u32.to_ne_bytes());
        msg[16] = cmd;
        msg[17] = 1; // version
                     // SAFETY: a zeroed sockaddr_nl addressed to the kernel (pid 0).
        let mut to: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        to.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: msg and `to` outlive the call.
        let sent = unsafe {
            libc::sendto(
                self.0,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: buf is writable for its length.
            let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut b = &buf[..n as usize];
            while b.len() >= 16 {
                let len = u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize;
                let kind = u16::from_ne_bytes([b[4], b[5]]);
                if len < 16 || len > b.len() {
                    return Err(io::Error::other("truncated netlink message"));
                }
                match kind {
                    NLMSG_DONE => return Ok(replies),
                    NLMSG_ERROR => {
                        if len < 20 {
                            return Err(io::Error::other("truncated netlink error"));
                        }
                        let errno = i32::from_ne_bytes(b[16..20].try_into().unwrap());
                        if errno != 0 {
                            return Err(io::Error::from_raw_os_error(-errno));
                        }
                        // The ACK of a request without dump: complete.
                        if flags & libc::NLM_F_DUMP as u16 == 0 {
                            return Ok(replies);
                        }
                    }
                    _ if len >= HEADER => replies.push(b[HEADER..len].to_vec()),
                    _ => {}
                }
                b = &b[((len + 3) & !3).min(b.len())..];
            }
        }
    }
}

fn qstats(iface: &str) -> io::Result<Vec<u64>> {
    let name = std::ffi::CString::new(iface).map_err(io::Error::other)?;
    // SAFETY: a valid C string.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(io::Error::last_os_error());
    }
    let genl = Genl::open()?;
    let family = genl
        .request(
            GENL_ID_CTRL,
            0,
            CTRL_CMD_GETFAMILY,
            &[(CTRL_ATTR_FAMILY_NAME, b"netdev\0".to_vec())],
        )?
        .iter()
        .flat_map(|m| {
            attrs(m)
                .into_iter()
                .filter(|(t, _)| *t == CTRL_ATTR_FAMILY_ID)
                .map(|(_, v)| uint16(v))
                .collect::<Vec<_>>()
        })
        .next()
        .ok_or_else(|| io::Error::other("no netdev generic netlink family"))?;
    let replies = genl.request(
        family,
        libc::NLM_F_DUMP as u16,
        NETDEV_CMD_QSTATS_GET,
        &[
            (NETDEV_A_QSTATS_IFINDEX, ifindex.to_ne_bytes().to_vec()),
            (
                NETDEV_A_QSTATS_SCOPE,
                NETDEV_QSTATS_SCOPE_QUEUE.to_ne_bytes().to_vec(),
            ),
        ],
    )?;
    let mut per_queue = Vec::new();
    for m in &replies {
        let a = attrs(m);
        let get = |t: u16| a.iter().find(|(k, _)| *k == t).map(|(_, v)| uint(v));
        if get(NETDEV_A_QSTATS_QUEUE_TYPE) != Some(NETDEV_QUEUE_TYPE_RX as u64) {
            continue;
        }
        let (Some(q), Some(packets)) = (
            get(NETDEV_A_QSTATS_QUEUE_ID),
            get(NETDEV_A_QSTATS_RX_PACKETS),
        ) else {
            continue;
        };
        let q = q as usize;
        if per_queue.len() <= q {
            per_queue.resize(q + 1, 0);
        }
        per_queue[q] = packets;
    }
    if per_queue.is_empty() {
        return Err(io::Error::other(
            "the driver reports no per-queue RX packets",
        ));
    }
    Ok(per_queue)
}

fn uint16(b: &[u8]) -> u16 {
    if b.len() >= 2 {
        u16::from_ne_bytes([b[0], b[1]])
    } else {
        0
    }
}
