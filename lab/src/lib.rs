//! A two-node flannel cluster in network namespaces: the VXLAN backend by
//! default, or host-gw ([`Backend`]).
//!
//! ```text
//!  node1 netns                                     node2 netns
//!  pod n1p1 ─veth─┐                               ┌─veth─ pod n2p1
//!  pod n1p2 ─veth─┴ cni0 10.244.1.1/24   cni0 10.244.2.1/24 ┴─veth─ pod n2p2
//!        flannel.1 (VNI 1, 8472, MTU 1450) ... flannel.1
//!        eth0 192.168.50.1 ════ underlay veth ════ eth0 192.168.50.2
//! ```
//!
//! Each node gets flannel's static wiring: a route to the other node's pod
//! CIDR via flannel.1 onlink, a permanent neighbour entry for the other VTEP's
//! address, and a permanent FDB entry pointing that MAC at the other node's
//! underlay IP. With host-gw there is no flannel.1: each node routes the
//! other's pod CIDR via the other's underlay IP on eth0, and pods get the
//! underlay's MTU (nothing is encapsulated). IPv6 is disabled and every neighbour is static, so the lab is
//! silent: every packet on it is one a test sent.
//!
//! Every namespace name starts with the lab's prefix. [`Lab`] deletes them on
//! drop, also when a test panics; [`sweep`] removes leftovers of a killed run.
//! [`prometheus`] runs a real Prometheus that scrapes `probe serve` on the nodes;
//! [`qstats`] reads the kernel's per-RX-queue counters.

pub mod prometheus;
pub mod qstats;
pub mod traffic;

use std::{net::Ipv4Addr, process::Command};

pub use traffic::{client, in_netns, pin_thread, send_udp, set_rcvbuf, Server, UdpSink};

/// VXLAN id and port flanneld uses for its `vxlan` backend.
pub const FLANNEL_VNI: u32 = 1;
pub const FLANNEL_PORT: u16 = 8472;
pub const FLANNEL_MTU: u32 = 1450;
/// The MTU of eth0, and of pods with host-gw.
pub const UNDERLAY_MTU: u32 = 1500;
pub const NODES: u8 = 2;

/// How pod traffic crosses between the nodes (flannel's backends).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    /// flannel.1: VXLAN (VNI 1, UDP 8472) over the underlay.
    #[default]
    Vxlan,
    /// Plain routes to the other node's pod CIDR via its underlay IP.
    HostGw,
}

impl Backend {
    pub const fn name(self) -> &'static str {
        match self {
            Backend::Vxlan => "vxlan",
            Backend::HostGw => "host-gw",
        }
    }

    /// The pods' (and cni0's) MTU: the underlay's, less VXLAN's 50 bytes.
    pub const fn pod_mtu(self) -> u32 {
        match self {
            Backend::Vxlan => FLANNEL_MTU,
            Backend::HostGw => UNDERLAY_MTU,
        }
    }
}
pub const PODS_PER_NODE: u8 = 2;

#[derive(Debug, Clone)]
pub struct Pod {
    pub netns: String,
    pub ip: Ipv4Addr,
    /// The pod end's host-side veth (in the node namespace, enslaved to cni0).
    pub host_veth: String,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub index: u8,
    pub netns: String,
    pub underlay_ip: Ipv4Addr,
    pub pods: Vec<Pod>,
}

impl Node {
    pub const NIC: &'static str = "eth0";
    pub const VXLAN: &'static str = "flannel.1";
    pub const BRIDGE: &'static str = "cni0";
}

/// A running lab. Dropping it deletes every namespace it created.
#[derive(Debug)]
pub struct Lab {
    pub prefix: String,
    pub nodes: Vec<Node>,
    pub backend: Backend,
    keep: bool,
}

fn mac(kind: u8, node: u8, n: u8) -> String {
    format!("02:{kind:02x}:00:00:{node:02x}:{n:02x}")
}

/// Set in the QEMU guests of `cargo xtask vm`: the machine is the guest's
/// own, and a test may change what is node-wide there (nf_conntrack_max).
pub const GUEST_ENV: &str = "PROBE_IN_GUEST";

/// The underlay MAC address of node `node`'s eth0.
pub fn mac_of(node: u8) -> String {
    mac(MAC_UNDERLAY, node, 0)
}

/// `PROBE_LAB_NICS=MAC1,MAC2`: two NICs of the initial namespace, wired to
/// each other, that become the nodes' eth0 (`cargo xtask vm` sets it in its
/// virtio_net pass). Unset: a veth pair.
pub const NICS_ENV: &str = "PROBE_LAB_NICS";

/// What a test prints when a node's emulated NIC (the [`NICS_ENV`] pass)
/// transmitted only part of what it was given, with no NETDEV WATCHDOG line
/// (the test ended before the 5 s watchdog): `cargo xtask vm` then runs the
/// guest once more, as for a logged stall. Seen on 5.10's virtio_net under
/// TCG: node 1's eth0 sent 542, then 714, of 10,000.
pub const NIC_SENT_SHORT: &str = "EMULATED-NIC-SENT-SHORT";

fn nics_from_env() -> Result<Option<Vec<String>>, String> {
    let Ok(value) = std::env::var(NICS_ENV) else {
        return Ok(None);
    };
    let macs: Vec<String> = value.split(',').map(|m| m.trim().to_string()).collect();
    if macs.len() != NODES as usize {
        return Err(format!("{NICS_ENV}={value}: give {NODES} MAC addresses"));
    }
    Ok(Some(macs))
}

/// The name of the initial namespace's device with MAC address `mac`.
fn nic_by_mac(mac: &str) -> Result<String, String> {
    let out = run("ip", &["-j", "link", "show"])?;
    let links: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
    links
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| {
            l["address"]
                .as_str()
                .is_some_and(|a| a.eq_ignore_ascii_case(mac))
        })
        .and_then(|l| Some(l["ifname"].as_str()?.to_string()))
        .ok_or_else(|| format!("no NIC with MAC {mac} in the initial namespace ({NICS_ENV})"))
}

fn underlay_ip(node: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 50, node)
}
fn vtep_ip(node: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node, 0)
}
fn pod_ip(node: u8, pod: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, node, 1 + pod)
}
const MAC_UNDERLAY: u8 = 0x50;
const MAC_VTEP: u8 = 0xf1;
const MAC_BRIDGE: u8 = 0xc0;
const MAC_POD: u8 = 0xa0;

/// Runs a command; on failure returns its stderr in the error.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| {
        format!("cannot run {program} (is iproute2 installed? `cargo xtask setup`): {e}")
    })?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(netns: &str, args: &str) -> Result<(), String> {
    let mut argv = vec!["-n", netns];
    argv.extend(args.split_whitespace());
    run("ip", &argv).map(drop)
}

fn sysctl(netns: &str, key: &str, value: &str) -> Result<(), String> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ],
    )
    .map(drop)
}

fn new_netns(name: &str) -> Result<(), String> {
    run("ip", &["netns", "add", name])?;
    // Before any link exists: no IPv6 link-local addresses, DAD or MLD noise.
    sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1")?;
    sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1")?;
    ip(name, "link set lo up")
}

impl Lab {
    /// Builds the lab under `prefix` (namespaces `PREFIX-n1`, `PREFIX-n1p1`, ...).
    /// Leftovers under the same prefix are removed first.
    pub fn up(prefix: &str) -> Result<Lab, String> {
        Lab::up_with(prefix, Backend::Vxlan)
    }

    /// [`Lab::up`] with the given backend.
    pub fn up_with(prefix: &str, backend: Backend) -> Result<Lab, String> {
        if !prefix.chars().all(|c| c.is_ascii_alphanumeric())
            || prefix.is_empty()
            || prefix.len() > 16
        {
            return Err(format!(
                "lab prefix {prefix:?}: use 1-16 ASCII letters and digits"
            ));
        }
        sweep(prefix)?;
        let mut lab = Lab {
            prefix: prefix.into(),
            nodes: Vec::new(),
            backend,
            keep: false,
        };
        for i in 1..=NODES {
            let netns = format!("{prefix}-n{i}");
            let pods = (1..=PODS_PER_NODE)
                .map(|p| Pod {
                    netns: format!("{prefix}-n{i}p{p}"),
                    ip: pod_ip(i, p),
                    host_veth: format!("veth{p}"),
                })
                .collect();
            lab.nodes.push(Node {
                index: i,
                netns,
                underlay_ip: underlay_ip(i),
                pods,
            });
        }
        // From here on, a failure drops `lab`, which deletes what exists.
        for ns in lab.namespaces() {
            new_netns(&ns)?;
        }
        let (n1, n2) = (&lab.nodes[0], &lab.nodes[1]);
        if let Some(nics) = nics_from_env()? {
            // Real NICs (a guest's two virtio_net devices, wired to each
            // other) as the nodes' eth0 instead of the veth pair.
            for (node, nic) in lab.nodes.iter().zip(&nics) {
                lab.take_nic(node, nic)?;
            }
            for node in &lab.nodes {
                lab.wire_node(node)?;
            }
            return Ok(lab);
        }
        run(
            "ip",
            &[
                "link",
                "add",
                Node::NIC,
                "netns",
                &n1.netns,
                "address",
                &mac(MAC_UNDERLAY, 1, 0),
                "type",
                "veth",
                "peer",
                "name",
                Node::NIC,
                "netns",
                &n2.netns,
                "address",
                &mac(MAC_UNDERLAY, 2, 0),
            ],
        )?;
        for node in &lab.nodes {
            lab.wire_node(node)?;
        }
        Ok(lab)
    }

    /// flannel.1 on `node` and what flanneld writes for each remote node: a
    /// route to its pod CIDR, its VTEP's neighbour entry and FDB entry. What a
    /// flanneld restart recreates.
    pub fn add_flannel(&self, node: &Node) -> Result<(), String> {
        let (ns, i) = (node.netns.as_str(), node.index);
        ip(
            ns,
            &format!(
                "link add flannel.1 address {} mtu {FLANNEL_MTU} type vxlan id {FLANNEL_VNI} local {} dev eth0 dstport {FLANNEL_PORT} nolearning",
                mac(MAC_VTEP, i, 0),
                node.underlay_ip
            ),
        )?;
        ip(ns, &format!("addr add {}/32 dev flannel.1", vtep_ip(i)))?;
        ip(ns, "link set flannel.1 up")?;
        for peer in self.nodes.iter().filter(|p| p.index != i) {
            let j = peer.index;
            // What flanneld writes for each remote node (subnet lease):
            ip(
                ns,
                &format!(
                    "route add 10.244.{j}.0/24 via {} dev flannel.1 onlink",
                    vtep_ip(j)
                ),
            )?;
            ip(
                ns,
                &format!(
                    "neigh add {} lladdr {} dev flannel.1 nud permanent",
                    vtep_ip(j),
                    mac(MAC_VTEP, j, 0)
                ),
            )?;
            run(
                "bridge",
                &[
                    "-n",
                    ns,
                    "fdb",
                    "add",
                    &mac(MAC_VTEP, j, 0),
                    "dev",
                    "flannel.1",
                    "dst",
                    &peer.underlay_ip.to_string(),
                    "self",
                    "permanent",
                ],
            )?;
        }
        Ok(())
    }

    /// Deletes the FDB entry that points `node`'s flannel.1 at `peer`'s VTEP:
    /// what a flanneld that lost its subnet lease leaves. vxlan_xmit then has
    /// no target for the peer's pods (drop reason NO_TX_TARGET).
    pub fn delete_fdb(&self, node: &Node, peer: &Node) -> Result<(), String> {
        run(
            "bridge",
            &[
                "-n",
                &node.netns,
                "fdb",
                "del",
                &mac(MAC_VTEP, peer.index, 0),
                "dev",
                Node::VXLAN,
                "dst",
                &peer.underlay_ip.to_string(),
                "self",
            ],
        )
        .map(|_| ())
    }

    /// Deletes `node`'s flannel.1 (its routes and neighbour entries go with it).
    pub fn delete_flannel(&self, node: &Node) -> Result<(), String> {
        ip(&node.netns, "link del flannel.1")
    }

    fn wire_node(&self, node: &Node) -> Result<(), String> {
        let (ns, i) = (node.netns.as_str(), node.index);
        sysctl(ns, "net.ipv4.ip_forward", "1")?;
        ip(ns, &format!("addr add {}/24 dev eth0", node.underlay_ip))?;
        ip(ns, "link set eth0 up")?;
        // A default route, so `probe watch` finds eth0 by itself as on a node.
        ip(ns, "route add default via 192.168.50.254 dev eth0")?;
        for peer in self.nodes.iter().filter(|p| p.index != i) {
            ip(
                ns,
                &format!(
                    "neigh add {} lladdr {} dev eth0 nud permanent",
                    peer.underlay_ip,
                    mac(MAC_UNDERLAY, peer.index, 0)
                ),
            )?;
        }
        match self.backend {
            Backend::Vxlan => self.add_flannel(node)?,
            Backend::HostGw => {
                // What flanneld's host-gw backend writes for each remote node.
                for peer in self.nodes.iter().filter(|p| p.index != i) {
                    ip(
                        ns,
                        &format!(
                            "route add 10.244.{}.0/24 via {} dev eth0",
                            peer.index, peer.underlay_ip
                        ),
                    )?;
                }
            }
        }
        let pod_mtu = self.backend.pod_mtu();
        ip(
            ns,
            &format!(
                // No multicast snooping: the bridge would join 224.0.0.106 and
                // send IGMP reports the pods drop (noise in exact drop counts).
                "link add cni0 address {} mtu {pod_mtu} type bridge mcast_snooping 0",
                mac(MAC_BRIDGE, i, 0)
            ),
        )?;
        ip(ns, &format!("addr add 10.244.{i}.1/24 dev cni0"))?;
        ip(ns, "link set cni0 up")?;
        for (p, pod) in node.pods.iter().enumerate() {
            let pod_mac = mac(MAC_POD, i, p as u8 + 1);
            run(
                "ip",
                &[
                    "link",
                    "add",
                    "eth0",
                    "netns",
                    &pod.netns,
                    "address",
                    &pod_mac,
                    "mtu",
                    &pod_mtu.to_string(),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &pod.host_veth,
                    "netns",
                    ns,
                    "mtu",
                    &pod_mtu.to_string(),
                ],
            )?;
            ip(ns, &format!("link set {} master cni0 up", pod.host_veth))?;
            // The bridge knows every pod's port from the start: without it,
            // frames to a pod that has not sent yet are flooded to the other
            // pods, which drop them (OTHERHOST) and blur exact drop counts.
            run(
                "bridge",
                &[
                    "-n",
                    ns,
                    "fdb",
                    "add",
                    &pod_mac,
                    "dev",
                    &pod.host_veth,
                    "master",
                    "static",
                ],
            )?;
            ip(
                ns,
                &format!(
                    "neigh add {} lladdr {pod_mac} dev cni0 nud permanent",
                    pod.ip
                ),
            )?;
            ip(&pod.netns, &format!("addr add {}/24 dev eth0", pod.ip))?;
            ip(&pod.netns, "link set eth0 up")?;
            ip(
                &pod.netns,
                &format!("route add default via 10.244.{i}.1 dev eth0"),
            )?;
            ip(
                &pod.netns,
                &format!(
                    "neigh add 10.244.{i}.1 lladdr {} dev eth0 nud permanent",
                    mac(MAC_BRIDGE, i, 0)
                ),
            )?;
        }
        Ok(())
    }

    /// Every namespace of the lab, pods first.
    pub fn namespaces(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .nodes
            .iter()
            .flat_map(|n| n.pods.iter().map(|p| p.netns.clone()))
            .collect();
        v.extend(self.nodes.iter().map(|n| n.netns.clone()));
        v
    }

    /// Every namespace of this lab is named `PREFIX-...`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn node(&self, index: u8) -> &Node {
        &self.nodes[index as usize - 1]
    }

    /// Keeps the namespaces after drop (`cargo xtask lab up`).
    /// Moves the NIC with MAC address `mac` from the initial namespace into
    /// `node`'s as eth0, with IPv6 off before it comes up (no DAD or MLD noise).
    fn take_nic(&self, node: &Node, mac: &str) -> Result<(), String> {
        let name = nic_by_mac(mac)?;
        run("ip", &["link", "set", "dev", &name, "down"])?;
        run(
            "ip",
            &[
                "link",
                "set",
                "dev",
                &name,
                "netns",
                &node.netns,
                "name",
                Node::NIC,
            ],
        )?;
        sysctl(&node.netns, "net.ipv6.conf.eth0.disable_ipv6", "1")?;
        let expected = mac_of(node.index);
        if !mac.eq_ignore_ascii_case(&expected) {
            ip(&node.netns, &format!("link set eth0 address {expected}"))?;
        }
        Ok(())
    }

    pub fn keep(mut self) {
        self.keep = true;
    }

    pub fn down(&self) -> Result<(), String> {
        // Real NICs go back under a name of their own: when a namespace
        // dies its NICs return to the initial one, where two "eth0" clash.
        if nics_from_env()?.is_some() {
            for node in &self.nodes {
                let spare = format!("lab{}", node.index);
                let _ = ip(&node.netns, "link set eth0 down");
                let _ = ip(&node.netns, &format!("link set eth0 netns 1 name {spare}"));
            }
        }
        sweep(&self.prefix)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = self.down() {
                eprintln!("lab: teardown of {} failed: {e}", self.prefix);
            }
        }
    }
}

/// Deletes every namespace named `PREFIX-*` (pods before nodes).
pub fn sweep(prefix: &str) -> Result<(), String> {
    let mut names = lab_namespaces(prefix);
    names.sort_by_key(|n| std::cmp::Reverse(n.len())); // PREFIX-n1p1 before PREFIX-n1
    for name in names {
        run("ip", &["netns", "del", &name])?;
    }
    Ok(())
}

/// A lab prefix unique to this process: `LEADpidxN`. [`sweep_stale`] can tell
/// from the pid whether its owner is still alive.
pub fn unique_prefix(lead: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{lead}{}x{n}", std::process::id())
}

/// Deletes the labs made by [`unique_prefix`]`(lead)` in processes that no longer run.
pub fn sweep_stale(lead: &str) -> Result<(), String> {
    let names: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut prefixes: Vec<String> = names
        .iter()
        .filter_map(|n| {
            let prefix = n.split('-').next()?;
            let pid = prefix.strip_prefix(lead)?.split('x').next()?;
            let alive = !pid.is_empty() && std::path::Path::new(&format!("/proc/{pid}")).exists();
            (pid.chars().all(|c| c.is_ascii_digit()) && !alive).then(|| prefix.to_string())
        })
        .collect();
    prefixes.sort();
    prefixes.dedup();
    prefixes.iter().try_for_each(|p| sweep(p))
}

/// Writes `mask` (hex CPU mask) to rps_cpus of `iface`'s RX queue `queue` in
/// `netns` (through `ip netns exec`, which mounts that namespace's sysfs).
pub fn set_rps(netns: &str, iface: &str, queue: u32, mask: &str) -> Result<(), String> {
    run(
        "ip",
        &[
            "netns",
            "exec",
            netns,
            "sh",
            "-c",
            &format!("echo {mask} > /sys/class/net/{iface}/queues/rx-{queue}/rps_cpus"),
        ],
    )
    .map(drop)
}

/// Namespaces under /run/netns whose name starts with `PREFIX-`.
pub fn lab_namespaces(prefix: &str) -> Vec<String> {
    let lead = format!("{prefix}-");
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|n| n.starts_with(&lead))
                .collect()
        })
        .unwrap_or_default()
}

/// The kernel's own counters of a device, read with `ip -s -j link`
/// (independent of the probe's netlink code, so tests can check one against the other).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DevStats {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
}

pub fn dev_stats(netns: &str, iface: &str) -> Result<DevStats, String> {
    let out = run(
        "ip",
        &["-n", netns, "-s", "-j", "link", "show", "dev", iface],
    )?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| format!("ip -j output: {e}"))?;
    let s = &v[0]["stats64"];
    let get = |dir: &str, k: &str| {
        s[dir][k]
            .as_u64()
            .ok_or_else(|| format!("no stats64.{dir}.{k} for {iface} in {netns}"))
    };
    Ok(DevStats {
        rx_packets: get("rx", "packets")?,
        rx_bytes: get("rx", "bytes")?,
        rx_dropped: get("rx", "dropped")?,
        tx_packets: get("tx", "packets")?,
    })
}
